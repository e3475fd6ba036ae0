"""Process helpers: waiting, /proc readers, and the Process wrapper.

Everything here works by PID.  Nothing ever signals a process by name.
"""

import ctypes
import os
import re
import signal as sigmod
import subprocess
import threading
import time
from contextlib import contextmanager

from .errors import HarnessError, WaitTimeout

PR_SET_CHILD_SUBREAPER = 36


# --------------------------------------------------------------------------
# waiting

def wait_for(predicate, timeout, what=None, interval=0.05, fail_if=None):
    """Polls predicate() until it returns something truthy; returns that value.

    Raises WaitTimeout naming `what` after `timeout` seconds.  `fail_if`, when
    given, is polled too: if it returns a truthy value (a string is used as the
    reason) the wait fails at once instead of running into the timeout.
    """
    deadline = time.monotonic() + timeout
    delay = min(interval, 0.01)
    last_exc = None
    while True:
        try:
            value = predicate()
        except (OSError, ValueError) as exc:   # transient /proc races etc.
            value, last_exc = None, exc
        if value:
            return value
        if fail_if is not None:
            reason = fail_if()
            if reason:
                raise HarnessError('while waiting for %s: %s' % (
                    what or getattr(predicate, '__name__', 'condition'),
                    reason if isinstance(reason, str) else 'gave up'))
        now = time.monotonic()
        if now >= deadline:
            msg = 'timed out after %.1fs waiting for %s' % (
                timeout, what or getattr(predicate, '__name__', 'condition'))
            if last_exc is not None:
                msg += ' (last error: %s)' % last_exc
            raise WaitTimeout(msg)
        time.sleep(min(delay, max(0.0, deadline - now)))
        delay = min(delay * 2, interval)


# Orphan reaping (waitpid on a specific zombie child) must never steal the
# exit status of a Popen that has not been waited for yet: reaping is skipped
# while any child is being created or run to completion through this module.
_LOCK = threading.Lock()
_inflight = 0


@contextmanager
def _spawning():
    global _inflight
    with _LOCK:
        _inflight += 1
    try:
        yield
    finally:
        with _LOCK:
            _inflight -= 1


