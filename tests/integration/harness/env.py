"""Env: everything one scenario starts, torn down in reverse order.

A scenario gets an Env as its `ctx`.  Every server, process and namespace it
creates through the Env is registered here and closed at the end, even when
the scenario fails or times out.  The Env also writes a manifest (pids with
start times, namespaces, logs) so that the driver can clean up after a
runner that had to be killed.
"""

import json
import os
import sys
import time
import traceback

from .errors import HarnessError
from . import keys as keymod
from . import procs
from .procs import Process

BINARIES = {
    'tunnelpool': 'supervisor/tunnelpool',
    'tunnelpool-top': 'supervisor/tunnelpool-top',
    'tunnelpool-agent': 'worker/tunnelpool-agent',
    'tunnelpool-discovery': 'proxy/tunnelpool-discovery',
    # test tools (tests/tools/)
    'worker-drive': 'tests/worker-drive',
    'agent-serve': 'tests/agent-serve',
}

STRAY_GRACE = 3.0      # seconds strays get at teardown before they count

# System programs the harness drives (missing ones fail, never skip).
TOOLS = {
    'sshd': '/usr/sbin/sshd', 'ssh': '/usr/bin/ssh',
    'ssh-keygen': '/usr/bin/ssh-keygen', 'haproxy': '/usr/sbin/haproxy',
    'socat': '/usr/bin/socat', 'ip': '/usr/sbin/ip', 'ss': '/usr/bin/ss',
    'etcd': '/usr/bin/etcd', 'etcdctl': '/usr/bin/etcdctl',
    'openssl': '/usr/bin/openssl',
}


def find_binary(build_dir, name):
    """Path of a project binary in the build dir, or None if not built."""
    if not build_dir:
        return None
    sub = BINARIES.get(name)
    if sub:
        p = os.path.join(build_dir, sub)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    for root, dirs, files in os.walk(build_dir):
        dirs[:] = [d for d in dirs if not d.startswith('meson-')
                   and not d.endswith('.p')]
        if name in files:
            p = os.path.join(root, name)
            if os.access(p, os.X_OK):
                return p
    return None


def build_options(build_dir):
    """A build dir's meson options ({name: value}) from meson's
    introspection data; {} if it cannot be read."""
    try:
        with open(os.path.join(build_dir or '', 'meson-info',
                               'intro-buildoptions.json')) as f:
            return {o['name']: o['value'] for o in json.load(f)}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def find_tool(name):
    p = TOOLS.get(name, name)
    if os.path.isabs(p):
        return p if os.access(p, os.X_OK) else None
    from shutil import which
    return which(p)


