"""Shared set-up of the load-balancer discovery scenarios: N stock sshd
proxies in their own network namespaces, each running the discovery
subsystem, behind a real haproxy; the supervisor with one discovery tunnel
to the haproxy address.

converge(ctx, ...) is the whole of scenario 1 and returns (tp, proxies, lb,
echo).  Scenarios that go on from there use LbDisc (setup() builds one and
converges), which keeps what they need: the node key, the helper, the
proxies files (rewritten atomically with write_sets()), add_proxy() for a
proxy that joins later, and small status readers."""


import calendar
import re
import time

from harness import expect, keys, procs, yamlw
from harness.schema import check as schema_problems
from harness.target import echo_check

REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent',
                                       'tunnelpool-discovery']}
FWD = 22001
UP = ('connected', 'discovered')


def write_proxies(path, cluster, proxies, self_cert=None):
    """A proxies file; with CA trust each proxy also serves its own host
    certificate (self_certificate), so each needs its own file.  Written
    atomically (temporary file, then rename)."""
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


def cluster(st, name='c1'):
    for c in st['clusters']:
        if c['name'] == name:
            return c
    return None


def top_cluster_row(screen, name):
    """(misses, refused, retry in, balancer) from the cluster table's row
    of `tunnelpool top` (supervisor/top.c CLUSTER_FMT), or None."""
    m = re.search(r'^%s\s+(?:\d+\s+){7}(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s*$'
                  % re.escape(name), screen, re.M)
    return (int(m.group(1)), int(m.group(2)), m.group(3),
            m.group(4)) if m else None


_TS = re.compile(r'^ts=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z .*'
                 r'func=child_started msg="worker started', re.M)


def spawn_times(text):
    """Supervisor timestamps (seconds) of its "worker started" lines."""
    out = []
    for m in _TS.finditer(text):
        t = calendar.timegm(time.strptime(m.group(1), '%Y-%m-%dT%H:%M:%S'))
        out.append(t + float(m.group(2) or 0))
    return sorted(out)


def dials(st, name='c1'):
    """Agents started for the cluster so far (status counter)."""
    return cluster(st, name)['dials']


def wanted_names(st, name='c1'):
    return sorted(w['name'] for w in cluster(st, name)['wanted'])


def check_surfaces(tp, st):
    """The status document against the golden schema (with its wanted
    set filled in) and /metrics through promtool, no series twice."""
    errs = schema_problems(st)
    expect(not errs, 'status does not match the schema:\n%s',
           '\n'.join(errs))
    text = tp.metrics_text()
    cp = procs.run(['promtool', 'check', 'metrics'], input=text, check=False)
    expect(cp.returncode == 0, 'promtool check metrics: %s%s', cp.stdout,
           cp.stderr)
    seen = set()
    for line in text.splitlines():
        if line and not line.startswith('#'):
            series = line.rsplit(' ', 1)[0]
            expect(series not in seen, 'series twice: %s', series)
            seen.add(series)
    return text


def up_agents(st, cluster_name='c1'):
    return [a for a in st['agents'] if a['cluster'] == cluster_name and
            a['state'] in UP]


def by_proxy(st, cluster_name='c1'):
    """{proxy name: agent} of the agents that are up."""
    return {a['proxy']['name']: a for a in up_agents(st, cluster_name)}


