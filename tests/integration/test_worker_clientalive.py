#!/usr/bin/env python3
"""Worker: an idle tunnel survives sshd's ClientAlive probes on its own.
The worker's libssh is built without its server code (WITH_SERVER=OFF,
docs/libssh-patch.md), so it answers sshd's keepalive@openssh.com global
request with SSH_MSG_UNIMPLEMENTED instead of REQUEST_FAILURE; sshd must
still count that as the client being alive.  The worker's own keepalives
are set far apart, so only the answers to sshd's probes keep it up."""

import time

from test_worker_lib import check, free_port, main

IDLE_S = 8


def body(sc):
    fport = free_port()
    d = sc.drive(args=['--forward', '1:127.0.0.1:%d' % fport,
                       '--target', '127.0.0.1:9',
                       '--ka-ms', '60000', '--ka-count', '3'])
    d.bound(1)
    time.sleep(IDLE_S)   # the point: ClientAliveInterval 1 x CountMax 2
    gone = [m for m in d.drain() if m.get('event') == 'exit' or
            (m.get('msg') == 'STATE' and m['state'] == 'disconnected')]
    log = sc.sshd.logtext()
    check(not gone, 'worker went away while idle: %r', gone[:1])
    check('Timeout, client not responding' not in log,
          'sshd gave up on the idle worker')
    print('clientalive: %d s idle under ClientAliveInterval 1, CountMax 2'
          % IDLE_S)
    d.send('close 5000 done')
    check(d.exit()['code'] == 0, 'exit code')


if __name__ == '__main__':
    main('clientalive', body,
         sshd_extra='ClientAliveInterval 1\nClientAliveCountMax 2')
