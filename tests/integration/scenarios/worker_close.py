"""Worker (through worker-drive): CLOSE with open channels: new
connections are refused (the forward is cancelled), the open channels
finish their transfers, and the worker exits 0 once they are drained, well
before the deadline."""

import time

from harness import expect, ports, wait_for
from harness.target import PacedEcho
from harness.workerdrive import forward_drive

NAME = 'worker_close'
REQUIRES = {'root': True, 'binaries': ['tunnelpool-agent', 'worker-drive']}
TIMEOUT = 180

N, SIZE = 8, 512 * 1024
RATE = SIZE // 3            # about 3 s per channel


def run(ctx):
    d, proxy, fport = forward_drive(ctx)
    flows = [PacedEcho(ports.connect('127.0.0.1', fport), SIZE, RATE,
                       'channel %d' % i) for i in range(N)]
    d.wait(lambda m: m.get('msg') == 'DIAL_REQUEST' and m['ch'] == N,
           what='all channels open')
    # Every channel midway: its first bytes are back, the rest to come.
    wait_for(lambda: all(f.got > 0 for f in flows), 30,
             'every channel to carry data')
    ctx.log('CLOSE with %d of %d channels still transferring',
            sum(not f.done.is_set() for f in flows), N)
    t0 = time.monotonic()
    d.send('close 20000 test close')
    d.state('connected', reason='closing')
    # The worker cancels the forward: sshd stops listening on the port.
    proxy.wait_no_forward(fport, 30)
    expect(not ports.can_connect('127.0.0.1', fport, 2),
           'a new connection was accepted after CLOSE')
    for f in flows:
        f.result(60)        # each one's every byte back, or it fails
    ex = d.exit(40)
    took = time.monotonic() - t0
    expect(ex['code'] == 0, 'exit %s', ex)
    st = d.state('disconnected')
    expect(st['reason'] == 'closed: test close' and st['code'] == 0,
           'STATE %s', st)
    expect(took < 15, 'drained only at the deadline (%.1f s)', took)
    ctx.log('close: %d channels drained, exit 0 after %.1f s', N, took)
