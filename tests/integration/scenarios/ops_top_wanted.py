"""`tunnelpool top`, key w: the wanted set of a discovery cluster in a real
terminal (tmux), as status --json has it.  Three proxies behind haproxy are
claimed: the view lists each (proxy name, host key, claimed and current,
the proxy whose list named it).  A fourth proxy is announced but not yet
behind the balancer: its row says not claimed while the pool's dials miss,
and the cluster table counts those misses with the next retry; once haproxy
routes to it, its row turns claimed.  w again shows the agents."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect, procs  # noqa: E402
from harness.tmux import Tmux, wait_screen  # noqa: E402

NAME = 'ops_top_wanted'
REQUIRES = dict(_lbdisc.REQUIRES,
                binaries=_lbdisc.REQUIRES['binaries'] + ['tunnelpool-top'],
                tools=['tmux'])
TIMEOUT = 150


def wanted_row(screen, d, proxy, claimed):
    """The wanted-set row of proxy, with its host key and claimed flag."""
    fp = proxy.host_fingerprints()[0]
    fp = fp[7:] if fp.startswith('SHA256:') else fp
    rx = re.compile(r'^%s\s+127\.0\.0\.1:%d\s+%s\s+%s\S*\s+%s\s+yes\s+p\d+\s'
                    % (d.cluster, d.lb.port, proxy.name,
                       re.escape(fp[:20]), 'yes' if claimed else 'no'),
                    re.M)
    return rx.search(screen)


def cluster_row(screen, d):
    return _lbdisc.top_cluster_row(screen, d.cluster)


def run(ctx):
    d = _lbdisc.setup(ctx, spares=1)
    tp = d.tp
    tm = Tmux(ctx, '%s top -s %s' % (ctx.binary('tunnelpool'),
                                     tp.control_socket))
    wait_screen(ctx, tm, lambda s: 'supervisor pid %d' % tp.pid in s,
                'the top header')
    tm.keys('w')
    screen = wait_screen(ctx, tm, lambda s: all(
        wanted_row(s, d, p, True) for p in d.proxies) and s,
        'p1..p3 wanted and claimed')
    ctx.log('wanted view:\n%s', screen.rstrip())
    for what in ('HOST KEY', 'CLAIMED', 'CURRENT', 'SOURCE', 'AGE', 'SINCE',
                 'MISSES', 'REFUSED', 'RETRY IN', 'BALANCER', 'w agents',
                 'wanted 1-3 of 3'):
        expect(what in screen, 'wanted view lacks %r', what)
    expect('RECONNECTS' not in screen, 'the agent table is still shown')

    # p4 announced, but haproxy does not route to it yet: dials miss.
    p4 = d.add_proxy()
    d.write_sets(d.proxies)
    tp.wait_state(lambda s: _lbdisc.cluster(s)['discovery_misses'] >= 2,
                  30, 'misses while p4 is not behind the balancer')
    screen = wait_screen(ctx, tm, lambda s: wanted_row(s, d, p4, False) and
                         (cluster_row(s, d) or (0,))[0] >= 2 and s,
                         'p4 wanted, not claimed, and the misses counted')
    ctx.log('p4 announced, not routed:\n%s', screen.rstrip())
    misses, refused, _retry, lb = cluster_row(screen, d)
    st = tp.status_json()
    c = _lbdisc.cluster(st)
    expect(misses <= c['discovery_misses'] and
           refused <= c['claims_refused'],
           'top shows %d misses / %d refused, status later says %d / %d',
           misses, refused, c['discovery_misses'], c['claims_refused'])
    # While the streak lasts, RETRY IN shows the delay ("now" while a dial
    # is due or in flight, "-" outside a streak).
    wait_screen(ctx, tm, lambda s: re.match(
        r'^\d+(\.\d+)?(us|ms|s)$',
        (cluster_row(s, d) or (0, 0, '-', '-'))[2]),
        'a retry delay in the miss streak')
    # Misses alone are not a lagging balancer: every held proxy is listed.
    expect(lb == '-' and not c['discovery_lagging'],
           'BALANCER %r, discovery_lagging %r while p1..p3 stay listed',
           lb, c['discovery_lagging'])

    d.lb.add_backend(p4)
    d.wait_all_up(d.proxies, 60)
    wait_screen(ctx, tm, lambda s: wanted_row(s, d, p4, True),
                'p4 claimed in the wanted view')
    wait_screen(ctx, tm, lambda s: 'wanted 1-4 of 4' in s, '4 wanted rows')

    tm.keys('w')
    wait_screen(ctx, tm, lambda s: 'RECONNECTS' in s and
                'HOST KEY' not in s and 'agents 1-' in s,
                'the agent table again')
    tm.keys('q')
    procs.wait_for(lambda: tm.exit_code() is not None, 10, 'top to exit')
    expect(tm.exit_code() == 0, 'top exited %r after q', tm.exit_code())
