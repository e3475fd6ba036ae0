"""CA mode end to end (host keys trusted only through @cert-authority):
the worker fetches each proxy's host certificate from the discovery stream
after auth and checks it itself.  A certificate for another principal and a
tampered certificate are refused (host key not trusted, exit 5) and sshd
never sees a tcpip-forward request from them; a valid one is accepted and
carries data."""

import base64

from harness import expect, keys, ports
from harness.discovery import ca_proxy
from harness.target import send_and_check

NAME = 'worker_ca_refusals'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent',
                                       'tunnelpool-discovery']}
TIMEOUT = 90


def tamper(src, dst):
    """Copies a -cert.pub line with one byte of its blob flipped."""
    kind, b64 = open(src).read().split()[:2]
    blob = bytearray(base64.b64decode(b64))
    blob[len(blob) // 2] ^= 0x01
    with open(dst, 'w') as f:
        f.write('%s %s\n' % (kind, base64.b64encode(bytes(blob)).decode()))
    return dst


def run(ctx):
    node_key = ctx.keygen('node_key')
    ca = ctx.ca('host_ca')
    echo = ctx.echo_server()
    wrong = ca_proxy(ctx, 'wrong', ca, node_key, ['other.example'])
    bad = ca_proxy(ctx, 'tampered', ca, node_key, serve_cert=lambda c:
                   tamper(c, ctx.path('tampered-cert.pub')))
    good = ca_proxy(ctx, 'good', ca, node_key)
    kh = ctx.known_hosts('known_hosts', [keys.known_hosts_ca(
        ['[127.0.0.1]:%d' % p.port for p in (wrong, bad, good)], ca)])

    tp = ctx.tunnelpool(node_key, kh, backoff=('1s', '5s'))
    fwd = {p.name: ports.free_port() for p in (wrong, bad, good)}
    for p in (wrong, bad, good):
        tp.add_tunnel(p.name, p.name, [p.address()],
                      [('127.0.0.1:%d' % fwd[p.name],
                        '127.0.0.1:%d' % echo.port)])
    tp.start()
    tp.wait_state(lambda s: any(a['cluster'] == 'good' and
                                a['state'] == 'connected'
                                for a in s['agents']), 30, 'good connected')
    tp.wait_log(r'host key not trusted.*cluster=wrong ', 20)
    tp.wait_log(r'host key not trusted.*cluster=tampered ', 20)
    log = tp.log_text()
    expect('principal' in log, 'the refusal does not name the principal')
    send_and_check('127.0.0.1', fwd['good'], 256 * 1024)
    expect('tcpip-forward' in good.log_text(),
           'the good proxy saw no forward request (log check is vacuous)')
    for p in (wrong, bad):
        expect('tcpip-forward' not in p.log_text(),
               '%s received a forward request before trust', p.name)
        expect(not p.has_forward(fwd[p.name]), '%s holds a forward', p.name)
