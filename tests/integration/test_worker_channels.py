#!/usr/bin/env python3
"""Worker: 200 concurrent channels x 1 MiB echoed, every byte checked;
afterwards sshd holds no channel of ours (its log frees every channel it
opened but the forward's listener)."""

import asyncio
import os
import time

from test_worker_lib import (check, echo_client, echo_server, free_port,
                             main, sha)

N = int(os.environ.get('TP_CHANNELS', '200'))
SIZE = 1 << 20


def body(sc):
    target = echo_server(sc.loop)
    fport = free_port()
    d = sc.drive(args=['--forward', '1:127.0.0.1:%d' % fport,
                       '--target', '127.0.0.1:%d' % target,
                       '--max-ch', '1024', '--stats-ms', '500'])
    d.bound(1, timeout=30)
    datas = [os.urandom(SIZE) for _ in range(N)]

    async def all_clients():
        return await asyncio.gather(*(echo_client(fport, b, deadline=240)
                                      for b in datas))

    t0 = time.time()
    gots = sc.loop.call(asyncio.wait_for(all_clients(), 300))
    bad = [i for i in range(N) if sha(gots[i]) != sha(datas[i])]
    check(not bad, '%d channels corrupted, first %s (%d bytes back)',
          len(bad), bad[:5], len(gots[bad[0]]) if bad else 0)
    print('channels: %d x %d bytes echoed in %.1f s' % (N, SIZE,
                                                     time.time() - t0))
    # Every forwarded-tcpip channel sshd opened must be freed again.
    deadline = time.time() + 10
    while time.time() < deadline:
        left = sc.sshd.open_channels()
        if all(t == 'port-listener' for t in left.values()):
            break
        time.sleep(0.2)
    check(all(t == 'port-listener' for t in left.values()),
          'sshd still holds channels: %s', left)
    st = d.wait(lambda m: m.get('msg') == 'STATS' and m['ch_open'] == 0 and
                m['ch_total'] >= N, 10, 'STATS with all channels closed')
    check(st['refused'] == 0 and st['dial_fail'] == 0, 'STATS %s', st)
    d.send('close 5000 done')
    check(d.exit()['code'] == 0, 'exit code')


if __name__ == '__main__':
    main('channels', body)
