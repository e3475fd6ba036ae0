"""Harness self-test: 3 sshd proxies, each in its own network namespace and
all forwarding the same port, behind haproxy (unix backends, roundrobin);
3 `ssh -N -R` clients through haproxy land on 3 different proxies; data
through each proxy's forwarded port reaches the node's echo target; the
host keys are trusted through a host CA (@cert-authority)."""

import os

from harness import expect, expect_eq, keys, ports
from harness.target import echo_check, concurrent_checks

NAME = 'harness_haproxy_netns'
REQUIRES = {'root': True,
            'tools': ['sshd', 'ssh', 'ssh-keygen', 'socat', 'ip', 'ss',
                      'haproxy']}
TIMEOUT = 90
FWD = 22001           # the same forward port on every proxy


def run(ctx):
    node_key = ctx.keygen('node_key')
    host_ca = ctx.ca('host_ca')
    echo = ctx.echo_server()
    proxies = [ctx.sshd('p%d' % i, netns=True, authorized_keys=[node_key],
                        host_ca=host_ca, host_cert_principals=['127.0.0.1'],
                        client_alive=(5, 3), tcp_bridge=(i == 1))
               for i in (1, 2, 3)]
    lb = ctx.haproxy(proxies, balance='roundrobin')
    kh = ctx.known_hosts('known_hosts', [
        keys.known_hosts_ca('[127.0.0.1]:*', host_ca)])

    landed = {}
    clients = []
    for i in range(3):
        c = ctx.ssh_forward('node%d' % (i + 1), (lb.host, lb.port), node_key,
                            kh, [(FWD, '127.0.0.1', echo.port)])
        c.wait_established()
        clients.append(c)
        # Exactly one proxy more holds the forward now: that is where it
        # landed.
        holders = [p.name for p in proxies if p.has_forward(FWD)]
        new = [h for h in holders if h not in landed.values()]
        expect(len(new) == 1, 'client %d: want exactly one new proxy with '
               'the forward, holders now %r, before %r', i + 1, holders,
               landed)
        landed[c.name] = new[0]
        expect('matches the ED25519-CERT host certificate' in c.log_text(),
               '%s did not authenticate the proxy by host certificate',
               c.name)
    ctx.log('clients landed: %r', landed)
    expect_eq(sorted(landed.values()), ['p1', 'p2', 'p3'], 'proxies used')
    expect_eq(lb.server_counts(), {'p1': 1, 'p2': 1, 'p3': 1},
              'haproxy connections per backend')
    for p in proxies:
        expect_eq(p.forwards(), {('127.0.0.1', FWD)}, '%s forwards' % p.name)
        expect_eq(len(p.accepted()), 1, '%s accepted logins' % p.name)

    # Data from inside each proxy's namespace reaches the node's echo.
    before = echo.connections
    for p in proxies:
        echo_check(p.connect_forward(FWD), 1024 * 1024,
                   what='echo via %s:%d' % (p.name, FWD))
        concurrent_checks(lambda: p.connect_forward(FWD), 4, 64 * 1024)
    expect_eq(echo.connections - before, 15, 'echo connections')

    # The forward port is not reachable from the root namespace.
    expect(not ports.is_listening(FWD), 'port %d listens in the root netns',
           FWD)

    # Stopping one client removes the forward from its proxy only.
    first = clients[0]
    first.stop()
    gone = [p for p in proxies if p.name == landed[first.name]][0]
    gone.wait_no_forward(FWD)
    expect_eq(sorted(p.name for p in proxies if p.has_forward(FWD)),
              sorted(v for k, v in landed.items() if k != first.name),
              'proxies still holding the forward')

    for c in clients:
        c.stop()
    for p in proxies:
        p.wait_no_forward(FWD)

    # p1 also has a root-namespace TCP bridge: a direct client through it.
    p1 = proxies[0]
    direct = ctx.ssh_forward('direct', p1, node_key, kh,
                             [(FWD, '127.0.0.1', echo.port)])
    direct.wait_established()
    p1.wait_forward(FWD)
    echo_check(p1.connect_forward(FWD), 256 * 1024, what='echo via bridge')
    direct.stop()

    # Full teardown by hand: namespaces gone, nothing left.
    names = [p.netns.name for p in proxies]
    lb.stop()
    for p in proxies:
        p.close()
        p.netns.close()
    for n in names:
        expect(not os.path.exists('/run/netns/%s' % n),
               'netns %s still exists', n)
    left = ctx.leftovers()
    expect(not left, 'leftover processes: %r', left)
