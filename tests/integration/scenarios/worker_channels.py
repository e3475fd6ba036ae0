"""Worker (through worker-drive): 200 concurrent channels x 1 MiB echoed,
every byte checked; afterwards sshd holds no channel of ours (its log
frees every channel it opened but the forward's listener) and the
worker's STATS count every channel, none refused, no failed dial."""

import os
import time

from harness import WaitTimeout, expect, ports, wait_for
from harness.target import concurrent_checks
from harness.workerdrive import forward_drive

NAME = 'worker_channels'
REQUIRES = {'root': True, 'binaries': ['tunnelpool-agent', 'worker-drive']}
TIMEOUT = 600

N = int(os.environ.get('TP_CHANNELS', '200'))
SIZE = 1 << 20


def only_listener(channels):
    return all(t == 'port-listener' for t in channels.values())


def run(ctx):
    d, proxy, fport = forward_drive(ctx, ['--max-ch', '1024',
                                          '--stats-ms', '500'])
    t0 = time.monotonic()
    concurrent_checks(lambda: ports.connect('127.0.0.1', fport, 60), N, SIZE,
                      timeout=240)
    ctx.log('channels: %d x %d bytes echoed in %.1f s', N, SIZE,
            time.monotonic() - t0)
    # Every forwarded-tcpip channel sshd opened must be freed again.
    try:
        wait_for(lambda: only_listener(proxy.open_channels()), 30,
                 'sshd to free every forwarded-tcpip channel')
    except WaitTimeout:
        pass
    left = proxy.open_channels()
    expect(only_listener(left), 'sshd still holds channels: %s', left)
    st = d.wait(lambda m: m.get('msg') == 'STATS' and m['ch_open'] == 0 and
                m['ch_total'] >= N, what='STATS with all channels closed')
    expect(st['refused'] == 0 and st['dial_fail'] == 0, 'STATS %s', st)
    d.send('close 5000 done')
    expect(d.exit()['code'] == 0, 'exit code')
