"""A tunnel whose spec changes (its forward moves to another port) has its
agent replaced: the new generation comes up with the new forward, the old
agent is closed and its forward withdrawn; an unchanged tunnel next to it
keeps the same worker PID throughout."""

from harness import expect, ports
from harness.target import send_and_check
from harness.tunnelpool import one_proxy

NAME = 'sup_spec_change'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90


def pids(st, cluster):
    return [a['pid'] for a in st['agents'] if a['cluster'] == cluster and
            a['state'] == 'connected']


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)
    f_old, f_new, f_other = (ports.free_port() for _ in range(3))
    tp = ctx.tunnelpool(node_key, kh, backoff=('500ms', '2s'))
    target = '127.0.0.1:%d' % echo.port
    tp.add_tunnel('moving', 'moving', [proxy.address()],
                  [('127.0.0.1:%d' % f_old, target)])
    tp.add_tunnel('steady', 'steady', [proxy.address()],
                  [('127.0.0.1:%d' % f_other, target)])
    tp.start()
    st = tp.wait_state(lambda s: pids(s, 'moving') and pids(s, 'steady'), 30,
                       'both connected')
    old, steady = pids(st, 'moving')[0], pids(st, 'steady')[0]
    proxy.wait_forward(f_old)

    tp.add_tunnel('moving', 'moving', [proxy.address()],
                  [('127.0.0.1:%d' % f_new, target)])
    tp.ctl('reload')
    st = tp.wait_state(lambda s: pids(s, 'moving') and
                       old not in pids(s, 'moving') and
                       not any(a['pid'] == old for a in s['agents']), 30,
                       'moving replaced, old agent gone')
    ctx.log('moving: %d -> %r', old, pids(st, 'moving'))
    proxy.wait_forward(f_new, 15)
    proxy.wait_no_forward(f_old, 15)
    send_and_check('127.0.0.1', f_new, 128 * 1024)
    expect(pids(st, 'steady') == [steady], 'steady changed: %r -> %r',
           steady, pids(st, 'steady'))
    send_and_check('127.0.0.1', f_other, 64 * 1024)
    # Same proxy: the new generation takes the claim over from the old one.
    tp.wait_log(r'closing: (tunnel spec changed|replaced by a newer agent)', 5)
