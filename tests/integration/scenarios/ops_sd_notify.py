"""systemd notifications on $NOTIFY_SOCKET: READY=1 with STATUS once the
supervisor serves, WATCHDOG=1 every WATCHDOG_USEC/2, RELOADING=1 (with
MONOTONIC_USEC) then READY=1 around every reload (failed ones too),
STOPPING=1 on SIGTERM; and nothing of it reaches the workers'
environment."""

import os
import re
import signal
import socket
import time

from harness import expect, expect_eq, ports, procs
from harness.tunnelpool import one_proxy

NAME = 'ops_sd_notify'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90

WATCHDOG_USEC = 400000


class Notify:
    """A NOTIFY_SOCKET: a unix datagram socket in the work dir."""

    def __init__(self, ctx):
        self.path = ctx.path('notify.sock')
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.msgs = []
        ctx.defer(self.sock.close, 'notify socket')

    def poll(self):
        while True:
            try:
                self.msgs.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.msgs

    def mark(self):
        return len(self.poll())

    def wait(self, pred, what, since=0, timeout=10):
        return procs.wait_for(lambda: pred(self.poll()[since:]), timeout,
                              what, interval=0.05)

    def without_watchdog(self, since=0):
        return [m for m in self.poll()[since:] if m != 'WATCHDOG=1']


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)
    tp = ctx.tunnelpool(node_key, kh)
    tp.add_tunnel('c1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % ports.free_port(),
                    '127.0.0.1:%d' % echo.port)])
    n = Notify(ctx)
    # The supervisor inherits the runner's environment, as from systemd.
    os.environ['NOTIFY_SOCKET'] = n.path
    os.environ['WATCHDOG_USEC'] = str(WATCHDOG_USEC)
    try:
        tp.start()
    finally:
        del os.environ['NOTIFY_SOCKET'], os.environ['WATCHDOG_USEC']
    n.wait(lambda m: m, 'the first notification')
    first = n.without_watchdog()[0]
    expect(re.match(r'^READY=1\nSTATUS=\d+ agents$', first),
           'first notification %r', first)
    st = tp.wait_state(lambda s: any(a['state'] == 'connected'
                                     for a in s['agents']), 30, 'connected')
    pid = st['agents'][0]['pid']
    env = open('/proc/%d/environ' % pid, 'rb').read()
    expect(b'NOTIFY_SOCKET' not in env and b'WATCHDOG' not in env,
           'worker environment leaks systemd variables: %r', env)

    # Watchdog pings at half the interval: 200 ms here.
    m = n.mark()
    n.wait(lambda msgs: msgs.count('WATCHDOG=1') >= 5, 'five watchdog pings',
           since=m, timeout=3)

    for broken in (False, True):
        if broken:
            good = open(tp.config_path).read()
            with open(tp.config_path, 'a') as f:
                f.write('resync_interval: [\n')
        m = n.mark()
        before = time.monotonic_ns() // 1000
        rc = tp.ctl('reload', check=False).returncode
        after = time.monotonic_ns() // 1000
        expect_eq(rc, 1 if broken else 0, 'reload exit (broken=%s)' % broken)
        n.wait(lambda msgs: len([x for x in msgs
                                       if x != 'WATCHDOG=1']) >= 2,
                     'two notifications on reload (broken=%s)' % broken,
                     since=m)
        got = [x for x in n.poll()[m:] if x != 'WATCHDOG=1']
        # RELOADING=1 carries CLOCK_MONOTONIC in us (systemd >= 253's
        # Type=notify-reload checks it), taken during the reload.
        r = re.fullmatch(r'RELOADING=1\nMONOTONIC_USEC=(\d+)', got[0])
        expect(r is not None and before <= int(r.group(1)) <= after and
               got[1:] == ['READY=1'], 'notifications on reload '
               '(broken=%s): %r, want RELOADING=1 with MONOTONIC_USEC in '
               '[%d, %d], then READY=1', broken, got, before, after)
    with open(tp.config_path, 'w') as f:
        f.write(good)

    m = n.mark()
    tp.proc.signal(signal.SIGTERM)
    expect_eq(tp.proc.wait(15), 0, 'supervisor exit status')
    got = n.without_watchdog(m)
    expect_eq(got, ['STOPPING=1'], 'notifications at shutdown')
