"""Issue 16: a compaction while the supervisor's watch is cut.  The
supervisor reaches etcd through a socat relay; the relay is stopped (the
watch stream and the probe connection break), keys are put, changed and
deleted, `etcdctl compact` removes the revisions the supervisor would
re-watch from, and the relay comes back: the watch is refused as
compacted, the supervisor reads the prefix again and diffs it (a full
resync): the running set matches etcd, unchanged tunnels keep their
workers."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _etcdfleet  # noqa: E402
from _etcdfleet import running  # noqa: E402

from harness import expect, expect_eq, ports  # noqa: E402

NAME = 'etcd_compaction'
REQUIRES = _etcdfleet.REQUIRES
TIMEOUT = 180


def run(ctx):
    etcd = ctx.etcd('etcd')
    relay = ctx.relay('relay', etcd.members[0].client_port)
    f = _etcdfleet.Fleet(ctx, etcd=etcd, endpoints=[relay.url()])
    before, _ = f.start_in_sync(['keep', 'change', 'gone'])

    relay.stop()
    f.wait_source(lambda s: not s['healthy'], 15, 'source unhealthy with '
                  'the relay stopped')
    f.put('new')
    f.put('change', port=ports.free_port())
    f.delete('gone')
    f.put('keep', value=f.value('keep'))        # same value again
    rev = f.etcd.revision()
    f.etcd.compact(rev)
    ctx.log('changes made and compacted at %d while cut off', rev)
    f.same_pids(before)

    mark = f.tp.log_mark()
    relay.start()
    f.tp.wait_log(r'revision \d+ was compacted', 30, since=mark)
    src = f.wait_source(lambda s: s['healthy'] and s['revision'] >= rev, 30,
                        'in sync again after the compaction')
    ctx.log('after: %r', src)
    now = f.wait_connected(['keep', 'change', 'new'],
                           replaced={'change': before['change']})
    expect_eq(sorted(now), sorted(k[len(_etcdfleet.PREFIX):]
                                  for k in f.etcd.keys(_etcdfleet.PREFIX)),
              'running set vs etcd')
    expect_eq(now['keep'], before['keep'], 'unchanged tunnel pid')
    expect(now['change'] != before['change'], 'changed tunnel kept its '
           'agent')
    expect('gone' not in running(f.tp.status_json()), 'deleted tunnel runs')
    f.check_data(['keep', 'change', 'new'])
    expect(src['watch_restarts'] >= 1, 'watch_restarts %r',
           src['watch_restarts'])
