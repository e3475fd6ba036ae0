"""Issue 16: tunnel_source changed on reload.  The supervisor starts with
tunnel files only (tunnel f); etcd holds tunnels under two prefixes.

1. Reload with tunnel_source.etcd added (prefix A: a, b): their agents come
   up, f keeps its PID, status says type etcd.
2. Reload with a broken tunnel_source.etcd (an endpoint that is no URL):
   refused with an error naming the key, the running source and every
   agent untouched.
3. Reload with the prefix changed to B (b with the very same spec, and c):
   a goes, c comes, b keeps its PID (the new client's first read replaces
   the old keys; an equal spec is not touched), f keeps its PID.
4. Reload with tunnel_source removed: b and c go, f keeps its PID, status
   says type files.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _etcdfleet  # noqa: E402
from _etcdfleet import running  # noqa: E402

from harness import expect, expect_eq, procs  # noqa: E402

NAME = 'etcd_reload_source'
REQUIRES = _etcdfleet.REQUIRES
TIMEOUT = 150
PREFIX_B = '/tunnelpool/node-1b/'


def reload_config(f, etcd):
    """Rewrites the main file with or without tunnel_source.etcd, then
    `tunnelpool reload`; returns the command's result."""
    cfg = f.tp.config
    cfg['tunnels_dir'] = f.tp.tunnels_dir
    if etcd is None:
        cfg.pop('tunnel_source', None)
    else:
        cfg['tunnel_source'] = {'etcd': etcd}
    f.tp.write_config()
    return f.tp.ctl('reload', check=False)


def run(ctx):
    f = _etcdfleet.Fleet(ctx)
    f.tp.config.pop('tunnel_source', None)
    f.tp.config['tunnels_dir'] = f.tp.tunnels_dir
    f.tp.add_tunnel('f', 'f', [f.proxy.address()],
                    [('127.0.0.1:%d' % f.port('f'), f.echo.address())])
    f.put('a')
    f.put('b')
    f.etcd.put(PREFIX_B + 'b', f.value('b'))
    f.etcd.put(PREFIX_B + 'c', f.value('c'))
    f.start()
    before = f.wait_connected(['f'])
    expect_eq(f.source()['type'], 'files', 'source type before')

    # 1. etcd added.
    ep = f.etcd.endpoints()
    cp = reload_config(f, {'endpoints': ep, 'prefix': _etcdfleet.PREFIX})
    expect(cp.returncode == 0, 'reload: %s %s', cp.stdout, cp.stderr)
    now = f.wait_connected(['f', 'a', 'b'])
    f.same_pids(before, ['f'])
    src = f.wait_source(lambda s: s['type'] == 'etcd' and s['healthy'], 10,
                        'the etcd source healthy')
    ctx.log('etcd added: %r; agents %r', src, now)
    f.check_data(['f', 'a', 'b'])

    # 2. a broken source: refused, nothing changes.
    mark = f.tp.log_mark()
    cp = reload_config(f, {'endpoints': ['not a url'],
                           'prefix': _etcdfleet.PREFIX})
    m = f.tp.wait_log(r'tunnelpool\.yaml:\d+:\d+: tunnel_source\.etcd\.'
                      r'endpoints\[0\]: invalid endpoint', 10, since=mark)
    ctx.log('broken source: reload rc %d; %s', cp.returncode, m.group(0))
    expect(cp.returncode != 0, 'the broken reload succeeded: %s', cp.stdout)
    st = f.tp.status_json()
    expect_eq(running(st), now, 'agents after the broken reload')
    expect(st['tunnel_source']['type'] == 'etcd' and
           st['tunnel_source']['endpoint'] == ep[0],
           'the running source changed: %r', st['tunnel_source'])

    # 3. another prefix: a goes, c comes, b and f stay.
    cp = reload_config(f, {'endpoints': ep, 'prefix': PREFIX_B})
    expect(cp.returncode == 0, 'reload: %s %s', cp.stdout, cp.stderr)
    later = f.wait_connected(['f', 'b', 'c'])
    procs.wait_for(lambda: not procs.alive(now['a']), 10,
                   'the worker of a (%d) to exit' % now['a'])
    f.same_pids(now, ['f', 'b'])
    ctx.log('prefix changed: agents %r (b kept %d)', later, now['b'])
    f.check_data(['b', 'c'])

    # 4. etcd removed: its tunnels go, the file's stays.
    cp = reload_config(f, None)
    expect(cp.returncode == 0, 'reload: %s %s', cp.stdout, cp.stderr)
    f.wait_connected(['f'])
    for name in ('b', 'c'):
        procs.wait_for(lambda: not procs.alive(later[name]), 10,
                       'the worker of %s to exit' % name)
    f.same_pids(before, ['f'])
    expect_eq(f.source()['type'], 'files', 'source type after removal')
    ctx.log('etcd removed: b and c gone, f kept %d', before['f'])
    f.check_data(['f'])
