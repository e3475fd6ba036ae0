"""Issue 7, scenario 6: a stale listener on the proxy.  The worker on p1 is
killed with SIGKILL while its connection is black-holed on the way to sshd
(the socat process carrying it is stopped: no FIN reaches sshd, as when a
node vanishes), and sshd runs with a long ClientAliveInterval (30s x 3), so
the dead session keeps holding the forwarded port.  The pool rediscovers
p1 through haproxy; the new agent is up but its forward is pending
(status: bound false with the proxy's error; log: "forward 0 pending") and
keeps being retried.  Once the stale sshd session goes, the same agent
binds the port (no reconnect) and data flows through p1 again."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lbdisc  # noqa: E402
from harness import expect, procs  # noqa: E402

NAME = 'disc_stale_listener'
REQUIRES = _lbdisc.REQUIRES
TIMEOUT = 120
FWD_RETRY_MAX = 15.0      # worker/forwards.h FWD_RETRY_MAX_MS


def bridge_children(p):
    """The socat processes that carry one connection each into p's netns
    (forked children of its unix-socket bridge listener)."""
    mine = [pid for pid in p.netns.pids() if procs.alive(pid) and
            'UNIX-LISTEN:%s' % p.unix_socket in procs.title(pid)]
    return [pid for pid in mine if procs.ppid(pid) in mine]


def fwd(agent):
    for f in agent['forwards']:
        if f['id'] == 0:
            return f
    return None


def run(ctx):
    d = _lbdisc.setup(ctx, sshd_kw={'client_alive': (30, 3)})
    tp = d.tp
    p1 = d.proxies[0]
    st = tp.status_json()
    old = _lbdisc.by_proxy(st)['p1']
    others = {n: a['pid'] for n, a in _lbdisc.by_proxy(st).items()
              if n != 'p1'}

    # p1 carries exactly one SSH connection now: the agent's.
    sessions = procs.wait_for(lambda: p1.session_pids() if len(
        p1.session_pids()) == 1 and len(bridge_children(p1)) == 1 else None,
        10, 'one session and one bridge connection on p1')
    stale = sessions[0]
    stale_tree = [stale] + procs.descendants(stale)
    carriers = bridge_children(p1)
    ctx.log('p1: agent %d, sshd session %d, bridge %r', old['pid'], stale,
            carriers)

    # Black-hole the connection, then kill the worker: sshd never hears.
    for pid in carriers:
        procs.signal_pid(pid, signal.SIGSTOP)
    ctx.defer(lambda: [procs.signal_pid(pid, signal.SIGCONT)
                       for pid in carriers], 'SIGCONT p1 bridge')
    mark = tp.log_mark()
    procs.signal_pid(old['pid'], signal.SIGKILL)
    tp.wait_log(r'worker lost: killed by signal.*pid=%d' % old['pid'], 10,
                since=mark)
    expect(p1.has_forward(_lbdisc.FWD), 'sshd p1 let go of the forward at '
           'once: the connection was not black-holed')

    # The rediscovered agent is up on p1, its forward pending.
    def pending(s):
        a = _lbdisc.by_proxy(s).get('p1')
        f = a and fwd(a)
        return a if a and a['pid'] != old['pid'] and f and \
            not f['bound'] and f['error'] else None
    st = tp.wait_state(pending, 30, 'a new agent on p1 with its forward '
                       'pending')
    new = _lbdisc.by_proxy(st)['p1']
    ctx.log('new agent %d on p1, forward pending: %s', new['pid'],
            fwd(new)['error'])
    tp.wait_log(r'forward 0 pending: .*pid=%d' % new['pid'], 5, since=mark)
    # Retried while sshd holds the port, by the same agent.
    tp.wait_log(r'(?s)pid=%d.*forward 0 on 127\.0\.0\.1:%d refused by '
                r'proxy.*forward 0 on 127\.0\.0\.1:%d refused by proxy.*'
                r'pid=%d' % (new['pid'], _lbdisc.FWD, _lbdisc.FWD,
                             new['pid']), 10, since=mark)
    st = tp.status_json()
    a = _lbdisc.by_proxy(st).get('p1')
    expect(a and a['pid'] == new['pid'] and not fwd(a)['bound'],
           'agent on p1 changed or bound while sshd held the port: %r', a)
    expect(procs.alive(stale), 'the stale sshd session went by itself')
    expect({n: x['pid'] for n, x in _lbdisc.by_proxy(st).items()
            if n != 'p1'} == others, 'agents on p2/p3 disturbed')

    # sshd lets go (the stale session ends): the same agent binds.
    t0 = time.monotonic()
    for pid in stale_tree:
        procs.signal_pid(pid, signal.SIGKILL)
    procs.wait_for(lambda: not any(procs.alive(p) for p in stale_tree), 5,
                   'the stale sshd session to die')
    for pid in carriers:
        procs.signal_pid(pid, signal.SIGCONT)

    def bound(s):
        a = _lbdisc.by_proxy(s).get('p1')
        return a and fwd(a) and fwd(a)['bound']
    st = tp.wait_state(bound, FWD_RETRY_MAX + 5, 'the forward on p1 bound')
    took = time.monotonic() - t0
    a = _lbdisc.by_proxy(st)['p1']
    ctx.log('bound %.1fs after sshd let go, by agent %d', took, a['pid'])
    expect(a['pid'] == new['pid'], 'the forward was bound by agent %d, not '
           'by the pending agent %d (reconnected?)', a['pid'], new['pid'])
    expect(fwd(a)['port'] == _lbdisc.FWD and fwd(a)['error'] == '',
           'forward %r', fwd(a))
    tp.wait_log(r'forward 0 bound on port %d.*pid=%d' % (_lbdisc.FWD,
                                                          new['pid']), 5)
    d.check_data(d.proxies)
