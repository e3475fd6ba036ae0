"""Issue 7, scenario 7: no reconnect storm.  50 tunnels (50 clusters, each
one tunnel to the haproxy address, discovery off, each its own forwarded
port) spread over three sshd proxies behind haproxy, with spawn_rate 10
and spawn_burst 5.  All three proxies are restarted at once, dropping all
50 connections: the workers are started again no faster than the global
spawn limiter allows (no 1-second window of the supervisor's log holds
more than rate + burst "worker started" lines, and the 50 reconnections
take at least (50 - burst) / rate seconds), and every tunnel is back, its
forward bound, within 50 / rate + backoff max + a margin."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect  # noqa: E402
from harness.target import echo_check  # noqa: E402

spawn_times = _lbdisc.spawn_times

NAME = 'disc_reconnect_storm'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 180
N = 50
RATE = 10
BURST = 5
BACKOFF = (1.0, 4.0)
FWD_BASE = 23000
MARGIN = 15.0

def max_per_window(times, width=0.99):
    """Most events in any window [t, t + width) (t an event's time).  A
    token bucket grants at most burst + rate * T in any T seconds; a worker
    starts a little after its grant (the dial), so the window is 10 ms
    short of a second to absorb that jitter and the log's ms rounding."""
    best, j = 0, 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + width:
            j += 1
        best = max(best, j - i)
    return best


def tunnels_up(s):
    """Cluster names whose agent is connected with its forward bound."""
    out = {}
    for a in s['agents']:
        if a['state'] == 'connected' and a['forwards'] and \
                all(f['bound'] for f in a['forwards']):
            out[a['cluster']] = a
    return out


def run(ctx):
    node_key = ctx.keygen('node_key')
    echo = ctx.echo_server()
    proxies = [ctx.sshd('p%d' % i, netns=True, authorized_keys=[node_key],
                        max_startups='200:30:400')
               for i in range(1, 4)]
    lb = ctx.haproxy(proxies, balance='roundrobin')
    kh = ctx.known_hosts('known_hosts', [
        l for p in proxies for l in p.known_hosts_pins('127.0.0.1', lb.port)])
    tp = ctx.tunnelpool(node_key, kh,
                        backoff=('%gs' % BACKOFF[0], '%gs' % BACKOFF[1]),
                        spawn_rate=RATE, log_level='debug',
                        extra={'spawn_burst': BURST})
    for i in range(N):
        tp.add_tunnel('t%02d' % i, 't%02d' % i, [lb.address()],
                      [('127.0.0.1:%d' % (FWD_BASE + i), echo.address())],
                      discovery=False)
    tp.start()
    bound = N / RATE + BACKOFF[1] + MARGIN
    st = tp.wait_state(lambda s: len(tunnels_up(s)) == N, bound,
                       'all %d tunnels up' % N)
    first = {c: a['pid'] for c, a in tunnels_up(st).items()}
    ctx.log('%d tunnels up after %.1fs', N, ctx.elapsed())
    times = spawn_times(tp.log_text())
    ctx.log('start: %d spawns, at most %d in a second', len(times),
            max_per_window(times))
    expect(max_per_window(times) <= RATE + BURST,
           'start: %d workers started within one second, limit %d + %d',
           max_per_window(times), RATE, BURST)

    # All three proxies crash (listener and sessions, SIGKILL) and come
    # back at once.
    mark = tp.log_mark()
    for p in proxies:             # no proxy accepts from here on
        p.pause(listener=True, sessions=False)
    for p in proxies:
        p.kill()
    for p in proxies:
        p.start()
    t0 = time.monotonic()
    ctx.log('proxies restarted')

    def all_back(s):
        up = tunnels_up(s)
        return len(up) == N and all(a['pid'] != first[c]
                                    for c, a in up.items())
    st = tp.wait_state(all_back, bound, 'all %d tunnels back (bound: %.0fs '
                       '= %d/%d + %gs backoff max + %gs)' % (
                           N, bound, N, RATE, BACKOFF[1], MARGIN))
    took = time.monotonic() - t0
    times = spawn_times(tp.log_text(mark))
    peak = max_per_window(times)
    ctx.log('all back %.1fs after the restart: %d spawns over %.1fs, at most '
            '%d in a second', took, len(times),
            times[-1] - times[0] if times else 0, peak)
    expect(len(times) >= N, 'only %d workers started after the restart',
           len(times))
    expect(peak <= RATE + BURST, 'restart: %d workers started within one '
           'second, limit %d + %d', peak, RATE, BURST)
    # Spread, not a burst: the first N starts alone need (N - BURST) / RATE.
    span = times[N - 1] - times[0]
    expect(span >= (N - BURST) / RATE * 0.9,
           'the first %d reconnections took %.2fs: faster than the limiter '
           'allows (%.1fs)', N, span, (N - BURST) / RATE)
    expect(tp.proc.alive(), 'supervisor died')

    # Data through one tunnel on each proxy.
    fps = {fp: p for p in proxies for fp in p.host_fingerprints()}
    seen = {}
    for c, a in sorted(tunnels_up(st).items()):
        p = fps.get(a['proxy']['host_key'])
        expect(p is not None, 'tunnel %s on an unknown proxy %r', c,
               a['proxy']['host_key'])
        seen.setdefault(p.name, (p, FWD_BASE + int(c[1:])))
    expect(len(seen) == 3, 'tunnels landed on %r only', sorted(seen))
    for name, (p, port) in sorted(seen.items()):
        p.wait_forward(port, 10)
        echo_check(p.connect_forward(port), 64 * 1024,
                   what='port %d via %s' % (port, name))
