"""The supervisor's deadlines: a worker that stops answering PING (SIGSTOP:
alive but silent) is killed with reason "timeout" and replaced; a worker
binary that never sends READY is killed at the READY deadline and the key is
retried with backoff; no zombie is left either way."""

import os
import signal

from harness import expect, ports, procs
from harness.target import send_and_check
from harness.tunnelpool import one_proxy

NAME = 'sup_deadlines'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90


def connected(st):
    return [a for a in st['agents'] if a['state'] == 'connected']


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)
    fwd = ports.free_port()
    timeouts = {'ping_interval': '1s', 'ready': '1s'}

    tp = ctx.tunnelpool(node_key, kh, backoff=('500ms', '2s'),
                        extra={'timeouts': timeouts})
    tp.add_tunnel('c1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % fwd, '127.0.0.1:%d' % echo.port)])
    tp.start()
    pid = tp.wait_state(connected, 30, 'connected')['agents'][0]['pid']

    # Alive but silent: no PONG within one ping interval -> killed.
    mark = tp.log_mark()
    procs.signal_pid(pid, signal.SIGSTOP)
    tp.wait_log(r'worker lost: timeout \(no PONG within the deadline\)', 10,
                since=mark)
    st = tp.wait_state(lambda s: [a for a in connected(s) if a['pid'] != pid],
                       30, 'replacement connected')
    expect(not procs.alive(pid), 'stopped worker %d still alive', pid)
    expect(not procs.zombies(tp.pid), 'zombies: %r', procs.zombies(tp.pid))
    proxy.wait_forward(fwd, 15)
    send_and_check('127.0.0.1', fwd, 64 * 1024)
    tp.stop()

    # A "worker" that never says READY: killed at the deadline, retried.
    silent = ctx.path('silent-worker')
    with open(silent, 'w') as f:
        f.write('#!/bin/sh\nexec sleep 600\n')
    os.chmod(silent, 0o755)
    tp2 = ctx.tunnelpool(node_key, kh, name='tp2', backoff=('500ms', '1s'),
                         worker_path=silent, extra={'timeouts': timeouts})
    tp2.add_tunnel('c1', 'c1', [proxy.address()],
                   [('127.0.0.1:%d' % fwd, '127.0.0.1:%d' % echo.port)])
    tp2.start()
    tp2.wait_log(r'worker lost: timeout \(no READY within the deadline\)', 10)
    mark = tp2.log_mark()
    tp2.wait_log(r'worker lost: timeout \(no READY', 10, since=mark)
    expect(not procs.zombies(tp2.pid), 'zombies: %r', procs.zombies(tp2.pid))
    kids = procs.children(tp2.pid)
    expect(len(kids) <= 1, 'more than one silent worker alive: %r', kids)
