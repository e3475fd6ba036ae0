"""Shared pieces of the benchmarks: the run context, statistics, /proc
readers (CPU, PSS), the C tools, log timestamps, and table rows."""

import contextlib
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(BENCH_DIR)
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))

from harness import procs                       # noqa: E402
from harness.env import Env                     # noqa: E402
from harness.procs import wait_log              # noqa: E402

CLK_TCK = os.sysconf('SC_CLK_TCK')
GIB = 1 << 30
MIB = 1 << 20


class BenchError(Exception):
    """A benchmark could not produce its figure (reported, not fatal)."""


# --------------------------------------------------------------------------
# the run

class Bench:
    """What every benchmark gets: mode, build dir, tools, output."""

    def __init__(self, mode, build_dir, tools, out=sys.stdout,
                 keep=False, tmp_dir='/tmp'):
        self.mode = mode                  # 'quick' or 'full'
        self.quick = mode == 'quick'
        self.build_dir = build_dir
        self.tools = tools                # name -> path of bench/tools builds
        self.out = out
        self.keep = keep
        self.tmp_dir = tmp_dir
        self.t0 = time.monotonic()

    def pick(self, quick, full):
        return quick if self.quick else full

    def log(self, msg, *args):
        if args:
            msg = msg % args
        self.out.write('[%7.1fs] %s\n' % (time.monotonic() - self.t0, msg))
        self.out.flush()

    @contextlib.contextmanager
    def env(self, name):
        """A harness Env in a fresh work dir; everything started through it
        is stopped when the block ends, even on errors."""
        workdir = tempfile.mkdtemp(prefix='tpb-%s-' % name[:8],
                                   dir=self.tmp_dir)
        logf = open(os.path.join(workdir, 'progress.log'), 'w')
        ctx = Env(workdir, self.build_dir, name=name, out=_Tee(logf,
                                                               self.out))
        ok = False
        try:
            yield ctx
            ok = True
        finally:
            problems = ctx.cleanup()
            for p in problems:
                self.log('%s teardown: %s', name, p)
            logf.close()
            if self.keep or not ok:
                self.log('%s: work dir kept: %s', name, workdir)
            else:
                shutil.rmtree(workdir, ignore_errors=True)


class _Tee:
    """Env progress lines go to the work dir log; only a short form to the
    console (the Env is chatty)."""

    def __init__(self, f, console):
        self.f = f
        self.console = console

    def write(self, s):
        self.f.write(s)

    def flush(self):
        self.f.flush()


# --------------------------------------------------------------------------
# statistics

def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2.0