def run(argv, timeout=30, check=True, input=None, **kw):
    """Runs a short command to completion; returns CompletedProcess (text).

    Raises HarnessError with the command's output when it fails or times out.
    """
    try:
        with _spawning():
            cp = subprocess.run(argv, input=input, capture_output=True,
                                text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError('command timed out after %ss: %s' % (
            timeout, ' '.join(map(str, argv)))) from exc
    if check and cp.returncode != 0:
        raise HarnessError('command failed (exit %d): %s\n%s%s' % (
            cp.returncode, ' '.join(map(str, argv)), cp.stdout, cp.stderr))
    return cp


# --------------------------------------------------------------------------
# /proc readers

def exists(pid):
    """True if a process (zombie included) with this pid exists."""
    return os.path.exists('/proc/%d' % pid)


def stat_fields(pid):
    """Returns /proc/PID/stat as a list; index 0 is pid, 1 comm, 2 state..."""
    with open('/proc/%d/stat' % pid) as f:
        data = f.read()
    lpar, rpar = data.index('('), data.rindex(')')
    return [data[:lpar].strip(), data[lpar + 1:rpar]] + data[rpar + 2:].split()


def state(pid):
    """One-letter state (R, S, D, T, Z, ...) or None if gone."""
    try:
        return stat_fields(pid)[2]
    except (OSError, ValueError, IndexError):
        return None


def ppid(pid):
    return int(stat_fields(pid)[3])


def start_time(pid):
    """Start time in clock ticks since boot: (pid, start_time) names a process
    uniquely, which guards against pid reuse."""
    return int(stat_fields(pid)[21])


def is_zombie(pid):
    return state(pid) == 'Z'


def alive(pid):
    """True if the process exists and is not a zombie."""
    st = state(pid)
    return st is not None and st != 'Z'


def status(pid):
    """/proc/PID/status as a dict of str -> str (e.g. 'Seccomp': '2')."""
    out = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            key, _, value = line.partition(':')
            out[key] = value.strip()
    return out


def status_field(pid, name):
    return status(pid).get(name)


def seccomp_mode(pid):
    """0 = off, 1 = strict, 2 = filter."""
    return int(status(pid)['Seccomp'])


def no_new_privs(pid):
    return status(pid).get('NoNewPrivs') == '1'


def uids(pid):
    """(real, effective, saved, fs) uids."""
    return tuple(int(x) for x in status(pid)['Uid'].split())


def gids(pid):
    return tuple(int(x) for x in status(pid)['Gid'].split())


def cap_eff(pid):
    """Effective capability set as an int."""
    return int(status(pid)['CapEff'], 16)


def rss_kib(pid):
    """Resident set size in KiB (VmRSS)."""
    return int(status(pid)['VmRSS'].split()[0])


def private_kib(pid):
    """Unshared memory in KiB: Private_Clean + Private_Dirty (smaps_rollup)."""
    total = 0
    with open('/proc/%d/smaps_rollup' % pid) as f:
        for line in f:
            if line.startswith(('Private_Clean:', 'Private_Dirty:')):
                total += int(line.split()[1])
    return total


def smaps_by_mapping(pid):
    """KiB per mapping name from /proc/PID/smaps: {name: {'private_kib',
    'dirty_kib', 'pss_kib', 'rss_kib'}}, summed over the mappings of one
    name ([heap], [stack], [anon] for unnamed ones, each file by its base
    name)."""
    agg = {}
    name = None
    with open('/proc/%d/smaps' % pid) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if not parts[0].endswith(':'):          # a mapping header
                name = parts[5] if len(parts) >= 6 else '[anon]'
                name = os.path.basename(name) if name.startswith('/') \
                    else name
                agg.setdefault(name, {'private_kib': 0, 'dirty_kib': 0,
                                      'pss_kib': 0, 'rss_kib': 0})
            elif parts[0] in ('Private_Clean:', 'Private_Dirty:'):
                agg[name]['private_kib'] += int(parts[1])
                if parts[0] == 'Private_Dirty:':
                    agg[name]['dirty_kib'] += int(parts[1])
            elif parts[0] == 'Pss:':
                agg[name]['pss_kib'] += int(parts[1])
            elif parts[0] == 'Rss:':
                agg[name]['rss_kib'] += int(parts[1])
    return agg


def fds(pid):
    """Dict fd -> link target (e.g. 'socket:[123]', '/dev/null')."""
    out = {}
    base = '/proc/%d/fd' % pid
    for name in os.listdir(base):
        try:
            out[int(name)] = os.readlink(os.path.join(base, name))
        except OSError:
            pass
    return out


def cmdline(pid):
    """argv as a list (what the process set, e.g. its title)."""
    with open('/proc/%d/cmdline' % pid, 'rb') as f:
        raw = f.read()
    return [a.decode('utf-8', 'replace') for a in raw.split(b'\0') if a]


def title(pid):
    """The ps title: /proc/PID/cmdline joined with spaces (setproctitle-style
    titles overwrite argv, often as one string with NUL padding)."""
    with open('/proc/%d/cmdline' % pid, 'rb') as f:
        raw = f.read()
    return ' '.join(a.decode('utf-8', 'replace')
                    for a in raw.split(b'\0') if a).strip()


def comm(pid):
    with open('/proc/%d/comm' % pid) as f:
        return f.read().strip()


def exe(pid):
    try:
        return os.readlink('/proc/%d/exe' % pid)
    except OSError:
        return None


def all_pids():
    return [int(p) for p in os.listdir('/proc') if p.isdigit()]


def _ppid_map():
    m = {}
    for pid in all_pids():
        try:
            m[pid] = ppid(pid)
        except (OSError, ValueError, IndexError):
            pass
    return m


def children(pid):
    """Direct children (zombies included)."""
    try:
        # Fast path: /proc/PID/task/*/children (needs CONFIG_PROC_CHILDREN).
        out = []
        for tid in os.listdir('/proc/%d/task' % pid):
            with open('/proc/%d/task/%s/children' % (pid, tid)) as f:
                out.extend(int(x) for x in f.read().split())
        return sorted(set(out))
    except OSError:
        return sorted(p for p, pp in _ppid_map().items() if pp == pid)


def descendants(pid):
    """All descendants (children, grandchildren, ...), breadth first."""
    m = _ppid_map()
    kids = {}
    for p, pp in m.items():
        kids.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    while todo:
        cur = todo.pop(0)
        for k in sorted(kids.get(cur, [])):
            out.append(k)
            todo.append(k)
    return out


def zombies(pid):
    """Zombie children of pid (unreaped exits)."""
    return [c for c in children(pid) if is_zombie(c)]


def threads(pid):
    return len(os.listdir('/proc/%d/task' % pid))


def signal_pid(pid, sig):
    """Sends sig to pid; False if it is already gone."""
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def kill_pids(pids, sig=sigmod.SIGKILL):
    for pid in pids:
        signal_pid(pid, sig)


def set_child_subreaper():
    """Makes this process the reaper of its orphaned descendants, so nothing a
    scenario starts can escape to init unnoticed.  Returns True on success."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# Pids of every Process started here: their Popen objects reap them.
PROCESS_PIDS = set()


def reap_zombie_children(exclude=()):
    """Reaps zombie children of this process (orphans reparented to it as
    subreaper) that are not Process pids nor in `exclude`.  Skipped while a
    child is being started or run through this module; scenario code that
    calls subprocess directly from threads should use procs.run instead."""
    reaped = []
    with _LOCK:
        if _inflight:
            return reaped
        for c in children(os.getpid()):
            if c in exclude or c in PROCESS_PIDS or not is_zombie(c):
                continue
            try:
                if os.waitpid(c, os.WNOHANG)[0] == c:
                    reaped.append(c)
            except ChildProcessError:
                pass
    return reaped


def kill_descendants(pid=None, exclude=(), grace=2.0):
    """SIGTERMs then SIGKILLs every descendant of pid (default: this process),
    reaps what it can, and returns a list of 'pid title' strings it found."""
    pid = os.getpid() if pid is None else pid
    found = []
    for p in descendants(pid):
        if p in exclude or not alive(p):
            continue
        try:
            found.append((p, title(p) or comm(p)))
        except OSError:
            continue
    live = [p for p, _ in found if alive(p)]
    for p in live:
        signal_pid(p, sigmod.SIGCONT)
        signal_pid(p, sigmod.SIGTERM)
    try:
        wait_for(lambda: not any(alive(p) for p in live), grace,
                 'descendants to exit')
    except WaitTimeout:
        kill_pids([p for p in live if alive(p)])
        try:
            wait_for(lambda: not any(alive(p) for p in live), 5,
                     'descendants to die')
        except WaitTimeout:
            pass
    if pid == os.getpid():
        reap_zombie_children(exclude)
    return ['%d %s' % (p, t) for p, t in found]


# --------------------------------------------------------------------------
# Process wrapper

class Process:
    """A started program, its output appended to a log file.

    Created through Env.spawn(), which registers it for teardown.  Started in
    its own session (process group), so terminal signals don't reach it.
    """

    def __init__(self, name, argv, log_path, env=None, cwd=None,
                 stdin=subprocess.DEVNULL, pass_fds=(), stdout=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self._log = open(log_path, 'ab', buffering=0)
        self._log.write(('=== start %s: %s\n' % (
            time.strftime('%H:%M:%S'), ' '.join(self.argv))).encode())
        try:
            with _spawning():
                self.popen = subprocess.Popen(
                    self.argv, stdin=stdin,
                    stdout=self._log if stdout is None else stdout,
                    stderr=self._log, env=env, cwd=cwd, pass_fds=pass_fds,
                    start_new_session=True)
                PROCESS_PIDS.add(self.popen.pid)
        except OSError as exc:
            self._log.close()
            raise HarnessError('cannot start %s (%s): %s' % (
                name, self.argv[0], exc)) from exc
        self.pid = self.popen.pid
        try:
            self.start_time = start_time(self.pid)
        except OSError:
            self.start_time = None

    def __repr__(self):
        return '<Process %s pid=%d>' % (self.name, self.pid)

    # -- state
    def poll(self):
        return self.popen.poll()

    @property
    def returncode(self):
        return self.popen.poll()

    def alive(self):
        return self.popen.poll() is None

    def exit_reason(self):
        """None while running, else 'exit N' or 'signal NAME'."""
        rc = self.popen.poll()
        if rc is None:
            return None
        if rc < 0:
            try:
                return 'signal %s' % sigmod.Signals(-rc).name
            except ValueError:
                return 'signal %d' % -rc
        return 'exit %d' % rc

    def died(self):
        """For wait_for(fail_if=...): a reason string once the process ended."""
        r = self.exit_reason()
        return '%s (pid %d) ended: %s' % (self.name, self.pid, r) if r else None

    def wait(self, timeout):
        """Waits for exit; returns the return code or raises WaitTimeout."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout('timed out after %.1fs waiting for %s (pid %d) '
                              'to exit' % (timeout, self.name, self.pid))

    # -- signals
    def signal(self, sig):
        if self.popen.poll() is None:
            signal_pid(self.pid, sig)

    def pause(self):
        self.signal(sigmod.SIGSTOP)

    def resume(self):
        self.signal(sigmod.SIGCONT)

    def stop(self, timeout=5.0, sig=sigmod.SIGTERM):
        """SIGTERM (or sig), wait, then SIGKILL.  Returns the exit reason."""
        if self.popen.poll() is None:
            signal_pid(self.pid, sigmod.SIGCONT)
            signal_pid(self.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                signal_pid(self.pid, sigmod.SIGKILL)
                self.popen.wait(10)
        self._close_log()
        return self.exit_reason()

    def kill(self):
        """SIGKILL and reap."""
        if self.popen.poll() is None:
            signal_pid(self.pid, sigmod.SIGKILL)
            self.popen.wait(10)
        self._close_log()
        return self.exit_reason()

    def close(self):
        self.stop()

    def _close_log(self):
        if not self._log.closed:
            self._log.write(('=== %s: %s\n' % (
                time.strftime('%H:%M:%S'), self.exit_reason())).encode())
            self._log.close()

    # -- process tree
    def descendants(self):
        return descendants(self.pid) if self.alive() else []

    # -- log
    def log_text(self):
        return read_text(self.log_path)

    def log_mark(self):
        return log_mark(self.log_path)

    def wait_log(self, regex, timeout=10, since=0, flags=re.M):
        """Waits until the log (from byte offset `since`) matches regex;
        returns the match.  Fails early if the process exits."""
        return wait_log(self.log_path, regex, timeout, since=since,
                        flags=flags, what='%s log' % self.name,
                        fail_if=self.died)


def read_text(path, since=0):
    try:
        with open(path, 'rb') as f:
            if since:
                f.seek(since)
            return f.read().decode('utf-8', 'replace')
    except FileNotFoundError:
        return ''


def log_mark(path):
    """Current size of a log: pass it as `since` to match only newer lines."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def wait_log(path, regex, timeout=10, since=0, flags=re.M, what=None,
             fail_if=None):
    """Waits until the text of `path` after byte `since` matches regex."""
    rx = re.compile(regex, flags)

    def found():
        return rx.search(read_text(path, since))

    try:
        return wait_for(found, timeout, '/%s/ in %s' % (regex, what or path),
                        interval=0.05, fail_if=fail_if)
    except HarnessError as exc:
        # A late match (the process logged then died) still counts.
        m = found()
        if m:
            return m
        raise type(exc)('%s\n--- last lines of %s ---\n%s' % (
            exc, path, tail(read_text(path, since), 25))) from None


def tail(text, n=40):
    lines = text.splitlines()
    return '\n'.join(lines[-n:])
