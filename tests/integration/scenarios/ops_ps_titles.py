"""Process titles as ps(1) shows them: the supervisor is `tunnelpool:
supervisor N agents` (N follows the pool), each worker is `tunnelpool-agent:
CLUSTER DIALADDR [PROXY] STATE`, and a worker's title follows its state
(connecting while the proxy hangs, connected with the proxy's discovered
name once it answers)."""

import re

from harness import expect, ports, procs, yamlw

NAME = 'ops_ps_titles'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent',
                                       'tunnelpool-discovery']}
TIMEOUT = 120


def ps_titles():
    """{pid: args} from `ps -e -o pid=,args=`."""
    out = procs.run(['ps', '-e', '-o', 'pid=,args=']).stdout
    titles = {}
    for line in out.splitlines():
        pid, _, args = line.strip().partition(' ')
        titles[int(pid)] = args.strip()
    return titles


def wait_title(ctx, pid_fn, regex, what, timeout=20):
    """Waits until a pid from pid_fn() has a ps title matching regex;
    returns (pid, title)."""
    rx = re.compile(regex)

    def check():
        t = ps_titles()
        for pid in pid_fn():
            if pid in t and rx.search(t[pid]):
                return pid, t[pid]
        return None
    try:
        found = procs.wait_for(check, timeout, what, interval=0.1)
    except procs.WaitTimeout:
        t = ps_titles()
        expect(False, 'no title /%s/ for %s; ps shows: %r', regex, what,
               [t.get(p) for p in pid_fn()])
    ctx.log('ps: %d %s', found[0], found[1])
    return found


def run(ctx):
    node_key = ctx.keygen('node_key')
    echo = ctx.echo_server()
    disc = ctx.binary('tunnelpool-discovery')
    pfile = ctx.path('proxies.yaml')
    proxy = ctx.sshd('p1', authorized_keys=[node_key],
                     discovery=(disc, pfile), start=False)
    yamlw.dump({'cluster': 'c1', 'proxies': [
        {'name': 'p1', 'host_key': proxy.host_keys[0].public}]}, pfile)
    proxy.start()
    kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())
    fwd1, fwd2 = ports.free_ports(2)
    addr = re.escape(proxy.address())
    tp = ctx.tunnelpool(node_key, kh, backoff=('500ms', '2s'),
                        extra={'timeouts': {'handshake': '60s'}})
    tp.add_tunnel('t1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % fwd1, '127.0.0.1:%d' % echo.port)],
                  discovery=True)

    # A hung proxy (SIGSTOPped sshd: the kernel still completes the TCP
    # handshake) keeps the worker in connecting, and its title says so.
    proxy.pause()
    tp.start()
    workers = tp.worker_pids
    pid, _ = wait_title(ctx, workers, r'^tunnelpool-agent: c1 %s connecting$'
                        % addr, 'a connecting worker')
    wait_title(ctx, lambda: [tp.pid], r'^tunnelpool: supervisor 1 agents$',
               'the supervisor')

    # Once the proxy answers: connected, with the name discovery gave it.
    proxy.resume()
    pid2, _ = wait_title(ctx, workers, r'^tunnelpool-agent: c1 %s p1 '
                         r'connected$' % addr, 'the connected worker', 30)
    expect(pid2 == pid, 'the title moved to pid %d, was %d', pid2, pid)

    # The supervisor's title counts agents as the pool changes.
    tp.add_tunnel('t2', 'c2', [proxy.address()],
                  [('127.0.0.1:%d' % fwd2, '127.0.0.1:%d' % echo.port)])
    tp.ctl('reload')
    wait_title(ctx, workers, r'^tunnelpool-agent: c2 %s connected$' % addr,
               'the c2 worker')
    wait_title(ctx, lambda: [tp.pid], r'^tunnelpool: supervisor 2 agents$',
               'the supervisor with 2 agents')
    tp.remove_tunnel('t2')
    tp.ctl('reload')
    wait_title(ctx, lambda: [tp.pid], r'^tunnelpool: supervisor 1 agents$',
               'the supervisor back at 1 agent')
    t = ps_titles()
    expect(t.get(pid, '').endswith(' p1 connected'),
           'c1 worker title changed: %r', t.get(pid))
