"""Every algorithm the worker can negotiate, against stock sshd, with the
worker's OpenSSL cut down to SSH's algorithms (worker/cryptoprov.c): each
cipher, key exchange and host key algorithm alone (ssh.ciphers, ssh.kex,
ssh.hostkeys through worker-drive), each MAC libssh offers (an sshd that
accepts only that one), each node key type, and host certificates signed
by each CA key type (CA mode, the daemon).  Each time sshd's log must name
what was negotiated, bytes must come back through a forward, and the
worker's ready line must say "openssl ssh" (the filter was in place).
With an OpenSSL configuration that activates providers itself the worker
says "openssl system" and works as before."""

import os
import re

from harness import expect, keys, ports
from harness.discovery import ca_proxy
from harness.target import send_and_check

NAME = 'worker_algorithms'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent',
                                       'tunnelpool-discovery',
                                       'worker-drive']}
TIMEOUT = 600

# What libssh 0.10 offers and stock sshd accepts (sshd's own defaults plus
# the older ones enabled below).  sk-* host keys need an authenticator.
CIPHERS = ['chacha20-poly1305@openssh.com', 'aes128-ctr', 'aes192-ctr',
           'aes256-ctr', 'aes128-gcm@openssh.com', 'aes256-gcm@openssh.com',
           'aes128-cbc', 'aes192-cbc', 'aes256-cbc', '3des-cbc']
KEX = ['curve25519-sha256', 'curve25519-sha256@libssh.org',
       'ecdh-sha2-nistp256', 'ecdh-sha2-nistp384', 'ecdh-sha2-nistp521',
       'diffie-hellman-group18-sha512', 'diffie-hellman-group16-sha512',
       'diffie-hellman-group14-sha256', 'diffie-hellman-group14-sha1',
       'diffie-hellman-group1-sha1', 'diffie-hellman-group-exchange-sha256',
       'diffie-hellman-group-exchange-sha1']
# Not ssh-rsa: its SHA-1 signature binds no session (common/sshpub.c).
HOSTKEYS = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384',
            'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256']
# libssh's default MAC list (tunnelpool has no MAC option); with a
# non-AEAD cipher the first that sshd accepts is used.
MACS = ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com',
        'hmac-sha2-256', 'hmac-sha2-512']
NODE_KEYS = [('ed25519', None, 'ED25519'), ('ecdsa', 256, 'ECDSA'),
             ('ecdsa', 384, 'ECDSA'), ('ecdsa', 521, 'ECDSA'),
             ('rsa', 2048, 'RSA')]
CA_KEYS = [('ed25519', None), ('ecdsa', 256), ('ecdsa', 384), ('ecdsa', 521),
           ('rsa', 2048)]

OLD_ALGORITHMS = [
    'Ciphers +aes128-cbc,aes192-cbc,aes256-cbc,3des-cbc',
    'KexAlgorithms +diffie-hellman-group14-sha1,diffie-hellman-group1-sha1,'
    'diffie-hellman-group-exchange-sha1',
]

# An OpenSSL configuration that activates providers itself, as a FIPS
# setup or a crypto policy does.
SYSTEM_CONF = """openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
[default_sect]
activate = 1
"""

READY = re.compile(r'ready \(sandbox \S+, openssl (\w+)\)')


class Runner:
    def __init__(self, ctx, echo):
        self.ctx, self.echo, self.n = ctx, echo, 0

    def drive(self, proxy, key, label, args=(), want=(), openssl='ssh'):
        """One worker-drive with `args` against proxy: forward bound, 64 KiB
        echoed, every string of `want` in sshd's log of this connection,
        the ready line naming `openssl`."""
        self.n += 1
        mark = proxy.log_mark()
        fport = ports.free_port()
        d = self.ctx.worker_drive(
            'drive%02d' % self.n, proxy, key,
            args=['--forward', '1:127.0.0.1:%d' % fport,
                  '--target', self.echo.address()] + list(args))
        try:
            d.bound(1)
            send_and_check('127.0.0.1', fport, 64 * 1024)
            log = proxy.log_text(mark)
            for w in want:
                expect(w in log, '%s: sshd did not log %r', label, w)
            m = READY.search(d.log_text())
            expect(m is not None, '%s: no ready line from the worker', label)
            expect(m.group(1) == openssl, '%s: the worker ran with openssl '
                   '%s, want %s', label, m.group(1), openssl)
        finally:
            d.close()
        self.ctx.log('%s: ok', label)


