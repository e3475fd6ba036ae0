"""The supervisor under valgrind (memcheck, --leak-check=full
--errors-for-leak-kinds=definite --error-exitcode=99) through a life that
touches most of its code: tunnels up, traffic through them (dials and fd
passing), status/metrics/version on the control and metrics sockets,
reloads (SIGHUP and `tunnelpool reload`) that add, change and remove
tunnels, a broken tunnel file and a broken main file refused, a worker
killed and respawned, a worker closed by the operator, a hostile worker
that finds its agent socket closed after the claim, floods dial requests
(refused by the dial rate limit, answered through the control socket's
send queue) and is ended for a protocol violation (test-hooks builds),
then SIGTERM.  Valgrind must report no error and nothing
"definitely lost", and the supervisor must exit 0.

Needs a build without sanitizers (valgrind and ASan do not mix); the
workers run natively (valgrind does not trace the exec'd children).
--run-libc-freeres=no: glibc's exit-time cleanup that valgrind triggers
calls clearenv(), which drops the only pointer to the environment copy
common/proctitle.c makes for the process title -- a "definitely lost"
block that exists only because of that cleanup."""

import re
import signal
import time
import urllib.request

from harness import expect, expect_eq, ports, procs
from harness.target import send_and_check
from harness.env import build_options
from harness.tunnelpool import one_proxy

NAME = 'rel_valgrind'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent'],
            'tools': ['sshd', 'ssh', 'ssh-keygen', 'socat', 'ip', 'ss',
                      'valgrind']}
TIMEOUT = 90


def connected(st, cluster=None):
    return [a for a in st['agents'] if a['state'] == 'connected' and
            (cluster is None or a['cluster'] == cluster)]


def parse_valgrind(text):
    """(errors, {leak kind: bytes}) from a memcheck log."""
    m = re.findall(r'ERROR SUMMARY: (\d+) errors', text)
    expect(m, 'no ERROR SUMMARY in the valgrind log')
    leaks = {}
    for kind in ('definitely lost', 'indirectly lost', 'possibly lost',
                 'still reachable'):
        k = re.findall(r'%s: ([\d,]+) bytes in ([\d,]+) blocks' % kind, text)
        leaks[kind] = int(k[-1][0].replace(',', '')) if k else 0
    return int(m[-1]), leaks


def settled(tp, name, quiet=2.0, timeout=120):
    """Waits until the counter `name` has not moved for `quiet` seconds."""
    def value():
        for line in tp.metrics_text(timeout=30).splitlines():
            if line.startswith(name + ' '):
                return line.split()[1]
        return None
    last, since, end = value(), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.5)
        now = value()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise AssertionError('%s still moving after %ds' % (name, timeout))


