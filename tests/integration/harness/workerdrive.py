"""One tunnelpool-agent without the supervisor: tests/tools/worker-drive.

worker-drive (built as BUILD/tests/worker-drive) is a small proto peer
that plays the supervisor for one worker: it connects a TCP socket to the
proxy, serves the ssh-agent protocol with the real signer, execs
tunnelpool-agent with fds 3/4/5, sends CONFIG from its options, grants
claims, dials --target for every DIAL_REQUEST, prints every message it
receives as one JSON line on stdout ({"event": "exit", ...} when the agent
has exited, then it exits itself) and reads commands on stdin ("close MS
REASON", "ping SEQ", "hook N", "signal SIG").  docs/worker.md, "Tests".

A WorkerDrive writes those lines to WORKDIR/NAME.jsonl and the drive's and
the agent's stderr to WORKDIR/NAME.out (both dumped when a scenario fails).
Create it with Env.worker_drive(name, proxy, key, ...); worker_proxy()
makes the sshd and key the worker scenarios share, forward_drive() the
usual one-forward worker on top.
"""

import json
import os
import signal
import subprocess

from .errors import HarnessError
from . import ports, procs
from .procs import wait_for, read_text

# worker/demote.h DEMOTE_EMPTY_DIR: the root a worker started by hand (no
# TUNNELPOOL_WORKER from a supervisor) chroots into.
EMPTY_ROOT = '/var/empty/tunnelpool'

WAIT = 30.0     # default seconds to wait for a message (a loaded machine)


def ensure_empty_root():
    """The worker's chroot: root-owned, not group/other writable, empty."""
    os.makedirs(EMPTY_ROOT, mode=0o755, exist_ok=True)
    os.chmod(EMPTY_ROOT, 0o755)


def worker_proxy(env, name='sshd', cert=False, **options):
    """What every worker scenario starts from: the node key WORKDIR/node_key
    and a started sshd NAME that authorizes it, with room for many
    connections and sessions (MaxStartups 100:30:200, MaxSessions 100).
    cert=True also makes a user CA WORKDIR/user_ca that sshd trusts
    (TrustedUserCAKeys) and a certificate for the key (principal tunnel,
    key.cert_path).  Returns (key, proxy)."""
    key = env.keygen('node_key')
    options.setdefault('max_startups', '100:30:200')
    options.setdefault('max_sessions', 100)
    options.setdefault('authorized_keys', [key])
    if cert:
        ca = env.ca('user_ca')
        ca.sign_user(key, ['tunnel'], identity='node')
        options.setdefault('trusted_user_ca', ca)
    return key, env.sshd(name, **options)


def forward_drive(env, args=(), target=None, **sshd_options):
    """The common set-up: worker_proxy(**sshd_options), a WorkerDrive
    'drive0' with forward 1 on a free port of the proxy to `target`
    ('HOST:PORT'; default a new echo server), more worker-drive `args`,
    waited for FORWARD 1 bound.  Returns (drive, proxy, forward port)."""
    key, proxy = worker_proxy(env, **sshd_options)
    if target is None:
        target = env.echo_server().address()
    fport = ports.free_port()
    d = env.worker_drive('drive0', proxy, key,
                         args=['--forward', '1:127.0.0.1:%d' % fport,
                               '--target', target] + list(args))
    d.bound(1)
    return d, proxy, fport


def _parse(line):
    try:
        m = json.loads(line)
    except ValueError:
        return {'event': 'garbage', 'line': line}
    return m if isinstance(m, dict) else {'event': 'garbage', 'line': line}


