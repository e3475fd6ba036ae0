"""Issue 7, scenario 4, as issue 18 defines the rule: the freshest full
lists are the truth and the TTL only covers the time when no agent is
connected to hear a fresher one.  With discovery.ttl 8s and a 1s
heartbeat: (1) proxies that stay in the proxies files are kept well past
the TTL; (2) a proxy removed from every proxies file (still running,
still behind haproxy) stops being wanted at once, long before its TTL,
and its agent is closed; (3) it is not claimed again: a dial that lands
on it is refused by the supervisor; (4) with every agent gone and
haproxy down, the last lists stay in force, remembered (status: current
false, their age growing), until the TTL runs out ("expired from the
discovery set"); (5) haproxy back, the pool starts from nothing and ends
with exactly the announced proxies again."""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect, procs  # noqa: E402

NAME = 'disc_ttl_expiry'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 150
TTL = 8.0


def run(ctx):
    # Heartbeat (and so re-announcement) every second, TTL 8 s.
    d = _lbdisc.setup(ctx, disc_args='-i 1',
                      extra={'discovery': {'ttl': '%ds' % TTL}})
    tp, (p1, p2, p3) = d.tp, d.proxies
    st = tp.status_json()
    pids = {n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()}
    ctx.log('agents: %r', pids)

    # 1. Still announced: nothing leaves, nobody is replaced, past the TTL.
    mark = tp.log_mark()
    time.sleep(1.5 * TTL)
    st = tp.status_json()
    now = {n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()}
    expect(now == pids, 'agents changed while every proxy was still '
           'announced: %r -> %r', pids, now)
    expect('no longer wanted' not in tp.log_text(mark) and
           'expired' not in tp.log_text(mark),
           'a proxy still announced left the set:\n%s',
           '\n'.join(l for l in tp.log_text(mark).splitlines()
                     if 'wanted' in l or 'expired' in l))
    wanted = _lbdisc.cluster(st)['wanted']
    expect(sorted(w['name'] for w in wanted) == ['p1', 'p2', 'p3'] and
           all(w['current'] and w['age_s'] <= 3 for w in wanted),
           'wanted set %r, want p1..p3 current and fresh', wanted)

    # 2. p3 leaves every proxies file (it keeps running behind haproxy):
    # no longer wanted at once, its agent closed.
    mark = tp.log_mark()
    t0 = time.monotonic()
    d.write_sets([p1, p2])
    tp.wait_log(r'proxy p3 \(\S+\) of c1 no longer wanted: no current list '
                r'names it', TTL, since=mark)
    took = time.monotonic() - t0
    ctx.log('p3 left the wanted set after %.1fs (TTL %.0fs)', took, TTL)
    expect(took < TTL - 1, 'p3 left after %.1fs: that is the TTL, not the '
           'fresher lists', took)
    st = tp.wait_state(lambda s: 'p3' not in _lbdisc.by_proxy(s) and
                       _lbdisc.claimed(s, 'c1') == 2 and
                       not any(a['proxy']['name'] == 'p3'
                               for a in s['agents']),
                       15, 'the agent on p3 gone')
    tp.wait_log(r'func=recv_state msg="state disconnected: closed: proxy '
                r'no longer announced".*pid=%d' % pids['p3'], 10, since=mark)
    p3.wait_no_forward(_lbdisc.FWD, 10)
    c = _lbdisc.cluster(st)
    expect(c['proxies_announced'] == 2, 'announced %r, want 2',
           c['proxies_announced'])
    now = {n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()}
    expect(now == {'p1': pids['p1'], 'p2': pids['p2']},
           'p1/p2 agents disturbed: %r -> %r', pids, now)

    # 3. Not claimed again.  Make the pool look for a proxy: kill p1's
    # worker; discovery dials go through haproxy, whose roundrobin walks
    # p1, p2, p3 in turn, so within two rounds one lands on p3 and the
    # supervisor refuses it (p2: already claimed), before one lands on p1.
    refused = r'claim of %s refused: proxy not in the announced set' % \
        re.escape(p3.host_fingerprints()[0])
    for attempt in range(1, 5):
        mark = tp.log_mark()
        st = tp.status_json()
        victim = _lbdisc.by_proxy(st)['p1']['pid']
        procs.signal_pid(victim, signal.SIGKILL)
        st = tp.wait_state(lambda s: 'p1' in _lbdisc.by_proxy(s) and
                           _lbdisc.by_proxy(s)['p1']['pid'] != victim and
                           _lbdisc.claimed(s, 'c1') == 2, 30,
                           'p1 claimed again (round %d)' % attempt)
        text = tp.log_text(mark)
        ctx.log('round %d: refused %s', attempt, sorted(set(re.findall(
            r'msg="claim of (\S+) refused: ([^"]+)"', text))))
        if re.search(refused, text):
            break
    else:
        expect(False, 'no discovery agent landed on p3 in 4 rounds')
    expect(_lbdisc.cluster(st)['claims_refused'] >= 1,
           'claims_refused %r', _lbdisc.cluster(st)['claims_refused'])
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        st = tp.status_json()
        on3 = [a for a in st['agents'] if a['proxy']['name'] == 'p3' and
               a['state'] in _lbdisc.UP]
        expect(not on3, 'p3 claimed again: %r', on3)
        expect(not p3.has_forward(_lbdisc.FWD),
               'p3 holds the forward again')
        time.sleep(0.5)
    d.check_data([p1, p2])

    # 4. Nobody left to hear a fresher list: haproxy down, every worker
    # killed.  The last lists are remembered for the TTL, then expire.
    d.lb.stop()
    mark = tp.log_mark()
    st = tp.status_json()
    for a in _lbdisc.up_agents(st):
        procs.signal_pid(a['pid'], signal.SIGKILL)
    t0 = time.monotonic()
    st = tp.wait_state(lambda s: not _lbdisc.up_agents(s), 15,
                       'every agent gone')
    st = tp.wait_state(lambda s: _lbdisc.cluster(s)['wanted'] and
                       not any(w['current'] for w in
                               _lbdisc.cluster(s)['wanted']), 5,
                       'the wanted set remembered, not current')
    wanted = _lbdisc.cluster(st)['wanted']
    expect(sorted(w['name'] for w in wanted) == ['p1', 'p2'],
           'remembered %r, want p1 and p2', wanted)
    tp.wait_log(r'proxy p[12] \(\S+\) of c1 expired from the discovery set',
                TTL + 10, since=mark)
    took = time.monotonic() - t0
    ctx.log('remembered set expired %.1fs after the last agent went', took)
    expect(took >= TTL - 1.5, 'expired after %.1fs, before the TTL of %.0fs',
           took, TTL)
    st = tp.wait_state(lambda s: _lbdisc.cluster(s)['proxies_announced']
                       == 0, 5, 'nothing wanted any more')

    # 5. The balancer back: from nothing to exactly the announced set.
    d.lb.start()
    st = d.wait_all_up([p1, p2], 60, 'p1 and p2 claimed again, p3 not')
    st = tp.wait_state(lambda s: not any(a['proxy']['name'] == 'p3'
                                         for a in s['agents']), 20,
                       'no agent on p3 (it may be held until p1/p2 are up)')
    expect(_lbdisc.cluster(st)['proxies_announced'] == 2, 'announced %r',
           _lbdisc.cluster(st)['proxies_announced'])
    d.check_data([p1, p2])
