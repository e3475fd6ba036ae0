"""Issue 18: scale-out 3 -> 5.  With three proxies claimed through haproxy,
two more sshds (host keys pinned ahead) start and join haproxy (one
graceful reload), then every proxies file is rewritten to announce all
five.  Both new proxies are claimed within a bound of the announcement
(the aim, 5 s, is the discovery-churn benchmark's; here with a margin),
with few dials; the three first agents keep their PIDs; data reaches the
node through the new forwards; status shows the wanted set of five, each
with its source and a fresh age, and passes the schema; /metrics carries
one age series per wanted proxy and passes promtool."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect  # noqa: E402

NAME = 'disc_churn_scale_out'
REQUIRES = dict(_lbdisc.REQUIRES, tools=['sshd', 'ssh', 'ssh-keygen', 'socat',
                                         'ip', 'ss', 'haproxy', 'promtool'])
TIMEOUT = 150
BOUND = 20.0            # aim 5 s (bench)
DIALS = 12              # two proxies; roundrobin over five


def run(ctx):
    d = _lbdisc.setup(ctx, spares=2)
    tp = d.tp
    st = tp.status_json()
    before = {n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()}
    dials0 = _lbdisc.dials(st)

    new = [d.add_proxy(), d.add_proxy()]
    d.lb.set_backends(d.proxies)            # one reload: all five
    mark = tp.log_mark()
    t0 = time.monotonic()
    d.write_sets(d.proxies)                 # every file: p1..p5
    st = d.wait_all_up(d.proxies, BOUND + 30, 'all five claimed')
    took = time.monotonic() - t0
    n = _lbdisc.dials(st) - dials0
    ctx.log('p4, p5 claimed %.1fs after the announcement, %d dials, %d '
            'misses', took, n, _lbdisc.cluster(st)['discovery_misses'])
    expect(took <= BOUND, 'scale-out took %.1fs, bound %.0fs', took, BOUND)
    expect(n <= DIALS, '%d dials for two new proxies, bound %d', n, DIALS)
    tp.wait_log(r'proxy p[45] \(\S+\) of c1 wanted: announced by p[1-5]', 5,
                since=mark)
    now = {k: a['pid'] for k, a in _lbdisc.by_proxy(st).items()
           if k in before}
    expect(now == before, 'agents on p1..p3 replaced: %r -> %r', before, now)
    d.check_data(new, nbytes=1 << 20)

    st = tp.wait_state(lambda s: _lbdisc.wanted_names(s) ==
                       ['p1', 'p2', 'p3', 'p4', 'p5'] and
                       all(w['claimed'] for w in
                           _lbdisc.cluster(s)['wanted']), 10,
                       'five wanted, all claimed')
    fps = {p.name: p.host_fingerprints()[0] for p in d.proxies}
    for w in _lbdisc.cluster(st)['wanted']:
        expect(w['host_key'] == fps[w['name']] and w['current'] and
               w['age_s'] <= 10 and w['source'] in fps and
               w['dial_addr'] == d.lb.address(),
               'wanted entry %r', w)
    expect(all(a['wanted'] for a in _lbdisc.up_agents(st)),
           'an agent on an unwanted proxy: %r', _lbdisc.up_agents(st))
    text = _lbdisc.check_surfaces(tp, st)
    series = [l for l in text.splitlines()
              if l.startswith('tunnelpool_discovery_wanted_age_seconds{')]
    expect(len(series) == 5, 'age series %r', series)
