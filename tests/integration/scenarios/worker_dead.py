"""Worker (through worker-drive): sshd's session processes SIGSTOPped ->
STATE disconnected, reason "proxy dead", within keepalive interval x count
+ 2 s; exit 7."""

import time

from harness import expect, wait_for
from harness.workerdrive import forward_drive

NAME = 'worker_dead'
REQUIRES = {'root': True, 'binaries': ['tunnelpool-agent', 'worker-drive']}
TIMEOUT = 120

KA_MS, KA_COUNT = 500, 3
KEEPALIVE = 'rtype keepalive@openssh.com'


def run(ctx):
    d, proxy, _ = forward_drive(ctx, ['--ka-ms', KA_MS,
                                      '--ka-count', KA_COUNT])
    # A few keepalives answered while the proxy is alive.
    mark = proxy.log_mark()
    wait_for(lambda: proxy.log_text(mark).count(KEEPALIVE) >= 3, 30,
             'three keepalives in the sshd log')
    expect(not [m for m in d.gone() if m.get('msg') == 'STATE'],
           'disconnected while alive')
    pids = proxy.session_tree_pids()
    expect(pids, 'no sshd session process found')
    t0 = time.monotonic()
    proxy.pause(listener=False, sessions=True)
    try:
        limit = KA_MS * KA_COUNT / 1000.0 + 2
        st = d.state('disconnected', timeout=limit + 30)
        took = time.monotonic() - t0
        expect(st['reason'] == 'proxy dead', 'reason %r', st['reason'])
        expect(took <= limit, 'proxy dead after %.2f s, limit %.2f s', took,
               limit)
        expect(d.exit()['code'] == 7, 'exit code')
        ctx.log('dead: detected after %.2f s (limit %.2f s)', took, limit)
    finally:
        proxy.resume(listener=False, sessions=True)
