"""OpenSSH's own client (ssh -N -R, ssh -s), used to prove the harness and
as a reference behaviour next to the daemon."""

import os
import subprocess

from .errors import HarnessError
from .keys import Key
from .procs import wait_for, read_text

SSH = '/usr/bin/ssh'


def ssh_argv(key, known_hosts, host='127.0.0.1', port=22, user='tunnel',
             proxy_command=None, host_key_alias=None, log_path=None,
             options=(), verbose=1):
    """Common ssh argv: no user/system config, no agent, only `key` (and its
    -cert.pub when present), strict host key checking against known_hosts."""
    key_path = key.path if isinstance(key, Key) else str(key)
    argv = [SSH, '-F', '/dev/null', '-i', key_path,
            '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none',
            '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes',
            '-o', 'UserKnownHostsFile=%s' % known_hosts,
            '-o', 'GlobalKnownHostsFile=/dev/null',
            '-o', 'UpdateHostKeys=no', '-o', 'ConnectTimeout=10',
            '-o', 'ControlMaster=no', '-o', 'ControlPath=none',
            '-p', str(port), '-l', user]
    if os.path.exists(key_path + '-cert.pub'):
        argv += ['-o', 'CertificateFile=%s-cert.pub' % key_path]
    if proxy_command:
        argv += ['-o', 'ProxyCommand=%s' % proxy_command]
    if host_key_alias:
        argv += ['-o', 'HostKeyAlias=%s' % host_key_alias]
    for o in options:               # ssh keeps the first value of an option
        argv += ['-o', o]
    if log_path:
        argv += ['-E', log_path]
    if verbose:
        argv.append('-' + 'v' * verbose)
    return argv + [host]


def _endpoint(proxy):
    """(host, port, proxy_command) for an Sshd-like object or (host, port)."""
    if isinstance(proxy, tuple):
        return proxy[0], proxy[1], None
    if proxy.port:
        return proxy.host, proxy.port, None
    return proxy.host, 22, proxy.proxy_command()


def forward_spec(listen_port, target_host, target_port,
                 listen_addr='127.0.0.1'):
    return '%s:%d:%s:%d' % (listen_addr, listen_port, target_host, target_port)


class SshForward:
    """`ssh -N -R ...` as an Env process (ExitOnForwardFailure=yes)."""

    def __init__(self, env, name, proxy, key, known_hosts, forwards,
                 options=(), proxy_command=None, host_key_alias=None):
        self.env = env
        self.name = name
        host, port, pc = _endpoint(proxy)
        self.log_path = env.path('%s.ssh.log' % name)
        env.register_log(self.log_path, 'ssh %s' % name)
        argv = ssh_argv(key, known_hosts, host, port,
                        proxy_command=proxy_command or pc,
                        host_key_alias=host_key_alias,
                        log_path=self.log_path,
                        # ssh keeps the first value given: caller's first
                        options=list(options) + [
                            'ExitOnForwardFailure=yes',
                            'ServerAliveInterval=5',
                            'ServerAliveCountMax=3'])
        argv.insert(1, '-N')
        for f in forwards:
            argv[1:1] = ['-R', f if isinstance(f, str) else forward_spec(*f)]
        self.n_forwards = len(forwards)
        self.proc = env.spawn('ssh-%s' % name, argv)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.alive()

    def wait_established(self, timeout=15):
        """Waits for ssh to log that all its remote forwards were granted
        (ssh -v: 'remote forward success for: listen ...')."""
        def ok():
            return read_text(self.log_path).count(
                'remote forward success for:') >= self.n_forwards
        try:
            return wait_for(ok, timeout, 'ssh %s forward' % self.name,
                            fail_if=self.proc.died)
        except HarnessError as exc:
            raise HarnessError('%s\n--- %s ---\n%s' % (
                exc, self.log_path, read_text(self.log_path)[-3000:]))

    def log_text(self):
        return read_text(self.log_path)

    def stop(self):
        return self.proc.stop()

    def close(self):
        self.stop()


class SshSubsystem:
    """`ssh -s HOST SUBSYSTEM`: stdout to a file, read with lines()."""

    def __init__(self, env, name, proxy, key, known_hosts, subsystem,
                 options=(), host_key_alias=None):
        host, port, pc = _endpoint(proxy)
        self.name = name
        self.log_path = env.path('%s.ssh.log' % name)
        self.out_path = env.path('%s.out' % name)
        env.register_log(self.log_path, 'ssh %s' % name)
        env.register_log(self.out_path, 'ssh %s stdout' % name)
        argv = ssh_argv(key, known_hosts, host, port, proxy_command=pc,
                        host_key_alias=host_key_alias,
                        log_path=self.log_path, options=options)
        argv.insert(1, '-s')
        argv.append(subsystem)
        self._out = open(self.out_path, 'wb')
        # stdin stays open (a pipe we hold): EOF on it would reach the
        # subsystem, and a well-behaved helper exits on EOF.
        self.proc = env.spawn('ssh-%s' % name, argv, stdout=self._out,
                              stdin=subprocess.PIPE)

    def send(self, data):
        """Writes bytes to the subsystem's stdin."""
        self.proc.popen.stdin.write(data)
        self.proc.popen.stdin.flush()

    def close_stdin(self):
        """Sends EOF to the subsystem (ssh forwards it as channel EOF)."""
        self.proc.popen.stdin.close()

    def lines(self):
        return read_text(self.out_path).splitlines()

    def wait_lines(self, n, timeout=10):
        """Waits for n complete lines on stdout; returns all lines so far."""
        def enough():
            text = read_text(self.out_path)
            done = text.split('\n')[:-1]     # complete lines only
            return done if len(done) >= n else None
        try:
            return wait_for(enough, timeout,
                            '%d lines from subsystem via %s' % (n, self.name),
                            fail_if=self.proc.died)
        except HarnessError as exc:
            raise HarnessError('%s\n--- stdout ---\n%s\n--- %s ---\n%s' % (
                exc, read_text(self.out_path)[-2000:], self.log_path,
                read_text(self.log_path)[-3000:]))

    def json_lines(self):
        """Complete stdout lines parsed as JSON (ValueError on a bad one)."""
        import json
        done = read_text(self.out_path).split('\n')[:-1]
        return [json.loads(l) for l in done if l.strip()]

    def wait_json(self, pred, timeout=10, what='a matching JSON line'):
        """Waits for a JSON line for which pred(obj) is true; returns it.
        A line that is not JSON fails at once."""
        def found():
            try:
                objs = self.json_lines()
            except ValueError as exc:
                raise HarnessError('subsystem output is not JSON lines (%s):'
                                   '\n%s' % (exc, read_text(
                                       self.out_path)[-2000:]))
            for o in objs:
                if isinstance(o, dict) and pred(o):
                    return o
            return None
        try:
            return wait_for(found, timeout, '%s from %s' % (what, self.name),
                            fail_if=self.proc.died)
        except HarnessError as exc:
            raise HarnessError('%s\n--- stdout ---\n%s\n--- %s ---\n%s' % (
                exc, read_text(self.out_path)[-2000:], self.log_path,
                read_text(self.log_path)[-3000:]))

    def stop(self):
        r = self.proc.stop()
        self._out.close()
        if self.proc.popen.stdin and not self.proc.popen.stdin.closed:
            self.proc.popen.stdin.close()
        return r

    def close(self):
        self.stop()
