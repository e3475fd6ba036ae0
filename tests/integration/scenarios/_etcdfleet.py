"""Shared set-up of the etcd tunnel-source scenarios: one stock sshd proxy,
an echo target, a real etcd (harness.etcd) and the supervisor reading its
tunnels from a prefix.  Fleet keeps them and small helpers: tunnel values
(put/delete by tunnel name), status readers that map cluster -> agent pid,
and the "within a deadline" waits the issue's figures need."""

import time

from harness import expect, ports, procs
from harness.target import send_and_check
from harness.tunnelpool import one_proxy, tunnel_yaml

REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent'],
            'tools': ['sshd', 'ssh-keygen', 'socat', 'ss', 'etcd', 'etcdctl']}
PREFIX = '/tunnelpool/node-1/'


def running(st):
    """cluster -> pid of its tunnel agent (any state but closing)."""
    return {a['cluster']: a['pid'] for a in st['agents']
            if a['pid'] > 0 and a['state'] != 'closing'}


def connected(st):
    return {a['cluster']: a['pid'] for a in st['agents']
            if a['state'] == 'connected'}


class Fleet:
    def __init__(self, ctx, etcd=None, members=1, etcd_kw=None,
                 endpoints=None, tp_kw=None, use_etcd_kw=None,
                 start_etcd=True):
        self.ctx = ctx
        self.node_key, self.echo, self.proxy, self.kh = one_proxy(ctx)
        self.etcd = etcd or ctx.etcd('etcd', members=members,
                                     start=start_etcd, **(etcd_kw or {}))
        self.ports = {}
        self.tp = ctx.tunnelpool(self.node_key, self.kh,
                                 backoff=('300ms', '2s'),
                                 resync_interval='1h', **(tp_kw or {}))
        self.tp.use_etcd(endpoints or self.etcd.endpoints(), PREFIX,
                         tunnels_dir=False, **(use_etcd_kw or {}))

    def key(self, name):
        return PREFIX + name

    def port(self, name):
        if name not in self.ports:
            self.ports[name] = ports.free_port()
        return self.ports[name]

    def value(self, name, port=None):
        """The tunnel NAME (cluster NAME) forwarding a port to the echo."""
        if port is not None:
            self.ports[name] = port
        return tunnel_yaml(name, name, [self.proxy.address()],
                           [('127.0.0.1:%d' % self.port(name),
                             self.echo.address())])

    def put(self, name, port=None, value=None):
        return self.etcd.put(self.key(name), value if value is not None
                             else self.value(name, port))

    def delete(self, name):
        return self.etcd.delete(self.key(name))

    def start(self):
        self.tp.start()
        return self

    def wait_running(self, names, timeout=30, what=None):
        """Waits until exactly these clusters have an agent; returns
        {cluster: pid}."""
        st = self.tp.wait_state(lambda s: set(running(s)) == set(names),
                                timeout, what or 'agents for %s' %
                                sorted(names))
        return running(st)

    def wait_connected(self, names, timeout=30, replaced=None):
        """Waits until exactly names run and are connected; replaced: a
        {cluster: old pid} whose tunnels must run a new agent by then (a
        changed spec is make-before-break: the old agent stays connected
        until the new one holds the proxy, one agent row each).  Returns
        {cluster: pid}."""
        def done(s):
            conn = connected(s)
            if set(conn) != set(names) or set(running(s)) != set(names):
                return False
            rows = [a['cluster'] for a in s['agents'] if a['pid'] > 0]
            return all(conn[c] != pid and rows.count(c) == 1
                       for c, pid in (replaced or {}).items())
        st = self.tp.wait_state(done, timeout, '%s connected%s' % (
            sorted(names), ', %s replaced' % sorted(replaced)
            if replaced else ''))
        for n in names:
            self.proxy.wait_forward(self.port(n), 15)
        return connected(st)

    def within(self, seconds, pred, what):
        """Polls status until pred(status) is truthy; fails if that took
        longer than seconds (it still waits up to 20 s, to say how long it
        did take).  Returns (status, elapsed)."""
        t0 = time.monotonic()
        st = self.tp.wait_state(pred, 20, what)
        dt = time.monotonic() - t0
        expect(dt <= seconds, '%s took %.2f s (want <= %.1f s)', what, dt,
               seconds)
        self.ctx.log('%s: %.3f s', what, dt)
        return st, dt

    def check_data(self, names, nbytes=64 * 1024):
        for n in names:
            send_and_check('127.0.0.1', self.port(n), nbytes)

    def source(self):
        return self.tp.source()

    def wait_source(self, pred, timeout=20, what='tunnel_source'):
        return self.tp.wait_state(lambda s: pred(s['tunnel_source']),
                                  timeout, what)['tunnel_source']

    def start_in_sync(self, names):
        """Puts each tunnel of names, starts the supervisor and waits until
        all are connected and the source is healthy at the last put's
        revision; returns ({cluster: pid}, the tunnel_source object)."""
        for n in names:
            rev = self.put(n)
        self.start()
        pids = self.wait_connected(names)
        src = self.wait_source(lambda s: s['healthy'] and
                               s['revision'] == rev, 10,
                               'source healthy at revision %d' % rev)
        return pids, src

    def same_pids(self, before, names=None):
        now = running(self.tp.status_json())
        for n in (names or before):
            expect(now.get(n) == before[n], 'tunnel %s: pid %r, want %r '
                   '(untouched)', n, now.get(n), before[n])
        return now

    def pids_alive(self, pids):
        for p in pids:
            expect(procs.alive(p), 'agent pid %d died', p)
