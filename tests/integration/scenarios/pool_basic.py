"""The supervisor end to end against one real sshd: a tunnel comes up
through a sandboxed worker, data crosses it intact, the worker is a visible,
demoted process, a reload with an unchanged key keeps the same worker PID, a
broken tunnel file keeps tunnels up, and kill -9 of a worker is reaped,
logged and respawned after backoff with no zombie left."""

import signal
import time

from harness import expect, ports, procs
from harness.target import send_and_check
from harness.tunnelpool import one_proxy

NAME = 'pool_basic'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 120


def agents(st, cluster=None):
    return [a for a in st['agents']
            if cluster is None or a['cluster'] == cluster]


def connected(st, cluster):
    return [a for a in agents(st, cluster) if a['state'] == 'connected']


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)
    fwd = ports.free_port()

    tp = ctx.tunnelpool(node_key, kh, backoff=('500ms', '2s'))
    tp.add_tunnel('c1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % fwd, '127.0.0.1:%d' % echo.port)])
    tp.start()
    st = tp.wait_state(lambda s: connected(s, 'c1'), 30, 'c1 connected')
    a = connected(st, 'c1')[0]
    pid = a['pid']
    ctx.log('agent pid %d on %s (%s)', pid, a['proxy']['name'],
            a['proxy']['host_key'])
    expect(a['proxy']['host_key'] in proxy.host_fingerprints(),
           'agent reports host key %r, proxy has %r', a['proxy']['host_key'],
           proxy.host_fingerprints())
    proxy.wait_forward(fwd)
    send_and_check('127.0.0.1', fwd, 4 * 1024 * 1024)

    # The worker is a demoted, titled process.  (The ASan build runs the
    # null sandbox backend: demotion still happens, seccomp does not.)
    title = procs.title(pid)
    expect(title.startswith('tunnelpool-agent: c1 %s' % proxy.address()),
           'worker title %r', title)
    if ctx.sandbox() == 'seccomp':
        expect(procs.seccomp_mode(pid) == 2, 'Seccomp is %r',
               procs.seccomp_mode(pid))
    expect(procs.no_new_privs(pid) == 1, 'NoNewPrivs not set')
    expect(0 not in procs.uids(pid), 'worker runs as uid %r', procs.uids(pid))
    expect(procs.cap_eff(pid) == 0, 'worker has capabilities')

    # Reload with an unchanged key: same PID, forward untouched.
    mark = tp.log_mark()
    tp.reload()
    tp.wait_log(r'reloading', 10, since=mark)
    time.sleep(1.5)
    st = tp.status_json()
    expect([x['pid'] for x in connected(st, 'c1')] == [pid],
           'reload replaced the worker: %r', agents(st))

    # A broken tunnel file next to the good one changes nothing that runs.
    tp.write_tunnel_raw('broken', 'kind: reverse_tunnel\nspec: [\n')
    st = tp.wait_state(lambda s: not s['supervisor']['config_ok'], 10,
                       'config_ok false')
    err = st['supervisor']['config_error']
    expect('broken.yaml:' in err, 'config_error lacks file:line: %r', err)
    expect([x['pid'] for x in connected(st, 'c1')] == [pid],
           'broken file disturbed the tunnel')
    send_and_check('127.0.0.1', fwd, 64 * 1024)
    tp.remove_tunnel('broken')

    # kill -9: reaped, reason logged, respawned after backoff, no zombie.
    mark = tp.log_mark()
    procs.signal_pid(pid, signal.SIGKILL)
    tp.wait_log(r'worker lost: killed by signal.*signal 9', 10, since=mark)
    st = tp.wait_state(lambda s: [x for x in connected(s, 'c1')
                                  if x['pid'] != pid], 30, 'respawned')
    expect(not procs.zombies(tp.pid), 'zombies: %r', procs.zombies(tp.pid))
    expect(connected(st, 'c1')[0]['reconnects'] >= 1, 'reconnects not counted')
    proxy.wait_forward(fwd, 15)
    send_and_check('127.0.0.1', fwd, 256 * 1024)
