#!/usr/bin/env python3
"""Worker: sshd's session processes SIGSTOPped -> STATE disconnected,
reason "proxy dead", within keepalive interval x count + 2 s; exit 7."""

import os
import signal
import time

from test_worker_lib import check, echo_server, free_port, main

KA_MS, KA_COUNT = 500, 3


def body(sc):
    target = echo_server(sc.loop)
    d = sc.drive(args=['--forward', '1:127.0.0.1:%d' % free_port(),
                       '--target', '127.0.0.1:%d' % target,
                       '--ka-ms', str(KA_MS), '--ka-count', str(KA_COUNT)])
    d.bound(1)
    time.sleep(1.5)         # a few keepalives while the proxy is alive
    check(not [m for m in d.drain() if m.get('msg') == 'STATE' and
               m['state'] == 'disconnected'], 'disconnected while alive')
    pids = sc.sshd.session_pids()
    check(pids, 'no sshd session process found')
    t0 = time.time()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        limit = KA_MS * KA_COUNT / 1000.0 + 2
        st = d.state('disconnected', timeout=limit + 5)
        took = time.time() - t0
        check(st['reason'] == 'proxy dead', 'reason %r', st['reason'])
        check(took <= limit, 'proxy dead after %.2f s, limit %.2f s', took,
              limit)
        check(d.exit()['code'] == 7, 'exit code')
        print('dead: detected after %.2f s (limit %.2f s)' % (took, limit))
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


if __name__ == '__main__':
    main('dead', body)
