"""Issue 16, production conditions: the etcd cluster loses its quorum.  A
3-member cluster; the supervisor is in sync through one member; the two
others are killed.  The member left has no leader: it could create and
keep a watch that never delivers a change.  The supervisor asks for a
leader on every call (clientv3's WithRequireLeader, the gateway's
Grpc-Metadata-hasleader header), so the survivor refuses and cancels:
status says unhealthy within seconds with "no leader", and stays so
while the quorum is gone (sampled for 10 s: no flapping back to healthy
on a member that cannot serve).  The pool is untouched meanwhile.  The
members come back: healthy again, and a put made then is picked up."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _etcdfleet  # noqa: E402
from _etcdfleet import running  # noqa: E402

from harness import expect  # noqa: E402

NAME = 'etcd_quorum_lost'
REQUIRES = _etcdfleet.REQUIRES
TIMEOUT = 180


def run(ctx):
    f = _etcdfleet.Fleet(ctx, members=3)
    before, src = f.start_in_sync(['a', 'b'])
    used = src['endpoint']
    others = [m for m in f.etcd.members if m.url() != used]
    spawns = f.tp.status_json()['supervisor']['spawns']
    for m in others:
        m.kill()
    t0 = time.monotonic()
    src = f.wait_source(lambda s: not s['healthy'], 8,
                        'unhealthy after the quorum is gone')
    ctx.log('unhealthy %.1fs after the quorum went: %s',
            time.monotonic() - t0, src['last_error'])
    seen_no_leader = 'no leader' in src['last_error']
    end = time.monotonic() + 10
    while time.monotonic() < end:
        s = f.source()
        expect(not s['healthy'], 'healthy again without a quorum: %r', s)
        seen_no_leader |= 'no leader' in s['last_error']
        time.sleep(0.5)
    expect(seen_no_leader, 'no "no leader" error was reported')
    st = f.tp.status_json()
    expect(st['supervisor']['spawns'] == spawns, 'agents were started')
    f.same_pids(before)
    f.check_data(['a', 'b'])

    for m in others:
        m.start()
    src = f.wait_source(lambda s: s['healthy'], 60, 'healthy once the '
                        'members are back')
    ctx.log('healthy again: %r', src)
    f.put('c')
    f.within(5.0, lambda s: 'c' in running(s), 'put c after the quorum is '
             'back')
    f.wait_connected(['a', 'b', 'c'])
    f.same_pids(before, ['a', 'b'])
