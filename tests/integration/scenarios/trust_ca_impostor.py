"""CA trust behind a load balancer: a certificate's principals are matched
only against names from configuration (issue 14, item 1).

Two real proxies hold host certificates from the host CA for
p1.proxies.test and p2.proxies.test; the tunnel names them with
proxy_principals ["*.proxies.test"].  An impostor sshd sits behind the same
haproxy, first in round robin, with a valid certificate from the same CA for
an unrelated name, evil.example, and announces itself under that name on its
discovery stream (in a set naming all three).  The worker used to accept a
principal equal to the name the peer itself announced: the impostor got the
claim and the forwards.  Now it is refused ("principal mismatch"), never
claimed, and no tcpip-forward reaches it, however often the balancer sends
a dial there; the real proxies are claimed and carry data.
"""

import os
import sys
import time

from harness import expect, keys, yamlw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402

NAME = 'trust_ca_impostor'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 120

CLUSTER = 'c1'


def proxies_file(path, members, self_cert):
    """members: [(announced name, Sshd)]."""
    yamlw.dump({'cluster': CLUSTER,
                'proxies': [{'name': n, 'host_key': p.host_keys[0].public}
                            for n, p in members],
                'self_certificate': self_cert}, path)


def run(ctx):
    node_key = ctx.keygen('node_key')
    echo = ctx.echo_server()
    disc = ctx.binary('tunnelpool-discovery')
    ca = ctx.ca('host_ca')

    def sshd(name, principal):
        return ctx.sshd(name, netns=True, authorized_keys=[node_key],
                        host_ca=ca, host_cert_principals=[principal],
                        discovery=(disc, ctx.path('proxies-%s.yaml' % name)),
                        start=False)
    p1 = sshd('p1', 'p1.proxies.test')
    p2 = sshd('p2', 'p2.proxies.test')
    evil = sshd('evil', 'evil.example')
    real = [('p1', p1), ('p2', p2)]
    for name, p in real:
        proxies_file(ctx.path('proxies-%s.yaml' % name), real,
                     p.host_keys[0].cert_path)
    proxies_file(ctx.path('proxies-evil.yaml'),
                 real + [('evil.example', evil)], evil.host_keys[0].cert_path)
    for p in (evil, p1, p2):
        p.start()
    lb = ctx.haproxy([evil, p1, p2], balance='roundrobin')
    kh = ctx.known_hosts('known_hosts', [
        keys.known_hosts_ca('[127.0.0.1]:%d' % lb.port, ca)])
    tp = ctx.tunnelpool(node_key, kh, backoff=('200ms', '1s'))
    tp.add_tunnel(CLUSTER, CLUSTER, ['127.0.0.1:%d' % lb.port],
                  [('127.0.0.1:%d' % _lbdisc.FWD, echo.address())],
                  discovery=True,
                  spec_extra={'proxy_principals': ['*.proxies.test']})
    tp.start()
    evil_fp = evil.host_fingerprints()[0]

    st = tp.wait_state(lambda s: sorted(_lbdisc.by_proxy(s, CLUSTER)) ==
                       ['p1', 'p2'] and _lbdisc.claimed(s, CLUSTER) == 2, 60,
                       'p1 and p2 claimed and up')
    ctx.log('claimed after %.1fs: %r', ctx.elapsed(),
            sorted(_lbdisc.by_proxy(st, CLUSTER)))
    # Keep the balancer sending dials for a while: the impostor stays out.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        st = tp.status_json()
        held = [a for a in st['agents']
                if a['proxy'].get('host_key') == evil_fp and
                a['state'] in _lbdisc.UP]
        expect(not held, 'an agent is up on the impostor: %r', held)
        time.sleep(0.2)
    # It was dialled, and refused for its principal.
    m = tp.wait_log(r'host key not trusted: %s \(principal mismatch' %
                    evil_fp.replace('+', r'\+'), 30)
    ctx.log('impostor refused: %s', m.group(0))
    evil_log = evil.log_text()
    expect('Accepted publickey' in evil_log or 'Postponed publickey' in
           evil_log or 'userauth' in evil_log,
           'the impostor was never dialled:\n%s', evil_log[-1500:])
    expect('tcpip-forward' not in evil_log,
           'a tcpip-forward reached the impostor:\n%s', evil_log[-2000:])
    for p in (p1, p2):
        expect('tcpip-forward' in p.log_text(),
               'no tcpip-forward on %s', p.name)
    for p in (p1, p2):
        p.wait_forward(_lbdisc.FWD, 15)
    from harness.target import echo_check
    for p in (p1, p2):
        echo_check(p.connect_forward(_lbdisc.FWD), 64 * 1024,
                   what='via %s' % p.name)
