"""Worker (through worker-drive): load plus keepalives, 20 s
(TP_SOAK_SECONDS=60 for the long run).  Bursts of 8 concurrent echo
channels alternate with short idle gaps in which the worker sends
keepalives (and sshd its ClientAlive probes), so global requests keep
landing in the middle of loaded traffic: the trap 1 deadlock must never
show up as a stalled burst."""

import os
import random
import time

from harness import HarnessError, ScenarioFailure, expect, ports
from harness.target import concurrent_checks
from harness.workerdrive import forward_drive

NAME = 'worker_soak'
REQUIRES = {'root': True, 'binaries': ['tunnelpool-agent', 'worker-drive']}

SECONDS = float(os.environ.get('TP_SOAK_SECONDS', '20'))
TIMEOUT = 180 + 2 * SECONDS
CONNS, SIZE = 8, 2 << 20
STALL_S = 30


def run(ctx):
    d, proxy, fport = forward_drive(ctx, ['--ka-ms', '300', '--ka-count',
                                          '10', '--stats-ms', '1000'],
                                    client_alive=(1, 10))
    rnd = random.Random(1)
    end = time.monotonic() + SECONDS
    bursts = moved = 0
    while time.monotonic() < end:
        sizes = [rnd.randint(SIZE // 4, SIZE) for _ in range(CONNS)]
        t0 = time.monotonic()
        try:
            concurrent_checks(lambda: ports.connect('127.0.0.1', fport),
                              CONNS, sizes, timeout=STALL_S)
        except (ScenarioFailure, HarnessError) as exc:
            raise ScenarioFailure('burst %d stalled or corrupted after '
                                  '%.1f s: %s' % (bursts, time.monotonic() -
                                                  t0, exc))
        bursts += 1
        moved += sum(sizes)
        time.sleep(rnd.uniform(0.35, 0.9))   # idle: keepalives go out
    expect(not d.gone(), 'worker went away during the soak')
    kas = proxy.log_text().count('rtype keepalive@openssh.com')
    expect(kas >= 3, 'only %d keepalives reached sshd', kas)
    ctx.log('soak: %.0f s, %d bursts, %d MiB echoed, %d keepalives',
            SECONDS, bursts, moved >> 20, kas)
    d.send('close 5000 done')
    expect(d.exit()['code'] == 0, 'exit code')
