"""SIGTERM to the supervisor: every agent gets CLOSE and exits 0 (closed,
logged by the worker and the supervisor), the proxies see the forwards
withdrawn, the control socket file is removed, the supervisor exits 0, and
no process is left behind."""

import os
import signal

from harness import expect, expect_eq, ports, procs
from harness.tunnelpool import one_proxy

NAME = 'ops_sigterm'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)
    fwd = ports.free_ports(3)
    tp = ctx.tunnelpool(node_key, kh)
    clusters = ('c1', 'c2', 'c3')
    for i, c in enumerate(clusters):
        tp.add_tunnel(c, c, [proxy.address()],
                      [('127.0.0.1:%d' % fwd[i], '127.0.0.1:%d' % echo.port)])
    tp.start()
    st = tp.wait_state(lambda s: len([a for a in s['agents']
                                      if a['state'] == 'connected']) == 3,
                       30, 'three agents connected')
    workers = {a['cluster']: a['pid'] for a in st['agents']}
    for port in fwd:
        proxy.wait_forward(port)
    expect_eq(sorted(procs.children(tp.pid)), sorted(workers.values()),
              'supervisor children')

    mark = tp.log_mark()
    tp.proc.signal(signal.SIGTERM)
    rc = tp.proc.wait(15)
    expect_eq(rc, 0, 'supervisor exit status')
    log = tp.log_text(since=mark)
    expect('received signal 15: closing 3 agents' in log,
           'no shutdown line in:\n%s', log[-3000:])
    for c, pid in workers.items():
        for what in ('prog=tunnelpool-agent func=report_exit msg="exit 0 '
                     '(closed)" cluster=%s' % c,
                     'func=child_lost msg="worker closed (exit 0)" '
                     'cluster=%s addr=%s pid=%d ' % (c, proxy.address(), pid)):
            expect(what in log, 'missing %r in the log', what)
        expect(not procs.exists(pid), 'worker %d of %s still exists', pid, c)
    expect('worker lost' not in log, 'a worker was lost, not closed:\n%s',
           '\n'.join(l for l in log.splitlines() if 'worker lost' in l))
    expect(not os.path.exists(tp.control_socket),
           'control socket %s left behind', tp.control_socket)
    for port in fwd:
        proxy.wait_no_forward(port)
    left = [p for p in ctx.leftovers() if 'tunnelpool' in p]
    expect(not left, 'processes left behind: %r', left)
