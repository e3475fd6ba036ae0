#!/usr/bin/env python3
"""Worker: 64 MiB of random bytes through one forward each way, with
half-close both ways; SHA-256 equal at both ends.  With TP_STRACE=FILE the
agent runs under `strace -f -c -o FILE` (TP_STRACE_OPTS replaces "-f -c"),
the syscall census the sandbox allowlist is built from."""

import asyncio
import hashlib
import os

from test_worker_lib import check, free_port, main

SIZE = int(os.environ.get('TP_BULK_MIB', '64')) << 20
CHUNK = 256 * 1024


def stream(size):
    """Random bytes, chunk by chunk."""
    for i in range(0, size, CHUNK):
        yield os.urandom(min(CHUNK, size - i))


async def pump(reader, writer, size, results, key):
    sent, got = hashlib.sha256(), hashlib.sha256()

    async def send():
        for chunk in stream(size):
            sent.update(chunk)
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()

    async def recv():
        n = 0
        while True:
            b = await reader.read(1 << 20)
            if not b:
                return n
            got.update(b)
            n += len(b)

    _, n = await asyncio.gather(send(), recv())
    results[key] = (sent.hexdigest(), got.hexdigest(), n)
    writer.close()


def body(sc):
    results = {}

    async def on_target(reader, writer):
        await pump(reader, writer, SIZE, results, 'target')

    async def start():
        srv = await asyncio.start_server(on_target, '127.0.0.1', 0)
        return srv.sockets[0].getsockname()[1]

    tport = sc.loop.call(start())
    fport = free_port()
    args = ['--forward', '1:127.0.0.1:%d' % fport,
            '--target', '127.0.0.1:%d' % tport, '--stats-ms', '1000']
    if os.environ.get('TP_STRACE'):
        opts = os.environ.get('TP_STRACE_OPTS', '-f -c')
        args += ['--wrap', 'strace %s -o %s' % (opts, os.environ['TP_STRACE'])]
    d = sc.drive(args=args)
    d.bound(1, timeout=30)

    async def client():
        r, w = await asyncio.open_connection('127.0.0.1', fport)
        await pump(r, w, SIZE, results, 'client')

    sc.loop.call(asyncio.wait_for(client(), 300))

    async def target_done():
        # The client is done once the target's EOF reached it; its own last
        # bytes may still be on their way to the target.
        while 'target' not in results:
            await asyncio.sleep(0.05)

    sc.loop.call(asyncio.wait_for(target_done(), 120))
    c_sent, c_got, c_n = results['client']
    t_sent, t_got, t_n = results['target']
    check(c_n == SIZE and t_n == SIZE, 'sizes: client got %d, target got %d',
          c_n, t_n)
    check(c_sent == t_got, 'node-bound stream differs')
    check(t_sent == c_got, 'proxy-bound stream differs')
    d.send('close 5000 bulk done')
    check(d.exit(30)['code'] == 0, 'exit code')
    stats = [m for m in d.lines if m.get('msg') == 'STATS']
    print('bulk: %d MiB each way ok, %d STATS' % (SIZE >> 20, len(stats)))


if __name__ == '__main__':
    main('bulk', body)
