"""Issue 16: a supervisor restarted while etcd is down brings its tunnels
up from the snapshot of the last good set in state_dir, and says so (log,
status: from_snapshot, unhealthy, the snapshot's age; metrics).  When etcd
is back, the first full read replaces the snapshot by a diff: the tunnels
the snapshot started keep their workers; a key deleted while the
supervisor was away is removed."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _etcdfleet  # noqa: E402
from _etcdfleet import running  # noqa: E402

from harness import expect, expect_eq, procs  # noqa: E402

NAME = 'etcd_snapshot'
REQUIRES = _etcdfleet.REQUIRES
TIMEOUT = 180


def run(ctx):
    f = _etcdfleet.Fleet(ctx)
    for n in ('a', 'b', 'c'):
        rev = f.put(n)
    f.start()
    f.wait_connected(['a', 'b', 'c'])
    snap = os.path.join(f.tp.state_dir, 'etcd-snapshot.json')
    procs.wait_for(lambda: os.path.exists(snap) and json.load(open(snap))[
        'revision'] == rev, 10, 'snapshot at revision %d' % rev)

    f.tp.stop()
    f.etcd.members[0].kill()
    ctx.log('supervisor stopped, etcd killed; starting the supervisor')
    f.tp.start()
    f.tp.wait_log(r'etcd: 3 keys from the snapshot of revision %d' % rev, 10)
    f.tp.wait_log(r'etcd unreachable .*running from the snapshot', 15)
    first = f.wait_connected(['a', 'b', 'c'])
    src = f.source()
    ctx.log('from the snapshot: %r', src)
    expect(src['from_snapshot'] is True, 'from_snapshot %r',
           src['from_snapshot'])
    expect(src['healthy'] is False, 'healthy %r with etcd down',
           src['healthy'])
    expect_eq(src['revision'], rev, 'revision of the snapshot')
    expect(src['snapshot_age_s'] >= 0, 'snapshot age %r',
           src['snapshot_age_s'])
    expect(src['last_error'] != '', 'no last_error while etcd is down')
    cp = f.tp.ctl('status')
    expect('RUNNING FROM THE SNAPSHOT' in cp.stdout, 'text status: %s',
           cp.stdout[:500])
    expect(f.tp.metric('tunnelpool_tunnel_source_from_snapshot') == 1,
           'metrics: from_snapshot')
    f.check_data(['a', 'b', 'c'])

    f.etcd.members[0].start()
    f.etcd.start()
    f.delete('c')
    src = f.wait_source(lambda s: s['healthy'] and not s['from_snapshot'],
                        30, 'in sync with etcd')
    f.tp.wait_log(r'the snapshot is no longer used', 10)
    now = f.wait_connected(['a', 'b'])
    expect_eq(now, {k: first[k] for k in ('a', 'b')}, 'agents the snapshot '
              'started')
    expect('c' not in running(f.tp.status_json()), 'c runs after its '
           'delete')
    f.check_data(['a', 'b'])
