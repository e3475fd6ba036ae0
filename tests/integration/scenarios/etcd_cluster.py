"""Issue 16: a 3-member etcd cluster on loopback.  The supervisor is given
all three endpoints; the member it is using is killed: it moves to another
member (status names it), re-watches from the last revision, and nothing
changes in the pool (same workers, data flows).  A change made through the
remaining members is picked up."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _etcdfleet  # noqa: E402
from _etcdfleet import running  # noqa: E402

from harness import expect  # noqa: E402

NAME = 'etcd_cluster'
REQUIRES = _etcdfleet.REQUIRES
TIMEOUT = 180


def run(ctx):
    f = _etcdfleet.Fleet(ctx, members=3)
    before, src = f.start_in_sync(['a', 'b'])
    used = src['endpoint']
    victim = [m for m in f.etcd.members if m.url() == used]
    expect(len(victim) == 1, 'endpoint in use %r is not a member', used)
    spawns = f.tp.status_json()['supervisor']['spawns']
    ctx.log('using %s: killing member %s (pid %d)', used, victim[0].name,
            victim[0].pid)
    victim[0].kill()
    src = f.wait_source(lambda s: s['healthy'] and s['endpoint'] != used, 30,
                        'moved to another member')
    ctx.log('now: %r', src)
    st = f.tp.status_json()
    expect(st['supervisor']['spawns'] == spawns, 'agents were started')
    f.same_pids(before)
    f.check_data(['a', 'b'])
    f.put('c')
    f.within(1.0, lambda s: 'c' in running(s), 'put c via the survivors')
    f.wait_connected(['a', 'b', 'c'])
    f.same_pids(before, ['a', 'b'])
