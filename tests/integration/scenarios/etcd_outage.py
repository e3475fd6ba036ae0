"""Issue 16: etcd killed (SIGKILL, a crash): every tunnel stays up with the
same worker and carries data, status says the source is unhealthy with the
reason, metrics say so too.  etcd back (same data dir): the supervisor
watches again from the last revision it saw (a watch restart, no full
re-read needed) and picks up changes made after the return: a put adds an
agent, a delete removes one, the rest keep their PIDs."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _etcdfleet  # noqa: E402
from _etcdfleet import running  # noqa: E402

from harness import expect  # noqa: E402

NAME = 'etcd_outage'
REQUIRES = _etcdfleet.REQUIRES
TIMEOUT = 180


def run(ctx):
    f = _etcdfleet.Fleet(ctx)
    before, _ = f.start_in_sync(['a', 'b', 'c'])
    spawns = f.tp.status_json()['supervisor']['spawns']

    f.etcd.members[0].kill()
    src = f.wait_source(lambda s: not s['healthy'], 15, 'source unhealthy')
    ctx.log('etcd down: %r', src)
    expect('etcd %s' % f.etcd.endpoints()[0] in src['last_error'],
           'last_error names the endpoint: %r', src['last_error'])
    expect(f.tp.metric('tunnelpool_tunnel_source_healthy') == 0,
           'metrics: source healthy')
    # Several retries go by: nothing that runs changes.
    f.tp.wait_log(r'etcd http://127\.0\.0\.1:%d: .*(refused|failed|lost)'
                  % f.etcd.members[0].client_port, 10)
    f.check_data(['a', 'b', 'c'])
    st = f.tp.status_json()
    expect(st['supervisor']['spawns'] == spawns, 'an agent was started '
           'while etcd was down')
    f.same_pids(before)

    f.etcd.members[0].start()
    f.etcd.start()          # waits until healthy
    src = f.wait_source(lambda s: s['healthy'], 30, 'source healthy again')
    ctx.log('etcd back: %r', src)
    expect(src['watch_restarts'] >= 1, 'watch_restarts %r',
           src['watch_restarts'])
    f.same_pids(before)
    f.put('d')
    f.within(1.0, lambda s: 'd' in running(s), 'put d after the return')
    f.delete('a')
    f.within(1.0, lambda s: 'a' not in running(s), 'delete a after the '
             'return')
    f.wait_connected(['b', 'c', 'd'])
    f.same_pids(before, ['b', 'c'])
    f.check_data(['b', 'c', 'd'])
    rev = f.etcd.revision()
    f.wait_source(lambda s: s['healthy'] and s['revision'] == rev, 10,
                  'in sync at %d' % rev)