class LbDisc:
    """The pieces of one load-balancer discovery set-up."""

    def __init__(self, ctx, balance='roundrobin', trust='pinned', n=3,
                 disc_args='', cluster_name='c1', spares=0, sshd_kw=None,
                 **tp_kw):
        self.ctx = ctx
        self.cluster = cluster_name
        self.trust = trust
        self.node_key = ctx.keygen('node_key')
        self.echo = ctx.echo_server()
        self.disc = ctx.binary('tunnelpool-discovery')
        if disc_args:
            # sshd runs a subsystem through the shell: extra options fit.
            self.disc = '%s %s' % (self.disc, disc_args)
        self.ca = ctx.ca('host_ca') if trust == 'ca' else None
        self.sshd_kw = dict(sshd_kw or {})     # more Sshd options, for all
        self.proxies = []
        for i in range(1, n + 1):
            self.proxies.append(self._new_sshd('p%d' % i))
        # Spares join later (add_proxy); their host keys are pinned from
        # the start, as an operator deploys known_hosts ahead of a proxy.
        self.spares = [self._new_sshd('p%d' % i)
                       for i in range(n + 1, n + spares + 1)]
        self.write_sets(self.proxies)
        for p in self.proxies:
            p.start()
        self.lb = ctx.haproxy(self.proxies, balance=balance)
        if self.ca:
            lines = [keys.known_hosts_ca('[127.0.0.1]:%d' % self.lb.port,
                                         self.ca)]
        else:
            lines = [l for p in self.proxies + self.spares
                     for l in p.known_hosts_pins('127.0.0.1', self.lb.port)]
        self.kh = ctx.known_hosts('known_hosts', lines)
        self.tp = ctx.tunnelpool(self.node_key, self.kh,
                                 **dict({'backoff': ('500ms', '3s')}, **tp_kw))
        self.tp.add_tunnel(self.cluster, self.cluster,
                           ['127.0.0.1:%d' % self.lb.port],
                           [('127.0.0.1:%d' % FWD,
                             '127.0.0.1:%d' % self.echo.port)],
                           discovery=True)

    def proxies_path(self, p):
        return self.ctx.path('proxies-%s.yaml' % getattr(p, 'name', p))

    def _new_sshd(self, name):
        extra = {'host_ca': self.ca, 'host_cert_principals': ['127.0.0.1']} \
            if self.ca else {}
        extra.update(self.sshd_kw)
        p = self.ctx.sshd(name, netns=True, authorized_keys=[self.node_key],
                          discovery=(self.disc, self.proxies_path(name)),
                          start=False, **extra)
        return p

    def write_sets(self, members, on=None):
        """Rewrites the proxies file of every proxy in `on` (default: all
        of them) atomically, announcing exactly `members`."""
        for p in (self.proxies if on is None else on):
            write_proxies(self.proxies_path(p), self.cluster, members,
                          p.host_keys[0].cert_path if self.ca else None)

    def add_proxy(self):
        """Starts the next spare proxy, its proxies file announcing the
        current set plus itself.  The others do not announce it yet, and it
        is not behind haproxy yet: see write_sets() and lb.add_backend()."""
        p = self.spares.pop(0)
        self.proxies.append(p)
        self.write_sets(self.proxies, on=[p])
        p.start()
        return p

    def all_up(self, names):
        names = sorted(names)

        def pred(s):
            up = up_agents(s, self.cluster)
            return claimed(s, self.cluster) == len(names) and \
                sorted(a['proxy']['name'] for a in up) == names
        return pred

    def wait_all_up(self, proxies, timeout=60, what=None):
        names = [p.name for p in proxies]
        return self.tp.wait_state(self.all_up(names), timeout,
                                  what or 'proxies %s claimed and up' % names)

    def check_data(self, proxies, nbytes=256 * 1024, timeout=15):
        """A connection on each proxy's forwarded port reaches the node."""
        before = self.echo.connections
        for p in proxies:
            p.wait_forward(FWD, timeout)
            echo_check(p.connect_forward(FWD), nbytes,
                       what='via %s' % p.name)
        expect(self.echo.connections - before == len(proxies),
               'echo saw %d connections, want %d',
               self.echo.connections - before, len(proxies))

    def converge(self, timeout=60):
        """Starts the supervisor and checks scenario 1: every proxy claimed
        by exactly one agent that is up, host keys known, data through each
        proxy.  Returns the status."""
        ctx, tp, n = self.ctx, self.tp, len(self.proxies)
        tp.start()

        def all_up(s):
            return claimed(s, self.cluster) == n and \
                len(up_agents(s, self.cluster)) == n
        st = tp.wait_state(all_up, timeout,
                           'all %d proxies claimed and up' % n)
        up = up_agents(st, self.cluster)
        ctx.log('claimed after %.1fs: %s', ctx.elapsed(),
                sorted((a['proxy']['name'], a['pid']) for a in up))
        names = sorted(a['proxy']['name'] for a in up)
        expect(names == sorted(p.name for p in self.proxies),
               'agents on %r, want one per proxy', names)
        fps = {fp for p in self.proxies for fp in p.host_fingerprints()}
        expect(all(a['proxy']['host_key'] in fps for a in up),
               'an agent reports an unknown host key')
        c = cluster(st, self.cluster)
        expect(c is not None and c['proxies_announced'] == n,
               'announced %r', c and c['proxies_announced'])
        self.check_data(self.proxies)
        return st


def setup(ctx, **kw):
    """An LbDisc, converged (scenario 1 checked); returns it."""
    d = LbDisc(ctx, **kw)
    d.converge()
    return d


def converge(ctx, balance='roundrobin', trust='pinned', n=3, **tp_kw):
    d = setup(ctx, balance=balance, trust=trust, n=n, **tp_kw)
    return d.tp, d.proxies, d.lb, d.echo