def percentile(xs, q):
    """Nearest-rank percentile (q in 0..100) of an unsorted list."""
    xs = sorted(xs)
    if not xs:
        return None
    k = max(0, min(len(xs) - 1, int(-(-q * len(xs) // 100)) - 1))
    return xs[k]


def hist_percentile(buckets, q):
    """From cumulative (le, count) pairs (le -1 = +Inf): the upper bound of
    the bucket holding the q-th percentile; None without samples."""
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    want = q / 100.0 * total
    for le, cum in buckets:
        if cum >= want:
            return le
    return -1


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


# --------------------------------------------------------------------------
# /proc

def cpu_ticks(pid):
    """utime + stime of a process in clock ticks (None if gone)."""
    try:
        f = procs.stat_fields(pid)
        return int(f[13]) + int(f[14])
    except (OSError, ValueError, IndexError):
        return None


def cpu_ns(pid):
    """Nanoseconds on a CPU of every thread of a process: the first field
    of /proc/PID/task/TID/schedstat (the scheduler's sum_exec_runtime, the
    figure utime + stime are scaled to, without their 10 ms ticks: a 0.3 s
    transfer measured in ticks is +-3% per sample).  None if gone."""
    try:
        tids = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return None
    total = 0
    for tid in tids:
        try:
            with open('/proc/%d/task/%s/schedstat' % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass    # a thread gone meanwhile
    return total


# Without CONFIG_SCHED_INFO there is no schedstat: ticks, then.
SCHEDSTAT = os.path.exists('/proc/self/schedstat')


def io_syscalls(pid):
    """syscr + syscw of /proc/PID/io: read-type and write-type syscalls
    (read, recv*, write, send*, ...), counted without ptrace."""
    try:
        with open('/proc/%d/io' % pid) as f:
            d = dict(line.split(':', 1) for line in f)
        return int(d['syscr']) + int(d['syscw'])
    except (OSError, ValueError, KeyError):
        return None


class CpuMeter:
    """CPU seconds of named groups of processes between start() and stop().
    groups: name -> callable returning the current pids of the group (a
    process that appears meanwhile counts from zero, one that vanished is
    lost: the benchmarks keep their processes alive across a measure).
    CPU comes from schedstat (ns) where the kernel has it, else from
    utime + stime (ticks).  With reader=io_syscalls it counts I/O syscalls
    instead."""

    def __init__(self, groups, reader=None, scale=None):
        self.groups = groups
        if reader is None:
            reader, scale = ((cpu_ns, 1e9) if SCHEDSTAT else
                             (cpu_ticks, float(CLK_TCK)))
        self.reader = reader
        self.scale = scale if scale is not None else 1.0
        self.t0 = {}

    def _snap(self):
        snap = {}
        for name, fn in self.groups.items():
            d = {}
            for pid in fn():
                t = self.reader(pid)
                if t is not None:
                    d[pid] = t
            snap[name] = d
        return snap

    def start(self):
        self.t0 = self._snap()

    def stop(self):
        t1 = self._snap()
        out = {}
        for name, d in t1.items():
            before = self.t0.get(name, {})
            out[name] = sum(v - before.get(pid, 0)
                            for pid, v in d.items()) / self.scale
        return out


def smaps_rollup(pid):
    """Dict of smaps_rollup fields in KiB (Rss, Pss, Private_Clean, ...)."""
    out = {}
    with open('/proc/%d/smaps_rollup' % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(':') and \
                    parts[1].isdigit():
                out[parts[0][:-1]] = int(parts[1])
    out['Private'] = out.get('Private_Clean', 0) + out.get('Private_Dirty',
                                                           0)
    return out


def smaps_breakdown(pid, top=8):
    """Private, private dirty and PSS KiB per mapping name ([heap], [anon],
    [stack], each library by base name), largest dirty first: where the
    memory is.  Dirty private pages are what a process costs whatever
    else runs; clean private pages of a library are only private while no
    other process maps it."""
    agg = procs.smaps_by_mapping(pid)
    items = sorted(agg.items(), key=lambda kv: (-kv[1]['dirty_kib'],
                                                -kv[1]['private_kib']))
    return [dict(name=k, **v) for k, v in items[:top]]


def mem_summary(pid):
    m = smaps_rollup(pid)
    return {'pss_kib': m.get('Pss'), 'private_kib': m.get('Private'),
            'dirty_kib': m.get('Private_Dirty'),
            'rss_kib': m.get('Rss'), 'swap_kib': m.get('Swap', 0)}


def loadavg():
    with open('/proc/loadavg') as f:
        return [float(x) for x in f.read().split()[:3]]


# --------------------------------------------------------------------------
# tools

def tpb_server(ctx, bench, mode, name=None):
    """Starts `tpb server sink|echo 0`; returns (Process, port)."""
    p = ctx.spawn(name or 'tpb-%s' % mode, [bench.tools['tpb'], 'server',
                                            mode, '0'])
    m = wait_log(p.log_path, r'^port (\d+)$', 10, what='tpb %s port' % mode,
                 fail_if=p.died)
    return p, int(m.group(1))


def run_tool(argv, timeout=600):
    cp = subprocess.run([str(a) for a in argv], capture_output=True,
                        text=True, timeout=timeout)
    if cp.returncode != 0:
        raise BenchError('%s failed (exit %d): %s' % (
            ' '.join(map(str, argv[:3])), cp.returncode,
            (cp.stderr or cp.stdout)[-500:]))
    return cp.stdout


# --------------------------------------------------------------------------
# logs of the daemon (logfmt)

_KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def logfmt(line):
    d = {}
    for k, v in _KV.findall(line):
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace('\\\\', '\\')
        d[k] = v
    return d


def log_records(text):
    """Parsed logfmt lines that carry a ts, with 't' = epoch seconds."""
    out = []
    for line in text.splitlines():
        if 'ts=' not in line:
            continue
        d = logfmt(line)
        ts = d.get('ts')
        if not ts:
            continue
        try:
            dt = datetime.datetime.strptime(ts, '%Y-%m-%dT%H:%M:%S.%fZ')
        except ValueError:
            continue
        d['t'] = dt.replace(tzinfo=datetime.timezone.utc).timestamp()
        out.append(d)
    return out


# --------------------------------------------------------------------------
# results

class Row:
    """One line of the table."""

    def __init__(self, section, metric, value, ref=None, ratio=None,
                 aim=None, met=None, note=''):
        self.section = section
        self.metric = metric
        self.value = value
        self.ref = ref
        self.ratio = ratio
        self.aim = aim
        self.met = met
        self.note = note

    def as_dict(self):
        return dict(section=self.section, metric=self.metric,
                    value=self.value, ref=self.ref, ratio=self.ratio,
                    aim=self.aim, met=self.met, note=self.note)


def fmt_num(v, unit=''):
    if v is None:
        return '-'
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        s = '{:,}'.format(v)
    elif abs(v) >= 100:
        s = '{:,.0f}'.format(v)
    elif abs(v) >= 10:
        s = '%.1f' % v
    elif abs(v) >= 1:
        s = '%.2f' % v
    else:
        s = '%.3f' % v
    return s + unit


def fmt_ratio(r):
    return '-' if r is None else '%.2fx' % r
