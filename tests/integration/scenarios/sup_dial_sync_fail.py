"""Target dials that fail inside the call that starts them (issue 14,
item 3).  A numeric target resolves synchronously inside
evdns_getaddrinfo, and its connect can fail at once: ENETUNREACH
(255.255.255.255:9), or EMFILE when the supervisor is out of descriptors.
The dialer used to free the dial in that frame and then write into it (a
use-after-free in the process that holds the key; the ASan+UBSan run of
this scenario aborts on it).  Now every failure completes from the loop:
the worker gets its refusal, keeps its PID, and the next good dial works.
"""

import os
import resource
import socket
import time

from harness import expect, expect_eq, ports, procs
from harness.target import send_and_check
from harness.tunnelpool import one_proxy

NAME = 'sup_dial_sync_fail'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90


def poke(port):
    """Connects to the proxy's forwarded port and sends a byte; returns
    what comes back: b'' once the tunnel closed the connection (the dial
    failed), the byte if the target echoed it."""
    s = socket.create_connection(('127.0.0.1', port), timeout=5)
    try:
        s.settimeout(5)
        s.sendall(b'x')
        try:
            return s.recv(1)
        except (ConnectionResetError, socket.timeout):
            return b''
    finally:
        s.close()


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)
    bad, good = ports.free_ports(2)
    tp = ctx.tunnelpool(node_key, kh, log_level='info')
    tp.add_tunnel('c1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % bad, '255.255.255.255:9'),
                   ('127.0.0.1:%d' % good, echo.address())])
    tp.start()
    st = tp.wait_state(lambda s: [a['state'] for a in s['agents']] ==
                       ['connected'], 30, 'c1 connected')
    pid = st['agents'][0]['pid']
    proxy.wait_forward(bad)
    proxy.wait_forward(good)

    for i in range(3):
        mark = tp.log_mark()
        expect_eq(poke(bad), b'', 'unreachable target: data came back')
        tp.wait_log(r'dial 255\.255\.255\.255:9 for channel \d+ failed: '
                    r'Network is unreachable', 10, since=mark)
    expect(tp.alive(), 'supervisor died on ENETUNREACH')
    send_and_check('127.0.0.1', good, 64 * 1024)

    # EMFILE: the supervisor's descriptor limit at its lowest free fd
    # number, so that the next descriptor it makes is over the limit.
    soft, hard = resource.prlimit(tp.pid, resource.RLIMIT_NOFILE)
    used = {int(n) for n in os.listdir('/proc/%d/fd' % tp.pid)}
    nfds = min(n for n in range(len(used) + 1) if n not in used)
    mark = tp.log_mark()
    resource.prlimit(tp.pid, resource.RLIMIT_NOFILE, (nfds, hard))
    try:
        for i in range(3):
            expect_eq(poke(good), b'', 'EMFILE: data came back')
        m = tp.wait_log(r'dial 127\.0\.0\.1:\d+ for channel \d+ failed: '
                        r'Too many open files', 10, since=mark)
        ctx.log('at %d fds: %s', nfds, m.group(0))
    finally:
        resource.prlimit(tp.pid, resource.RLIMIT_NOFILE, (soft, hard))
    expect(tp.alive(), 'supervisor died on EMFILE')
    time.sleep(0.5)
    send_and_check('127.0.0.1', good, 64 * 1024)
    st = tp.status_json()
    expect_eq([(a['pid'], a['state']) for a in st['agents']],
              [(pid, 'connected')], 'the worker after the failed dials')
    expect(procs.exists(pid), 'worker %d is gone', pid)
