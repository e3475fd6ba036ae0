"""Issue 16: tunnels from etcd.  The supervisor ranges its prefix at start
and watches it: a put adds an agent, a delete removes it, a changed value
replaces it, each within 1 s, while the other tunnels keep their PIDs; a put
of an equal spec (metadata only) touches nothing.  status --json, the text
status and metrics show the source: type etcd, the endpoint, healthy, the
revision etcd is at, no watch restarts, a snapshot in state_dir."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _etcdfleet  # noqa: E402
from _etcdfleet import running  # noqa: E402

from harness import expect, expect_eq, ports, procs, schema  # noqa: E402

NAME = 'etcd_put_delete'
REQUIRES = _etcdfleet.REQUIRES
TIMEOUT = 150


def run(ctx):
    f = _etcdfleet.Fleet(ctx)
    before, src = f.start_in_sync(['a', 'b'])
    ctx.log('source: %r', src)
    expect_eq(src['type'], 'etcd', 'source type')
    expect_eq(src['endpoint'], f.etcd.endpoints()[0], 'endpoint in use')
    expect_eq(src['watch_restarts'], 0, 'watch restarts')
    expect_eq(src['keys'], 2, 'keys')
    expect(src['last_error'] == '', 'last_error %r', src['last_error'])
    problems = schema.check(f.tp.status_json())
    expect(not problems, 'status --json against the schema: %s', problems)
    f.check_data(['a', 'b'])

    # put: a new agent within 1 s, the others untouched.
    f.put('c')
    f.within(1.0, lambda s: 'c' in running(s), 'put c -> agent spawned')
    f.wait_connected(['a', 'b', 'c'])
    f.same_pids(before)
    f.check_data(['c'])

    # delete: the agent goes within 1 s.
    before = running(f.tp.status_json())
    f.delete('b')
    f.within(1.0, lambda s: 'b' not in running(s), 'delete b -> agent '
             'closed')
    procs.wait_for(lambda: not procs.alive(before['b']), 10,
                   'the worker of b (%d) to exit' % before['b'])
    f.same_pids(before, ['a', 'c'])

    # change: a new agent for a within 1 s (its forward moves).
    old_a = before['a']
    f.put('a', port=ports.free_port())
    f.within(1.0, lambda s: running(s).get('a') not in (None, old_a),
             'change a -> agent replaced')
    now = f.wait_connected(['a', 'c'])
    f.same_pids(before, ['c'])
    f.check_data(['a', 'c'])

    # an equal spec (metadata.name changes only): nothing is touched.
    rev = f.put('c', value=_etcdfleet.tunnel_yaml(
        'c-renamed', 'c', [f.proxy.address()],
        [('127.0.0.1:%d' % f.port('c'), f.echo.address())]))
    f.wait_source(lambda s: s['revision'] == rev, 10, 'revision %d' % rev)
    f.same_pids(now)

    # text status and metrics say the same.
    cp = f.tp.ctl('status')
    expect('tunnel source etcd %s: healthy, revision %d' % (
        f.etcd.endpoints()[0], rev) in cp.stdout, 'text status: %s',
        cp.stdout[:600])
    m = f.tp.metrics_text()
    for want in ('tunnelpool_tunnel_source_healthy 1',
                 'tunnelpool_tunnel_source_revision %d' % rev,
                 'tunnelpool_tunnel_source_info{type="etcd",endpoint="%s"} 1'
                 % f.etcd.endpoints()[0],
                 'tunnelpool_tunnel_source_keys{kind="all"} 2',
                 'tunnelpool_tunnel_source_watch_restarts_total 0'):
        expect(want in m, 'metrics lack %r', want)
    # The last good set is on disk.
    snap = os.path.join(f.tp.state_dir, 'etcd-snapshot.json')
    procs.wait_for(lambda: os.path.exists(snap) and json.load(open(snap))[
        'revision'] == rev, 10, 'snapshot at revision %d' % rev)
    doc = json.load(open(snap))
    expect_eq(sorted(doc['kvs']), [f.key('a'), f.key('c')], 'snapshot keys')
    expect_eq(os.stat(snap).st_mode & 0o777, 0o600, 'snapshot mode')
    src = f.source()
    expect(0 <= src['snapshot_age_s'] < 60, 'snapshot age %r',
           src['snapshot_age_s'])

