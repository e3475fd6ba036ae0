"""Harness self-test: sshd runs the project's discovery helper as the
`tunnelpool-discovery` subsystem; OpenSSH's `ssh -s` reads the proxy set as
a JSON line."""

import json

from harness import expect, wait_for, yamlw

NAME = 'harness_discovery_subsystem'
REQUIRES = {'root': True, 'binaries': ['tunnelpool-discovery']}
TIMEOUT = 60


def write_proxies_file(ctx, path, cluster, proxies):
    """proxies.yaml for tunnelpool-discovery (format: proxy/proxies_file.h):
    the cluster name and each proxy's name and host public key."""
    yamlw.dump({
        'cluster': cluster,
        'proxies': [{'name': p.name, 'host_key': p.host_keys[0].public}
                    for p in proxies],
    }, path)
    return path


def run(ctx):
    node_key = ctx.keygen('node_key')
    discovery = ctx.binary('tunnelpool-discovery')
    proxies_file = ctx.path('proxies.yaml')
    proxy = ctx.sshd('p1', authorized_keys=[node_key], start=False,
                     discovery=(discovery, proxies_file))
    other = ctx.sshd('p2', authorized_keys=[node_key])
    proxy.start()
    write_proxies_file(ctx, proxies_file, 'c1', [proxy, other])
    kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())

    sub = ctx.ssh_subsystem('disc', proxy, node_key, kh,
                            'tunnelpool-discovery')
    first = sub.wait_json(lambda o: 'proxies' in o, timeout=15,
                          what='a proxy set line')
    ctx.log('discovery set line: %s', json.dumps(first)[:300])
    expect(first.get('cluster') == 'c1', 'cluster %r, want c1',
           first.get('cluster'))
    names = sorted(p.get('name') for p in first['proxies'])
    expect(names == ['p1', 'p2'], 'proxy names %r, want p1, p2', names)
    text = json.dumps(first)
    for p in (proxy, other):
        expect(p.host_keys[0].blob.split()[1] in text or
               p.host_fingerprints()[0] in text,
               'proxy %s key (or fingerprint) missing from the discovery '
               'set: %s', p.name, text[:500])
    proxy.wait_log(r"Starting session: subsystem 'tunnelpool-discovery'")
    helpers = ctx.find_processes(discovery)
    expect(helpers, 'no %s process found while the session is open',
           discovery)

    # sshd does not signal a subsystem when its session ends: the helper
    # must notice (stdin EOF or a failed heartbeat write) and exit.
    sub.stop()
    proxy.wait_log(r'Disconnected from user tunnel')
    wait_for(lambda: not ctx.find_processes(discovery), 10,
             'the discovery helper to exit after its session closed')
