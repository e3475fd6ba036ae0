"""The signer answers what one authentication needs, once (issue 14,
item 2), and authentication still works, reconnect after reconnect.

1. Plain key: a tunnel's worker is killed (SIGKILL) three times; each new
   worker authenticates.  tunnelpool_signatures_total grows by exactly one
   per connection, nothing is refused.
2. Key with a user certificate, to a proxy that does not trust the user CA
   but has the plain key authorized: libssh offers the certificate first
   (refused by sshd without a signature), then the plain key, which is
   signed -- still one signature per connection and no refusal.
3. The proxy recipe's restrictions (packaging/proxy): the node key
   authorized with restrict,port-forwarding,permitlisten="127.0.0.1:PORT",
   and a user certificate carrying permit-port-forwarding alone (-O clear)
   on a proxy that trusts the user CA: both connect, bind their forward and
   carry data; a forward outside permitlisten is refused by sshd.
The socket is closed at the claim: each connected worker's agent socket
(fd 4) has no peer any more (ss -x).
"""

import os
import re
import signal

from harness import expect, expect_eq, keys, ports, procs
from harness.target import send_and_check

NAME = 'trust_signer_once'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90


def up(st):
    return [a['pid'] for a in st['agents'] if a['state'] == 'connected']


def agent_socket_peerless(pid):
    """True if the worker's fd 4 is a unix socket whose peer is gone."""
    cp = procs.run(['ss', '-xpn'], check=False)
    for line in cp.stdout.splitlines():
        if 'pid=%d,fd=4)' % pid in line:
            # Local, then peer address:port; a closed peer shows as "* 0".
            return re.search(r'\s\*\s+0\s', line) is not None
    return False


def reconnects(ctx, tp, n):
    st = tp.wait_state(lambda s: len(up(s)) == 1, 30, 'connected')
    sig0 = tp.count('tunnelpool_signatures_total')
    ref0 = tp.count('tunnelpool_signer_refusals_total')
    for i in range(n):
        pid = up(st)[0]
        procs.wait_for(lambda: agent_socket_peerless(pid), 5,
                       'worker %d: agent socket closed after the claim' % pid)
        os.kill(pid, signal.SIGKILL)
        st = tp.wait_state(lambda s: len(up(s)) == 1 and up(s)[0] != pid, 30,
                           'reconnect %d' % (i + 1))
    expect_eq(tp.count('tunnelpool_signatures_total') - sig0, n,
              'signatures for %d reconnects' % n)
    expect_eq(tp.count('tunnelpool_signer_refusals_total') - ref0, 0,
              'signer refusals')
    return st


def run(ctx):
    node_key = ctx.keygen('node_key')
    echo = ctx.echo_server()
    user_ca = ctx.ca('user_ca')
    user_ca.sign_user(node_key, principals=['tunnel'])
    proxy = ctx.sshd('p1', authorized_keys=[node_key])
    kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())

    # 1. The plain key alone (no certificate configured).
    tp = ctx.tunnelpool(str(node_key.path), kh, backoff=('100ms', '500ms'),
                        name='plain')
    tp.config['identity'].pop('certificate', None)
    tp.add_tunnel('c1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % ports.free_port(), echo.address())])
    tp.start()
    reconnects(ctx, tp, 3)
    ctx.log('plain key: 3 reconnects, one signature each')
    tp.stop()

    # 2. Certificate first (refused by sshd), then the plain key.
    tp = ctx.tunnelpool(node_key, kh, backoff=('100ms', '500ms'),
                        name='withcert')
    expect('certificate' in tp.config['identity'], 'no certificate set')
    tp.add_tunnel('c1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % ports.free_port(), echo.address())])
    tp.start()
    reconnects(ctx, tp, 2)
    expect(re.search(r'Accepted publickey for tunnel', proxy.log_text()),
           'sshd accepted no plain key')
    ctx.log('certificate + key: 2 reconnects, one signature each')
    tp.stop()
    restricted(ctx, echo)


def restricted(ctx, echo):
    """The recipe's authorized_keys options and certificate extensions."""
    ok, denied = ports.free_ports(2)
    key = ctx.keygen('restricted_key')
    opts = 'restrict,port-forwarding,permitlisten="127.0.0.1:%d"' % ok
    p2 = ctx.sshd('p2', authorized_keys=[keys.authorized_keys_line(key,
                                                                   opts)])
    kh = ctx.known_hosts('known_hosts_p2', p2.known_hosts_pins())
    tp = ctx.tunnelpool(str(key.path), kh, name='restricted')
    tp.add_tunnel('c1', 'c1', [p2.address()],
                  [('127.0.0.1:%d' % ok, echo.address()),
                   ('127.0.0.1:%d' % denied, echo.address())])
    tp.start()
    tp.wait_state(lambda s: len(up(s)) == 1, 30, 'restricted key connected')
    p2.wait_forward(ok, 15)
    send_and_check('127.0.0.1', ok, 64 * 1024)
    tp.wait_log(r'forward 1 pending: ', 15)
    expect(not p2.has_forward(denied),
           'a forward outside permitlisten was bound')
    tp.stop()

    ca = ctx.ca('user_ca_p3')
    ckey = ctx.keygen('cert_key')
    ca.sign_user(ckey, principals=['tunnel'],
                 options=['clear', 'permit-port-forwarding'])
    p3 = ctx.sshd('p3', trusted_user_ca=ca)
    kh = ctx.known_hosts('known_hosts_p3', p3.known_hosts_pins())
    tp = ctx.tunnelpool(ckey, kh, name='certonly')
    tp.add_tunnel('c1', 'c1', [p3.address()],
                  [('127.0.0.1:%d' % ok, echo.address())])
    tp.start()
    tp.wait_state(lambda s: len(up(s)) == 1, 30,
                  'certificate (permit-port-forwarding only) connected')
    p3.wait_forward(ok, 15)
    send_and_check('127.0.0.1', ok, 64 * 1024)
    expect(re.search(r'Accepted publickey for tunnel .*CERT', p3.log_text()),
           'p3 did not accept the certificate')
    ctx.log('restricted key and permit-port-forwarding certificate: '
            'forwards and data work')
