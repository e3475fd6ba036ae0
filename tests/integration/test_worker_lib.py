"""Shared helpers of the test_worker_* scenarios (stdlib only).

Each scenario starts its own OpenSSH sshd on 127.0.0.1 (own host key, own
config, LogLevel DEBUG1 to a file), runs one tunnelpool-agent through
tests/tools/worker-drive, and asserts on the JSON lines the driver prints,
on the bytes that cross the tunnel and on sshd's log.  Everything started
is stopped by PID.  Needs root (sshd, user `tunnel`, the worker's chroot).

Environment: WORKER_DRIVE, TUNNELPOOL_AGENT (paths; meson sets them), or
BUILD_DIR to find both; TP_KEEP=1 keeps the work dir.
"""

import asyncio
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SSHD = '/usr/sbin/sshd'
USER = 'tunnel'
EMPTY_DIR = '/var/empty/tunnelpool'


class Failure(AssertionError):
    pass


def check(cond, msg, *args):
    if not cond:
        raise Failure(msg % args if args else msg)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, **kw).stdout


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def binaries():
    drive = os.environ.get('WORKER_DRIVE')
    agent = os.environ.get('TUNNELPOOL_AGENT')
    build = os.environ.get('BUILD_DIR')
    if build:
        drive = drive or os.path.join(build, 'tests', 'worker-drive')
        agent = agent or os.path.join(build, 'worker', 'tunnelpool-agent')
    if not drive or not agent:
        sys.exit('set WORKER_DRIVE and TUNNELPOOL_AGENT (or BUILD_DIR)')
    return os.path.abspath(drive), os.path.abspath(agent)


def setup_host():
    """What a root-run worker and sshd need on this machine."""
    check(os.geteuid() == 0, 'worker scenarios need root')
    os.makedirs('/run/sshd', mode=0o755, exist_ok=True)
    if not os.path.isdir(EMPTY_DIR):
        os.makedirs(EMPTY_DIR, mode=0o755)
    os.chmod(EMPTY_DIR, 0o755)
    try:
        run(['id', USER])
    except subprocess.CalledProcessError:
        run(['useradd', '-m', '-s', '/bin/sh', USER])


class Keys:
    """A user key, a user CA with a certificate for the key, in dir."""

    def __init__(self, d):
        self.dir = d
        self.key = os.path.join(d, 'id_ed25519')
        self.ca = os.path.join(d, 'user_ca')
        run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'node',
             '-f', self.key])
        run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'ca',
             '-f', self.ca])
        run(['ssh-keygen', '-q', '-s', self.ca, '-I', 'node', '-n', USER,
             '-V', '-5m:+1h', self.key + '.pub'])
        self.cert = self.key + '-cert.pub'


def fingerprint(pubfile):
    return run(['ssh-keygen', '-l', '-E', 'sha256', '-f', pubfile]).split()[1]


class Sshd:
    """One stock sshd on 127.0.0.1, logging DEBUG1 to self.log."""

    def __init__(self, d, keys, authorized=True, extra=''):
        self.dir = d
        self.port = free_port()
        self.hostkey = os.path.join(d, 'ssh_host_ed25519_key')
        run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f',
             self.hostkey])
        self.fp = fingerprint(self.hostkey + '.pub')
        akdir = os.path.join(d, 'authorized_keys')
        os.makedirs(akdir, exist_ok=True)
        ak = os.path.join(akdir, USER)
        with open(ak, 'w') as f:
            if authorized:
                f.write(open(keys.key + '.pub').read())
        os.chmod(ak, 0o644)
        self.log = os.path.join(d, 'sshd.log')
        self.config = os.path.join(d, 'sshd_config')
        with open(self.config, 'w') as f:
            f.write(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.hostkey}