def run(ctx):
    opts = build_options(ctx.build_dir)
    expect(opts.get('b_sanitize', 'none') == 'none', '%s is a sanitizer '
           'build (b_sanitize=%s): valgrind needs a plain one',
           ctx.build_dir, opts.get('b_sanitize'))
    hooks = opts.get('test_hooks') is True

    node_key, echo, proxy, kh = one_proxy(ctx)
    fwd = ports.free_ports(4)
    tp = ctx.tunnelpool(node_key, kh, backoff=('200ms', '1s'),
                        log_level='debug')
    # Valgrind makes the supervisor slow: no deadline may fire for that.
    tp.config['timeouts'] = {'ready': '30s', 'ping_interval': '30s',
                             'handshake': '30s'}
    for i in range(2):
        tp.add_tunnel('t%d' % i, 'c%d' % i, [proxy.address()],
                      [('127.0.0.1:%d' % fwd[i], echo.address())])
    tp.write_config()
    tp.ensure_worker_user()
    vlog = ctx.path('valgrind.log')
    ctx.register_log(vlog, 'valgrind')
    argv = ['valgrind', '--tool=memcheck', '--leak-check=full',
            '--show-leak-kinds=definite,indirect,possible',
            '--errors-for-leak-kinds=definite', '--error-exitcode=99',
            '--track-fds=no', '--num-callers=30', '--run-libc-freeres=no',
            '--log-file=%s' % vlog,
            tp.binary, 'run', '-c', tp.config_path]
    tp.proc = ctx.spawn('tunnelpool', argv, log_path=tp.log_path)
    procs.wait_for(tp._status_ok, 60, 'supervisor under valgrind',
                   fail_if=tp.proc.died)
    st = tp.wait_state(lambda s: len(connected(s)) == 2, 60,
                       'two tunnels connected')
    for i in range(2):
        proxy.wait_forward(fwd[i], 30)
        send_and_check('127.0.0.1', fwd[i], 512 * 1024, timeout=60)
    ctx.log('up under valgrind: %r', [(a['cluster'], a['pid'])
                                      for a in connected(st)])

    # Operator surfaces.
    tp.ctl('version')
    tp.ctl('status')
    with urllib.request.urlopen('http://%s/metrics' % tp.metrics_listen,
                                timeout=30) as r:
        expect('tunnelpool_build_info' in r.read().decode(), 'metrics')

    # Reloads: add a tunnel (SIGHUP), change one (reload), remove one.
    tp.add_tunnel('t2', 'c2', [proxy.address()],
                  [('127.0.0.1:%d' % fwd[2], echo.address())])
    tp.reload()
    tp.wait_state(lambda s: len(connected(s, 'c2')) == 1, 60, 'c2 up')
    proxy.wait_forward(fwd[2], 30)
    tp.add_tunnel('t1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % fwd[3], echo.address())])
    tp.ctl('reload', timeout=60)
    proxy.wait_forward(fwd[3], 60)
    proxy.wait_no_forward(fwd[1], 60)
    tp.remove_tunnel('t2')
    tp.ctl('reload', timeout=60)
    proxy.wait_no_forward(fwd[2], 60)
    send_and_check('127.0.0.1', fwd[3], 64 * 1024, timeout=60)

    # Broken inputs are refused.
    tp.write_tunnel_raw('broken', 'kind: reverse_tunnel\nspec: [\n')
    expect_eq(tp.ctl('reload', check=False, timeout=60).returncode, 1,
              'reload with a broken tunnel file')
    tp.remove_tunnel('broken')
    with open(tp.config_path) as f:
        good = f.read()
    with open(tp.config_path, 'w') as f:
        f.write(good + 'no_such_key: 1\n')
    expect_eq(tp.ctl('reload', check=False, timeout=60).returncode, 1,
              'reload with a broken main file')
    with open(tp.config_path, 'w') as f:
        f.write(good)
    expect_eq(tp.ctl('reload', check=False, timeout=60).returncode, 0,
              'reload restored')

    # A worker killed: reaped and respawned.
    st = tp.wait_state(lambda s: len(connected(s, 'c0')) == 1, 60, 'c0')
    pid = connected(st, 'c0')[0]['pid']
    mark = tp.log_mark()
    procs.signal_pid(pid, signal.SIGKILL)
    tp.wait_log(r'worker lost: killed by signal', 60, since=mark)
    tp.wait_state(lambda s: [a for a in connected(s, 'c0')
                             if a['pid'] != pid], 60, 'c0 respawned')
    proxy.wait_forward(fwd[0], 30)
    send_and_check('127.0.0.1', fwd[0], 64 * 1024, timeout=60)

    if hooks:
        st = tp.wait_state(lambda s: len(connected(s, 'c0')) == 1, 60, 'c0')
        pid = connected(st, 'c0')[0]['pid']
        mark = tp.log_mark()
        tp.control({'cmd': 'test_hook', 'pid': pid, 'action': 14},
                   timeout=30)
        tp.wait_log(r'test hook 14: agent socket closed', 60, since=mark)
        send_and_check('127.0.0.1', fwd[0], 1024, timeout=60)  # a channel 1
        tp.control({'cmd': 'test_hook', 'pid': pid, 'action': 17},
                   timeout=30)
        tp.wait_log(r'dial rate limit \(worker\.dial_rate\) exceeded', 60,
                    since=mark)
        # The flood reads (and drops) what the supervisor sends, hooks
        # included: the next hook waits until it is over.
        settled(tp, 'tunnelpool_dials_rate_limited_total')
        tp.control({'cmd': 'test_hook', 'pid': pid, 'action': 8},
                   timeout=30)
        tp.wait_log(r'worker lost: protocol violation', 60, since=mark)
        tp.wait_state(lambda s: [a for a in connected(s, 'c0')
                                 if a['pid'] != pid], 60, 'c0 respawned')
        ctx.log('hostile worker: agent socket closed, dials limited, ended')

    # The operator closes a tunnel key.
    st = tp.status_json(timeout=30)
    pid = connected(st, 'c1')[0]['pid']
    tp.ctl('close', '--pid', str(pid), timeout=60)
    procs.wait_for(lambda: not procs.exists(pid), 60, 'closed worker gone')

    # SIGTERM: clean shutdown, then valgrind's verdict.
    tp.proc.signal(signal.SIGTERM)
    rc = tp.proc.wait(60)
    text = procs.read_text(vlog)
    errors, leaks = parse_valgrind(text)
    ctx.log('valgrind: exit %d, %d errors, leaks %r', rc, errors, leaks)
    expect_eq(errors, 0, 'valgrind errors (see valgrind.log)')
    expect_eq(leaks['definitely lost'], 0, 'bytes definitely lost')
    expect_eq(rc, 0, 'supervisor exit status under valgrind (99 = errors)')
