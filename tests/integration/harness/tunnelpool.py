"""Thin wrapper around the daemon under test: writes its main config and
tunnel files, starts `BUILD/supervisor/tunnelpool run -c CONFIG`, and reads
its state through `tunnelpool status --json`.

Kept deliberately thin: key names follow DESIGN.md and will be adjusted as
the daemon lands.  Pass extra=/spec_extra= for anything not covered.
"""

import json
import os
import re
import signal
import uuid

from .errors import HarnessError
from . import yamlw
from .keys import Key
from .procs import run, wait_for, read_text, log_mark, wait_log, descendants
from .sshd import ensure_system_user

DEFAULT_WORKER_USER = 'tunnelpool'


class Tunnelpool:
    """The supervisor under test.  Create with Env.tunnelpool(...) (not yet
    started: add tunnels, then start()).

    identity: a Key (its -cert.pub is used as certificate when present).
    known_hosts: path of an OpenSSH known_hosts file.
    Durations are strings like '500ms', '5s'.
    """

    def __init__(self, env, identity, known_hosts, proxy_user='tunnel',
                 host_uuid=None, resync_interval='1s', keepalive=None,
                 backoff=None, max_inflight_dials=None, spawn_rate=None,
                 worker_user=None, worker_path=None, allow_root=None,
                 metrics_listen=None, log_level='debug', log_format='logfmt',
                 extra=None, name='tunnelpool'):
        self.env = env
        self.name = name
        self.binary = env.binary('tunnelpool')
        self.dir = env.mkdir(name, 0o755)
        self.config_path = os.path.join(self.dir, 'tunnelpool.yaml')
        self.tunnels_dir = env.mkdir(os.path.join(name, 'tunnels.d'), 0o755)
        # Never the system's /var/lib/tunnelpool: the etcd snapshot.
        self.state_dir = os.path.join(self.dir, 'state')
        self.control_socket = os.path.join(self.dir, 'control.sock')
        self.log_path = env.path('%s.log' % name)
        env.register_log(self.log_path, 'tunnelpool %s' % name)
        self.proc = None
        self.config = {
            'host_uuid': host_uuid or str(uuid.uuid4()),
            'identity': {'private_key': identity.path
                         if isinstance(identity, Key) else str(identity)},
            'proxy_user': proxy_user,
            'trust': {'known_hosts': str(known_hosts)},
            'tunnels_dir': self.tunnels_dir,
            'state_dir': self.state_dir,
            'resync_interval': resync_interval,
            'control_socket': self.control_socket,
            'log': {'level': log_level, 'format': log_format},
        }
        cert = identity.cert_path if isinstance(identity, Key) else \
            str(identity) + '-cert.pub'
        if os.path.exists(cert):
            self.config['identity']['certificate'] = cert
        if keepalive:
            self.config['keepalive'] = {'interval': keepalive[0],
                                        'count': keepalive[1]}
        if backoff:
            self.config['backoff'] = {'min': backoff[0], 'max': backoff[1]}
        if max_inflight_dials is not None:
            self.config['max_inflight_dials'] = max_inflight_dials
        if spawn_rate is not None:
            self.config['spawn_rate'] = spawn_rate
        # The daemon drops its workers to this user (default 'tunnelpool').
        ensure_system_user(worker_user or DEFAULT_WORKER_USER)
        worker = {'path': worker_path or env.binary('tunnelpool-agent')}
        if worker_user is not None:
            worker['user'] = worker_user
        if allow_root is not None:
            worker['allow_root'] = allow_root
        self.config['worker'] = worker
        # A free port each: parallel runs must not fight over 9465.
        if metrics_listen is None:
            from . import ports
            metrics_listen = '127.0.0.1:%d' % ports.free_port()
        self.config['metrics_listen'] = metrics_listen
        self.metrics_listen = metrics_listen
        if extra:
            self.config.update(extra)

    # -- files
    def write_config(self):
        yamlw.dump(self.config, self.config_path)
        return self.config_path

    def tunnel_path(self, name):
        return os.path.join(self.tunnels_dir, '%s.yaml' % name)

    def add_tunnel(self, name, cluster, dial_addrs, forwards, discovery=False,
                   spec_extra=None):
        """Writes tunnels.d/NAME.yaml.  forwards: [(listen, target)] or
        [{'listen': ..., 'target': ...}] with 'host:port' strings."""
        doc = tunnel_doc(name, cluster, dial_addrs, forwards, discovery,
                         spec_extra)
        return yamlw.dump(doc, self.tunnel_path(name))

    def use_etcd(self, endpoints, prefix, tls=None, username=None,
                 password_file=None, tunnels_dir=True):
        """Adds tunnel_source.etcd to the config (before start()).
        tunnels_dir=False: etcd only, no tunnel files."""
        e = {'endpoints': list(endpoints), 'prefix': prefix}
        if tls:
            e['tls'] = tls
        if username:
            e['username'] = username
            e['password_file'] = password_file
        self.config['tunnel_source'] = {'etcd': e}
        if tunnels_dir:
            self.config['tunnels_dir'] = self.tunnels_dir
        else:
            self.config.pop('tunnels_dir', None)
        return self

    def source(self):
        """status --json's tunnel_source object."""
        return self.status_json()['tunnel_source']

    def write_tunnel_raw(self, name, text):
        """Writes arbitrary (e.g. broken or half-written) tunnel file text."""
        path = self.tunnel_path(name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def remove_tunnel(self, name):
        os.unlink(self.tunnel_path(name))

    # -- lifecycle
    @staticmethod
    def ensure_worker_user(name='tunnelpool'):
        """The unprivileged user workers drop to (packaging's sysusers.d
        entry creates it on real installs)."""
        import pwd
        try:
            pwd.getpwnam(name)
        except KeyError:
            run(['useradd', '--system', '--no-create-home', '--home-dir',
                 '/nonexistent', '--shell', '/usr/sbin/nologin', name],
                check=False)
            pwd.getpwnam(name)

    def start(self, wait_ready=True, timeout=15, args=()):
        """Writes the config and starts `tunnelpool run -c CONFIG`; with
        wait_ready, waits until `status --json` answers."""
        self.ensure_worker_user(self.config['worker'].get('user', 'tunnelpool'))
        self.write_config()
        self.proc = self.env.spawn(self.name, [self.binary, 'run', '-c',
                                               self.config_path] + list(args),
                                   log_path=self.log_path)
        if wait_ready:
            wait_for(self._status_ok, timeout,
                     'tunnelpool control socket %s' % self.control_socket,
                     fail_if=self.proc.died)
        return self

    def _status_ok(self):
        try:
            return self.status_json(timeout=2) is not None
        except HarnessError:
            return False

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def stop(self, timeout=10):
        if self.proc is not None:
            return self.proc.stop(timeout)

    def close(self):
        self.stop()

    def reload(self):
        """SIGHUP (re-read config and tunnels)."""
        self.proc.signal(signal.SIGHUP)

    def worker_pids(self):
        """Children of the supervisor (its workers)."""
        return descendants(self.proc.pid) if self.alive() else []

    # -- control
    def ctl(self, *args, timeout=10, check=True):
        """Runs `tunnelpool ARGS -s CONTROL_SOCKET`."""
        return run([self.binary] + list(args) + ['-s', self.control_socket],
                   timeout=timeout, check=check)

    def control(self, request, timeout=5):
        """One raw request on the control socket: sends the dict as a JSON
        line, returns the parsed reply line (a dict).  For commands the
        CLI does not expose (e.g. test_hook in test-hooks builds)."""
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.control_socket)
            s.sendall((json.dumps(request) + '\n').encode())
            buf = b''
            while not buf.endswith(b'\n'):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except OSError as exc:
            raise HarnessError('control request %r: %s' % (request, exc))
        finally:
            s.close()
        try:
            return json.loads(buf)
        except ValueError as exc:
            raise HarnessError('control reply to %r is not JSON: %s: %r' % (
                request, exc, buf[:500]))

    def metrics_text(self, timeout=5):
        """The body of GET /metrics on metrics_listen."""
        import urllib.request
        with urllib.request.urlopen('http://%s/metrics' % self.metrics_listen,
                                    timeout=timeout) as r:
            return r.read().decode()

    _SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    _LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')

    def metric(self, name, timeout=5, **labels):
        """Value (float) of the sample NAME in /metrics whose labels are
        exactly `labels` (none: the unlabelled sample), or None."""
        for line in self.metrics_text(timeout).splitlines():
            m = self._SAMPLE.match(line)
            if m is None or m.group(1) != name:
                continue
            got = dict(self._LABEL.findall(m.group(2) or ''))
            if got == {k: str(v) for k, v in labels.items()}:
                return float(m.group(3))
        return None

    def count(self, name, **labels):
        """A counter or gauge as an int: 0 while it has no sample (a
        labelled counter appears on its first increment)."""
        v = self.metric(name, **labels)
        return 0 if v is None else int(v)

    def status_json(self, timeout=10):
        """Parsed output of `tunnelpool status --json -s SOCK`."""
        cp = self.ctl('status', '--json', timeout=timeout)
        try:
            return json.loads(cp.stdout)
        except ValueError as exc:
            raise HarnessError('status --json is not JSON: %s\n%s' % (
                exc, cp.stdout[:2000]))

    def wait_state(self, predicate, timeout=20, what='tunnelpool state'):
        """Waits until predicate(status_json()) is truthy; returns the
        status.  Fails early if the supervisor exits."""
        def check():
            st = self.status_json(timeout=5)
            return st if predicate(st) else None
        try:
            return wait_for(check, timeout, what, interval=0.1,
                            fail_if=self.proc.died)
        except HarnessError as exc:
            try:
                last = json.dumps(self.status_json(timeout=5), indent=1)
            except HarnessError as e2:
                last = '(status unavailable: %s)' % e2
            raise HarnessError('%s\n--- last status ---\n%s' % (exc,
                                                                last[-4000:]))

    # -- log
    def wait_connected(self, timeout=30, what='tunnelpool connected'):
        """Waits for an agent in state connected; returns that agent (its
        status --json row: 'pid', 'proxy', ...)."""
        up = lambda s: [a for a in s['agents'] if a['state'] == 'connected']
        return up(self.wait_state(up, timeout, what))[0]

    def log_text(self, since=0):
        return read_text(self.log_path, since)

    def log_mark(self):
        return log_mark(self.log_path)

    def wait_log(self, regex, timeout=10, since=0):
        return wait_log(self.log_path, regex, timeout, since=since,
                        what='tunnelpool log',
                        fail_if=self.proc.died if self.proc else None)


