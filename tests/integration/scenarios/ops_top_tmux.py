"""`tunnelpool top` in a real terminal (tmux): the header names the
supervisor, the agent table shows each agent's cluster, pid and state and
follows changes live (a closed agent's replacement appears), q quits with
status 0; without a supervisor it exits 1 saying so, and when the
supervisor goes away under it, it restores the terminal and exits 1.
The view is the tunnelpool-top binary, exec'd by `tunnelpool top` with
the command line the operator typed; the supervisor maps neither ncurses
nor libssh."""

import os
import re

from harness import expect, ports, procs
from harness.tmux import Tmux, wait_screen
from harness.tunnelpool import one_proxy

NAME = 'ops_top_tmux'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent',
                                       'tunnelpool-top'],
            'tools': ['sshd', 'ssh', 'ssh-keygen', 'socat', 'ip', 'ss',
                      'tmux']}
TIMEOUT = 120


def agent_row(screen, cluster, pid, state):
    rx = re.compile(r'^%s\s.*\s%s\s+%d\s' % (re.escape(cluster),
                                             re.escape(state), pid), re.M)
    return rx.search(screen)


def run(ctx):
    binary = ctx.binary('tunnelpool')
    cp = procs.run([binary, 'top', '-s', ctx.path('nothing.sock')],
                   check=False)
    expect(cp.returncode == 1 and 'is it running' in cp.stderr,
           'top without a supervisor: exit %d, stderr %r', cp.returncode,
           cp.stderr)

    node_key, echo, proxy, kh = one_proxy(ctx)
    fwd = ports.free_ports(2)
    tp = ctx.tunnelpool(node_key, kh, backoff=('200ms', '1s'))
    for i, name in enumerate(('alpha', 'beta')):
        tp.add_tunnel(name, name, [proxy.address()],
                      [('127.0.0.1:%d' % fwd[i], '127.0.0.1:%d' % echo.port)])
    tp.start()
    st = tp.wait_state(lambda s: len([a for a in s['agents']
                                      if a['state'] == 'connected']) == 2,
                       30, 'both connected')
    pids = {a['cluster']: a['pid'] for a in st['agents']}

    tm = Tmux(ctx, '%s top -s %s' % (binary, tp.control_socket))
    screen = wait_screen(ctx, tm, lambda s: all(
        agent_row(s, c, p, 'connected') for c, p in pids.items()) and s,
        'both agent rows')
    ctx.log('top screen:\n%s', screen.rstrip())
    # The process on the terminal is tunnelpool-top, shown as typed.
    exes = {}
    for pid in ctx.find_processes(' top -s '):
        try:
            exes[pid] = os.path.basename(os.readlink('/proc/%d/exe' % pid))
        except OSError:
            pass
    expect('tunnelpool-top' in exes.values(),
           'no tunnelpool-top process titled "... top -s ...": %r', exes)
    with open('/proc/%d/maps' % tp.pid) as f:
        maps = f.read()
    for lib in ('libncurses', 'libtinfo', 'libssh'):
        expect(lib not in maps, 'the supervisor maps %s', lib)
    expect('supervisor pid %d' % tp.pid in screen, 'header lacks the pid')
    for what in ('CLUSTER', 'DIAL ADDR', 'PROXY', 'STATE', 'PID', 'UPTIME',
                 'RECONNECTS', 'CHANNELS', 'RX', 'TX', 'LAST ERROR',
                 'ANNOUNCED', 'CLAIMED', 'loop lag', 'p50', 'p99.9',
                 'spawns/s', 'messages/s', 'rss ', 'fds ', 'workers 2'):
        expect(what in screen, 'top screen lacks %r', what)
    # Rates need two documents: they show as numbers once a second passed.
    wait_screen(ctx, tm, lambda s: re.search(r'messages/s \d+\.\d', s),
                'a messages/s rate')

    # Live: close alpha's agent; its replacement shows up with a new pid.
    tp.ctl('close', '--pid', str(pids['alpha']))
    st = tp.wait_state(lambda s: [a for a in s['agents']
                                  if a['cluster'] == 'alpha' and
                                  a['state'] == 'connected' and
                                  a['pid'] != pids['alpha']], 30,
                       'alpha reconnected')
    new = [a['pid'] for a in st['agents'] if a['cluster'] == 'alpha'][0]
    wait_screen(ctx, tm, lambda s: agent_row(s, 'alpha', new, 'connected'),
                'the new alpha agent (pid %d)' % new)

    tm.keys('q')
    procs.wait_for(lambda: tm.exit_code() is not None, 10, 'top to exit')
    expect(tm.exit_code() == 0, 'top exited %r after q', tm.exit_code())
    # (the pane's sh, which wrote the status, may take a moment to go)
    procs.wait_for(lambda: not ctx.find_processes(' top -s '), 5,
                   'top and its pane to be gone')

    # The supervisor stops under a running top: exit 1, with a message.
    tm2 = Tmux(ctx, '%s top -s %s' % (binary, tp.control_socket), 'top2')
    wait_screen(ctx, tm2, lambda s: 'supervisor pid %d' % tp.pid in s,
                'the second top')
    tp.stop()
    procs.wait_for(lambda: tm2.exit_code() is not None, 10,
                   'top to notice the supervisor left')
    err = open(tm2.err_path).read()
    expect(tm2.exit_code() == 1 and 'closed the connection' in err,
           'top after the supervisor left: exit %r, stderr %r',
           tm2.exit_code(), err)
