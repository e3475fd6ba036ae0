"""What a compromised worker can still do to others is bounded (issue 14,
item 8; test-hooks build).  Three tunnels through one proxy; the victim
worker turns hostile:

1. Dial flood: 1000 DIAL_REQUESTs at once (a worker could make ~2,000 dials
   a second, exhausting ephemeral ports for every tunnel).  The per-worker
   token bucket (worker.dial_rate 200/s, burst 400) lets at most
   400 + 200/s through to the target; the rest are refused, counted in
   tunnelpool_dials_rate_limited_total, and the worker stays.
2. Log flood: a forged line that pretends to be the supervisor's about
   another agent, written straight to stderr, then 5000 lines.  The
   supervisor relays at most 200 + 20/s of them, says how many it
   suppressed, counts them, and the forged line appears only as the
   victim's own quoted text ("unformatted: ..."), with the victim's fields.

After each, the bystander tunnels keep their PIDs and carry data.
"""

import re
import time

from harness import expect, expect_eq, ports, procs
from harness.target import send_and_check
from harness.tunnelpool import one_proxy

NAME = 'rel_hostile_limits'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90

HOOK_OPEN_FILE, HOOK_DIAL_FLOOD, HOOK_LOG_FLOOD = 1, 17, 18
DIALS, DIAL_RATE, DIAL_BURST = 1000, 200, 400
LOG_LINES, LOG_RATE, LOG_BURST = 5000, 20, 200


def connected(st, cluster):
    return [a['pid'] for a in st['agents'] if a['cluster'] == cluster and
            a['state'] == 'connected']


def hook(tp, pid, action):
    ans = tp.control({'cmd': 'test_hook', 'pid': pid, 'action': action})
    expect(ans.get('ok') is True, 'test_hook %d on %d: %r', action, pid, ans)


def intact(tp, pids, fwd):
    st = tp.status_json()
    for c, pid in pids.items():
        expect_eq(connected(st, c), [pid], 'workers of %s' % c)
        send_and_check('127.0.0.1', fwd[c], 64 * 1024)


def dial_flood(ctx, tp, echo, victim):
    before = echo.connections
    limited0 = tp.count('tunnelpool_dials_rate_limited_total')
    t0 = time.monotonic()
    hook(tp, victim, HOOK_DIAL_FLOOD)
    procs.wait_for(lambda: tp.count('tunnelpool_dials_rate_limited_total')
                   - limited0 + echo.connections - before >= DIALS, 20,
                   'all %d dials answered' % DIALS)
    took = time.monotonic() - t0
    time.sleep(0.5)
    made = echo.connections - before
    limited = tp.count('tunnelpool_dials_rate_limited_total') - limited0
    bound = DIAL_BURST + DIAL_RATE * (took + 1.0)
    ctx.log('dial flood: %d dials reached the target, %d refused by the '
            'rate limit, in %.2f s (bound %.0f)', made, limited, took, bound)
    expect(made <= bound, '%d dials got through in %.2f s, bound %.0f',
           made, took, bound)
    expect(limited >= DIALS - bound, 'only %d dials refused', limited)


def log_flood(ctx, tp, victim):
    mark = tp.log_mark()
    supp0 = tp.count('tunnelpool_worker_log_lines_suppressed_total')
    t0 = time.monotonic()
    hook(tp, victim, HOOK_LOG_FLOOD)
    # The flood takes milliseconds; its own "survived" line is among the
    # suppressed.  Then one more line from the victim, once the bucket has
    # refilled a little: it is preceded by the count of what was dropped.
    procs.wait_for(lambda: 
        tp.count('tunnelpool_worker_log_lines_suppressed_total') > supp0, 10,
        'lines suppressed')
    time.sleep(1.5)
    hook(tp, victim, HOOK_OPEN_FILE)
    m = tp.wait_log(r'msg="(\d+) lines from this worker suppressed.* '
                    r'pid=%d\b' % victim, 10, since=mark)
    took = time.monotonic() - t0
    text = tp.log_text(mark)
    relayed = text.count('test hook log flood line')
    suppressed = tp.count('tunnelpool_worker_log_lines_suppressed_total') \
        - supp0
    bound = LOG_BURST + LOG_RATE * (took + 1.0)
    ctx.log('log flood: %d of %d lines relayed in %.2f s (bound %.0f), %d '
            'suppressed (line says %s)', relayed, LOG_LINES, took, bound,
            suppressed, m.group(1))
    expect(relayed <= bound, '%d lines relayed, bound %.0f', relayed, bound)
    expect(suppressed >= 500, 'only %d lines suppressed', suppressed)
    # The forged line: never at the start of a line, only as quoted text.
    expect(not re.search(r'^ts=2026-01-01T00:00:00', text, re.M),
           'the forged line reached the log as a line of its own')
    forged = [l for l in text.splitlines() if 'forged by a worker' in l]
    expect(len(forged) == 1, 'forged line relayed %d times', len(forged))
    expect('prog=tunnelpool-agent func=? msg="unformatted: ts=2026-01-01'
           in forged[0] and 'pid=%d' % victim in forged[0] and
           'cluster=victim' in forged[0],
           'the forged line is not the victim\'s quoted text: %r', forged[0])


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)
    clusters = ['victim', 'b1', 'b2']
    fwd = dict(zip(clusters, ports.free_ports(3)))
    tp = ctx.tunnelpool(node_key, kh, log_level='info')
    for c in clusters:
        tp.add_tunnel(c, c, [proxy.address()],
                      [('127.0.0.1:%d' % fwd[c], echo.address())])
    tp.start()
    st = tp.wait_state(lambda s: all(connected(s, c) for c in clusters), 30,
                       'three tunnels connected')
    pids = {c: connected(st, c)[0] for c in clusters}
    for c in clusters:
        proxy.wait_forward(fwd[c])
        send_and_check('127.0.0.1', fwd[c], 64 * 1024)   # channel 1
    victim = pids['victim']

    dial_flood(ctx, tp, echo, victim)
    intact(tp, pids, fwd)
    log_flood(ctx, tp, victim)
    intact(tp, pids, fwd)
    expect(tp.alive(), 'supervisor died')
