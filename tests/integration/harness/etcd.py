"""A real etcd (Debian's etcd-server 3.4) on 127.0.0.1 for scenarios: one
member or a cluster of several, each started by PID and stopped by PID, its
data dir in the scenario's work dir, on free ports from harness.ports.
etcdctl (etcd-client) drives it.  Also a socat TCP relay (Relay) to cut the
path between the supervisor and etcd, connections included.

    cluster = ctx.etcd('etcd', members=3)            # started
    cluster.put('/tp/a', text); cluster.delete('/tp/a')
    cluster.members[0].kill(); cluster.members[0].start()
    cluster.compact(cluster.revision())
    tls = tlscerts.make(ctx.path('pki')); ctx.etcd('etcd', tls=tls)
    cluster.enable_auth({'tp': 'secret'}, read_prefix='/tp/')
"""

import json
import os
import signal
import time

from .errors import HarnessError
from . import ports, procs

ETCD = '/usr/bin/etcd'
ETCDCTL = '/usr/bin/etcdctl'


class Member:
    def __init__(self, cluster, index, client_port, peer_port):
        self.cluster = cluster
        self.env = cluster.env
        self.index = index
        self.name = '%s-m%d' % (cluster.name, index)
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = self.env.path('%s.data' % self.name)
        self.log_path = self.env.path('%s.log' % self.name)
        self.env.register_log(self.log_path, 'etcd %s' % self.name)
        self.proc = None

    @property
    def scheme(self):
        return 'https' if self.cluster.tls else 'http'

    def url(self):
        return '%s://127.0.0.1:%d' % (self.scheme, self.client_port)

    def peer_url(self):
        return 'http://127.0.0.1:%d' % self.peer_port

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def argv(self):
        c = self.cluster
        a = [ETCD, '--name', self.name, '--data-dir', self.data_dir,
             '--listen-client-urls', self.url(),
             '--advertise-client-urls', self.url(),
             '--listen-peer-urls', self.peer_url(),
             '--initial-advertise-peer-urls', self.peer_url(),
             '--initial-cluster', c.initial_cluster(),
             '--initial-cluster-token', c.name,
             '--initial-cluster-state', 'new',
             '--heartbeat-interval', '50', '--election-timeout', '500',
             '--log-outputs', 'stderr', '--logger', 'zap']
        if c.tls:
            a += ['--cert-file', c.tls.server_cert, '--key-file',
                  c.tls.server_key, '--trusted-ca-file', c.tls.ca,
                  '--client-cert-auth']
        if c.token_ttl:
            a += ['--auth-token-ttl', str(c.token_ttl)]
        return a + list(c.extra_args)

    def start(self):
        """Starts this member (again: same data dir, same ports)."""
        if self.proc is not None and self.proc.alive():
            return self
        self.proc = self.env.spawn(self.name, self.argv(),
                                   log_path=self.log_path, register=False)
        return self

    def wait_listening(self, timeout=30):
        ports.wait_listening(self.client_port, timeout,
                             fail_if=self.proc.died)

    def kill(self):
        """SIGKILL (a crash) and reap."""
        if self.proc is not None:
            self.proc.kill()

    def stop(self):
        if self.proc is not None:
            self.proc.stop(10)

    def pause(self):
        self.proc.signal(signal.SIGSTOP)

    def resume(self):
        self.proc.signal(signal.SIGCONT)

    def alive(self):
        return self.proc is not None and self.proc.alive()


