"""Stock OpenSSH sshd proxies, each with its own config in the Env dir.

An Sshd runs `/usr/sbin/sshd -D -e -f CONFIG -E LOG` as root, listening on
127.0.0.1 (a free port in the root namespace, or port 22 inside its own
network namespace, reached through a socat unix-socket bridge and, if asked,
a TCP bridge on a free root-namespace port).
"""

import os
import pwd
import re
import signal

from .errors import HarnessError, WaitTimeout
from . import keys as keymod
from . import ports
from .netns import listeners, SOCAT
from .procs import (run, wait_for, alive, descendants, children, signal_pid,
                    read_text, log_mark, wait_log)

SSHD = '/usr/sbin/sshd'
TUNNEL_USER = 'tunnel'
PRIVSEP_DIR = '/run/sshd'
DISCOVERY_SUBSYSTEM = 'tunnelpool-discovery'
INNER_PORT = 22          # sshd's port inside its own netns

_BIND_FAIL = re.compile(r'Bind to port \d+ on \S+ failed|Cannot bind any '
                        r'address|Address already in use')


def ensure_privsep_dir():
    """sshd refuses to start without its privilege separation directory."""
    os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
    os.chmod(PRIVSEP_DIR, 0o755)


def ensure_user(name=TUNNEL_USER):
    """Creates the login user (home dir, /bin/sh) if absent and makes sure
    the account is not locked ('!' in shadow makes sshd refuse it when
    UsePAM is off).  Returns the pwd entry."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        cp = run(['useradd', '--create-home', '--shell', '/bin/sh',
                  '--comment', 'tunnelpool test proxy user', name],
                 check=False)
        if cp.returncode not in (0, 9):     # 9: created meanwhile
            raise HarnessError('useradd %s failed: %s' % (name, cp.stderr))
        pw = pwd.getpwnam(name)
    if _shadow_locked(name):
        run(['usermod', '-p', '*', name])
    if not os.path.isdir(pw.pw_dir):
        os.makedirs(pw.pw_dir, mode=0o755)
        os.chown(pw.pw_dir, pw.pw_uid, pw.pw_gid)
    return pw


def ensure_system_user(name):
    """Creates an unprivileged system user without a login shell (e.g.
    the daemon's worker user) if absent.  Returns the pwd entry."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    cp = run(['useradd', '--system', '--no-create-home', '--home-dir',
              '/nonexistent', '--shell', '/usr/sbin/nologin', name],
             check=False)
    if cp.returncode not in (0, 9):
        raise HarnessError('useradd %s failed: %s' % (name, cp.stderr))
    return pwd.getpwnam(name)


def _shadow_locked(name):
    try:
        with open('/etc/shadow') as f:
            for line in f:
                fields = line.split(':')
                if fields[0] == name:
                    return fields[1].startswith('!')
    except OSError:
        pass
    return False


