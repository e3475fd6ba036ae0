#!/usr/bin/env python3
"""Worker: CLOSE with open channels: new connections are refused (the
forward is cancelled), the open channels finish their transfers, and the
worker exits 0 once they are drained, well before the deadline."""

import asyncio
import os
import socket
import time

from test_worker_lib import (check, echo_client, echo_server, free_port,
                             main, sha)

N, SIZE = 8, 512 * 1024


def body(sc):
    target = echo_server(sc.loop)
    fport = free_port()
    d = sc.drive(args=['--forward', '1:127.0.0.1:%d' % fport,
                       '--target', '127.0.0.1:%d' % target])
    d.bound(1)
    datas = [os.urandom(SIZE) for _ in range(N)]

    async def slow_clients():
        # 32 chunks, 0.1 s apart: about 3 s per channel.
        return await asyncio.gather(*(echo_client(fport, b, chunk=SIZE // 32,
                                                  pause=0.1, deadline=60)
                                      for b in datas))

    fut = asyncio.run_coroutine_threadsafe(slow_clients(), sc.loop.loop)
    d.wait(lambda m: m.get('msg') == 'DIAL_REQUEST' and m['ch'] == N, 10,
           'all channels open')
    time.sleep(0.5)
    t0 = time.time()
    d.send('close 20000 test close')
    d.state('connected', reason='closing')
    time.sleep(0.5)
    try:
        socket.create_connection(('127.0.0.1', fport), 2).close()
        refused = False
    except OSError:
        refused = True
    check(refused, 'a new connection was accepted after CLOSE')
    gots = fut.result(60)
    check(all(sha(g) == sha(b) for g, b in zip(gots, datas)),
          'a channel lost data while closing')
    ex = d.exit(25)
    took = time.time() - t0
    check(ex['code'] == 0, 'exit %s', ex)
    st = d.state('disconnected')
    check(st['reason'] == 'closed: test close' and st['code'] == 0,
          'STATE %s', st)
    check(took < 15, 'drained only at the deadline (%.1f s)', took)
    print('close: %d channels drained, exit 0 after %.1f s' % (N, took))


if __name__ == '__main__':
    main('close', body)