class WorkerDrive:
    """worker-drive running one tunnelpool-agent against `proxy` (an Sshd
    with a root-namespace port).

      pin=True     --pin each of the proxy's host key fingerprints
      cert=False   --cert key.cert_path (the user certificate)
      args=()      more worker-drive options (--forward, --target, --ka-ms..)
      log_level    the agent's TP_LOG_LEVEL (default $TP_LOG_LEVEL or info)

    Waits for the "spawned" event; `pid` is the agent's."""

    def __init__(self, env, name, proxy, key, pin=True, cert=False,
                 args=(), log_level=None, timeout=WAIT):
        ensure_empty_root()
        self.env = env
        self.name = name
        self.proxy = proxy
        argv = [env.binary('worker-drive'),
                '--agent', env.binary('tunnelpool-agent'),
                '--port', str(proxy.port), '--key', key.path]
        if cert:
            argv += ['--cert', key.cert_path]
        if pin:
            for fp in proxy.host_fingerprints():
                argv += ['--pin', fp]
        argv += [str(a) for a in args]
        self.out_path = env.path('%s.jsonl' % name)
        env.register_log(self.out_path, '%s messages' % name)
        self._out = open(self.out_path, 'wb')
        penv = dict(os.environ, TP_LOG_LEVEL=log_level or os.environ.get(
            'TP_LOG_LEVEL', 'info'))
        # Not registered: close() ends the agent first, then the drive.
        self.proc = env.spawn(name, argv, env=penv, stdout=self._out,
                              stdin=subprocess.PIPE, register=False)
        self.lines = []
        self._offset = 0
        self._partial = b''
        self.pid = None
        self.pid = self.wait(lambda m: m.get('event') == 'spawned', timeout,
                             'the spawned event')['pid']
        env.log('%s: worker-drive pid %d, agent pid %d', name, self.proc.pid,
                self.pid)

    # ------------------------------------------------------------------
    # messages

    def _pump(self):
        """Reads the complete lines written since the last call."""
        try:
            with open(self.out_path, 'rb') as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        *done, self._partial = data.split(b'\n')
        for line in done:
            if line.strip():
                self.lines.append(_parse(line.decode('utf-8', 'replace')))

    def drain(self):
        """Every message so far (a list, oldest first)."""
        self._pump()
        return self.lines

    def wait(self, pred, timeout=WAIT, what='a message', n=1):
        """The first (n-th) message, already seen or new, for which pred(m)
        is true.  Fails after timeout, or at once when worker-drive has
        ended without printing it, with the messages so far."""
        seen = [0, 0]                # lines scanned, matches

        def found():
            self._pump()
            for m in self.lines[seen[0]:]:
                seen[0] += 1
                if pred(m):
                    seen[1] += 1
                    if seen[1] >= n:
                        return m
            return None

        try:
            return wait_for(found, timeout, '%s from %s' % (what, self.name),
                            fail_if=self.proc.died)
        except HarnessError as exc:
            m = found()               # printed just before it ended
            if m is not None:
                return m
            raise HarnessError('%s; messages so far:\n%s\n--- %s (last '
                               'lines) ---\n%s' % (
                                   exc, '\n'.join(json.dumps(x) for x in
                                                  self.lines[-40:]),
                                   self.proc.log_path,
                                   procs.tail(self.log_text(), 30))) from None

    def messages(self, msg):
        """Every message of type msg (e.g. 'CLAIM') so far."""
        return [m for m in self.drain() if m.get('msg') == msg]

    def state(self, state, timeout=WAIT, reason=None):
        """The first STATE `state` (whose reason contains `reason`)."""
        return self.wait(lambda m: m.get('msg') == 'STATE' and
                         m['state'] == state and
                         (reason is None or reason in m['reason']),
                         timeout, 'STATE %s %s' % (state, reason or ''))

    def exit(self, timeout=WAIT):
        """The exit event: {"event": "exit", "pid", "code", "signal"}."""
        return self.wait(lambda m: m.get('event') == 'exit', timeout,
                         'the agent to exit')

    def bound(self, fid=1, timeout=WAIT):
        """The first FORWARD fid bound=true."""
        return self.wait(lambda m: m.get('msg') == 'FORWARD' and
                         m['id'] == fid and m['bound'], timeout,
                         'FORWARD %d bound' % fid)

    def gone(self):
        """Exit events and STATE disconnected seen so far."""
        return [m for m in self.drain() if m.get('event') == 'exit' or
                (m.get('msg') == 'STATE' and m['state'] == 'disconnected')]

    def send(self, line):
        """One stdin command, e.g. 'close 5000 done'."""
        self.proc.popen.stdin.write((line + '\n').encode())
        self.proc.popen.stdin.flush()

    def log_text(self):
        """worker-drive's and the agent's stderr."""
        return read_text(self.proc.log_path)

    # ------------------------------------------------------------------
    # teardown

    def _agent_alive(self):
        """The agent is alive and still worker-drive's child (its pid is
        not reused before the drive reaps it and exits)."""
        try:
            return self.pid is not None and procs.alive(self.pid) and \
                procs.ppid(self.pid) == self.proc.pid
        except (OSError, ValueError, IndexError):
            return False

    def close(self):
        """SIGKILL the agent; worker-drive reaps it and exits.  Then stop
        the drive (SIGTERM, SIGKILL) if it is still there."""
        if self.proc.alive() and self._agent_alive():
            procs.signal_pid(self.pid, signal.SIGKILL)
            try:
                self.proc.wait(10)
            except HarnessError:
                pass
        self.proc.stop()
        stdin = self.proc.popen.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.close()
            except OSError:
                pass
        self._out.close()

    stop = close
