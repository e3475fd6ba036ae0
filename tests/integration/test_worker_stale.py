#!/usr/bin/env python3
"""Worker: the forward's port is still held by a stale session (here an
OpenSSH client's -R on the same port): FORWARD bound=false and STATE
"forward pending" while the connection stays up; once sshd frees the port
the retry binds it (FORWARD bound=true, "forwards bound") and it works."""

import os
import subprocess
import time

from test_worker_lib import (USER, check, echo_client, echo_server,
                             free_port, main, sha)


def body(sc):
    target = echo_server(sc.loop)
    fport = free_port()
    stale = subprocess.Popen(
        ['ssh', '-N', '-i', sc.keys.key, '-p', str(sc.sshd.port),
         '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
         '-o', 'BatchMode=yes', '-o', 'ExitOnForwardFailure=yes',
         '-R', '127.0.0.1:%d:127.0.0.1:9' % fport, USER + '@127.0.0.1'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while 'port %d' % fport not in sc.sshd.logtext():
            check(time.time() < deadline, 'stale session did not bind')
            time.sleep(0.1)
        d = sc.drive(args=['--forward', '1:127.0.0.1:%d' % fport,
                           '--target', '127.0.0.1:%d' % target])
        fw = d.wait(lambda m: m.get('msg') == 'FORWARD', 15, 'FORWARD')
        check(not fw['bound'] and fw['error'], 'first FORWARD %s', fw)
        st = d.state('connected', reason='forward pending')
        time.sleep(1.5)     # a retry or two, refused again, still up
        check(not [m for m in d.drain() if m.get('event') == 'exit'],
              'worker exited while the forward was pending')
    finally:
        stale.terminate()
        stale.wait()
    t0 = time.time()
    d.bound(1, timeout=30)
    d.state('connected', reason='forwards bound')
    print('stale: bound %.1f s after the stale session ended' %
          (time.time() - t0))
    data = os.urandom(50000)
    check(sha(sc.loop.call(echo_client(fport, data), 30)) == sha(data),
          'echo after bind')
    d.send('close 3000 done')
    check(d.exit()['code'] == 0, 'exit code')


if __name__ == '__main__':
    main('stale', body)