PidFile none
LogLevel DEBUG1
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile {akdir}/%u
TrustedUserCAKeys {keys.ca}.pub
AllowTcpForwarding remote
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
MaxStartups 100:30:200
MaxSessions 100
{extra}
""")
        self.proc = None

    def start(self):
        logf = open(self.log, 'a')
        self.proc = subprocess.Popen([SSHD, '-D', '-e', '-f', self.config],
                                     stdout=logf, stderr=logf)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(('127.0.0.1', self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise Failure('sshd did not start: ' + open(self.log).read()[-2000:])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            for pid in self.session_pids():
                try:
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def session_pids(self):
        """Every descendant of the listener (the per-connection sshds)."""
        out, todo = [], [self.proc.pid]
        while todo:
            p = todo.pop()
            try:
                kids = open(f'/proc/{p}/task/{p}/children').read().split()
            except OSError:
                kids = []
            for k in kids:
                out.append(int(k))
                todo.append(int(k))
        return out

    def logtext(self):
        return open(self.log, errors='replace').read()

    def open_channels(self):
        """Channel ids sshd has created and not freed, from its log."""
        open_ = {}
        for line in self.logtext().splitlines():
            m = re.search(r'channel (\d+): new (\S+)', line)
            if m:
                open_[m.group(1)] = m.group(2)
            m = re.search(r'channel (\d+): free', line)
            if m:
                open_.pop(m.group(1), None)
        return open_


class Drive:
    """One worker-drive (and so one tunnelpool-agent)."""

    def __init__(self, d, sshd, keys, pin=True, cert=False, args=(),
                 name='drive'):
        drive, agent = binaries()
        cmd = [drive, '--agent', agent, '--port', str(sshd.port),
               '--key', keys.key]
        if cert:
            cmd += ['--cert', keys.cert]
        if pin:
            cmd += ['--pin', sshd.fp]
        cmd += list(args)
        self.stderr_path = os.path.join(d, name + '.stderr')
        self.lines = []
        self.q = queue.Queue()
        self.t0 = time.time()
        env = dict(os.environ, TP_LOG_LEVEL=os.environ.get('TP_LOG_LEVEL',
                                                           'info'))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=open(self.stderr_path, 'w'),
                                     text=True, env=env)
        threading.Thread(target=self._reader, daemon=True).start()
        self.pid = self.wait(lambda m: m.get('event') == 'spawned', 10)['pid']

    def _reader(self):
        for line in self.proc.stdout:
            try:
                m = json.loads(line)
            except ValueError:
                m = {'event': 'garbage', 'line': line}
            m['t'] = time.time() - self.t0
            self.q.put(m)
        self.q.put(None)

    def _pump(self, timeout):
        try:
            m = self.q.get(timeout=timeout)
        except queue.Empty:
            return False
        if m is None:
            self.q.put(None)
            time.sleep(min(timeout, 0.05))
            return False
        self.lines.append(m)
        return True

    def wait(self, pred, timeout, what=None):
        """First message (old or new) matching pred, within timeout."""
        for m in self.lines:
            if pred(m):
                return m
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._pump(max(0.01, deadline - time.time())):
                if pred(self.lines[-1]):
                    return self.lines[-1]
        raise Failure('timed out waiting for %s; got:\n%s\nagent log:\n%s' % (
            what or 'message', '\n'.join(json.dumps(m) for m in self.lines),
            self.stderr()[-3000:]))

    def drain(self):
        while self._pump(0.01):
            pass
        return self.lines

    def state(self, state, timeout=15, reason=None):
        return self.wait(lambda m: m.get('msg') == 'STATE' and
                         m['state'] == state and
                         (reason is None or reason in m['reason']),
                         timeout, 'STATE %s %s' % (state, reason or ''))

    def exit(self, timeout=15):
        return self.wait(lambda m: m.get('event') == 'exit', timeout, 'exit')

    def bound(self, fid=1, timeout=15):
        return self.wait(lambda m: m.get('msg') == 'FORWARD' and
                         m['id'] == fid and m['bound'], timeout,
                         'FORWARD %d bound' % fid)

    def send(self, line):
        self.proc.stdin.write(line + '\n')
        self.proc.stdin.flush()

    def stderr(self):
        return open(self.stderr_path, errors='replace').read()

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- targets and clients -----------------------------------------------------

class Loop:
    """An asyncio loop in a thread, for targets that serve many sockets."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever,
                                       daemon=True)
        self.thread.start()

    def call(self, coro, timeout=None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(
            timeout)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


async def _echo(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def echo_server(loop):
    """Starts an echo target; returns its port."""
    async def start():
        srv = await asyncio.start_server(_echo, '127.0.0.1', 0, backlog=512)
        return srv.sockets[0].getsockname()[1]
    return loop.call(start())


async def echo_client(port, data, chunk=65536, pause=0.0, deadline=60):
    """Sends data, half-closes, reads the echo; returns what came back."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection('127.0.0.1', port), 10)

    async def send():
        for i in range(0, len(data), chunk):
            writer.write(data[i:i + chunk])
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        writer.write_eof()

    async def recv():
        got = bytearray()
        while True:
            b = await reader.read(1 << 20)
            if not b:
                return bytes(got)
            got += b

    try:
        _, got = await asyncio.wait_for(asyncio.gather(send(), recv()),
                                        deadline)
    finally:
        writer.close()
    return got


def sha(b):
    return hashlib.sha256(b).hexdigest()


class Scenario:
    """Work dir, keys, sshd; cleaned up by close()."""

    def __init__(self, name, sshd_extra='', authorized=True):
        setup_host()
        self.name = name
        self.dir = tempfile.mkdtemp(prefix='tp-worker-%s-' % name)
        os.chmod(self.dir, 0o755)
        self.keys = Keys(self.dir)
        self.sshd = Sshd(self.dir, self.keys, authorized, sshd_extra).start()
        self.drives = []
        self.loop = Loop()

    def drive(self, **kw):
        d = Drive(self.dir, self.sshd, self.keys,
                  name='drive%d' % len(self.drives), **kw)
        self.drives.append(d)
        return d

    def close(self, ok):
        for d in self.drives:
            d.stop()
        self.sshd.stop()
        self.loop.stop()
        if ok and not os.environ.get('TP_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print('work dir kept: %s' % self.dir)


def main(name, body, **kw):
    """Runs body(scenario) and prints the closing line the runners read."""
    sc = None
    ok = False
    try:
        sc = Scenario(name, **kw)
        body(sc)
        ok = True
    except Failure as e:
        print('FAIL %s: %s' % (name, e))
    except Exception as e:  # a harness error fails the scenario too
        import traceback
        traceback.print_exc()
        print('FAIL %s: %r' % (name, e))
    finally:
        if sc is not None:
            sc.close(ok)
    print('%d passed, %d failed' % (1 if ok else 0, 0 if ok else 1))
    sys.exit(0 if ok else 1)
