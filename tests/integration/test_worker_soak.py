#!/usr/bin/env python3
"""Worker: load plus keepalives, 20 s (TP_SOAK_SECONDS=60 for the long
run).  Bursts of 8 concurrent echo channels alternate with short idle gaps
in which the worker sends keepalives (and sshd its ClientAlive probes), so
global requests keep landing in the middle of loaded traffic: the trap 1
deadlock must never show up as a stalled burst."""

import asyncio
import os
import random
import time

from test_worker_lib import (check, echo_client, echo_server, free_port,
                             main, sha)

SECONDS = float(os.environ.get('TP_SOAK_SECONDS', '20'))
CONNS, SIZE = 8, 2 << 20
STALL_S = 30


def body(sc):
    target = echo_server(sc.loop)
    fport = free_port()
    d = sc.drive(args=['--forward', '1:127.0.0.1:%d' % fport,
                       '--target', '127.0.0.1:%d' % target,
                       '--ka-ms', '300', '--ka-count', '10',
                       '--stats-ms', '1000'])
    d.bound(1)
    rnd = random.Random(1)
    end = time.time() + SECONDS
    bursts = moved = 0
    while time.time() < end:
        datas = [os.urandom(rnd.randint(SIZE // 4, SIZE))
                 for _ in range(CONNS)]

        async def burst():
            return await asyncio.gather(*(echo_client(fport, b,
                                                      deadline=STALL_S)
                                          for b in datas))
        t0 = time.time()
        try:
            gots = sc.loop.call(burst(), STALL_S + 5)
        except Exception as e:
            raise AssertionError('burst %d stalled after %.1f s: %r' % (
                bursts, time.time() - t0, e))
        check(all(sha(g) == sha(b) for g, b in zip(gots, datas)),
              'burst %d corrupted', bursts)
        bursts += 1
        moved += sum(len(b) for b in datas)
        time.sleep(rnd.uniform(0.35, 0.9))   # idle: keepalives go out
    check(not [m for m in d.drain() if m.get('event') == 'exit' or
               (m.get('msg') == 'STATE' and m['state'] == 'disconnected')],
          'worker went away during the soak')
    kas = sc.sshd.logtext().count('rtype keepalive@openssh.com')
    check(kas >= 3, 'only %d keepalives reached sshd', kas)
    print('soak: %.0f s, %d bursts, %d MiB echoed, %d keepalives' % (
        SECONDS, bursts, moved >> 20, kas))
    d.send('close 5000 done')
    check(d.exit()['code'] == 0, 'exit code')


if __name__ == '__main__':
    main('soak', body, sshd_extra='ClientAliveInterval 1\nClientAliveCountMax 10')
