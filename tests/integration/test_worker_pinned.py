#!/usr/bin/env python3
"""Worker: a proxy whose host key is not pinned is refused right after the
key exchange (exit 5, reason "host key not trusted: SHA256:..."), and sshd's
log shows that no forward was ever requested (nor any user-auth)."""

from test_worker_lib import check, main


def body(sc):
    wrong = 'SHA256:' + 'A' * 43
    d = sc.drive(pin=False, args=['--pin', wrong,
                                  '--forward', '1:127.0.0.1:1'])
    st = d.state('disconnected')
    check(st['reason'] == 'host key not trusted: ' + sc.sshd.fp,
          'reason %r', st['reason'])
    check(st['code'] == 5, 'STATE code %s', st['code'])
    ex = d.exit()
    check(ex['code'] == 5, 'exit %s', ex)
    msgs = [m.get('msg') for m in d.drain()]
    check('CLAIM' not in msgs and 'FORWARD' not in msgs,
          'no CLAIM/FORWARD expected: %s', msgs)
    log = sc.sshd.logtext()
    check('tcpip-forward' not in log, 'sshd saw a forward request')
    check('userauth-request' not in log and 'Accepted' not in log,
          'sshd saw user-auth')


if __name__ == '__main__':
    main('pinned', body)
