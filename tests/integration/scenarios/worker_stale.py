"""Worker (through worker-drive): the forward's port is still held by a
stale session (here an OpenSSH client's -R on the same port): FORWARD
bound=false and STATE "forward pending" while the connection stays up and
the worker retries; once sshd frees the port the retry binds it (FORWARD
bound=true, "forwards bound") and it works."""

import time

from harness import expect, ports
from harness.target import send_and_check
from harness.workerdrive import worker_proxy

NAME = 'worker_stale'
REQUIRES = {'root': True, 'binaries': ['tunnelpool-agent', 'worker-drive']}
TIMEOUT = 180


def refused(m):
    return m.get('msg') == 'FORWARD' and not m['bound']


def run(ctx):
    key, proxy = worker_proxy(ctx)
    target = ctx.echo_server()
    fport = ports.free_port()
    kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())
    stale = ctx.ssh_forward('stale', proxy, key, kh,
                            [(fport, '127.0.0.1', 9)])
    stale.wait_established(30)
    proxy.wait_forward(fport, 30)
    d = ctx.worker_drive('drive0', proxy, key,
                         args=['--forward', '1:127.0.0.1:%d' % fport,
                               '--target', target.address()])
    fw = d.wait(lambda m: m.get('msg') == 'FORWARD', what='FORWARD')
    expect(not fw['bound'] and fw['error'], 'first FORWARD %s', fw)
    d.state('connected', reason='forward pending')
    # A retry (or two), refused again, and the worker still up.
    d.wait(refused, what='a second refused FORWARD (a retry)', n=2)
    expect(not [m for m in d.drain() if m.get('event') == 'exit'],
           'worker exited while the forward was pending')
    stale.stop()
    t0 = time.monotonic()
    d.bound(1, timeout=60)
    d.state('connected', reason='forwards bound')
    ctx.log('stale: bound %.1f s after the stale session ended',
            time.monotonic() - t0)
    send_and_check('127.0.0.1', fport, 50000)
    d.send('close 3000 done')
    expect(d.exit()['code'] == 0, 'exit code')
