"""A deny list is carried whole (issue 14, item 5).

CA trust: proxy p1 holds a valid host certificate from the trusted CA for
127.0.0.1 and localhost.  known_hosts revokes 100 keys for
[127.0.0.1]:PORT, the last of them p1's own; the supervisor used to give a
worker only the first 32, so a revoked key with a valid certificate was
trusted.  Now the tunnel dialled as 127.0.0.1 is refused ("revoked") and
never connects, while a tunnel dialled as localhost, whose 99 revoked keys
do not include p1's, connects.  Then known_hosts names 300 revoked keys for
127.0.0.1, more than a worker can be given: the supervisor refuses to start
that tunnel's worker at all, and says why.
"""

import base64
import os
import struct
import time

from harness import expect, keys
from harness.discovery import ca_proxy

NAME = 'trust_revoked_many'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent',
                                       'tunnelpool-discovery']}
TIMEOUT = 90


def random_key():
    blob = struct.pack('>I', 11) + b'ssh-ed25519' + struct.pack('>I', 32) + \
        os.urandom(32)
    return 'ssh-ed25519 ' + base64.b64encode(blob).decode()


def revoked(pattern, n, last=None):
    lines = ['@revoked %s %s' % (pattern, random_key()) for _ in range(n)]
    if last is not None:
        lines.append('@revoked %s %s' % (pattern, last))
    return lines


def agents_of(st, cluster):
    return [a for a in st['agents'] if a['cluster'] == cluster]


def run(ctx):
    node_key = ctx.keygen('node_key')
    echo = ctx.echo_server()
    ca = ctx.ca('host_ca')
    # CA mode: the worker fetches p1's certificate from its discovery stream.
    p1 = ca_proxy(ctx, 'p1', ca, node_key, ['127.0.0.1', 'localhost'],
                  cluster='by-name')
    ip, name = '[127.0.0.1]:%d' % p1.port, '[localhost]:%d' % p1.port
    p1_key = p1.host_keys[0].public.split()[:2]
    lines = [keys.known_hosts_ca(ip, ca), keys.known_hosts_ca(name, ca)]
    lines += revoked(ip, 99, ' '.join(p1_key))
    lines += revoked(name, 99)
    kh = ctx.known_hosts('known_hosts', lines)
    tp = ctx.tunnelpool(node_key, kh, backoff=('300ms', '1s'))
    tp.add_tunnel('by-ip', 'by-ip', ['127.0.0.1:%d' % p1.port],
                  [('127.0.0.1:22001', echo.address())])
    tp.add_tunnel('by-name', 'by-name', ['localhost:%d' % p1.port],
                  [('127.0.0.1:22002', echo.address())])
    tp.start()
    fp = p1.host_fingerprints()[0]
    tp.wait_state(lambda s: any(a['state'] == 'connected' for a in
                                agents_of(s, 'by-name')), 30,
                  'by-name connected (99 revoked keys, not p1\'s)')
    m = tp.wait_log(r'host key not trusted: %s \(revoked\).*cluster=by-ip'
                    % fp.replace('+', r'\+'), 20)
    ctx.log('by-ip refused: %s', m.group(0)[:160])
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        st = tp.status_json()
        up = [a for a in agents_of(st, 'by-ip')
              if a['state'] == 'connected']
        expect(not up, 'by-ip connected through a revoked key: %r', up)
        time.sleep(0.2)
    expect('tcpip-forward 127.0.0.1:22001' not in p1.log_text() and
           'listen 127.0.0.1 port 22001' not in p1.log_text(),
           'a forward for by-ip reached the proxy')

    # More than a worker can carry: not trusted at all, and said so.
    lines = [keys.known_hosts_ca(ip, ca), keys.known_hosts_ca(name, ca)]
    lines += revoked(ip, 300) + revoked(name, 99)
    ctx.known_hosts('known_hosts', lines)
    mark = tp.log_mark()
    tp.reload()
    m = tp.wait_log(r'known_hosts has 300 @revoked keys for 127\.0\.0\.1, '
                    r'more than the 256 a worker can be given', 20,
                    since=mark)
    ctx.log('300 revoked: %s', m.group(0))
    st = tp.status_json()
    expect(any(a['state'] == 'connected' for a in agents_of(st, 'by-name')),
           'by-name lost its tunnel: %r', agents_of(st, 'by-name'))
