"""Worker (through worker-drive): a proxy whose host key is not pinned is
refused right after the key exchange (exit 5, reason "host key not
trusted: SHA256:..."), and sshd's log shows that no forward was ever
requested (nor any user-auth)."""

from harness import expect
from harness.workerdrive import worker_proxy

NAME = 'worker_pinned'
REQUIRES = {'root': True, 'binaries': ['tunnelpool-agent', 'worker-drive']}
TIMEOUT = 120


def run(ctx):
    key, proxy = worker_proxy(ctx)
    wrong = 'SHA256:' + 'A' * 43
    d = ctx.worker_drive('drive0', proxy, key, pin=False,
                         args=['--pin', wrong, '--forward', '1:127.0.0.1:1'])
    st = d.state('disconnected')
    fp = proxy.host_fingerprints()[0]
    expect(st['reason'] == 'host key not trusted: ' + fp, 'reason %r',
           st['reason'])
    expect(st['code'] == 5, 'STATE code %s', st['code'])
    ex = d.exit()
    expect(ex['code'] == 5, 'exit %s', ex)
    msgs = [m.get('msg') for m in d.drain()]
    expect('CLAIM' not in msgs and 'FORWARD' not in msgs,
           'no CLAIM/FORWARD expected: %s', msgs)
    log = proxy.log_text()
    expect('tcpip-forward' not in log, 'sshd saw a forward request')
    expect('userauth-request' not in log and 'Accepted' not in log,
           'sshd saw user-auth')
