"""Issue 14 item 7: 64 channels blast into a local target that does not read
at first and then reads slowly.  The worker stops granting window instead
of buffering: its peak RSS (VmHWM) stays under the documented bound
(docs/worker.md, "Memory bound"), it runs under RLIMIT_DATA, and every byte
of every channel arrives intact."""

import asyncio
import hashlib
import json
import os

from harness import expect, ports, procs
from harness.tunnelpool import one_proxy

NAME = 'worker_slow_target'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 300

CHANNELS = 64
PER_CHANNEL = 12 << 20
BLOCK = 1 << 20

# worker/channels.h and docs/worker.md: what the worker holds from the
# proxy is at most CHAN_RX_BUDGET + channels x CHAN_WINDOW_MIN; on top of
# that its baseline and a local read buffer (CHAN_BUF) per channel.
RX_BUDGET_KIB = 32 << 10
WINDOW_MIN_KIB = 64
CHAN_BUF_KIB = 64
BASELINE_KIB = 16 << 10
BOUND_KIB = (BASELINE_KIB + RX_BUDGET_KIB +
             CHANNELS * (WINDOW_MIN_KIB + CHAN_BUF_KIB))

# The target: small receive buffers (so the backlog is the worker's, not
# the kernel's), reads nothing until GO exists, then 16 KiB per connection
# every 5 ms.  Writes one JSON line per finished connection.
TARGET = r'''
import asyncio, hashlib, json, os, socket, sys
port_file, go, out = sys.argv[1:4]
done = open(out, 'a')
async def conn(reader, writer):
    while not os.path.exists(go):
        await asyncio.sleep(0.05)
    h, n = hashlib.sha256(), 0
    while True:
        b = await reader.read(16384)
        if not b:
            break
        h.update(b)
        n += len(b)
        await asyncio.sleep(0.005)
    done.write(json.dumps({'n': n, 'sha': h.hexdigest()}) + '\n')
    done.flush()
    writer.close()
async def main():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    s.bind(('127.0.0.1', 0))
    s.listen(256)
    srv = await asyncio.start_server(conn, sock=s, limit=1 << 16)
    with open(port_file + '.tmp', 'w') as f:
        f.write(str(s.getsockname()[1]))
    os.rename(port_file + '.tmp', port_file)
    await srv.serve_forever()
asyncio.run(main())
'''


def payload(i, block):
    """Connection i's bytes: its number, then the shared random block."""
    head = b'%08d' % i
    return head + block * (PER_CHANNEL // BLOCK) + head


def run(ctx):
    node_key, _echo, proxy, kh = one_proxy(ctx)
    script = ctx.path('slow_target.py')
    with open(script, 'w') as f:
        f.write(TARGET)
    port_file, go, out = (ctx.path('target.port'), ctx.path('target.go'),
                          ctx.path('target.out'))
    ctx.spawn('slow_target', ['python3', script, port_file, go, out])
    procs.wait_for(lambda: os.path.exists(port_file), 20, 'target port')
    tport = int(open(port_file).read())

    fwd = ports.free_port()
    tp = ctx.tunnelpool(node_key, kh)
    tp.add_tunnel('c1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % fwd, '127.0.0.1:%d' % tport)])
    tp.start()
    pid = tp.wait_connected(30, 'c1 connected')['pid']
    proxy.wait_forward(fwd)
    limits = open('/proc/%d/limits' % pid).read()
    data = [ln for ln in limits.splitlines() if ln.startswith('Max data')]
    ctx.log('worker %d: %s; bound %d KiB', pid, data, BOUND_KIB)
    if ctx.sandbox() == 'seccomp':
        expect(data and 'unlimited' not in data[0],
               'worker has no RLIMIT_DATA: %r', data)

    block = os.urandom(BLOCK)
    want = sorted(hashlib.sha256(payload(i, block)).hexdigest()
                  for i in range(CHANNELS))
    rss = {'peak': 0}

    async def send(i):
        _r, w = await asyncio.open_connection('127.0.0.1', fwd)
        data = payload(i, block)
        for off in range(0, len(data), 256 << 10):
            w.write(data[off:off + (256 << 10)])
            await w.drain()
        w.write_eof()
        await w.drain()
        return w

    async def watch(stop):
        while not stop.is_set():
            rss['peak'] = max(rss['peak'], procs.rss_kib(pid))
            await asyncio.sleep(0.1)

    async def blast():
        stop = asyncio.Event()
        watcher = asyncio.ensure_future(watch(stop))
        senders = [asyncio.ensure_future(send(i)) for i in range(CHANNELS)]
        # Nothing is read yet: let the backlog build up to where the
        # windows stop it (the worker's RSS stops growing).
        last, still = -1, 0
        for _ in range(300):
            await asyncio.sleep(0.1)
            now = procs.rss_kib(pid)
            still = still + 1 if abs(now - last) < 256 else 0
            last = now
            if still >= 20:
                break
        ctx.log('backlog built: worker RSS %d KiB, peak %d KiB', last,
                rss['peak'])
        open(go, 'w').close()
        writers = await asyncio.wait_for(asyncio.gather(*senders), 240)
        done = 0
        for _ in range(2400):
            done = sum(1 for _ in open(out)) if os.path.exists(out) else 0
            if done >= CHANNELS:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await watcher
        for w in writers:
            w.close()
        return done

    done = asyncio.run(blast())
    hwm = int(procs.status(pid)['VmHWM'].split()[0])
    ctx.log('worker peak RSS: VmHWM %d KiB (sampled %d KiB), bound %d KiB',
            hwm, rss['peak'], BOUND_KIB)
    expect(done == CHANNELS, '%d of %d connections finished at the target',
           done, CHANNELS)
    got = sorted(json.loads(ln)['sha'] for ln in open(out))
    sizes = [json.loads(ln)['n'] for ln in open(out)]
    expect(all(n == len(payload(0, block)) for n in sizes),
           'short connections at the target: %r', sizes)
    expect(got == want, 'bytes lost or changed on their way')
    # The sanitizer build (null sandbox) keeps freed memory in ASan's
    # quarantine and shadow: its RSS says nothing about the bound.
    if ctx.sandbox() == 'seccomp':
        expect(hwm <= BOUND_KIB, 'worker peak RSS %d KiB over the bound '
               '%d KiB', hwm, BOUND_KIB)
    expect(procs.alive(pid), 'the worker died')
