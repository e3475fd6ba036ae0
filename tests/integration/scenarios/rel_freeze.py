"""A stopped and continued worker lives on (issue 14, item 4).

Three tunnels up.  Every worker is stopped (SIGSTOP) and continued
(SIGCONT), then frozen and thawed with the cgroup freezer (what `systemctl
freeze`, `docker pause` and suspend do); a worker blocked in poll(2)
resumes it through restart_syscall(2), which the seccomp allowlist used to
kill as a sandbox violation.  After each: the same PIDs, connected, data
through every tunnel, no sandbox violation, no worker lost.
"""

import os
import time

from harness import expect, expect_eq, ports, procs
from harness.target import send_and_check
from harness.tunnelpool import one_proxy

NAME = 'rel_freeze'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 120

FREEZER = '/sys/fs/cgroup/freezer'
PAUSE = 2.0         # well inside timeouts.ping_interval (10 s)


def connected(st):
    return sorted((a['cluster'], a['pid']) for a in st['agents']
                  if a['state'] == 'connected')


def sandbox_violations(tp):
    for line in tp.metrics_text().splitlines():
        if line.startswith('tunnelpool_sandbox_violations_total '):
            return int(float(line.split()[1]))
    return 0


def intact(ctx, tp, want, fwd, mark, what):
    # Give a worker that was killed time to be reaped and reported.
    time.sleep(1.0)
    st = tp.status_json()
    expect_eq(connected(st), want, 'agents after %s' % what)
    for port in fwd.values():
        send_and_check('127.0.0.1', port, 256 * 1024)
    expect_eq(sandbox_violations(tp), 0, 'sandbox violations after %s' % what)
    text = tp.log_text(mark)
    expect('worker lost' not in text, '%s: a worker was lost:\n%s', what,
           text[-2000:])


def stop_continue(pids):
    for p in pids:
        os.kill(p, 19)      # SIGSTOP
    for p in pids:
        procs.wait_for(lambda p=p: procs.stat_fields(p)[2] == 'T', 5,
                       'worker %d stopped' % p)
    time.sleep(PAUSE)
    for p in pids:
        os.kill(p, 18)      # SIGCONT


def freeze_thaw(ctx, pids):
    """Freezes pids in a cgroup of their own, thaws them, moves them back."""
    cg = os.path.join(FREEZER, 'tpit-%d' % os.getpid())
    os.mkdir(cg)
    try:
        for p in pids:
            with open(os.path.join(cg, 'tasks'), 'w') as f:
                f.write('%d\n' % p)
        with open(os.path.join(cg, 'freezer.state'), 'w') as f:
            f.write('FROZEN\n')
        procs.wait_for(lambda: open(os.path.join(cg, 'freezer.state'))
                       .read().strip() == 'FROZEN', 5, 'cgroup frozen')
        time.sleep(PAUSE)
        with open(os.path.join(cg, 'freezer.state'), 'w') as f:
            f.write('THAWED\n')
    finally:
        for p in pids:
            try:
                with open(os.path.join(FREEZER, 'tasks'), 'w') as f:
                    f.write('%d\n' % p)
            except OSError:
                pass
        with open(os.path.join(cg, 'freezer.state'), 'w') as f:
            f.write('THAWED\n')
        os.rmdir(cg)


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)
    clusters = ['f1', 'f2', 'f3']
    fwd = dict(zip(clusters, ports.free_ports(3)))
    tp = ctx.tunnelpool(node_key, kh, log_level='info')
    for c in clusters:
        tp.add_tunnel(c, c, [proxy.address()],
                      [('127.0.0.1:%d' % fwd[c], echo.address())])
    tp.start()
    st = tp.wait_state(lambda s: len(connected(s)) == 3, 30,
                       'three tunnels connected')
    want = connected(st)
    pids = [pid for _, pid in want]
    for c in clusters:
        proxy.wait_forward(fwd[c])
        send_and_check('127.0.0.1', fwd[c], 64 * 1024)

    mark = tp.log_mark()
    stop_continue(pids)
    intact(ctx, tp, want, fwd, mark, 'SIGSTOP/SIGCONT')
    ctx.log('SIGSTOP %.0f s, SIGCONT: workers %r live on', PAUSE, pids)

    expect(os.path.isdir(FREEZER), 'no cgroup freezer at %s', FREEZER)
    mark = tp.log_mark()
    freeze_thaw(ctx, pids)
    intact(ctx, tp, want, fwd, mark, 'freeze/thaw')
    ctx.log('cgroup freezer %.0f s, thawed: workers %r live on', PAUSE, pids)
