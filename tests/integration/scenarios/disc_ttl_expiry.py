"""Issue 7, scenario 4: announced proxies expire after discovery.ttl unless
re-announced.  With ttl 3s and a 1s discovery heartbeat, proxies that stay
in the proxies files are kept (their agents keep their PIDs well past the
TTL); a proxy removed from every proxies file (still running, still behind
haproxy) has its agent closed once its TTL runs out ("expired from the
discovery set"), and is not claimed again: discovery agents that land on
it are refused as not wanted."""

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
TIMEOUT = 120
TTL = 3.0


def run(ctx):
    # Heartbeat (and so re-announcement) every second, TTL 3 s.
    d = _lbdisc.setup(ctx, disc_args='-i 1',
                      extra={'discovery': {'ttl': '%ds' % TTL}})
    tp, (p1, p2, p3) = d.tp, d.proxies
    st = tp.status_json()
    pids = {n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()}
    ctx.log('agents: %r', pids)

    # 1. Still announced: nothing expires, nobody is replaced, well past
    # the TTL.
    mark = tp.log_mark()
    time.sleep(3 * TTL)
    st = tp.status_json()
    now = {n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()}
    expect(now == pids, 'agents changed while every proxy was still '
           'announced: %r -> %r', pids, now)
    expect('expired from the discovery set' not in tp.log_text(mark),
           'a proxy still announced expired:\n%s',
           '\n'.join(l for l in tp.log_text(mark).splitlines()
                     if 'expired' in l))
    expect(_lbdisc.claimed(st, 'c1') == 3, 'claimed %r',
           _lbdisc.claimed(st, 'c1'))

    # 2. p3 leaves every proxies file (it keeps running behind haproxy).
    mark = tp.log_mark()
    t0 = time.monotonic()
    d.write_sets([p1, p2])
    tp.wait_log(r'proxy p3 \(\S+\) of c1 expired from the discovery set',
                TTL + 10, since=mark)
    took = time.monotonic() - t0
    ctx.log('p3 expired after %.1fs', took)
    # Counted from the last re-announcement (a heartbeat, <= 1s before).
    expect(took >= TTL - 1.2, 'p3 expired after %.1fs, before its TTL of '
           '%.0fs', took, TTL)
    st = tp.wait_state(lambda s: 'p3' not in _lbdisc.by_proxy(s) and
                       _lbdisc.claimed(s, 'c1') == 2 and
                       not any(a['proxy']['name'] == 'p3'
                               for a in s['agents']),
                       15, 'the agent on p3 gone')
    p3.wait_no_forward(_lbdisc.FWD, 10)
    c = _lbdisc.cluster(st)
    expect(c['proxies_announced'] == 2, 'announced %r, want 2',
           c['proxies_announced'])
    now = {n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()}
    expect(now == {'p1': pids['p1'], 'p2': pids['p2']},
           'p1/p2 agents disturbed: %r -> %r', pids, now)

    # 3. Not claimed again.  Make the pool look for a proxy: kill p1's
    # worker; discovery dials go through haproxy, whose roundrobin walks
    # p1, p2, p3 in turn, so within two rounds one lands on p3 and is
    # refused as not wanted (p2: already claimed), before one lands on p1.
    # The worker knows what it looks for (its wanted list) and drops the
    # connection itself: "not a wanted proxy: FP" (reported as its state).
    refused = r'state disconnected: not a wanted proxy: %s' % re.escape(
        p3.host_fingerprints()[0])
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
        ctx.log('round %d: refused on %s', attempt, sorted(set(re.findall(
            r'func=recv_state msg="state disconnected: not a wanted proxy: '
            r'(\S+)"', text))))
        if re.search(refused, text):
            break
    else:
        expect(False, 'no discovery agent landed on p3 in 4 rounds')
    # Stays that way: no agent on p3 for a few TTLs.
    deadline = time.monotonic() + 2 * TTL
    while time.monotonic() < deadline:
        st = tp.status_json()
        on3 = [a for a in st['agents'] if a['proxy']['name'] == 'p3' and
               a['state'] in _lbdisc.UP]
        expect(not on3, 'p3 claimed again: %r', on3)
        expect(not p3.has_forward(_lbdisc.FWD),
               'p3 holds the forward again')
        time.sleep(0.5)
    d.check_data([p1, p2])
