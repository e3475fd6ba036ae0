"""Worker (through worker-drive): an idle tunnel survives sshd's
ClientAlive probes on its own.  The worker's libssh is built without its
server code (WITH_SERVER=OFF, docs/libssh-patch.md), so it answers sshd's
keepalive@openssh.com global request with SSH_MSG_UNIMPLEMENTED instead of
REQUEST_FAILURE; sshd must still count that as the client being alive.
The worker's own keepalives are set far apart, so only the answers to
sshd's probes keep it up."""

import time

from harness import expect
from harness.workerdrive import forward_drive

NAME = 'worker_clientalive'
REQUIRES = {'root': True, 'binaries': ['tunnelpool-agent', 'worker-drive']}
TIMEOUT = 120

IDLE_S = 8


def run(ctx):
    d, proxy, _ = forward_drive(ctx, ['--ka-ms', '60000', '--ka-count', '3'],
                                target='127.0.0.1:9', client_alive=(1, 2))
    # The point is the idle time itself: ClientAliveInterval 1 x CountMax
    # 2 gives up on a silent client after about 3 s.
    time.sleep(IDLE_S)
    gone = d.gone()
    log = proxy.log_text()
    expect(not gone, 'worker went away while idle: %r', gone[:1])
    expect('Timeout, client not responding' not in log,
           'sshd gave up on the idle worker')
    ctx.log('clientalive: %d s idle under ClientAliveInterval 1, CountMax 2',
            IDLE_S)
    d.send('close 5000 done')
    expect(d.exit()['code'] == 0, 'exit code')
