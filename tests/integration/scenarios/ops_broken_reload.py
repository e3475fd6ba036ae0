"""Broken configuration on reload never tears tunnels down.  A broken
tunnel file: `tunnelpool reload` reports the failure, every tunnel stays up
with the same worker, `status --json` says config_ok false with file:line
in config_error, metrics say the last reload failed.  A broken main file:
`tunnelpool reload` (and SIGHUP) fail, every tunnel stays up, and the
previous configuration keeps running (same control socket, same metrics
endpoint, same tunnels).  Fixing the files and reloading clears it all."""

import os
import re

from harness import expect, expect_eq
from harness.target import send_and_check
from harness.tunnelpool import one_proxy_pool

NAME = 'ops_broken_reload'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 120


def pids(st):
    return sorted((a['cluster'], a['pid']) for a in st['agents']
                  if a['state'] == 'connected')


def reload_failed(tp, pattern):
    cp = tp.ctl('reload', check=False)
    expect(cp.returncode == 1, '`tunnelpool reload` exit %d on a broken '
           'config (want 1): %s', cp.returncode, cp.stderr)
    expect(re.search(pattern, cp.stderr), 'reload error %r lacks /%s/',
           cp.stderr, pattern)
    return cp.stderr.strip()


def reload_metric(tp):
    v = tp.metric('tunnelpool_config_last_reload_successful')
    expect(v is not None, 'no tunnelpool_config_last_reload_successful')
    return int(v)


def still_up(ctx, tp, want, fwd):
    """The same workers, connected, carrying data."""
    st = tp.status_json()
    expect_eq(pids(st), want, 'connected workers')
    for port in fwd:
        send_and_check('127.0.0.1', port, 64 * 1024)
    return st


def run(ctx):
    pool = one_proxy_pool(ctx)
    tp, fwd = pool.tp, pool.fwd
    want = pids(pool.status)

    # 1. A broken tunnel file next to the good ones.
    tp.write_tunnel_raw('broken', 'kind: reverse_tunnel\nversion: v2\n'
                        'spec: [\n')
    err = reload_failed(tp, r'broken\.yaml:\d+')
    ctx.log('reload with a broken tunnel file: %s', err)
    st = still_up(ctx, tp, want, fwd)
    sup = st['supervisor']
    expect(sup['config_ok'] is False, 'config_ok is %r', sup['config_ok'])
    expect(re.search(r'broken\.yaml:\d+', sup['config_error'] or ''),
           'config_error lacks file:line: %r', sup['config_error'])
    expect_eq(reload_metric(tp), 0, 'last_reload_successful')
    tp.remove_tunnel('broken')
    expect(tp.ctl('reload', check=False).returncode == 0,
           'reload after removing the broken file failed')
    st = still_up(ctx, tp, want, fwd)
    expect(st['supervisor']['config_ok'] is True, 'config_ok stays false')
    expect_eq(reload_metric(tp), 1, 'last_reload_successful')

    # 2. A broken main file: the whole running configuration stays.
    good = open(tp.config_path).read()
    with open(tp.config_path, 'a') as f:
        f.write('control_socket: [\n')
    err = reload_failed(tp, r'tunnelpool\.yaml:\d+')
    ctx.log('reload with a broken main file: %s', err)
    mark = tp.log_mark()
    tp.reload()                    # SIGHUP takes the same path
    tp.wait_log(r'reload failed: keeping the running configuration', 10,
                since=mark)
    st = still_up(ctx, tp, want, fwd)
    expect(st['supervisor']['config_ok'] is False and
           'tunnelpool.yaml:' in (st['supervisor']['config_error'] or ''),
           'status after a broken main file: %r', st['supervisor'])
    expect(os.path.exists(tp.control_socket), 'control socket gone')
    expect_eq(reload_metric(tp), 0, 'last_reload_successful')

    # An unknown key is as fatal as a syntax error, and changes nothing.
    with open(tp.config_path, 'w') as f:
        f.write(good.replace('\nlog:', '\nno_such_key: 1\nlog:', 1))
    reload_failed(tp, r'no_such_key')
    still_up(ctx, tp, want, fwd)

    with open(tp.config_path, 'w') as f:
        f.write(good)
    cp = tp.ctl('reload', check=False)
    expect(cp.returncode == 0, 'reload of the restored file: %s', cp.stderr)
    st = still_up(ctx, tp, want, fwd)
    expect(st['supervisor']['config_ok'] is True and
           st['supervisor']['config_error'] is None,
           'config state after the fix: %r', st['supervisor'])
    expect(tp.alive(), 'supervisor died')

    # 3. A tunnel file rewritten in place, not atomically.  While the writer
    # holds it open, what it holds so far -- here only a comment, which is a
    # valid file without tunnels -- is not read (a read lease tells): c2
    # keeps its worker.  Closing the file (inotify) makes the finished
    # contents take effect.
    path = tp.tunnel_path('c2')
    with open(path) as f:
        whole = f.read()
    with open(path, 'w') as f:
        f.write('# rewritten by config management\n')
        f.flush()
        err = reload_failed(tp, r'c2\.yaml: open for writing by another '
                            r'process')
        ctx.log('reload while c2.yaml is being written: %s', err)
        st = still_up(ctx, tp, want, fwd)
        expect(st['supervisor']['config_ok'] is False,
               'config_ok while a file is being written: %r',
               st['supervisor'])
        f.write(whole)
    tp.wait_state(lambda s: s['supervisor']['config_ok'] is True, 10,
                  'config_ok after the writer closed c2.yaml')
    still_up(ctx, tp, want, fwd)
    expect(tp.alive(), 'supervisor died')
