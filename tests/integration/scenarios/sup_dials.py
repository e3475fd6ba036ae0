"""The supervisor's two dials end to end (supervisor/aconnect.c): the
target dial of each forwarded channel and the proxy dial before a worker
starts, each non-blocking with the timeouts.dial deadline (1 s here).

Targets, through one worker: a TCP echo and a unix-socket echo carry
data; a closed port is refused and a listener whose accept queue is full
never answers (its SYNs are dropped): each such channel is closed on the
client after the refusal or after the deadline (not before it, not long
after), logged with its cause, and counted in
tunnelpool_dial_failures_total; the worker keeps its PID and its other
forwards.  Once something listens on the closed port, its forward works.

Proxies: a dial address that refuses and one that never answers leave
their agent disconnected with last_error "dial ADDR: Connection refused"
or "dial ADDR: timed out" and are retried with backoff.  Between attempts
such a key has no worker, yet status shows its row (pid 0, disconnected,
last_error, retry_in_ms), clusters[] and tunnelpool_agents count it
disconnected, and so does the per-cluster stats line (its period shortened
through TP_TEST_STATS_MS in test-hooks builds).  Once an sshd answers on
the refused port, it connects."""

import os
import re
import socket
import time

from harness import expect, expect_eq, ports, procs, schema
from harness.env import build_options

NAME = 'sup_dials'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent'],
            'tools': ['sshd', 'ssh-keygen']}
TIMEOUT = 120
DIAL_TIMEOUT = 1.0


class FullListener:
    """A TCP listener on 127.0.0.1 whose accept queue is full: the kernel
    drops further SYNs, so a connect to it neither succeeds nor fails."""

    def __init__(self, ctx):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        # backlog 0 holds one established connection; two to be sure.
        for _ in range(2):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(('127.0.0.1', self.port))
            self.fillers.append(c)
        time.sleep(0.2)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(('127.0.0.1', self.port))
            full = False
        except socket.timeout:
            full = True
        finally:
            probe.close()
        expect(full, 'the full listener on %d accepted a connect', self.port)
        ctx.defer(self.close, 'full listener')

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


def channel_closed(port, what):
    """Opens a connection to a forward whose target fails, sends a byte
    and returns the seconds until the proxy closes it."""
    t0 = time.monotonic()
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    try:
        s.sendall(b'x')
        try:
            data = s.recv(1)
        except ConnectionResetError:
            data = b''
        expect_eq(data, b'', '%s: data from a channel whose dial failed'
                  % what)
    finally:
        s.close()
    return time.monotonic() - t0


def failures(tp, cluster):
    v = tp.metric('tunnelpool_dial_failures_total', cluster=cluster)
    expect(v is not None, 'no tunnelpool_dial_failures_total for %s',
           cluster)
    return int(v)


def agent(st, cluster):
    a = [x for x in st['agents'] if x['cluster'] == cluster]
    return a[0] if a else None


