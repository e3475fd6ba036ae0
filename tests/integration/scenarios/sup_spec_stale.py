"""While a tunnel's spec changes, its old agent must not route by the new
spec.  The old agent keeps its old listener until its replacement is up;
the forward ids it sends name the old spec, and the same index may mean
another forward (another local service) in the new one.  Its dials are
refused instead: a connection to the old listener is closed without a
byte, logged "the tunnel's spec changed", and never reaches the new
spec's target.  Once the replacement is connected, the new listener
answers from the new target and the old one is gone.

The window is held open by starting workers through a wrapper that, once
a flag file exists, sleeps 4 s before exec'ing the real worker: the
replacement is that late, the old agent keeps serving meanwhile."""

import http.client
import os

from harness import expect, expect_eq, ports, procs
from harness.target import http_get

NAME = 'sup_spec_stale'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90


def connected(st):
    return [a for a in st['agents'] if a['state'] == 'connected']


def run(ctx):
    node_key = ctx.keygen('node_key')
    proxy = ctx.sshd('p1', authorized_keys=[node_key])
    kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())
    old_t = ctx.http_server('old')
    new_t = ctx.http_server('new')
    p_old, p_new = ports.free_ports(2)
    flag = ctx.path('slow-start')
    wrapper = ctx.path('agent-wrapper')
    with open(wrapper, 'w') as f:
        f.write('#!/bin/sh\n[ -e %s ] && sleep 4\nexec %s "$@"\n'
                % (flag, ctx.binary('tunnelpool-agent')))
    os.chmod(wrapper, 0o755)
    tp = ctx.tunnelpool(node_key, kh, worker_path=wrapper)
    tp.config['timeouts'] = {'ready': '20s'}    # the wrapper's 4 s count
    tp.add_tunnel('t', 't', [proxy.address()],
                  [('127.0.0.1:%d' % p_old, old_t.address())])
    tp.start()
    st = tp.wait_state(lambda s: len(connected(s)) == 1, 30, 'connected')
    old_pid = connected(st)[0]['pid']
    proxy.wait_forward(p_old)
    expect_eq(http_get('127.0.0.1', p_old), (200, old_t.expected_body()),
              'GET through the first spec')

    # The forward moves to another port and another local service.
    tp.add_tunnel('t', 't', [proxy.address()],
                  [('127.0.0.1:%d' % p_new, new_t.address())])
    mark = tp.log_mark()
    open(flag, 'w').close()
    tp.ctl('reload')
    st = tp.status_json()
    expect([a['pid'] for a in connected(st)] == [old_pid],
           'the old agent is not alone and connected after the reload (the '
           'replacement should still be starting): %r', st['agents'])
    try:
        got = http_get('127.0.0.1', p_old, timeout=10)
    except (http.client.HTTPException, OSError) as exc:
        got = exc
    ctx.log('GET on the old listener during the change: %r', got)
    os.unlink(flag)
    expect(isinstance(got, Exception), 'a connection to the old agent was '
           'answered during the spec change: %r', got)
    expect_eq(new_t.requests, 0, 'requests that reached the new target '
              'through the old agent')
    m = tp.wait_log(r"dial \(previous spec\) for channel \d+ failed: the "
                    r"tunnel's spec changed: this agent is being replaced.*"
                    r"pid=%d" % old_pid, 10, since=mark)
    ctx.log('%s', m.group(0)[:200])
    expect(procs.alive(old_pid), 'the old agent %d was ended for its '
           'stale dial', old_pid)

    # The replacement: new listener, new target; the old one goes.
    st = tp.wait_state(lambda s: [a for a in connected(s)
                                  if a['pid'] != old_pid], 30,
                       'the replacement connected')
    proxy.wait_forward(p_new, 15)
    proxy.wait_no_forward(p_old, 15)
    expect_eq(http_get('127.0.0.1', p_new), (200, new_t.expected_body()),
              'GET through the new spec')
    procs.wait_for(lambda: not procs.exists(old_pid), 15,
                   'old agent %d gone' % old_pid)
