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
