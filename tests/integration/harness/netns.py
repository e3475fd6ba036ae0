"""Network namespaces (iproute2) and listener queries (ss).

Several proxies that all forward the same port collide in one namespace, so
each proxy may run in its own: `ip netns add tp-XXXX`, loopback up, programs
started through `ip netns exec`.  The test reaches inside through unix
sockets bridged by socat (filesystem sockets cross namespaces).
"""

import os
import re
import secrets
import signal
import threading

from .errors import HarnessError
from .procs import run, wait_for, alive, signal_pid
from . import ports

IP = '/usr/sbin/ip' if os.path.exists('/usr/sbin/ip') else 'ip'
SS = '/usr/bin/ss' if os.path.exists('/usr/bin/ss') else 'ss'
SOCAT = '/usr/bin/socat' if os.path.exists('/usr/bin/socat') else 'socat'

_USERS_RX = re.compile(r'pid=(\d+)')


def listeners(netns=None, timeout=10):
    """TCP listeners: list of dicts {addr, port, pids, procs} from ss -ltnpH,
    in netns (a Netns or name) or in the current namespace."""
    argv = [SS, '-ltnpH']
    if netns is not None:
        argv = [IP, 'netns', 'exec', str(netns)] + argv
    out = run(argv, timeout=timeout).stdout
    result = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        local = parts[3]
        addr, _, port = local.rpartition(':')
        try:
            port = int(port)
        except ValueError:
            continue
        users = ' '.join(parts[5:])
        result.append({'addr': addr.strip('[]'), 'port': port,
                       'pids': [int(p) for p in _USERS_RX.findall(users)],
                       'procs': users})
    return result


class Netns:
    """A network namespace owned by an Env: loopback up, deleted on close.

    Processes started inside it with spawn() are Env processes like any
    other; close() also kills whatever is still inside, then deletes it.
    """

    def __init__(self, env, name=None):
        self.env = env
        self.name = name or 'tp-%s' % secrets.token_hex(4)
        self._bridges = {}
        self._bridge_lock = threading.Lock()
        run([IP, 'netns', 'add', self.name])
        self.closed = False
        env._note_netns(self.name)
        try:
            run([IP, '-n', self.name, 'link', 'set', 'lo', 'up'])
        except Exception:
            self.close()
            raise

    def __str__(self):
        return self.name

    def __repr__(self):
        return '<Netns %s>' % self.name

    def wrap(self, argv):
        """argv prefixed to run inside the namespace (ip netns exec execs the
        program itself, so the pid you get is the program's)."""
        return [IP, 'netns', 'exec', self.name] + [str(a) for a in argv]

    def run(self, argv, timeout=30, check=True, input=None):
        """Runs a short command inside the namespace; CompletedProcess."""
        return run(self.wrap(argv), timeout=timeout, check=check, input=input)

    def spawn(self, name, argv, **kw):
        """Starts a long-running program inside; returns an Env Process."""
        return self.env.spawn(name, self.wrap(argv), **kw)

    def pids(self):
        """Pids of processes whose network namespace is this one."""
        cp = run([IP, 'netns', 'pids', self.name], check=False)
        return [int(p) for p in cp.stdout.split()]

    def listeners(self):
        return listeners(self)

    def is_listening(self, port, addr='127.0.0.1'):
        return any(l['port'] == port and l['addr'] in (addr, '0.0.0.0', '*')
                   for l in self.listeners())

    def exists(self):
        return os.path.exists('/run/netns/%s' % self.name)

    # -- reaching inside from the test
    def bridge_to_port(self, port, name=None):
        """A unix socket in the Env dir that connects to 127.0.0.1:port inside
        the namespace (socat, one TCP connection per accepted unix one).
        Returns the socket path.  Note: a refused TCP connect inside shows up
        as an immediately closed unix connection, not as ECONNREFUSED."""
        with self._bridge_lock:
            return self._bridge(port, name)

    def _bridge(self, port, name):
        if port in self._bridges:
            return self._bridges[port]
        path = self.env.path('%s-%s.sock' % (name or self.name, port))
        # -t: after one side's EOF socat gives the other side only 0.5 s
        # (by default) of silence before it quits, which cuts an echo whose
        # reply is slow to start (a client that sends, half-closes and
        # waits, while the tunnel dials its target): allow 30 s.
        p = self.spawn('socat-%s-%d' % (self.name, port),
                       [SOCAT, '-d', '-t', '30',
                        'UNIX-LISTEN:%s,fork,mode=600,unlink-early' % path,
                        'TCP:127.0.0.1:%d' % port])
        ports.wait_unix_listening(path, 10, pid=p.pid, fail_if=p.died)
        self._bridges[port] = path
        return path

    def connect(self, port, timeout=10):
        """A socket connected (through a socat bridge) to 127.0.0.1:port
        inside the namespace."""
        return ports.connect_unix(self.bridge_to_port(port), timeout)

    # -- teardown
    def close(self):
        if self.closed:
            return
        self.closed = True
        # Everything inside was started by this Env (nobody else knows the
        # random name); kill by pid before deleting the namespace.
        pids = self.pids()
        for p in pids:
            signal_pid(p, signal.SIGCONT)
            signal_pid(p, signal.SIGTERM)
        try:
            wait_for(lambda: not any(alive(p) for p in pids), 3,
                     'processes in %s to exit' % self.name)
        except HarnessError:
            for p in pids:
                signal_pid(p, signal.SIGKILL)
        self.env.reap()
        run([IP, 'netns', 'del', self.name], check=False)
        if self.exists():
            raise HarnessError('netns %s still exists after delete' % self.name)
        self.env._forget_netns(self.name)
