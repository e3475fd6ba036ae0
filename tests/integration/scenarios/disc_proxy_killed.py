"""Issue 7, scenario 3: one proxy crashes.  With three proxies claimed
through haproxy and long echo transfers running through p2's and p3's
forwarded ports, sshd p1 is killed with every session (SIGKILL): the agent
on p1 goes (disconnected, then gone), the agents on p2 and p3 keep their
PIDs and their open channels, and both transfers finish with every byte
intact (SHA-256).  p1 restarted (same host key) is claimed again, by the
same fingerprint, and carries data again."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect, procs  # noqa: E402
from harness.target import PacedEcho  # noqa: E402

NAME = 'disc_proxy_killed'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 120
MIB = 1 << 20


def run(ctx):
    d = _lbdisc.setup(ctx)
    tp = d.tp
    p1, p2, p3 = d.proxies
    st = tp.status_json()
    pids = {n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()}
    fp1 = _lbdisc.by_proxy(st)['p1']['proxy']['host_key']
    ctx.log('agents %r, p1 is %s', pids, fp1)

    # Long transfers through p2 and p3 (about 10 s each).
    x2 = PacedEcho(p2.connect_forward(_lbdisc.FWD), 32 * MIB, 3 * MIB,
                   'transfer via p2')
    x3 = PacedEcho(p3.connect_forward(_lbdisc.FWD), 16 * MIB, 1.5 * MIB,
                   'transfer via p3')

    def busy(s):
        up = _lbdisc.by_proxy(s)
        return x2.got >= 4 * MIB and x3.got >= 2 * MIB and \
            up.get('p2', {}).get('channels', 0) >= 1 and \
            up.get('p3', {}).get('channels', 0) >= 1
    tp.wait_state(busy, 15, 'transfers under way through p2 and p3')

    # Crash p1: listener and every session.
    mark = tp.log_mark()
    ctx.log('killing p1 (transfers at %.1f and %.1f MiB)', x2.got / MIB,
            x3.got / MIB)
    p1.kill()
    midway = (x2.got, x3.got)
    expect(not x2.done.is_set() and not x3.done.is_set(),
           'a transfer finished before p1 was killed (p2 %d, p3 %d bytes): '
           'not a midway kill', x2.got, x3.got)
    st = tp.wait_state(lambda s: 'p1' not in _lbdisc.by_proxy(s) and
                       _lbdisc.claimed(s, 'c1') == 2, 15,
                       'the agent on p1 gone')
    tp.wait_log(r'pid=%d state=disconnected' % pids['p1'], 5, since=mark)
    expect(not procs.alive(pids['p1']), 'worker %d of p1 still alive',
           pids['p1'])
    up = _lbdisc.by_proxy(st)
    expect({n: a['pid'] for n, a in up.items()} ==
           {'p2': pids['p2'], 'p3': pids['p3']},
           'agents on p2/p3 changed: %r -> %r', pids,
           {n: a['pid'] for n, a in up.items()})
    ctx.log('p1 gone, transfers at %.1f and %.1f MiB (killed at %.1f and '
            '%.1f MiB)', x2.got / MIB, x3.got / MIB, midway[0] / MIB,
            midway[1] / MIB)
    x2.result(60)
    x3.result(60)
    ctx.log('transfers intact')
    st = tp.status_json()
    up = _lbdisc.by_proxy(st)
    expect(up.get('p2', {}).get('pid') == pids['p2'] and
           up.get('p3', {}).get('pid') == pids['p3'],
           'agents on p2/p3 replaced during the transfers: %r',
           {n: a['pid'] for n, a in up.items()})
    expect(tp.proc.alive(), 'supervisor died')

    # p1 comes back with the same host key: claimed again.
    p1.start()
    st = d.wait_all_up(d.proxies, 30, 'p1 claimed again after restart')
    a1 = _lbdisc.by_proxy(st)['p1']
    ctx.log('p1 claimed again by pid %d', a1['pid'])
    expect(a1['proxy']['host_key'] == fp1, 'p1 came back as %r, want %r',
           a1['proxy']['host_key'], fp1)
    expect(a1['pid'] != pids['p1'], 'p1 agent pid unchanged')
    expect(_lbdisc.by_proxy(st)['p2']['pid'] == pids['p2'] and
           _lbdisc.by_proxy(st)['p3']['pid'] == pids['p3'],
           'agents on p2/p3 replaced by the rediscovery')
    d.check_data(d.proxies)
