"""Issue 18: a rolling replacement whose balancer lags the announcement
for a long time.  Every proxies file announces the new fleet, but haproxy
keeps the old one: every discovery dial lands on an old proxy the pool
still holds (make before break), the misses repeat, and their delay grows
(the lag pacing, here with discovery.lag_probe_max raised to 30 s so that
it can grow past the bound).  Then the operator reloads haproxy with the new fleet
and kills the old one at once.  The loss of the proxies the cluster had
announced away ends the miss streak: the pool, holding nothing, dials at
once and claims the new fleet within seconds -- not at the end of a miss
delay grown while nothing could be found.

The scenario waits until the pending discovery retry is longer than the
bound it then asserts, so that a pool that waited out its streak would
fail it."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect, procs  # noqa: E402

NAME = 'disc_churn_lagging_lb'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 240
BOUND = 5.0             # from the old fleet's death to the new one held
RETRY_MS = 7000         # the grown miss delay the swap waits for


def run(ctx):
    # The daemon's default backoff (1 s..30 s) and a lag cap of 30 s: the
    # miss delay can grow past the bound.
    d = _lbdisc.setup(ctx, spares=3, backoff=('1s', '30s'),
                      extra={'discovery': {'lag_probe_max': '30s'}})
    tp, old = d.tp, list(d.proxies)

    new = [d.add_proxy() for _ in range(3)]     # started, not announced
    d.write_sets(new, on=new)
    d.write_sets(new, on=old)                   # every file: only the new
    t_ann = time.monotonic()
    # haproxy still sends every dial to the old fleet: misses, growing.
    box = {}

    def grown():
        c = _lbdisc.cluster(tp.status_json())
        box['c'] = c
        return c['discovery_retry_in_ms'] >= RETRY_MS

    procs.wait_for(grown, 150, 'a discovery retry >= %d ms' % RETRY_MS,
                   interval=0.1)
    c = box['c']
    ctx.log('%.1fs after the announcement: %d misses, streak %d, next '
            'retry in %d ms; %d agents up on the old fleet',
            time.monotonic() - t_ann, c['discovery_misses'],
            c['discovery_miss_streak'], c['discovery_retry_in_ms'],
            len(_lbdisc.up_agents(tp.status_json())))
    expect(len(_lbdisc.up_agents(tp.status_json())) == 3,
           'the old agents did not stay up while nothing new was found')
    d.lb.set_backends(new)                      # graceful reload
    for p in old:
        p.kill()
    t_dead = time.monotonic()
    d.proxies = new
    st = d.wait_all_up(new, BOUND + 60, 'the three new proxies claimed')
    took = time.monotonic() - t_dead
    ctx.log('new fleet claimed %.1fs after the old one died (the pending '
            'retry was %d ms)', took, c['discovery_retry_in_ms'])
    expect(took <= BOUND, 'new fleet claimed %.1fs after the old one died, '
           'bound %.0fs: the pool waited out its miss streak', took, BOUND)
    d.check_data(new)
    expect(_lbdisc.cluster(st)['proxies_announced'] == 3,
           'announced %r, want the new 3',
           _lbdisc.cluster(st)['proxies_announced'])
