"""The signer signs only for a bound session (issue 14, item 2; test-hooks
build).  Before user-auth a worker sends SESSION_BIND: the host key of its
key exchange and the host's signature over the session id (libssh patched
to keep and export them).  The supervisor checks the signature and that the
key is trusted for the tunnel, and from then on signs user-auth for that
session id only; the claim must name that host key.

A worker is held in its handshake (the proxy's sshd stopped) so that a hook
can be armed before the bind:
1. HOOK_SIGN_UNBOUND: a valid user-auth sign request before the bind is
   refused ("the session is not bound") and counted.  The hook listed the
   identities to build it, so libssh's own listing is refused too
   (identities once) and that worker fails its authentication; the next
   one connects with one signature.
2. HOOK_BIND_FORGED: a bind whose server signature was altered ends the
   worker as a protocol violation, without a signature; the next worker
   connects.
"""

import os
import re
import signal

from harness import expect, expect_eq, ports, procs
from harness.target import send_and_check
from harness.tunnelpool import one_proxy

NAME = 'trust_session_bind'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90

HOOK_BIND_FORGED, HOOK_SIGN_UNBOUND = 22, 23


def up(st):
    return [a['pid'] for a in st['agents'] if a['state'] == 'connected']


def held_worker(ctx, tp, proxy, mark, action):
    """With sshd stopped, waits for a worker in its handshake and arms the
    hook; then lets sshd go.  Returns the worker's pid."""
    m = tp.wait_log(r'worker ready \(sandbox [^)]*\)" .*pid=(\d+)', 30,
                    since=mark)
    pid = int(m.group(1))
    ans = tp.control({'cmd': 'test_hook', 'pid': pid, 'action': action})
    expect(ans.get('ok') is True, 'test_hook %d on %d: %r', action, pid, ans)
    tp.wait_log(r'test hook %d: armed.* pid=%d\b' % (action, pid), 10,
                since=mark)
    return pid


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)
    fwd = ports.free_port()
    sshd = proxy.proc.pid
    tp = ctx.tunnelpool(node_key, kh, backoff=('300ms', '1s'),
                        log_level='info')
    tp.add_tunnel('c1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % fwd, echo.address())])

    # 1. A sign request before the bind.
    os.kill(sshd, signal.SIGSTOP)
    try:
        mark = tp.log_mark()
        tp.start()
        ref0 = tp.count('tunnelpool_signer_refusals_total')
        sig0 = tp.count('tunnelpool_signatures_total')
        pid = held_worker(ctx, tp, proxy, mark, HOOK_SIGN_UNBOUND)
    finally:
        os.kill(sshd, signal.SIGCONT)
    m = tp.wait_log(r'test hook 23: before the bind, agent answered type '
                    r'(-?\d+).* pid=%d\b' % pid, 20, since=mark)
    expect_eq(int(m.group(1)), 5, 'agent reply before the bind '
              '(5 = SSH_AGENT_FAILURE)')
    tp.wait_log(r'refused agent sign request: the session is not bound.* '
                r'pid=%d\b' % pid, 10, since=mark)
    tp.wait_log(r'refused agent identities request: identities already '
                r'listed.* pid=%d\b' % pid, 10, since=mark)
    tp.wait_log(r'worker lost: auth failed .* pid=%d\b' % pid, 10, since=mark)
    st = tp.wait_state(lambda s: len(up(s)) == 1 and pid not in up(s), 30,
                       'the next worker bound, authenticated, connected')
    pid = up(st)[0]
    proxy.wait_forward(fwd)
    send_and_check('127.0.0.1', fwd, 64 * 1024)
    expect_eq(tp.count('tunnelpool_signer_refusals_total') - ref0, 2,
              'refusals (the unbound sign request, the second listing)')
    expect_eq(tp.count('tunnelpool_signatures_total') - sig0, 1,
              'signatures')
    ctx.log('sign request before the bind refused; worker %d connected with '
            'one signature', pid)

    # 2. A bind with an altered signature.
    viol0 = tp.count('tunnelpool_worker_exits_total',
                     reason='protocol violation')
    sig0 = tp.count('tunnelpool_signatures_total')
    os.kill(sshd, signal.SIGSTOP)
    try:
        mark = tp.log_mark()
        os.kill(pid, signal.SIGKILL)
        bad = held_worker(ctx, tp, proxy, mark, HOOK_BIND_FORGED)
    finally:
        os.kill(sshd, signal.SIGCONT)
    tp.wait_log(r'test hook 22: session bind with an altered signature.* '
                r'pid=%d\b' % bad, 20, since=mark)
    tp.wait_log(r'worker lost: protocol violation \(protocol violation: '
                r'handler failed\).* pid=%d\b' % bad, 10, since=mark)
    st = tp.wait_state(lambda s: len(up(s)) == 1 and bad not in up(s), 30,
                       'the next worker connected')
    expect_eq(tp.count('tunnelpool_worker_exits_total',
                       reason='protocol violation') - viol0, 1,
              'protocol violations')
    expect_eq(tp.count('tunnelpool_signatures_total') - sig0, 1,
              'signatures (the next worker only)')
    text = tp.log_text(mark)
    expect(not re.search(r'signed userauth request.* pid=%d\b' % bad, text),
           'the forged bind got a signature')
    proxy.wait_forward(fwd, 15)
    send_and_check('127.0.0.1', fwd, 64 * 1024)
    ctx.log('forged bind: worker %d ended, no signature; worker %d '
            'connected', bad, up(st)[0])
    expect(procs.exists(tp.pid), 'supervisor died')
