"""Issue 18: a rolling replacement whose balancer lags the announcement
by the few seconds an operator takes between steps.  Every proxies file
announces the new fleet at once, haproxy is reloaded with only the new
backends 5 s later, the old sshds die 5 s after that.  While the balancer
still points at the old fleet, every discovery dial lands on an old proxy
the pool holds: the lag pacing sends one probe at a time, the gap
doubling from backoff.min (1 s) to discovery.lag_probe_max (4 s, plus at
most a quarter).  So the misses stay a handful, the old agents stay up
(make before break), and the new fleet is held within one capped gap of
the reload -- before the old one dies.  `tunnelpool top`, in a real
terminal, says so in the cluster's BALANCER column: "lagging" while the
balancer lags, "-" once the new fleet is held.

Fails on the previous pacing: three parallel dials at the announcement
and 250 ms between misses made ~11 misses in the 5 s."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect  # noqa: E402
from harness.tmux import Tmux, wait_screen  # noqa: E402

NAME = 'disc_churn_lag_paced'
REQUIRES = dict(_lbdisc.REQUIRES,
                binaries=_lbdisc.REQUIRES['binaries'] + ['tunnelpool-top'],
                tools=['tmux'])
TIMEOUT = 180
LAG = 5.0               # announcement -> reload -> kill, each step
MISSES_MAX = 4          # probes at ~0, 1, 3 s (and one more if slow)
CATCH_UP = 4.0 * 1.25 + 2.0     # capped gap + a loaded machine's margin


def balancer(screen, d):
    """The BALANCER column of the cluster's row in top, or None."""
    row = _lbdisc.top_cluster_row(screen, d.cluster)
    return row[3] if row else None


def run(ctx):
    d = _lbdisc.setup(ctx, spares=3, backoff=('1s', '30s'))
    tp, old = d.tp, list(d.proxies)
    tm = Tmux(ctx, '%s top -s %s' % (ctx.binary('tunnelpool'),
                                     tp.control_socket))
    wait_screen(ctx, tm, lambda s: balancer(s, d) == '-',
                'the cluster row, balancer "-"')
    new = [d.add_proxy() for _ in range(3)]     # started, not announced
    d.write_sets(new, on=new)
    st = tp.status_json()
    c0, dials0 = _lbdisc.cluster(st), _lbdisc.dials(st)
    mark = tp.log_mark()
    t_ann = time.time()
    d.write_sets(new, on=old)                   # every file: only the new
    low, lagging, shown = 3, False, set()
    while time.time() < t_ann + LAG:
        st = tp.status_json()
        low = min(low, len(_lbdisc.up_agents(st)))
        lagging |= _lbdisc.cluster(st)['discovery_lagging']
        shown.add(balancer(tm.screen(), d))
        time.sleep(0.1)
    expect(lagging, 'status never showed discovery_lagging while the '
           'balancer lagged')
    expect('lagging' in shown, 'top never showed BALANCER lagging while the '
           'balancer lagged (it showed %r)', sorted(map(str, shown)))
    expect(tp.metric('tunnelpool_discovery_lagging', cluster='c1') == 1,
           'tunnelpool_discovery_lagging is not 1 while the balancer lags')
    st = tp.status_json()
    c = _lbdisc.cluster(st)
    misses = c['discovery_misses'] - c0['discovery_misses']
    starts = [t for t in _lbdisc.spawn_times(tp.log_text(since=mark))
              if t >= t_ann]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    ctx.log('%.0fs of lag: %d dials, %d misses, gaps %s, streak %d, next '
            'retry in %d ms', LAG, len(starts), misses,
            ['%.2f' % g for g in gaps], c['discovery_miss_streak'],
            c['discovery_retry_in_ms'])
    expect(low == 3, 'only %d agents up while the balancer lagged: the old '
           'fleet must stay until a new proxy is up', low)
    expect(1 <= misses <= MISSES_MAX, '%d misses in %.0fs of lag, want 1 to '
           '%d', misses, LAG, MISSES_MAX)
    # One probe at a time, each gap at least the doubled step (1, 2, 4 s;
    # the supervisor's clock: 0.1 s of slack for its timer).
    for i, g in enumerate(gaps):
        want = min(1.0 * 2 ** i, 4.0)
        expect(g >= want - 0.1, 'probe %d went %.2fs after the one before, '
               'the lag pacing wants >= %.1fs', i + 2, g, want)
    d.lb.set_backends(new)                      # graceful reload
    t_lb = time.time()
    st = d.wait_all_up(new, CATCH_UP + 30, 'the three new proxies claimed')
    took = time.time() - t_lb
    ctx.log('new fleet held %.1fs after the reload', took)
    # The old fleet is swept once a new proxy is up: the pacing is over.
    st = tp.wait_state(lambda s: not _lbdisc.cluster(s)['discovery_lagging'],
                       10, 'discovery_lagging false once the new fleet is up')
    expect(tp.metric('tunnelpool_discovery_lagging', cluster='c1') == 0,
           'tunnelpool_discovery_lagging still 1 after the swap')
    wait_screen(ctx, tm, lambda s: balancer(s, d) == '-',
                'BALANCER "-" once the new fleet is held')
    expect(took <= CATCH_UP, 'new fleet held %.1fs after the balancer moved, '
           'bound %.1fs', took, CATCH_UP)
    for p in old:
        p.kill()
    d.proxies = new
    d.check_data(new)
    st = tp.status_json()
    total = _lbdisc.dials(st) - dials0
    ctx.log('%d dials for 3 new proxies', total)
    expect(total <= MISSES_MAX + 3 + 1, '%d dials for 3 new proxies', total)
    olds = {fp for p in old for fp in p.host_fingerprints()}
    held = [a for a in st['agents'] if a['proxy']['host_key'] in olds]
    expect(not held, 'agents on old proxies: %r', held)