class Sshd:
    """One sshd proxy.  Create with Env.sshd(name, **options) (started).

    Options (keyword arguments):
      netns=True|Netns    run in its own (or the given) network namespace
      tcp_bridge=False    with netns: also a root-ns TCP port (self.port)
      host_key_types=('ed25519',)
      host_ca=CA, host_cert_principals=['127.0.0.1'], host_cert_validity
      authorized_keys=[Key or line, ...]   (written to AuthorizedKeysFile)
      trusted_user_ca=CA                    (TrustedUserCAKeys)
      authorized_principals=[...]           (AuthorizedPrincipalsFile)
      permit_listen='127.0.0.1:22001 ...'   (PermitListen; default any)
      allow_tcp_forwarding='remote', gateway_ports='no'
      client_alive=(interval, count)        (ClientAliveInterval/CountMax)
      rekey_limit='1M 10s'                  (RekeyLimit)
      max_startups='10:30:100', max_sessions=10
      discovery=(binary, proxies_file)      (Subsystem tunnelpool-discovery)
      subsystems={'name': 'command line'}
      log_level='DEBUG1', login_grace_time=30, user='tunnel'
      extra=['Option value', ...]           (raw lines appended)
    """

    def __init__(self, env, name, netns=None, tcp_bridge=False,
                 host_key_types=('ed25519',), host_ca=None,
                 host_cert_principals=('127.0.0.1',),
                 host_cert_validity='-5m:+1h', authorized_keys=(),
                 trusted_user_ca=None, authorized_principals=None,
                 permit_listen=None, allow_tcp_forwarding='remote',
                 gateway_ports='no', client_alive=None, rekey_limit=None,
                 max_startups=None, max_sessions=None, discovery=None,
                 subsystems=None, log_level='DEBUG1', login_grace_time=30,
                 user=TUNNEL_USER, extra=()):
        self.env = env
        self.name = name
        self.user = user
        self.dir = env.mkdir(name, 0o755)
        self.config_path = os.path.join(self.dir, 'sshd_config')
        self.authorized_keys_path = os.path.join(self.dir, 'authorized_keys')
        self.principals_path = os.path.join(self.dir, 'authorized_principals')
        self.log_path = env.path('%s.log' % name)
        env.register_log(self.log_path, 'sshd %s' % name)
        if netns is True:
            netns = env.netns()
        self.netns = netns
        self.host = ports.LOOPBACK
        self.listen_port = None          # sshd's own port (in its netns)
        self.port = None                 # client-facing TCP port, if any
        self.unix_socket = None          # netns bridge
        self._tcp_bridge_wanted = tcp_bridge
        self._bridges_started = False
        self._bridge_procs = []
        self.proc = None
        self._old_sessions = set()

        self.opts = dict(
            allow_tcp_forwarding=allow_tcp_forwarding,
            gateway_ports=gateway_ports, permit_listen=permit_listen,
            client_alive=client_alive, rekey_limit=rekey_limit,
            max_startups=max_startups, max_sessions=max_sessions,
            discovery=discovery, subsystems=dict(subsystems or {}),
            log_level=log_level, login_grace_time=login_grace_time,
            trusted_user_ca=trusted_user_ca, extra=list(extra))

        ensure_privsep_dir()
        ensure_user(user)
        self.host_keys = keymod.host_keys(self.dir, name, host_key_types)
        self.host_ca = host_ca
        self.host_certs = []
        if host_ca is not None:
            for k in self.host_keys:
                self.host_certs.append(host_ca.sign_host(
                    k, list(host_cert_principals),
                    identity='%s-%s' % (name, k.type),
                    validity=host_cert_validity))
        self.set_authorized_keys(authorized_keys)
        if authorized_principals is not None:
            keymod.write_lines(self.principals_path, authorized_principals)
            self.opts['authorized_principals'] = True

    # ------------------------------------------------------------------
    # configuration

    def set_authorized_keys(self, entries):
        """Rewrites the AuthorizedKeysFile (read per connection: no restart
        needed).  entries: Key objects or full lines."""
        lines = [keymod.authorized_keys_line(e) if isinstance(e, keymod.Key)
                 else str(e) for e in entries]
        keymod.write_lines(self.authorized_keys_path, lines, 0o644)

    def config_text(self):
        o = self.opts
        lines = [
            '# generated by tests/integration/harness/sshd.py',
            'ListenAddress 127.0.0.1:%d' % self.listen_port,
            'AddressFamily inet',
        ]
        for k in self.host_keys:
            lines.append('HostKey %s' % k.path)
        for c in self.host_certs:
            lines.append('HostCertificate %s' % c)
        lines += [
            'PidFile none',
            'UsePAM no',
            'StrictModes no',        # files live under /tmp (world-writable)
            'PasswordAuthentication no',
            'KbdInteractiveAuthentication no',
            'PubkeyAuthentication yes',
            'PermitRootLogin no',
            'AllowUsers %s' % self.user,
            'AuthorizedKeysFile %s' % self.authorized_keys_path,
            'AllowTcpForwarding %s' % o['allow_tcp_forwarding'],
            'GatewayPorts %s' % o['gateway_ports'],
            'AllowAgentForwarding no',
            'AllowStreamLocalForwarding no',
            'X11Forwarding no',
            'PermitTTY no',
            'PermitUserRC no',
            'PrintMotd no',
            'UseDNS no',
            'LoginGraceTime %s' % o['login_grace_time'],
            'LogLevel %s' % o['log_level'],
        ]
        if o.get('authorized_principals'):
            lines.append('AuthorizedPrincipalsFile %s' % self.principals_path)
        if o['trusted_user_ca'] is not None:
            ca = o['trusted_user_ca']
            lines.append('TrustedUserCAKeys %s' % (
                ca.pub_path if isinstance(ca, keymod.Key) else ca))
        if o['permit_listen']:
            lines.append('PermitListen %s' % o['permit_listen'])
        if o['client_alive']:
            lines.append('ClientAliveInterval %s' % o['client_alive'][0])
            lines.append('ClientAliveCountMax %s' % o['client_alive'][1])
        if o['rekey_limit']:
            lines.append('RekeyLimit %s' % o['rekey_limit'])
        if o['max_startups']:
            lines.append('MaxStartups %s' % o['max_startups'])
        if o['max_sessions'] is not None:
            lines.append('MaxSessions %s' % o['max_sessions'])
        if o['discovery']:
            binary, proxies_file = o['discovery']
            lines.append('Subsystem %s %s -f %s' % (
                DISCOVERY_SUBSYSTEM, binary, proxies_file))
        for sname, cmd in o['subsystems'].items():
            lines.append('Subsystem %s %s' % (sname, cmd))
        lines += list(o['extra'])
        return '\n'.join(lines) + '\n'

    def configure(self, **changes):
        """Changes options (same names as the constructor's) for the next
        start/restart/reload."""
        for k, v in changes.items():
            if k not in self.opts:
                raise HarnessError('unknown sshd option %r' % k)
            self.opts[k] = v

    def _write_config(self):
        with open(self.config_path, 'w') as f:
            f.write(self.config_text())
        cp = run([SSHD, '-t', '-f', self.config_path], check=False)
        if cp.returncode != 0:
            raise HarnessError('sshd -t rejects %s:\n%s%s\n--- config ---\n%s'
                               % (self.config_path, cp.stdout, cp.stderr,
                                  self.config_text()))

    # ------------------------------------------------------------------
    # lifecycle

    def start(self, timeout=10):
        """Starts the listener (retrying on a port race) and, in a netns,
        the bridges.  Returns self."""
        if self.proc is not None and self.proc.alive():
            raise HarnessError('sshd %s already running' % self.name)
        keep_port = self.listen_port is not None
        last = None
        for _attempt in range(6):
            if self.netns is not None:
                self.listen_port = INNER_PORT
            elif not keep_port:
                self.listen_port = ports.free_port()
            self._write_config()
            mark = log_mark(self.log_path)
            argv = [SSHD, '-D', '-e', '-f', self.config_path,
                    '-E', self.log_path]
            if self.netns is not None:
                argv = self.netns.wrap(argv)
            # Owned here, not registered: close() must see the listener
            # alive to find its sessions.
            self.proc = self.env.spawn('sshd-%s' % self.name, argv,
                                       log_path=self.env.path(
                                           '%s.stderr' % self.name),
                                       register=False)
            rx = r'Server listening on 127\.0\.0\.1 port %d\.' % \
                self.listen_port
            try:
                wait_log(self.log_path, rx, timeout, since=mark,
                         what='sshd %s log' % self.name,
                         fail_if=self.proc.died)
                break
            except HarnessError as exc:
                last = exc
                self.proc.stop()
                text = read_text(self.log_path, mark) + self.proc.log_text()
                if not _BIND_FAIL.search(text):
                    raise HarnessError('sshd %s did not start: %s\n%s' % (
                        self.name, exc, self.proc.log_text()[-2000:]))
                self.env.log('sshd %s: port %d taken, retrying' % (
                    self.name, self.listen_port))
        else:
            raise HarnessError('sshd %s: could not bind: %s' % (self.name,
                                                                 last))
        if self.netns is None:
            self.port = self.listen_port
        else:
            self._start_bridges()
        self.env.log('sshd %s up: pid %d, %s' % (self.name, self.proc.pid,
                                                 self.describe()))
        return self

    def describe(self):
        where = 'netns %s 127.0.0.1:%d' % (self.netns, self.listen_port) \
            if self.netns is not None else '127.0.0.1:%d' % self.listen_port
        if self.unix_socket:
            where += ', unix %s' % self.unix_socket
        if self.netns is not None and self.port:
            where += ', tcp bridge 127.0.0.1:%d' % self.port
        return where

    def _start_bridges(self):
        if self._bridges_started:
            return
        self.unix_socket = self.env.path('%s.sock' % self.name)
        p = self.netns.spawn('socat-%s-unix' % self.name, [
            SOCAT, '-d', 'UNIX-LISTEN:%s,fork,mode=600,unlink-early'
            % self.unix_socket, 'TCP:127.0.0.1:%d' % self.listen_port],
            register=False)
        ports.wait_unix_listening(self.unix_socket, 10, pid=p.pid,
                                  fail_if=p.died)
        self._bridge_procs.append(p)
        if self._tcp_bridge_wanted:
            for _attempt in range(6):
                port = ports.free_port()
                p = self.env.spawn('socat-%s-tcp' % self.name, [
                    SOCAT, '-d', 'TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr'
                    % port, 'UNIX-CONNECT:%s' % self.unix_socket],
                    register=False)
                try:
                    ports.wait_listening(port, 10, fail_if=p.died)
                    self.port = port
                    self._bridge_procs.append(p)
                    break
                except HarnessError:
                    p.stop()
            else:
                raise HarnessError('sshd %s: no TCP bridge port' % self.name)
        self._bridges_started = True

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def session_pids(self):
        """Per-connection sshd processes: direct children of the listener
        (each is a connection's privileged monitor; its own child is the
        unprivileged 'sshd: tunnel@notty')."""
        if not self.alive():
            return []
        kids = [p for p in children(self.proc.pid) if alive(p)]
        self._old_sessions.update(kids)
        return kids

    def all_pids(self):
        """Listener, all its descendants, and sessions seen earlier (they
        outlive a listener restart with keep_sessions=True)."""
        pids = set()
        if self.alive():
            pids.add(self.proc.pid)
            pids.update(descendants(self.proc.pid))
        for s in list(self._old_sessions):
            if alive(s):
                pids.add(s)
                pids.update(descendants(s))
            else:
                self._old_sessions.discard(s)
        return sorted(p for p in pids if alive(p))

    def session_tree_pids(self):
        return [p for p in self.all_pids() if p != self.pid]

    def _kill_sessions(self, sig=signal.SIGTERM, grace=3.0):
        self.session_pids()
        pids = self.session_tree_pids()
        for p in pids:
            signal_pid(p, signal.SIGCONT)
            signal_pid(p, sig)
        try:
            wait_for(lambda: not any(alive(p) for p in pids), grace,
                     'sshd %s sessions to exit' % self.name)
        except WaitTimeout:
            for p in pids:
                signal_pid(p, signal.SIGKILL)
            wait_for(lambda: not any(alive(p) for p in pids), 5,
                     'sshd %s sessions to die' % self.name)

    def stop(self, sessions=True):
        """SIGTERM the listener (then SIGKILL), and with sessions=True every
        per-connection process too: the proxy goes away, clients see their
        TCP connections closed.  sessions=False leaves them running (a plain
        sshd restart on a real host)."""
        if self.proc is None:
            return
        self.session_pids()
        if self.proc.alive():
            self.proc.stop()
        if sessions:
            self._kill_sessions()
        self.env.reap()

    def kill(self):
        """SIGKILL listener and every session at once (a crash)."""
        if self.proc is None:
            return
        # Stopped first, the listener forks no session after the snapshot
        # below (one accepted in between would survive the crash).
        if self.alive():
            self.proc.signal(signal.SIGSTOP)
        self.session_pids()
        pids = self.all_pids()
        for p in pids:
            signal_pid(p, signal.SIGKILL)
        self.proc.kill()
        wait_for(lambda: not any(alive(p) for p in pids), 5,
                 'sshd %s to die' % self.name)
        self.env.reap()

    def restart(self, keep_sessions=False, timeout=10):
        """Stop and start on the same port."""
        self.stop(sessions=not keep_sessions)
        return self.start(timeout)

    def reload(self, timeout=10):
        """SIGHUP: sshd re-execs itself with the (re-written) config, same
        pid, existing sessions untouched."""
        self._write_config()
        mark = log_mark(self.log_path)
        self.session_pids()
        self.proc.signal(signal.SIGHUP)
        wait_log(self.log_path, r'Server listening on 127\.0\.0\.1 port %d\.'
                 % self.listen_port, timeout, since=mark,
                 what='sshd %s reload' % self.name, fail_if=self.proc.died)

    def pause(self, listener=True, sessions=True):
        """SIGSTOP: the proxy hangs with its TCP connections open (a dead
        host that never sends a FIN)."""
        if listener and self.alive():
            self.proc.signal(signal.SIGSTOP)
        if sessions:
            self.session_pids()
            for p in self.session_tree_pids():
                signal_pid(p, signal.SIGSTOP)

    def resume(self, listener=True, sessions=True):
        if sessions:
            for p in self.session_tree_pids():
                signal_pid(p, signal.SIGCONT)
        if listener and self.alive():
            self.proc.signal(signal.SIGCONT)

    def close(self):
        """stop() plus the socat bridges (they outlive stop/start: they are
        the network path, not the proxy)."""
        self.stop(sessions=True)
        for p in self._bridge_procs:
            p.stop()
        self._bridge_procs = []
        self._bridges_started = False

    # ------------------------------------------------------------------
    # observing

    def log_text(self, since=0):
        return read_text(self.log_path, since)

    def log_mark(self):
        return log_mark(self.log_path)

    def wait_log(self, regex, timeout=10, since=0):
        return wait_log(self.log_path, regex, timeout, since=since,
                        what='sshd %s log' % self.name)

    def accepted(self, since=0):
        """List of (user, method-detail) of accepted logins in the log."""
        return re.findall(r'Accepted publickey for (\S+) from \S+ port \d+ '
                          r'ssh2: (.*)', self.log_text(since))

    def open_channels(self, since=0):
        """{channel id: type} of the channels sshd's log (LogLevel DEBUG1)
        shows created and not freed, e.g. {'0': 'port-listener'} for a
        remote forward with no connection.  Ids are per session: meaningful
        with one client session."""
        out = {}
        for line in self.log_text(since).splitlines():
            m = re.search(r'channel (\d+): new (\S+)', line)
            if m:
                out[m.group(1)] = m.group(2)
            m = re.search(r'channel (\d+): free', line)
            if m:
                out.pop(m.group(1), None)
        return out

    def forwards(self):
        """Set of (addr, port) remote-forward listeners owned by this sshd's
        processes, in its network namespace."""
        mine = set(self.all_pids())
        out = set()
        for l in listeners(self.netns):
            if l['port'] == self.listen_port and self.proc and \
                    self.proc.pid in l['pids']:
                continue
            if mine.intersection(l['pids']):
                out.add((l['addr'], l['port']))
        return out

    def has_forward(self, port, addr='127.0.0.1'):
        return (addr, port) in self.forwards()

    def wait_forward(self, port, timeout=10, addr='127.0.0.1'):
        return wait_for(lambda: self.has_forward(port, addr), timeout,
                        'remote forward %s:%d on sshd %s' % (addr, port,
                                                             self.name))

    def wait_no_forward(self, port, timeout=10, addr='127.0.0.1'):
        return wait_for(lambda: not self.has_forward(port, addr), timeout,
                        'no remote forward %s:%d on sshd %s' % (addr, port,
                                                                self.name))

    def connect_forward(self, port, timeout=10):
        """A socket connected to 127.0.0.1:port where this sshd listens
        (through a unix bridge into its netns if it has one)."""
        if self.netns is not None:
            return self.netns.connect(port, timeout)
        return ports.connect(ports.LOOPBACK, port, timeout)

    def run_in_ns(self, argv, timeout=30, check=True, input=None):
        """Runs a command in this sshd's namespace (or here if none)."""
        if self.netns is not None:
            return self.netns.run(argv, timeout, check, input)
        return run(argv, timeout=timeout, check=check, input=input)

    # ------------------------------------------------------------------
    # what clients need

    def address(self):
        """'127.0.0.1:PORT' for TCP clients (root-ns port or TCP bridge)."""
        if not self.port:
            raise HarnessError('sshd %s has no root-namespace TCP port '
                               '(start it with tcp_bridge=True)' % self.name)
        return '%s:%d' % (self.host, self.port)

    def proxy_command(self):
        """ssh -o ProxyCommand=... reaching this sshd through its unix
        bridge (netns only)."""
        return '%s - UNIX-CONNECT:%s' % (SOCAT, self.unix_socket)

    def known_hosts_pins(self, host=None, port=None):
        """Plain known_hosts lines pinning this sshd's host keys for
        host:port (default: its own client-facing address)."""
        host = host or self.host
        port = port or self.port or 22
        return [keymod.known_hosts_pin(host, k, port) for k in self.host_keys]

    def host_fingerprints(self):
        return [k.fingerprint() for k in self.host_keys]
