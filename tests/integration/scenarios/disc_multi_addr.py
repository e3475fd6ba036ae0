"""Issue 7, scenario 5: several dial addresses.  (a) A tunnel with two
dial_addrs (two proxies' addresses, discovery false) gets one agent per
dial address, each keyed by cluster + dial address, each on its own proxy,
each carrying data.  (b) A dial name that resolves to several addresses
(two /etc/hosts lines: 127.0.0.2 and 127.0.0.3, each the front of its own
sshd proxy) is dialled at every address: with discovery on, the pool dials
the name again for the proxy it still looks for, and both proxies behind
the name end up claimed (each sshd logs its login)."""

import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect, ports  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.netns import SOCAT  # noqa: E402
from harness.target import echo_check  # noqa: E402

NAME = 'disc_multi_addr'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 120
HOSTS = '/etc/hosts'
FWD = _lbdisc.FWD
ADDRS = ('127.0.0.2', '127.0.0.3')


def add_hosts_lines(ctx, name, addrs):
    """Appends 'ADDR NAME' lines to /etc/hosts; removed at teardown (only
    the lines naming this run's random name)."""
    with open(HOSTS) as f:
        text = f.read()
    lines = ''.join('%s %s\n' % (a, name) for a in addrs)
    with open(HOSTS, 'a') as f:
        f.write(('' if text.endswith('\n') or not text else '\n') + lines)

    def remove():
        with open(HOSTS) as f:
            keep = [l for l in f.read().splitlines(True)
                    if name not in l.split()]
        with open(HOSTS, 'w') as f:      # in place: /etc/hosts may be a mount
            f.write(''.join(keep))
    ctx.defer(remove, 'remove %s from %s' % (name, HOSTS))


def bridges(ctx, proxies, addrs):
    """One socat TCP listener per proxy, all on the same port, bound to
    addrs[i] and connected to proxies[i]'s netns bridge.  Returns the
    port."""
    for _attempt in range(6):
        port = ports.free_port()
        procs = []
        try:
            for p, a in zip(proxies, addrs):
                pr = ctx.spawn('socat-%s-%s' % (p.name, a), [
                    SOCAT, '-d', '-d', 'TCP-LISTEN:%d,bind=%s,fork,reuseaddr'
                    % (port, a), 'UNIX-CONNECT:%s' % p.unix_socket])
                procs.append(pr)
                ports.wait_listening(port, 5, host=a, fail_if=pr.died)
            return port
        except HarnessError:
            for pr in procs:
                pr.stop()
    raise HarnessError('no port free on all of %r' % (addrs,))


def run(ctx):
    node_key = ctx.keygen('node_key')
    echo = ctx.echo_server()
    disc = ctx.binary('tunnelpool-discovery')

    # (a) two dial addresses, discovery off.
    pa = ctx.sshd('pa', netns=True, tcp_bridge=True,
                  authorized_keys=[node_key])
    pb = ctx.sshd('pb', netns=True, tcp_bridge=True,
                  authorized_keys=[node_key])

    # (b) one name, two addresses, discovery on.
    name = 'tp-multi-%s.test' % secrets.token_hex(4)
    pc, pd = [ctx.sshd(n, netns=True, authorized_keys=[node_key],
                       discovery=(disc, ctx.path('proxies-%s.yaml' % n)),
                       start=False) for n in ('pc', 'pd')]
    for p in (pc, pd):
        _lbdisc.write_proxies(ctx.path('proxies-%s.yaml' % p.name), 'cn',
                              [pc, pd])
        p.start()
    port = bridges(ctx, [pc, pd], ADDRS)
    add_hosts_lines(ctx, name, ADDRS)
    ctx.log('%s -> %s, port %d (pc, pd)', name, ', '.join(ADDRS), port)

    kh = ctx.known_hosts('known_hosts',
                         pa.known_hosts_pins() + pb.known_hosts_pins() +
                         [l for p in (pc, pd)
                          for l in p.known_hosts_pins(name, port)])
    tp = ctx.tunnelpool(node_key, kh, backoff=('500ms', '3s'))
    fw = [('127.0.0.1:%d' % FWD, echo.address())]
    tp.add_tunnel('cm', 'cm', [pa.address(), pb.address()], fw,
                  discovery=False)
    dial = '%s:%d' % (name, port)
    tp.add_tunnel('cn', 'cn', [dial], fw, discovery=True)
    tp.start()          # after /etc/hosts: evdns reads it at start

    # (a) one agent per dial address, each on its own proxy.
    def two_keys(s):
        up = _lbdisc.up_agents(s, 'cm')
        return len(up) == 2 and \
            sorted(a['dial_addr'] for a in up) == \
            sorted([pa.address(), pb.address()])
    st = tp.wait_state(two_keys, 30, 'cluster cm: one agent up per dial '
                       'address')
    up = {a['dial_addr']: a for a in _lbdisc.up_agents(st, 'cm')}
    ctx.log('cm agents: %r', sorted((k, a['pid'], a['proxy']['host_key'])
                                    for k, a in up.items()))
    for p in (pa, pb):
        a = up[p.address()]
        expect(a['proxy']['host_key'] in p.host_fingerprints(),
               'agent of %s landed on %r, want %s', p.address(),
               a['proxy']['host_key'], p.host_fingerprints())
        expect(a['role'] == 'tunnel', 'agent of %s has role %r',
               p.address(), a['role'])
    expect(len([x for x in st['agents'] if x['cluster'] == 'cm']) == 2,
           'cluster cm has more than two agents: %r',
           [x for x in st['agents'] if x['cluster'] == 'cm'])
    before = echo.connections
    for p in (pa, pb):
        p.wait_forward(FWD, 15)
        echo_check(p.connect_forward(FWD), 256 * 1024, what='via %s' % p.name)

    # (b) both addresses of the name used: both proxies claimed.
    def both(s):
        up = _lbdisc.up_agents(s, 'cn')
        return _lbdisc.claimed(s, 'cn') == 2 and \
            sorted(a['proxy']['name'] for a in up) == ['pc', 'pd']
    st = tp.wait_state(both, 45, 'cluster cn: pc (%s) and pd (%s) both '
                       'claimed through %s (evdns must give every hosts '
                       'file address of the name)' % (ADDRS[0], ADDRS[1],
                                                      dial))
    up = _lbdisc.by_proxy(st, 'cn')
    ctx.log('cn agents: %r', sorted((n, a['pid'], a['dial_addr'])
                                    for n, a in up.items()))
    for p in (pc, pd):
        expect(up[p.name]['dial_addr'] == dial, 'agent on %s dialled %r',
               p.name, up[p.name]['dial_addr'])
        expect(up[p.name]['proxy']['host_key'] in p.host_fingerprints(),
               'agent on %s reports host key %r', p.name,
               up[p.name]['proxy']['host_key'])
        expect(p.accepted(), 'sshd %s (behind %s) logged no login', p.name,
               ADDRS[(pc, pd).index(p)])
        p.wait_forward(FWD, 15)
        echo_check(p.connect_forward(FWD), 256 * 1024, what='via %s' % p.name)
    expect(echo.connections - before == 4, 'echo saw %d connections, want 4',
           echo.connections - before)
