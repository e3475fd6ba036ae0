"""`tunnelpool reload` after the tunnel files changed (one tunnel added, one
removed, one file rewritten with the same spec): every untouched worker
keeps its PID and its proxy session, and keeps carrying data; the removed
tunnel's worker is closed (exit 0, gone, its remote forward withdrawn);
the added tunnel comes up and carries data."""

from harness import expect, expect_eq, ports, procs
from harness.target import send_and_check
from harness.tunnelpool import one_proxy

NAME = 'ops_reload_add_remove'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 120


def connected(st):
    return {a['cluster']: a['pid'] for a in st['agents']
            if a['state'] == 'connected'}


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)
    fwd = dict(zip(('keep', 'gone', 'new'), ports.free_ports(3)))
    # A long resync keeps the periodic diff out of the way: the reload
    # command is what applies the change (the file watch may beat it to
    # it, and must reach the same result).
    tp = ctx.tunnelpool(node_key, kh, backoff=('500ms', '2s'),
                        resync_interval='1h')

    def add(name):
        tp.add_tunnel(name, name, [proxy.address()],
                      [('127.0.0.1:%d' % fwd[name],
                        '127.0.0.1:%d' % echo.port)])
    add('keep')
    add('gone')
    tp.start()
    st = tp.wait_state(lambda s: set(connected(s)) == {'keep', 'gone'}, 30,
                       'keep and gone connected')
    before = connected(st)
    for name in ('keep', 'gone'):
        proxy.wait_forward(fwd[name])
    sessions = set(proxy.session_pids())
    ctx.log('before: %r, sshd sessions %r', before, sorted(sessions))

    mark = tp.log_mark()
    add('keep')            # rewritten, same spec
    tp.remove_tunnel('gone')
    add('new')
    cp = tp.ctl('reload', check=False)
    expect(cp.returncode == 0, 'reload failed (exit %d): %s%s', cp.returncode,
           cp.stdout, cp.stderr)

    st = tp.wait_state(lambda s: set(connected(s)) == {'keep', 'new'} and
                       len(s['agents']) == 2, 30, 'keep and new connected, '
                       'gone closed')
    after = connected(st)
    ctx.log('after: %r', after)
    expect_eq(after['keep'], before['keep'], 'pid of the untouched worker')
    expect(after['new'] not in before.values(), 'new tunnel reused a pid')
    procs.wait_for(lambda: not procs.alive(before['gone']), 10,
                   'the removed tunnel worker %d to exit' % before['gone'])
    tp.wait_log(r'msg="worker closed \(exit 0\)" cluster=gone addr=\S+ '
                r'pid=%d ' % before['gone'], 10, since=mark)
    expect(not procs.zombies(tp.pid), 'zombies left: %r',
           procs.zombies(tp.pid))
    proxy.wait_no_forward(fwd['gone'])
    proxy.wait_forward(fwd['new'], 15)

    # The untouched tunnel never dropped its proxy session.
    expect(len(sessions & set(proxy.session_pids())) >= 1,
           'every sshd session was replaced: %r -> %r', sorted(sessions),
           sorted(proxy.session_pids()))
    for name in ('keep', 'new'):
        send_and_check('127.0.0.1', fwd[name], 256 * 1024)
    ended = [l for l in tp.log_text(since=mark).splitlines()
             if ('worker closed' in l or 'worker lost' in l) and
             ' pid=%d ' % before['keep'] in l]
    expect(not ended, 'the untouched worker ended: %r', ended)