def tunnel_doc(name, cluster, dial_addrs, forwards, discovery=False,
               spec_extra=None):
    """A reverse_tunnel document (a dict) as tunnel files and etcd values
    hold it."""
    fw = [f if isinstance(f, dict) else {'listen': f[0], 'target': f[1]}
          for f in forwards]
    spec = {'cluster_name': cluster, 'dial_addrs': list(dial_addrs),
            'forwards': fw, 'discovery': bool(discovery)}
    if spec_extra:
        spec.update(spec_extra)
    return {'kind': 'reverse_tunnel', 'version': 'v2',
            'metadata': {'name': name}, 'spec': spec}


def tunnel_yaml(*args, **kw):
    """tunnel_doc(...) as YAML text (an etcd value)."""
    return yamlw.dumps(tunnel_doc(*args, **kw))


def one_proxy(env):
    """The usual parts around one proxy: (node_key, echo, proxy, kh) -- the
    node's key, an echo target, sshd 'p1' that authorizes the key, and a
    known_hosts file pinning p1's host keys."""
    node_key = env.keygen('node_key')
    echo = env.echo_server()
    proxy = env.sshd('p1', authorized_keys=[node_key])
    kh = env.known_hosts('known_hosts', proxy.known_hosts_pins())
    return node_key, echo, proxy, kh