def run(ctx):
    from harness.target import send_and_check
    node_key = ctx.keygen('node_key')
    echo = ctx.echo_server()
    uecho = ctx.unix_echo_server()
    proxy = ctx.sshd('p1', authorized_keys=[node_key])
    kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())
    full = FullListener(ctx)
    dead, dead_proxy = ports.free_ports(2)
    f_tcp, f_unix, f_refused, f_silent = ports.free_ports(4)

    tp = ctx.tunnelpool(node_key, kh, backoff=('300ms', '1s'),
                        extra={'timeouts': {'dial': '%dms' %
                                            (DIAL_TIMEOUT * 1000)}})
    tp.add_tunnel('targets', 'targets', [proxy.address()], [
        ('127.0.0.1:%d' % f_tcp, echo.address()),
        ('127.0.0.1:%d' % f_unix, uecho.path),
        ('127.0.0.1:%d' % f_refused, '127.0.0.1:%d' % dead),
        ('127.0.0.1:%d' % f_silent, '127.0.0.1:%d' % full.port)])
    tp.add_tunnel('refusing', 'refusing', ['127.0.0.1:%d' % dead_proxy], [])
    tp.add_tunnel('silent', 'silent', ['127.0.0.1:%d' % full.port], [])
    # The per-cluster stats line (every 5 minutes) every 500 ms instead:
    # test-hooks builds read TP_TEST_STATS_MS.
    hooks = build_options(ctx.build_dir).get('test_hooks') is True
    os.environ['TP_TEST_STATS_MS'] = '500'
    try:
        tp.start()
    finally:
        del os.environ['TP_TEST_STATS_MS']

    st = tp.wait_state(lambda s: (agent(s, 'targets') or {}).get('state')
                       == 'connected', 30, 'targets connected')
    pid = agent(st, 'targets')['pid']
    for port in (f_tcp, f_unix, f_refused, f_silent):
        proxy.wait_forward(port)

    # Targets that answer.
    send_and_check('127.0.0.1', f_tcp, 256 * 1024)
    send_and_check('127.0.0.1', f_unix, 256 * 1024)
    expect_eq(failures(tp, 'targets'), 0, 'dial failures at start')

    # A refused target: closed at once, logged, counted.
    mark = tp.log_mark()
    secs = channel_closed(f_refused, 'refused target')
    m = tp.wait_log(r'dial 127\.0\.0\.1:%d for channel \d+ failed: '
                    r'Connection refused' % dead, 10, since=mark)
    ctx.log('refused target: closed after %.2f s; %s', secs, m.group(0))
    expect(secs < DIAL_TIMEOUT, 'refused target took %.2f s (the deadline '
           'is %.1f s): the refusal was not seen', secs, DIAL_TIMEOUT)
    expect_eq(failures(tp, 'targets'), 1, 'dial failures after a refusal')

    # A target that never answers: closed at the deadline.
    mark = tp.log_mark()
    secs = channel_closed(f_silent, 'silent target')
    m = tp.wait_log(r'dial 127\.0\.0\.1:%d for channel \d+ failed: '
                    r'timed out' % full.port, 10, since=mark)
    ctx.log('silent target: closed after %.2f s; %s', secs, m.group(0))
    expect(DIAL_TIMEOUT * 0.9 <= secs <= DIAL_TIMEOUT + 3, 'silent target '
           'closed after %.2f s, want the %.1f s deadline', secs,
           DIAL_TIMEOUT)
    expect_eq(failures(tp, 'targets'), 2, 'dial failures after a timeout')

    # The worker lives on; its good forwards still work; the closed port
    # works once something listens there.
    st = tp.status_json()
    expect_eq(agent(st, 'targets')['pid'], pid, 'targets worker pid')
    send_and_check('127.0.0.1', f_tcp, 64 * 1024)
    ctx.echo_server(name='late', port=dead)
    send_and_check('127.0.0.1', f_refused, 64 * 1024)
    expect_eq(failures(tp, 'targets'), 2, 'dial failures after the fix')

    # Proxies that refuse or never answer.
    want = {'refusing': r'dial 127\.0\.0\.1:%d: Connection refused'
            % dead_proxy,
            'silent': r'dial 127\.0\.0\.1:%d: timed out' % full.port}
    for cluster, rx in want.items():
        m = tp.wait_log(r'worker lost: dial failed \(%s\)".* cluster=%s '
                        % (rx, cluster), 15)
        ctx.log('%s proxy: %s', cluster, m.group(0))
    # Such a key has no worker between attempts, yet status shows it:
    # pid 0, disconnected, its last error, when it retries.
    st = tp.wait_state(lambda s: all(
        re.search(want[c], (agent(s, c) or {}).get('last_error') or '')
        for c in want), 15, 'last_error of both unreachable proxies')
    errs = schema.check(st)
    expect(not errs, 'status with waiting keys breaks the golden schema:'
           '\n%s', '\n'.join(errs))
    for c in want:
        a = agent(st, c)
        ctx.log('%s: %s', c, {k: a[k] for k in ('pid', 'state', 'since_s',
                                                 'retry_in_ms', 'last_error')})
        expect(a['state'] in ('disconnected', 'connecting'),
               '%s: state %r', c, a['state'])
        expect(a['state'] == 'connecting' or a['pid'] == 0,
               '%s: disconnected with pid %r', c, a['pid'])
        expect(0 <= a['retry_in_ms'] <= 2000, '%s: retry_in_ms %r (backoff '
               'max 1 s)', c, a['retry_in_ms'])
    # Between attempts (most of the time for the refused one) it counts as
    # disconnected in clusters[] and tunnelpool_agents.
    tp.wait_state(lambda s: any(
        x['name'] == 'refusing' and x['states']['disconnected'] == 1
        for x in s['clusters']), 10, 'refusing counted disconnected')
    procs.wait_for(lambda: tp.metric('tunnelpool_agents', cluster='refusing',
                                     state='disconnected') == 1,
                   10, 'tunnelpool_agents disconnected 1')
    table = tp.ctl('status').stdout
    row = [l for l in table.splitlines() if l.startswith('refusing ')]
    ctx.log('status row: %s', row)
    expect(row and re.search(r'\s-\s', row[0]) or any(
        re.search(r'\sconnecting\s', r) for r in row),
        'status table row of the refusing key: %r', row)
    # The stats line counts the waiting key the same way.
    if hooks:
        m = tp.wait_log(r'msg="cluster refusing: connecting=0 discovering=0 '
                        r'connected=0 discovered=0 disconnected=1 '
                        r'announced=0 claimed=0"', 10)
        ctx.log('stats line: %s', m.group(0))
        tp.wait_log(r'msg="cluster targets: connecting=0 discovering=0 '
                    r'connected=1 discovered=0 disconnected=0 ', 10)
    else:
        ctx.log('NOTE: no test hooks in %s: the stats line (every 5 min) '
                'is not checked', ctx.build_dir)
    # Retried with backoff: several attempts each.
    for c, rx in want.items():
        procs.wait_for(lambda: len(re.findall(
            r'worker lost: dial failed \(%s\)".* cluster=%s ' % (rx, c),
            tp.log_text())) >= 2, 15, '%s retried' % c)

    # An sshd appears on the refused port: the agent connects.
    proxy2 = ctx.sshd('p2', start=False, authorized_keys=[node_key])
    proxy2.listen_port = dead_proxy
    proxy2.start()
    with open(tp.config['trust']['known_hosts'], 'a') as f:
        f.write(''.join(line + '\n' for line in proxy2.known_hosts_pins()))
    tp.ctl('reload')
    tp.wait_state(lambda s: (agent(s, 'refusing') or {}).get('state')
                  == 'connected', 30, 'refusing connected once sshd is up')
    expect(procs.alive(pid), 'targets worker %d died', pid)
