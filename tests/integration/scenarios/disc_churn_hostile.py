"""Issue 18: a list cannot widen what the pool dials or trusts.  With three
proxies claimed, p3's proxies file is rewritten to a set that does not
contain p3 and names two host keys this node does not trust: a stray
sshd's (evil) and a key no proxy has (ghost).  Neither becomes wanted
(logged: the list names 2 keys this node does not trust), p3 stays
wanted (p1 and p2 still name it), nothing is dialled for them.  Then
evil joins haproxy and the pool has to dial (p1's worker killed): a dial
that lands on evil is refused at the host key, before any user-auth
reaches it (evil's sshd logs no accepted key), and evil is never claimed;
p1 is claimed again."""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect, procs  # noqa: E402

NAME = 'disc_churn_hostile'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 150


class _Named:
    """A name and host key, as write_proxies() wants them."""

    def __init__(self, name, key):
        self.name = name
        self.host_keys = [key]


def run(ctx):
    d = _lbdisc.setup(ctx)
    tp, (p1, p2, p3) = d.tp, d.proxies
    # Made after the known_hosts file: not trusted.
    evil = ctx.sshd('evil', netns=True, authorized_keys=[d.node_key],
                    discovery=(d.disc, d.proxies_path('evil')), start=False)
    ghost = _Named('ghost', ctx.keygen('ghost_host_key'))
    _lbdisc.write_proxies(d.proxies_path('evil'), d.cluster,
                          [evil, p1, p2, p3])
    evil.start()
    st = tp.status_json()
    pids = {n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()}

    mark = tp.log_mark()
    _lbdisc.write_proxies(d.proxies_path(p3), d.cluster,
                          [p1, p2, evil, ghost])
    tp.wait_log(r'the list of p3 names 2 host keys this node does not '
                r'trust: not wanted', 10, since=mark)
    st = tp.status_json()
    d0 = _lbdisc.dials(st)
    time.sleep(3)
    st = tp.status_json()
    expect(_lbdisc.wanted_names(st) == ['p1', 'p2', 'p3'],
           'wanted %r: an untrusted key got in, or p3 left while p1/p2 '
           'name it', _lbdisc.wanted_names(st))
    expect(_lbdisc.dials(st) == d0, '%d dials for keys nobody trusts',
           _lbdisc.dials(st) - d0)
    expect({n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()} == pids,
           'agents changed: %r', _lbdisc.by_proxy(st))
    _lbdisc.check_surfaces(tp, st)

    # evil behind the balancer, and the pool has to dial.
    d.lb.add_backend(evil)
    evil_fp = re.escape(evil.host_fingerprints()[0])
    for attempt in range(1, 6):
        mark = tp.log_mark()
        victim = _lbdisc.by_proxy(tp.status_json())['p1']['pid']
        procs.signal_pid(victim, signal.SIGKILL)
        st = tp.wait_state(lambda s: 'p1' in _lbdisc.by_proxy(s) and
                           _lbdisc.by_proxy(s)['p1']['pid'] != victim, 40,
                           'p1 claimed again (round %d)' % attempt)
        if re.search(r'host key not trusted: %s' % evil_fp,
                     tp.log_text(mark)):
            break
    else:
        expect(False, 'no dial landed on evil in 5 rounds')
    ctx.log('a dial landed on evil in round %d and was refused at its host '
            'key', attempt)
    expect(not re.search(r'Accepted publickey', evil.log_text()),
           'evil saw a user-auth:\n%s', evil.log_text()[-2000:])
    on = [a for a in st['agents'] if a['proxy']['host_key'] in
          evil.host_fingerprints()]
    expect(not on, 'agents on evil: %r', on)
    expect(_lbdisc.wanted_names(st) == ['p1', 'p2', 'p3'], 'wanted %r',
           _lbdisc.wanted_names(st))
    d.check_data([p1, p2, p3])
