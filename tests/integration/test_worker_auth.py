#!/usr/bin/env python3
"""Worker: user-auth through the signer, with a plain key and with a user
certificate (key not in authorized_keys), then one echo through the tunnel."""

import os

from test_worker_lib import check, echo_client, echo_server, main, sha


def connect_and_echo(sc, drive, fport):
    drive.wait(lambda m: m.get('msg') == 'READY', 10, 'READY')
    st = drive.state('connected', reason='forwards bound')
    check(st['fp'] == sc.sshd.fp, 'STATE fp %s, sshd has %s', st['fp'],
          sc.sshd.fp)
    check(drive.bound(1)['port'] == fport, 'bound port')
    data = os.urandom(100000)
    got = sc.loop.call(echo_client(fport, data), 30)
    check(sha(got) == sha(data), 'echo mismatch (%d bytes back)', len(got))
    drive.send('close 5000 test done')
    ex = drive.exit()
    check(ex['code'] == 0, 'exit code %s', ex)


def body(sc):
    target = echo_server(sc.loop)
    # Plain key.
    fport = sc.sshd.port + 1000 if sc.sshd.port < 60000 else sc.sshd.port - 1000
    d = sc.drive(args=['--forward', '1:127.0.0.1:%d' % fport,
                       '--target', '127.0.0.1:%d' % target])
    connect_and_echo(sc, d, fport)
    claims = [m for m in d.lines if m.get('msg') == 'CLAIM']
    check(len(claims) == 1 and claims[0]['fp'] == sc.sshd.fp, 'one CLAIM')
    # User certificate: the key itself is no longer authorized.
    open(os.path.join(sc.dir, 'authorized_keys', 'tunnel'), 'w').close()
    d2 = sc.drive(cert=True, args=['--forward', '1:127.0.0.1:%d' % fport,
                                   '--target', '127.0.0.1:%d' % target])
    connect_and_echo(sc, d2, fport)
    log = sc.sshd.logtext()
    check('Accepted publickey for tunnel' in log, 'plain key auth in log')
    check('ED25519-CERT' in log, 'certificate auth in sshd log')


if __name__ == '__main__':
    main('auth', body)
