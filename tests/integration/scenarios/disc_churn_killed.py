"""Issue 18: a proxy killed without warning.  sshd p1 is stopped (SIGSTOP,
listener and sessions: no FIN, no RST, as a host that vanished) while
three proxies are claimed.  The agent on p1 declares it dead within the
keepalive bound (1 s x 3, with a margin); p1 stays wanted (the lists of
p2 and p3 still name it), so the key dials again, paced by the backoff:
a dial that lands on the stopped p1 times out in its handshake (a
failure, backoff), one that lands on p2 or p3 misses (miss pacing), and
the dials over a 20 s window stay few, never a loop.  p1 back, it is
claimed again; p2 and p3 keep their agents throughout."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect  # noqa: E402

NAME = 'disc_churn_killed'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 150
KEEPALIVE = (1.0, 3)
MARGIN = 5.0            # a loaded 2-core machine
WINDOW = 20.0
MAX_DIALS = 15          # 500 ms..4 s backoff, 250 ms..4 s miss pacing


def run(ctx):
    d = _lbdisc.setup(ctx, keepalive=('%gs' % KEEPALIVE[0], KEEPALIVE[1]),
                      backoff=('500ms', '4s'),
                      extra={'timeouts': {'handshake': '3s'}})
    tp, (p1, p2, p3) = d.tp, d.proxies
    st = tp.status_json()
    pids = {n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()}

    mark = tp.log_mark()
    p1.pause()
    t0 = time.monotonic()
    tp.wait_log(r'worker lost: proxy dead .*pid=%d' % pids['p1'],
                KEEPALIVE[0] * KEEPALIVE[1] + MARGIN + 5, since=mark)
    took = time.monotonic() - t0
    ctx.log('p1 declared dead %.1fs after it stopped (keepalive %gs x %d)',
            took, KEEPALIVE[0], KEEPALIVE[1])
    expect(took <= KEEPALIVE[0] * KEEPALIVE[1] + MARGIN,
           'dead proxy noticed after %.1fs, keepalive bound %.0fs', took,
           KEEPALIVE[0] * KEEPALIVE[1])
    st = tp.status_json()
    w1 = [w for w in _lbdisc.cluster(st)['wanted'] if w['name'] == 'p1']
    expect(w1 and not w1[0]['claimed'] and w1[0]['current'],
           'p1 after its loss: %r (want: still wanted, not claimed)', w1)

    # Dials while p1 stays stopped: paced, never a loop.
    mark = tp.log_mark()
    d0 = _lbdisc.dials(st)
    t1 = time.monotonic()
    retry_seen = 0
    while time.monotonic() - t1 < WINDOW:
        st = tp.status_json()
        retry_seen = max(retry_seen,
                         _lbdisc.cluster(st)['discovery_retry_in_ms'])
        time.sleep(0.25)
    n = _lbdisc.dials(st) - d0
    times = _lbdisc.spawn_times(tp.log_text(mark))
    gaps = [b - a for a, b in zip(times, times[1:])]
    ctx.log('%d dials in %.0fs while p1 was stopped (%.0f/min); gaps %s; '
            'misses %d', n, WINDOW, n * 60 / WINDOW,
            ' '.join('%.1f' % g for g in gaps),
            _lbdisc.cluster(st)['discovery_misses'])
    expect(1 <= n <= MAX_DIALS, '%d dials in %.0fs, want 1..%d (paced by '
           'the backoff)', n, WINDOW, MAX_DIALS, )
    expect(retry_seen > 0, 'status never showed a discovery retry pending')
    expect({k: a['pid'] for k, a in _lbdisc.by_proxy(st).items()} ==
           {'p2': pids['p2'], 'p3': pids['p3']},
           'agents on p2/p3 disturbed: %r', _lbdisc.by_proxy(st))

    p1.resume()
    st = d.wait_all_up(d.proxies, 30, 'p1 claimed again after it resumed')
    expect(_lbdisc.by_proxy(st)['p1']['pid'] != pids['p1'], 'same agent')
    d.check_data(d.proxies)
