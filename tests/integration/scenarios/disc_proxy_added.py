"""Issue 7, scenario 2: a proxy added to the cluster is discovered.  After
three proxies are claimed through haproxy, a fourth sshd (its host key
pinned ahead of time) is put behind haproxy (soft reload) and into every
proxies file (rewritten atomically): the discovery helpers re-send the full
set on the file change, the pool dials through the load balancer until it
lands on the new proxy and claims it, data through its forwarded port
reaches the node, and the agents on the other proxies are untouched."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect  # noqa: E402

NAME = 'disc_proxy_added'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 120


def run(ctx):
    d = _lbdisc.setup(ctx, spares=1)
    tp = d.tp
    before = {n: a['pid'] for n, a in _lbdisc.by_proxy(tp.status_json())
              .items()}

    p4 = d.add_proxy()
    d.lb.add_backend(p4)               # soft reload: connections stay
    mark = tp.log_mark()
    d.write_sets(d.proxies)            # every proxies file: p1..p4
    # Each claimed agent's helper re-sends the full set (inotify).
    tp.wait_log(r'discovery: 4 proxies', 10, since=mark)
    st = tp.wait_state(lambda s: _lbdisc.cluster(s)['proxies_announced']
                       == 4, 10, 'p4 announced')
    st = d.wait_all_up(d.proxies, 60)
    ctx.log('p4 claimed %.1fs after the files changed: %r', ctx.elapsed(),
            sorted((n, a['pid'], a['role']) for n, a in
                   _lbdisc.by_proxy(st).items()))
    up = _lbdisc.by_proxy(st)
    expect(up['p4']['proxy']['host_key'] in p4.host_fingerprints(),
           'agent on p4 reports host key %r, want %r',
           up['p4']['proxy']['host_key'], p4.host_fingerprints())
    now = {n: a['pid'] for n, a in up.items() if n != 'p4'}
    expect(now == before, 'agents on p1..p3 replaced: %r -> %r', before, now)
    # The new proxy's forward carries data to the node (and the old ones
    # still do).
    d.check_data([p4], nbytes=1 << 20)
    d.check_data(d.proxies)
    expect(p4.accepted(), 'p4 logged no accepted login')
