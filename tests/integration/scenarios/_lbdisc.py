"""Shared set-up of the load-balancer discovery scenarios: N stock sshd
proxies in their own network namespaces, each running the discovery
subsystem, behind a real haproxy; the supervisor with one discovery tunnel
to the haproxy address."""


from harness import expect, keys, yamlw
from harness.target import echo_check

REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent',
                                       'tunnelpool-discovery']}
FWD = 22001


def write_proxies(path, cluster, proxies, self_cert=None):
    """A proxies file; with CA trust each proxy also serves its own host
    certificate (self_certificate), so each needs its own file."""
    doc = {'cluster': cluster,
           'proxies': [{'name': p.name, 'host_key': p.host_keys[0].public}
                       for p in proxies]}
    if self_cert:
        doc['self_certificate'] = self_cert
    yamlw.dump(doc, path)


def claimed(st, cluster):
    for c in st['clusters']:
        if c['name'] == cluster:
            return c['proxies_claimed']
    return 0


def converge(ctx, balance='roundrobin', trust='pinned', n=3, **tp_kw):
    node_key = ctx.keygen('node_key')
    echo = ctx.echo_server()
    disc = ctx.binary('tunnelpool-discovery')
    ca = ctx.ca('host_ca') if trust == 'ca' else None
    extra = {'host_ca': ca, 'host_cert_principals': ['127.0.0.1']} if ca else {}
    proxies = [ctx.sshd('p%d' % i, netns=True, authorized_keys=[node_key],
                        discovery=(disc, ctx.path('proxies-p%d.yaml' % i)),
                        start=False, **extra)
               for i in range(1, n + 1)]
    for i, p in enumerate(proxies, 1):
        write_proxies(ctx.path('proxies-p%d.yaml' % i), 'c1', proxies,
                      p.host_keys[0].cert_path if ca else None)
    for p in proxies:
        p.start()
    lb = ctx.haproxy(proxies, balance=balance)
    if ca:
        lines = [keys.known_hosts_ca('[127.0.0.1]:%d' % lb.port, ca)]
    else:
        lines = [l for p in proxies
                 for l in p.known_hosts_pins('127.0.0.1', lb.port)]
    kh = ctx.known_hosts('known_hosts', lines)

    tp = ctx.tunnelpool(node_key, kh, **dict({'backoff': ('500ms', '3s')},
                                             **tp_kw))
    tp.add_tunnel('c1', 'c1', ['127.0.0.1:%d' % lb.port],
                  [('127.0.0.1:%d' % FWD, '127.0.0.1:%d' % echo.port)],
                  discovery=True)
    tp.start()
    def all_up(s):
        up = [a for a in s['agents'] if a['state'] in ('connected',
                                                       'discovered')]
        return claimed(s, 'c1') == n and len(up) == n
    st = tp.wait_state(all_up, 60, 'all %d proxies claimed and up' % n)
    up = [a for a in st['agents']
          if a['state'] in ('connected', 'discovered')]
    ctx.log('claimed after %.1fs: %s', ctx.elapsed(),
            sorted((a['proxy']['name'], a['pid']) for a in up))
    names = sorted(a['proxy']['name'] for a in up)
    expect(names == sorted(p.name for p in proxies),
           'agents on %r, want one per proxy', names)
    fps = {fp for p in proxies for fp in p.host_fingerprints()}
    expect(all(a['proxy']['host_key'] in fps for a in up),
           'an agent reports an unknown host key')
    for c in st['clusters']:
        if c['name'] == 'c1':
            expect(c['proxies_announced'] == n, 'announced %r',
                   c['proxies_announced'])

    # A connection on each proxy's forwarded port reaches the node.
    before = echo.connections
    for p in proxies:
        p.wait_forward(FWD, 15)
        echo_check(p.connect_forward(FWD), 256 * 1024, what='via %s' % p.name)
    expect(echo.connections - before == n, 'echo saw %d connections, want %d',
           echo.connections - before, n)
    return tp, proxies, lb, echo
