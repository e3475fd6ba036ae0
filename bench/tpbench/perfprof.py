"""Where time goes, without ptrace: system-wide `perf record` while a
short transfer runs, then split by pid.

Why not `strace -c -f -p WORKER`: attaching ptrace interrupts the worker's
blocking poll, the kernel resumes it with restart_syscall(2), and the
worker's seccomp filter does not allow that syscall: the worker dies of
SIGSYS (seen: "worker lost: sandbox violation (killed by SIGSYS)").  perf
per-process attach (-p) counts nothing on this kernel; -a works.
"""

import collections
import os
import re
import shutil
import signal
import subprocess
import time

UNISTD = '/usr/include/x86_64-linux-gnu/asm/unistd_64.h'


def have_perf():
    return shutil.which('perf') is not None


def _syscall_names():
    names = {}
    try:
        with open(UNISTD) as f:
            for line in f:
                m = re.match(r'#define __NR_(\w+)\s+(\d+)', line)
                if m:
                    names[int(m.group(2))] = m.group(1)
    except OSError:
        pass
    return names


def _record(ctx, name, argv, fn):
    """Runs perf record -a ARGV around fn(); returns (data path, fn())."""
    data = ctx.path('%s.perf.data' % name)
    p = ctx.spawn('perf-%s' % name, ['perf', 'record', '-a', '-o', data] +
                  argv)
    time.sleep(1.0)             # perf needs a moment before it records
    try:
        result = fn()
    finally:
        p.signal(signal.SIGINT)
        p.wait(60)
    return data, result


def syscalls(ctx, name, fn, pids):
    """Per-pid syscall counts (name -> count) while fn() runs.  pids: a
    dict label -> list of pids.  Returns (label -> Counter, fn result)."""
    data, result = _record(ctx, name, ['-e', 'raw_syscalls:sys_enter',
                                       '--exclude-perf'], fn)
    want = {}
    for label, ps in pids.items():
        for pid in ps:
            want[pid] = label
    names = _syscall_names()
    counts = {label: collections.Counter() for label in pids}
    rx = re.compile(r'^\s*(\d+)/\d+\s+NR (\d+)')
    proc = subprocess.Popen(['perf', 'script', '-i', data, '-F',
                             'pid,tid,trace'], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        m = rx.match(line)
        if not m:
            continue
        label = want.get(int(m.group(1)))
        if label is not None:
            nr = int(m.group(2))
            counts[label][names.get(nr, 'nr%d' % nr)] += 1
    proc.wait()
    os.unlink(data)
    return counts, result


def cpu(ctx, name, fn, pids, top=8):
    """Sampled CPU profile (perf record -a -F 997) while fn() runs; per
    label: share by DSO and the top symbols, in % of that label's samples.
    Returns (label -> dict, fn result)."""
    data, result = _record(ctx, name, ['-F', '997'], fn)
    want = {}
    for label, ps in pids.items():
        for pid in ps:
            want[pid] = label
    cp = subprocess.run(['perf', 'report', '-i', data, '--stdio',
                         '--no-children', '--sort', 'pid,dso,sym', '-q',
                         '--percent-limit', '0'], capture_output=True,
                        text=True, timeout=300)
    rx = re.compile(r'^\s*([0-9.]+)%\s+(\d+):\S*\s+(\S+)\s+\[.\]\s+(.*)$')
    agg = {label: {'samples_pct': 0.0, 'dso': collections.Counter(),
                   'sym': collections.Counter()} for label in pids}
    for line in cp.stdout.splitlines():
        m = rx.match(line)
        if not m:
            continue
        label = want.get(int(m.group(2)))
        if label is None:
            continue
        pct = float(m.group(1))
        dso = m.group(3)
        sym = m.group(4).strip()
        a = agg[label]
        a['samples_pct'] += pct
        a['dso'][dso] += pct
        a['sym']['%s (%s)' % (sym, dso)] += pct
    os.unlink(data)
    out = {}
    for label, a in agg.items():
        tot = a['samples_pct'] or 1.0
        out[label] = {
            'share_of_all_samples_pct': round(a['samples_pct'], 2),
            'dso_pct': [(d, round(100 * v / tot, 1))
                        for d, v in a['dso'].most_common(6)],
            'top_pct': [(s, round(100 * v / tot, 1))
                        for s, v in a['sym'].most_common(top)],
        }
    return out, result


_WAKING = re.compile(r'^\s*(\d+)\s+\[(\d+)\]\s+sched:sched_waking:'
                     r'.*?\bpid=(\d+).*?\btarget_cpu=(\d+)')
_SWITCH = re.compile(r'^\s*(\d+)\s+\[(\d+)\]\s+sched:sched_switch:.*?'
                     r'\bprev_pid=(\d+).*?\bprev_state=(\S+)')


def wakeups(ctx, name, fn, clients, wakers):
    """Scheduler events while fn() runs (perf record -a of
    sched:sched_waking and sched:sched_switch): per label of clients
    (label -> pids), how often it went to sleep (switched out in state S)
    and how often a process of wakers (label -> pids) woke it, split into
    wakeups on the waker's own CPU and on another CPU (the kernel sends
    that CPU an inter-processor interrupt, and the waker pays for it).
    Returns (label -> {'sleeps', 'woken': {waker: {'same_cpu',
    'other_cpu'}}}, fn result)."""
    data, result = _record(ctx, name, ['-e', 'sched:sched_waking', '-e',
                                       'sched:sched_switch'], fn)
    label_of = {pid: label for label, ps in clients.items() for pid in ps}
    waker_of = {pid: label for label, ps in wakers.items() for pid in ps}
    out = {label: {'sleeps': 0,
                   'woken': {w: {'same_cpu': 0, 'other_cpu': 0}
                             for w in wakers}} for label in clients}
    proc = subprocess.Popen(['perf', 'script', '-i', data, '-F',
                             'pid,cpu,event,trace'], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        m = _WAKING.match(line)
        if m:
            label = label_of.get(int(m.group(3)))
            waker = waker_of.get(int(m.group(1)))
            if label is not None and waker is not None:
                where = ('same_cpu' if int(m.group(2)) == int(m.group(4))
                         else 'other_cpu')
                out[label]['woken'][waker][where] += 1
            continue
        m = _SWITCH.match(line)
        if m and m.group(4).startswith('S'):
            label = label_of.get(int(m.group(3)))
            if label is not None:
                out[label]['sleeps'] += 1
    proc.wait()
    os.unlink(data)
    return out, result