def one_proxy_pool(env, clusters=('c1', 'c2'), backoff=('500ms', '2s'),
                   timeout=30):
    """The common operator-test fixture: one sshd proxy, an echo target,
    and a started supervisor (metrics on a free port) with one tunnel per
    cluster, each forwarding its own port to the echo.  Waits until every
    tunnel is connected and its forward bound.  Returns a namespace with
    tp, proxy, echo, fwd (ports, in cluster order), mport and status (the
    status --json seen when everything was up)."""
    from types import SimpleNamespace
    from . import ports
    node_key, echo, proxy, kh = one_proxy(env)
    fwd = ports.free_ports(len(clusters))
    mport = ports.free_port()
    tp = env.tunnelpool(node_key, kh, backoff=backoff,
                        metrics_listen='127.0.0.1:%d' % mport)
    for port, cluster in zip(fwd, clusters):
        tp.add_tunnel(cluster, cluster, [proxy.address()],
                      [('127.0.0.1:%d' % port, '127.0.0.1:%d' % echo.port)])
    tp.start()
    status = tp.wait_state(
        lambda s: len([a for a in s['agents'] if a['state'] == 'connected'])
        == len(clusters), timeout, '%s connected' % ', '.join(clusters))
    for port in fwd:
        proxy.wait_forward(port)
    return SimpleNamespace(tp=tp, proxy=proxy, echo=echo, fwd=fwd,
                           mport=mport, status=status)
