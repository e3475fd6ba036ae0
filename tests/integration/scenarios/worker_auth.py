"""Worker (through worker-drive, no supervisor): user-auth through the
signer with a plain key, then with a user certificate (the key no longer
in authorized_keys), each followed by one echo through the tunnel."""

from harness import expect, ports
from harness.target import send_and_check
from harness.workerdrive import worker_proxy

NAME = 'worker_auth'
REQUIRES = {'root': True, 'binaries': ['tunnelpool-agent', 'worker-drive']}
TIMEOUT = 180


def connect_and_echo(ctx, drive, proxy, fport):
    drive.wait(lambda m: m.get('msg') == 'READY', what='READY')
    st = drive.state('connected', reason='forwards bound')
    fp = proxy.host_fingerprints()[0]
    expect(st['fp'] == fp, 'STATE fp %s, sshd has %s', st['fp'], fp)
    bound = drive.bound(1)
    expect(bound['port'] == fport, 'bound port %s, want %d', bound['port'],
           fport)
    send_and_check('127.0.0.1', fport, 100000)
    drive.send('close 5000 test done')
    ex = drive.exit()
    expect(ex['code'] == 0, 'exit code %s', ex)


def run(ctx):
    key, proxy = worker_proxy(ctx, cert=True)
    target = ctx.echo_server()
    fport = ports.free_port()
    args = ['--forward', '1:127.0.0.1:%d' % fport,
            '--target', target.address()]
    # Plain key.
    d = ctx.worker_drive('drive0', proxy, key, args=args)
    connect_and_echo(ctx, d, proxy, fport)
    claims = d.messages('CLAIM')
    expect(len(claims) == 1 and
           claims[0]['fp'] == proxy.host_fingerprints()[0],
           'one CLAIM of the proxy\'s key expected: %s', claims)
    # User certificate: the key itself is no longer authorized.
    proxy.set_authorized_keys([])
    d2 = ctx.worker_drive('drive1', proxy, key, cert=True, args=args)
    connect_and_echo(ctx, d2, proxy, fport)
    log = proxy.log_text()
    expect('Accepted publickey for tunnel' in log, 'plain key auth in log')
    expect('ED25519-CERT' in log, 'certificate auth in sshd log')