def main_proxy(ctx, node_keys):
    """sshd with every host key type (ecdsa in all three sizes) and the
    older algorithms enabled."""
    extra_keys = [keys.generate(ctx.path('host_ecdsa%d_key' % b), 'ecdsa', b)
                  for b in (384, 521)]
    p = ctx.sshd('p1', host_key_types=('ed25519', 'ecdsa', 'rsa'),
                 authorized_keys=node_keys, max_startups='100:30:200',
                 extra=OLD_ALGORITHMS + ['HostKey %s' % k.path
                                         for k in extra_keys])
    # Pinned too (worker-drive --pin every fingerprint).
    p.host_keys.extend(extra_keys)
    return p


def ca_proxies(ctx, node_key):
    """One CA-mode proxy per CA key type, its host key certified by that
    CA."""
    out = []
    for kind, bits in CA_KEYS:
        name = 'ca-%s%s' % (kind, bits or '')
        ca = keys.generate_ca(ctx.path('%s_key' % name), kind, bits)
        out.append((ca_proxy(ctx, name, ca, node_key), ca))
    return out


def run(ctx):
    echo = ctx.echo_server()
    r = Runner(ctx, echo)
    node = {}
    for kind, bits, _ in NODE_KEYS:
        node[(kind, bits)] = ctx.keygen('node_%s%s' % (kind, bits or ''),
                                        kind, bits)
    key = node[('ed25519', None)]
    proxy = main_proxy(ctx, list(node.values()))

    for c in CIPHERS:
        r.drive(proxy, key, 'cipher %s' % c, ['--ciphers', c],
                ['kex: client->server cipher: %s ' % c,
                 'kex: server->client cipher: %s ' % c])
    for k in KEX:
        r.drive(proxy, key, 'kex %s' % k, ['--kex', k],
                ['kex: algorithm: %s [' % k])
    for h in HOSTKEYS:
        r.drive(proxy, key, 'host key %s' % h, ['--hostkeys', h],
                ['kex: host key algorithm: %s [' % h])
    for (kind, bits, label) in NODE_KEYS:
        k = node[(kind, bits)]
        r.drive(proxy, k, 'node key %s %s' % (kind, bits or ''), [],
                ['Accepted publickey for %s from 127.0.0.1' % proxy.user,
                 'ssh2: %s %s' % (label, k.fingerprint())])

    # MACs: an sshd that accepts only one, with a cipher that needs one.
    for mac in MACS:
        p = ctx.sshd('mac-%d' % MACS.index(mac), authorized_keys=[key],
                     extra=['MACs %s' % mac])
        r.drive(p, key, 'mac %s' % mac, ['--ciphers', 'aes128-ctr'],
                ['kex: client->server cipher: aes128-ctr MAC: %s ' % mac,
                 'kex: server->client cipher: aes128-ctr MAC: %s ' % mac])
        p.stop()

    # The system's own providers win over the filter.
    conf = ctx.path('openssl-system.cnf')
    with open(conf, 'w') as f:
        f.write(SYSTEM_CONF)
    old = os.environ.get('OPENSSL_CONF')
    os.environ['OPENSSL_CONF'] = conf
    try:
        r.drive(proxy, key, 'OpenSSL configuration with providers', [],
                ['kex: algorithm: '], openssl='system')
    finally:
        if old is None:
            del os.environ['OPENSSL_CONF']
        else:
            os.environ['OPENSSL_CONF'] = old

    # CA mode: host certificates signed by each CA key type.
    cas = ca_proxies(ctx, key)
    kh = ctx.known_hosts('known_hosts', [
        keys.known_hosts_ca(['[127.0.0.1]:%d' % p.port], ca) for p, ca in cas])
    tp = ctx.tunnelpool(key, kh, backoff=('1s', '5s'))
    fwd = {p.name: ports.free_port() for p, _ in cas}
    for p, _ in cas:
        tp.add_tunnel(p.name, p.name, [p.address()],
                      [('127.0.0.1:%d' % fwd[p.name],
                        '127.0.0.1:%d' % echo.port)])
    tp.start()
    tp.wait_state(lambda s: sum(a['state'] == 'connected'
                                for a in s['agents']) == len(cas), 60,
                  'every CA-mode agent connected')
    for p, ca in cas:
        send_and_check('127.0.0.1', fwd[p.name], 64 * 1024)
        ctx.log('host certificate from a %s CA (%s): ok', ca.algo, p.name)
    modes = READY.findall(tp.log_text())
    expect(len(modes) >= len(cas) and set(modes) == {'ssh'},
           'CA-mode workers ran with openssl %s', sorted(set(modes)))
    tp.stop()
