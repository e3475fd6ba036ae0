"""Harness self-test: one sshd, OpenSSH's `ssh -N -R`, 4 MiB through the
forwarded port, then a teardown that leaves nothing behind."""

from harness import expect, ports, procs
from harness.target import send_and_check, concurrent_checks
from harness.tunnelpool import one_proxy

NAME = 'harness_ssh_R'
REQUIRES = {'root': True}
TIMEOUT = 60


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)

    fwd_port = ports.free_port()
    ssh = ctx.ssh_forward('node', proxy, node_key, kh,
                          [(fwd_port, '127.0.0.1', echo.port)])
    ssh.wait_established()
    proxy.wait_forward(fwd_port)
    expect(proxy.accepted() and proxy.accepted()[0][0] == 'tunnel',
           'sshd log shows no accepted login for tunnel')
    sessions = proxy.session_pids()
    expect(len(sessions) == 1, 'want 1 sshd session process, got %r',
           sessions)
    ctx.log('forward 127.0.0.1:%d on %s -> echo %s; session pids %s',
            fwd_port, proxy.name, echo.address(), proxy.session_tree_pids())

    secs = send_and_check('127.0.0.1', fwd_port, 4 * 1024 * 1024)
    ctx.log('4 MiB echoed through the tunnel in %.2fs', secs)
    concurrent_checks(lambda: proxy.connect_forward(fwd_port), 8, 256 * 1024)
    expect(echo.connections == 9, 'echo saw %d connections, want 9',
           echo.connections)

    # Teardown by hand, then prove nothing is left.
    pids = proxy.all_pids() + [ssh.pid]
    ssh.stop()
    proxy.wait_no_forward(fwd_port)
    proxy.stop()
    ports.wait_closed(fwd_port, 5)
    ports.wait_closed(proxy.port, 5)
    still = [p for p in pids if procs.alive(p)]
    expect(not still, 'processes still alive after stop: %r', still)
    left = ctx.leftovers()
    expect(not left, 'leftover processes: %r', left)