class Env:
    """Owns one scenario's work dir, processes, namespaces and servers."""

    def __init__(self, workdir, build_dir=None, name='scenario',
                 out=sys.stdout, timeout=None):
        self.dir = os.path.abspath(workdir)
        self.build_dir = os.path.abspath(build_dir) if build_dir else None
        self.name = name
        self.timeout = timeout
        self._out = out
        self._t0 = time.monotonic()
        self._stack = []              # (label, close callable)
        self._processes = []          # every Process ever spawned
        self._netns = []
        self._logs = []               # (path, label)
        self._manifest = os.path.join(self.dir, 'manifest.json')
        self._closed = False
        os.chmod(self.dir, 0o755)     # sshd reads files here as 'tunnel'
        self._write_manifest()

    # ------------------------------------------------------------------
    # paths, logging, binaries

    def path(self, *names):
        """A path inside the work dir."""
        return os.path.join(self.dir, *names)

    def mkdir(self, name, mode=0o700):
        p = self.path(name)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
        return p

    def elapsed(self):
        return time.monotonic() - self._t0

    def log(self, msg, *args):
        """A timestamped progress line (shown when the scenario fails)."""
        if args:
            msg = msg % args
        self._out.write('[%7.2fs] %s\n' % (self.elapsed(), msg))
        self._out.flush()

    def register_log(self, path, label):
        """Adds a file to the logs the driver dumps on failure."""
        if all(p != path for p, _ in self._logs):
            self._logs.append((path, label))
            self._write_manifest()

    def binary(self, name):
        """Path of a built project binary; HarnessError if not built (the
        driver skips scenarios whose REQUIRES lists it, so this only fires
        for binaries a scenario forgot to declare)."""
        p = find_binary(self.build_dir, name)
        if p is None:
            raise HarnessError('%s is not built in %s (declare it in REQUIRES'
                               '["binaries"])' % (name, self.build_dir))
        return p

    def sandbox(self):
        """The worker sandbox backend the build under test was configured
        with ('seccomp' or 'none'; the ASan+UBSan build uses 'none')."""
        return build_options(self.build_dir).get('sandbox', 'seccomp')

    def have_binary(self, name):
        return find_binary(self.build_dir, name) is not None

    # ------------------------------------------------------------------
    # registration

    def defer(self, close, label=None):
        """Registers close() to run at teardown (reverse order)."""
        self._stack.append((label or repr(close), close))
        return close

    def add(self, obj, label=None):
        """Registers obj.close() for teardown; returns obj."""
        self.defer(obj.close, label or repr(obj))
        return obj

    def spawn(self, name, argv, log_path=None, env=None, cwd=None,
              stdout=None, stdin=None, register=True):
        """Starts a program (own session, output appended to
        WORKDIR/NAME.out unless log_path) and registers it; returns a
        Process.  register=False: an owner object stops it (it is still
        swept at teardown)."""
        import subprocess
        log_path = log_path or self.path('%s.out' % name)
        p = Process(name, argv, log_path, env=env, cwd=cwd, stdout=stdout,
                    stdin=subprocess.DEVNULL if stdin is None else stdin)
        self._processes.append(p)
        self.register_log(log_path, name)
        if register:
            self.defer(p.stop, 'process %s pid %d' % (name, p.pid))
        self._write_manifest()
        return p

    def _note_netns(self, name):
        self._netns.append(name)
        self._write_manifest()

    def _forget_netns(self, name):
        if name in self._netns:
            self._netns.remove(name)
        self._write_manifest()

    def _write_manifest(self):
        data = {
            'runner_pid': os.getpid(),
            'processes': [[p.pid, p.start_time, p.name]
                          for p in self._processes],
            'netns': list(self._netns),
            'logs': self._logs,
        }
        tmp = self._manifest + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(data, f)
        os.replace(tmp, self._manifest)

    # ------------------------------------------------------------------
    # factories

    def netns(self, name=None):
        """A new network namespace (loopback up), deleted at teardown."""
        from .netns import Netns
        ns = Netns(self, name)
        return self.add(ns, 'netns %s' % ns.name)

    def sshd(self, name='sshd', start=True, **options):
        """A stock sshd proxy (see harness.sshd.Sshd for the options),
        started unless start=False."""
        from .sshd import Sshd
        if options.get('netns') is True:
            options['netns'] = self.netns()
        s = Sshd(self, name, **options)
        self.add(s, 'sshd %s' % name)
        if start:
            s.start()
        return s

    def haproxy(self, backends, name='haproxy', start=True, **options):
        from .haproxy import Haproxy
        h = Haproxy(self, name, backends, **options)
        self.add(h, 'haproxy %s' % name)
        if start:
            h.start()
        return h

    def echo_server(self, name='echo', port=0):
        from .target import EchoServer
        return self.add(EchoServer(self, name, port), 'echo %s' % name)

    def unix_echo_server(self, name='unix-echo', path=None):
        from .target import UnixEchoServer
        path = path or self.path('%s.sock' % name)
        return self.add(UnixEchoServer(self, path, name), 'unix echo %s' % name)

    def http_server(self, name='http', port=0):
        from .target import HttpServer
        return self.add(HttpServer(self, name, port), 'http %s' % name)

    def keygen(self, name, type='ed25519', bits=None):
        """A new key pair at WORKDIR/NAME."""
        return keymod.generate(self.path(name), type, bits)

    def ca(self, name, type='ed25519'):
        return keymod.generate_ca(self.path(name), type)

    def known_hosts(self, name, lines):
        return keymod.write_known_hosts(self.path(name), lines)

    def ssh_forward(self, name, proxy, key, known_hosts, forwards, **kw):
        """OpenSSH `ssh -N -R ...` (harness.sshclient.SshForward)."""
        from .sshclient import SshForward
        return self.add(SshForward(self, name, proxy, key, known_hosts,
                                   forwards, **kw), 'ssh %s' % name)

    def ssh_subsystem(self, name, proxy, key, known_hosts, subsystem, **kw):
        from .sshclient import SshSubsystem
        return self.add(SshSubsystem(self, name, proxy, key, known_hosts,
                                     subsystem, **kw), 'ssh -s %s' % name)

    def etcd(self, name='etcd', members=1, start=True, **kw):
        """A real etcd (harness.etcd.Etcd) of `members` members on
        loopback, started unless start=False."""
        from .etcd import Etcd, check_tools
        check_tools()
        e = self.add(Etcd(self, name, members, **kw), 'etcd %s' % name)
        if start:
            e.start()
        return e

    def relay(self, name, target_port):
        """A started socat TCP relay to 127.0.0.1:target_port
        (harness.etcd.Relay)."""
        from .etcd import Relay
        return self.add(Relay(self, name, target_port), 'relay %s' %
                        name).start()

    def worker_drive(self, name, proxy, key, **kw):
        """One tunnelpool-agent run by tests/tools/worker-drive against
        proxy, without the supervisor (harness.workerdrive.WorkerDrive),
        started."""
        from .workerdrive import WorkerDrive
        return self.add(WorkerDrive(self, name, proxy, key, **kw),
                        'worker-drive %s' % name)

    def tunnelpool(self, identity, known_hosts, **kw):
        """The daemon under test (harness.tunnelpool.Tunnelpool), not yet
        started."""
        from .tunnelpool import Tunnelpool
        return self.add(Tunnelpool(self, identity, known_hosts, **kw),
                        'tunnelpool')

    # ------------------------------------------------------------------
    # leftovers and teardown

    def reap(self):
        """Reaps orphaned zombies reparented to this runner, and lets every
        Process notice its exit."""
        for p in self._processes:
            p.poll()
        return procs.reap_zombie_children()

    def leftovers(self):
        """Live descendants of this runner as 'pid title' strings: what a
        scenario has not stopped (yet)."""
        self.reap()
        out = []
        for pid in procs.descendants(os.getpid()):
            if procs.alive(pid):
                try:
                    out.append('%d %s' % (pid, procs.title(pid)))
                except OSError:
                    pass
        return out

    def find_processes(self, substr):
        """Live descendants of this runner whose command line contains
        substr (e.g. a subsystem helper orphaned by sshd)."""
        out = []
        for pid in procs.descendants(os.getpid()):
            try:
                if procs.alive(pid) and substr in procs.title(pid):
                    out.append(pid)
            except OSError:
                pass
        return out

    def cleanup(self):
        """Closes everything in reverse order of creation, then kills any
        descendant still alive and deletes remaining namespaces.  Returns a
        list of problems (empty when the teardown was clean)."""
        if self._closed:
            return []
        self._closed = True
        problems = []
        while self._stack:
            label, close = self._stack.pop()
            try:
                close()
            except BaseException as exc:       # keep tearing down
                problems.append('closing %s: %s: %s' % (
                    label, type(exc).__name__, exc))
                self._out.write(traceback.format_exc())
        for p in self._processes:
            if p.alive():
                problems.append('process %s pid %d still running' % (
                    p.name, p.pid))
                p.kill()
        # Strays (e.g. a subsystem helper whose session just closed) get a
        # moment to exit on their own before they count as left behind.
        try:
            procs.wait_for(lambda: not self.leftovers(), STRAY_GRACE,
                           'stray processes to exit')
        except procs.WaitTimeout:
            pass
        leaked = procs.kill_descendants(os.getpid())
        self.reap()
        if leaked:
            problems.append('processes left behind (killed): %s' %
                            '; '.join(leaked))
        for ns in list(self._netns):
            from .netns import IP
            procs.run([IP, 'netns', 'del', ns], check=False)
            problems.append('netns %s left behind (deleted)' % ns)
            self._forget_netns(ns)
        self._write_manifest()
        return problems