class Etcd:
    """An etcd cluster of `members` members on loopback (started by
    Env.etcd).  tls: a harness.tlscerts.Pki (https, client certificates
    required).  token_ttl: --auth-token-ttl seconds."""

    def __init__(self, env, name='etcd', members=1, tls=None, token_ttl=None,
                 extra_args=()):
        self.env = env
        self.name = name
        self.tls = tls
        self.token_ttl = token_ttl
        self.extra_args = list(extra_args)
        self.root_password = None
        ps = ports.free_ports(2 * members)
        self.members = [Member(self, i, ps[2 * i], ps[2 * i + 1])
                        for i in range(members)]

    def initial_cluster(self):
        return ','.join('%s=%s' % (m.name, m.peer_url())
                        for m in self.members)

    def endpoints(self):
        return [m.url() for m in self.members]

    def start(self, timeout=60):
        for m in self.members:
            m.start()
        for m in self.members:
            m.wait_listening(timeout)
        procs.wait_for(self.healthy, timeout, 'etcd %s healthy' % self.name,
                       interval=0.2)
        return self

    def healthy(self):
        cp = self.ctl('endpoint', 'health', check=False, timeout=10,
                      endpoints=[m.url() for m in self.members if m.alive()])
        return cp.returncode == 0

    def close(self):
        for m in self.members:
            m.stop()

    # -- etcdctl
    def ctl(self, *args, check=True, timeout=20, endpoints=None, user=None,
            input=None):
        """Runs etcdctl (API v3) against the live members (or endpoints);
        as root once auth is enabled, or as user ('name:password')."""
        eps = endpoints or [m.url() for m in self.members if m.alive()] \
            or self.endpoints()
        argv = [ETCDCTL, '--endpoints', ','.join(eps),
                '--dial-timeout', '3s', '--command-timeout', '10s']
        if self.tls:
            argv += ['--cacert', self.tls.ca, '--cert', self.tls.client_cert,
                     '--key', self.tls.client_key]
        if user is None and self.root_password:
            user = 'root:%s' % self.root_password
        if user:
            argv += ['--user', user]
        env = dict(os.environ, ETCDCTL_API='3')
        return procs.run(argv + [str(a) for a in args], check=check,
                         timeout=timeout, env=env, input=input)

    def put(self, key, value):
        """Puts value (str or bytes) at key; returns the new revision."""
        if isinstance(value, bytes):
            value = value.decode('utf-8', 'surrogateescape')
        # '--' ends options: a value may start with '-' ("---").
        self._write('put', '--', key, value)
        return self.revision()

    def delete(self, key):
        self._write('del', '--', key)
        return self.revision()

    # etcd's answers to a proposal lost in an election (a member was just
    # killed, or heartbeats were late on a loaded machine).  Measured: a
    # put sent to a follower while its leader was dead was forwarded to
    # the dead leader and dropped; etcd said "request timed out" 6 s later
    # (5 s + 2 election timeouts), the new leader long elected.  The write
    # may or may not have been applied; the same write again is harmless.
    _LEADER_LOST = ('request timed out', 'leader changed', 'no leader')

    def _write(self, *args, attempts=10):
        """A put or delete, tried again while the cluster elects a
        leader: the scenarios test the supervisor, not etcd's elections."""
        for i in range(attempts):
            cp = self.ctl(*args, check=False)
            if cp.returncode == 0:
                return cp
            if not any(m in cp.stderr for m in self._LEADER_LOST) or \
                    i == attempts - 1:
                raise HarnessError('etcdctl %s failed (exit %d):\n%s%s' % (
                    ' '.join(map(str, args)), cp.returncode, cp.stdout,
                    cp.stderr))
            time.sleep(0.5)

    def revision(self):
        cp = self.ctl('endpoint', 'status', '-w', 'json')
        return max(int(s['Status']['header']['revision'])
                   for s in json.loads(cp.stdout))

    def compact(self, revision):
        self.ctl('compact', str(revision), '--physical')

    def keys(self, prefix):
        cp = self.ctl('get', '--prefix', '--keys-only', prefix)
        return [l for l in cp.stdout.splitlines() if l]

    def enable_auth(self, users, read_prefix):
        """Creates root (random password) and each user {name: password}
        with read access to read_prefix, then enables authentication."""
        import secrets
        self.root_password = None
        rootpw = secrets.token_hex(8)
        self.ctl('user', 'add', 'root:%s' % rootpw)
        self.ctl('user', 'grant-role', 'root', 'root')
        self.ctl('role', 'add', 'tunnelpool-read')
        self.ctl('role', 'grant-permission', '--prefix=true',
                 'tunnelpool-read', 'read', read_prefix)
        for name, pw in users.items():
            self.ctl('user', 'add', '%s:%s' % (name, pw))
            self.ctl('user', 'grant-role', name, 'tunnelpool-read')
        self.ctl('auth', 'enable')
        self.root_password = rootpw


class Relay:
    """socat TCP relay 127.0.0.1:port -> 127.0.0.1:target (one forked
    child per connection).  stop() kills the listener and every relayed
    connection (a cut network path); start() listens again on the same
    port."""

    def __init__(self, env, name, target_port, port=None):
        self.env = env
        self.name = name
        self.target_port = target_port
        self.port = port or ports.free_port()
        self.proc = None

    def url(self, scheme='http'):
        return '%s://127.0.0.1:%d' % (scheme, self.port)

    def start(self, timeout=10):
        self.proc = self.env.spawn(
            self.name, ['/usr/bin/socat',
                        'TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork'
                        % self.port, 'TCP:127.0.0.1:%d' % self.target_port],
            register=False)
        ports.wait_listening(self.port, timeout, fail_if=self.proc.died)
        return self

    def stop(self):
        if self.proc is None:
            return
        kids = procs.descendants(self.proc.pid)
        self.proc.stop(5)
        procs.kill_pids(kids)
        procs.wait_for(lambda: not any(procs.alive(p) for p in kids), 10,
                       'relay %s connections to close' % self.name)
        self.env.reap()
        self.proc = None

    def close(self):
        self.stop()


def check_tools():
    for t in (ETCD, ETCDCTL):
        if not os.access(t, os.X_OK):
            raise HarnessError('%s missing (apt-get install etcd-server '
                               'etcd-client)' % t)
