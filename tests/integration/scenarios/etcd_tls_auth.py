"""Issue 16: etcd over TLS with client certificates (a CA and certificates
made with the openssl CLI; etcd --client-cert-auth) and username/password
authentication (a role that may only read the prefix; tokens that expire
after a second, so the supervisor must authenticate again and again).
Wrong credentials (a changed password_file) give a clear error naming the
user, and keep the last good set: every tunnel stays; the right password
again and the source recovers and picks up changes.  A supervisor without
a client certificate is refused at the TLS handshake and says so."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _etcdfleet  # noqa: E402
from _etcdfleet import running  # noqa: E402

from harness import expect, tlscerts  # noqa: E402

NAME = 'etcd_tls_auth'
REQUIRES = dict(_etcdfleet.REQUIRES,
                tools=_etcdfleet.REQUIRES['tools'] + ['openssl'])
TIMEOUT = 180


def write_pw(path, pw):
    with open(path, 'w') as f:
        f.write(pw + '\n')
    os.chmod(path, 0o600)


def run(ctx):
    pki = tlscerts.make(ctx.path('pki'))
    etcd = ctx.etcd('etcd', tls=pki, token_ttl=1)
    etcd.enable_auth({'tp': 'right-pw'}, read_prefix=_etcdfleet.PREFIX)
    pwfile = ctx.path('etcd-password')
    write_pw(pwfile, 'right-pw')
    f = _etcdfleet.Fleet(ctx, etcd=etcd, use_etcd_kw={
        'tls': {'ca': pki.ca, 'cert': pki.client_cert,
                'key': pki.client_key},
        'username': 'tp', 'password_file': pwfile})
    expect(all(u.startswith('https://') for u in etcd.endpoints()),
           'endpoints %r', etcd.endpoints())
    rev = f.put('a')
    f.start()
    before = f.wait_connected(['a'])
    f.wait_source(lambda s: s['healthy'] and s['revision'] == rev, 15,
                  'in sync over TLS as tp')
    # Tokens live 1 s; the probe every 2 s meets an expired one.
    f.tp.wait_log(r'token refused .*authenticating again', 15)
    f.put('b')
    f.within(1.0, lambda s: 'b' in running(s), 'put b with a renewed token')
    before = f.wait_connected(['a', 'b'])

    # Wrong credentials: a clear error, the last good set stays.
    write_pw(pwfile, 'wrong-pw')
    src = f.wait_source(lambda s: not s['healthy'] and 'authentication as '
                        '"tp" failed' in s['last_error'], 30,
                        'authentication failure reported')
    ctx.log('wrong password: %s', src['last_error'])
    expect('invalid user ID or password' in src['last_error'],
           'etcd\'s reason missing: %r', src['last_error'])
    f.same_pids(before)
    f.check_data(['a', 'b'])
    f.put('c')              # etcd moves on; the supervisor cannot see it
    f.same_pids(before)

    write_pw(pwfile, 'right-pw')
    f.wait_source(lambda s: s['healthy'], 30, 'healthy with the right '
                  'password')
    f.within(10.0, lambda s: 'c' in running(s), 'c after recovery')
    f.wait_connected(['a', 'b', 'c'])
    f.same_pids(before, ['a', 'b'])

    # No client certificate: refused at the handshake, said plainly.
    tp2 = ctx.tunnelpool(f.node_key, f.kh, name='tp2', resync_interval='1h')
    tp2.use_etcd(etcd.endpoints(), _etcdfleet.PREFIX, tunnels_dir=False,
                 tls={'ca': pki.ca}, username='tp', password_file=pwfile)
    tp2.start()
    src = tp2.wait_state(lambda s: s['tunnel_source']['last_error'] != '',
                         20, 'tp2 refused')['tunnel_source']
    ctx.log('without a client certificate: %s', src['last_error'])
    expect(not src['healthy'] and 'TLS' in src['last_error'],
           'tp2 source: %r', src)
    expect(not tp2.status_json()['agents'], 'tp2 runs agents')
