"""`tunnelpool close` forces a reconnect: `close --pid PID` makes that
worker exit 0 (closed, counted as such in the metrics), a new worker comes
up for the same tunnel and carries data; the other tunnel is not touched;
`close CLUSTER DIALADDR` does the same by key; an unknown pid or key is an
error (exit 1)."""


from harness import expect, expect_eq, procs
from harness.target import send_and_check
from harness.tunnelpool import one_proxy_pool

NAME = 'ops_close_cmd'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 120


def connected(st):
    return {a['cluster']: a['pid'] for a in st['agents']
            if a['state'] == 'connected'}


def closed_exits(tp):
    v = tp.metric('tunnelpool_worker_exits_total', reason='closed')
    expect(v is not None, 'no closed exits series')
    return int(v)


def close_and_wait(ctx, tp, args, cluster, old, fwd):
    """Runs `tunnelpool close ARGS`; waits for the old worker to go and a
    new one to carry data; returns the new pid."""
    mark = tp.log_mark()
    cp = tp.ctl('close', *args, check=False)
    expect(cp.returncode == 0, 'close %s: exit %d %s', ' '.join(args),
           cp.returncode, cp.stderr)
    procs.wait_for(lambda: not procs.alive(old), 10,
                   'worker %d to exit' % old)
    tp.wait_log(r'msg="worker closed \(exit 0\)" cluster=%s addr=\S+ pid=%d '
                % (cluster, old), 10, since=mark)
    st = tp.wait_state(lambda s: connected(s).get(cluster, old) != old, 30,
                       '%s reconnected' % cluster)
    new = connected(st)[cluster]
    ctx.log('close %s: %d -> %d', ' '.join(args), old, new)
    send_and_check('127.0.0.1', fwd, 128 * 1024)
    return new, st


def run(ctx):
    pool = one_proxy_pool(ctx, backoff=('200ms', '1s'))
    tp, proxy, fwd = pool.tp, pool.proxy, pool.fwd
    pids = connected(pool.status)
    exits0 = closed_exits(tp)

    new, st = close_and_wait(ctx, tp, ['--pid', str(pids['c1'])], 'c1',
                             pids['c1'], fwd[0])
    expect_eq(connected(st)['c2'], pids['c2'], 'pid of the untouched c2')
    expect_eq(closed_exits(tp), exits0 + 1, 'closed exits')
    expect(not procs.zombies(tp.pid), 'zombies: %r', procs.zombies(tp.pid))

    new2, st = close_and_wait(ctx, tp, ['c1', proxy.address()], 'c1', new,
                              fwd[0])
    expect_eq(connected(st)['c2'], pids['c2'], 'pid of the untouched c2')
    expect_eq(closed_exits(tp), exits0 + 2, 'closed exits')

    for args, want in ((['--pid', '1'], 'no agent with that pid'),
                       (['c9', proxy.address()], 'no such tunnel key')):
        cp = tp.ctl('close', *args, check=False)
        expect(cp.returncode == 1 and want in cp.stderr,
               'close %s: exit %d %r', ' '.join(args), cp.returncode,
               cp.stderr)
    expect_eq(connected(tp.status_json()), {'c1': new2, 'c2': pids['c2']},
              'workers after the refused closes')
