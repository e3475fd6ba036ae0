"""Issue 18: scale-in.  With three proxies claimed and a long transfer
running through p3's forwarded port, p3 is removed from every proxies
file (its own too) while it keeps running behind haproxy.  p3 stops
being wanted at once; its agent is closed gracefully: the forward is
cancelled (sshd stops listening on it), the live transfer finishes with
every byte intact (drained, not cut), and the agent is gone within a
bound of the announcement (aim 10 s, with a margin here).  The other two
agents keep their PIDs; nothing re-claims p3."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect  # noqa: E402
from harness.target import PacedEcho  # noqa: E402

NAME = 'disc_churn_scale_in'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 150
BOUND = 20.0            # aim 10 s (bench)
MIB = 1 << 20


def run(ctx):
    # A drain of a few seconds must fit in the grace, loaded or not.
    d = _lbdisc.setup(ctx, extra={'timeouts': {'close_grace': '20s'}})
    tp, (p1, p2, p3) = d.tp, d.proxies
    st = tp.status_json()
    pids = {n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()}

    # About 4 s of data still to come when p3 leaves.
    x = PacedEcho(p3.connect_forward(_lbdisc.FWD), 6 * MIB, 1.5 * MIB,
                  'transfer via p3')
    tp.wait_state(lambda s: x.got >= MIB and _lbdisc.by_proxy(s).get(
        'p3', {}).get('channels', 0) >= 1, 15, 'transfer under way via p3')

    mark = tp.log_mark()
    t0 = time.monotonic()
    d.write_sets([p1, p2])
    tp.wait_log(r'proxy p3 \(\S+\) of c1 no longer wanted', 10, since=mark)
    tp.wait_log(r'closing: proxy no longer announced.*pid=%d' % pids['p3'],
                5, since=mark)
    st = tp.status_json()
    a3 = [a for a in st['agents'] if a['pid'] == pids['p3']]
    expect(a3 and not a3[0]['wanted'] and a3[0]['state'] == 'closing',
           'p3 agent while draining: %r', a3)
    p3.wait_no_forward(_lbdisc.FWD, 10)
    midway = x.got
    expect(not x.done.is_set(), 'the transfer ended before the drain began '
           '(%d bytes): nothing was drained', x.got)
    x.result(BOUND)
    st = tp.wait_state(lambda s: not any(a['pid'] == pids['p3']
                                         for a in s['agents']),
                       BOUND, 'the agent on p3 gone')
    took = time.monotonic() - t0
    ctx.log('p3 drained (%.1f of 6 MiB when it left) and gone %.1fs after '
            'the announcement', midway / MIB, took)
    expect(took <= BOUND, 'scale-in took %.1fs, bound %.0fs', took, BOUND)
    tp.wait_log(r'state disconnected: closed: proxy no longer announced.*'
                r'pid=%d' % pids['p3'], 5, since=mark)
    expect('close deadline' not in tp.log_text(mark),
           'the drain hit the close deadline: channels were cut')
    now = {n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()}
    expect(now == {'p1': pids['p1'], 'p2': pids['p2']},
           'agents %r, want p1 and p2 untouched (%r)', now, pids)
    expect(_lbdisc.wanted_names(st) == ['p1', 'p2'], 'wanted %r',
           _lbdisc.wanted_names(st))
    expect(_lbdisc.cluster(st)['states']['disconnected'] == 0 and
           st['agents'][0]['reconnects'] == 0,
           'the drain counted as a failure: %r', _lbdisc.cluster(st))
    # Nothing is looking for p3: no dial for a few seconds.
    dials = _lbdisc.dials(st)
    time.sleep(3)
    st = tp.status_json()
    expect(_lbdisc.dials(st) == dials, '%d dials after the drain',
           _lbdisc.dials(st) - dials)
    d.check_data([p1, p2])
