"""Issue 18: a rolling replacement of the whole proxy fleet.  Three proxies
behind haproxy are claimed; three new ones (new host keys, pinned ahead)
take their place the way an operator swaps a fleet: the new sshds start,
every proxies file (old and new) is rewritten to announce only the new
three, haproxy is reloaded gracefully with only the new backends, and the
old sshds are killed.  All three new proxies are claimed within a bound
after the last old one dies, with a handful of dials (no storm of misses),
every new forward carries data, and nothing of the old fleet stays wanted
or claimed.  The tight figures (<= 10 s, <= 2 dials per proxy) are the
discovery-churn benchmark's; here the bounds have a margin for a loaded
machine."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect  # noqa: E402

NAME = 'disc_churn_replace'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 180
BOUND = 30.0            # aim 10 s (bench); margin for a loaded 2-core box
DIALS_PER_PROXY = 4.0   # aim 2 (bench)


def run(ctx):
    d = _lbdisc.setup(ctx, spares=3)
    tp, old = d.tp, list(d.proxies)
    spawns0 = tp.status_json()['supervisor']['spawns']

    new = [d.add_proxy() for _ in range(3)]     # started, not announced
    d.write_sets(new, on=new)
    mark = tp.log_mark()
    t_ann = time.monotonic()
    d.write_sets(new, on=old)                   # every file: only the new
    d.lb.set_backends(new)                      # graceful reload
    for p in old:
        p.kill()
    t_dead = time.monotonic()
    ctx.log('fleet swapped: announced, haproxy reloaded, old killed in '
            '%.1fs', t_dead - t_ann)
    d.proxies = new
    st = d.wait_all_up(new, BOUND + 30, 'the three new proxies claimed')
    took = time.monotonic() - t_dead
    c = _lbdisc.cluster(st)
    dials = st['supervisor']['spawns'] - spawns0
    ctx.log('new fleet claimed %.1fs after the last old proxy died: %d '
            'dials, %d misses', took, dials, c['discovery_misses'])
    expect(took <= BOUND, 'new fleet claimed %.1fs after the old one died, '
           'bound %.0fs', took, BOUND)
    expect(dials <= DIALS_PER_PROXY * len(new), '%d dials for %d new '
           'proxies, bound %.0f per proxy', dials, len(new), DIALS_PER_PROXY)
    expect(c['proxies_announced'] == 3, 'announced %r, want the new 3',
           c['proxies_announced'])
    d.check_data(new)
    # The old fleet is neither wanted nor held, and stays so.
    olds = {fp for p in old for fp in p.host_fingerprints()}
    st = tp.status_json()
    held = [a for a in st['agents'] if a['proxy']['host_key'] in olds]
    expect(not held, 'agents on old proxies: %r', held)
