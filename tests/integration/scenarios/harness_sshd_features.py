"""Harness self-test of the wider proxy toolkit with OpenSSH's client: user
certificates (TrustedUserCAKeys), several host key types, forwards to TCP,
HTTP and unix targets, PermitListen refusals, a black-holed proxy (SIGSTOP)
detected by client keepalives, listener restart and SIGHUP reload keeping
sessions, a crash (SIGKILL), haproxy backend changes, /proc readers."""

import pwd

from harness import expect, expect_eq, keys, ports, procs
from harness.target import send_and_check, http_get, echo_check

NAME = 'harness_sshd_features'
REQUIRES = {'root': True,
            'tools': ['sshd', 'ssh', 'ssh-keygen', 'socat', 'ip', 'ss',
                      'haproxy']}
TIMEOUT = 90


def run(ctx):
    user_ca = ctx.ca('user_ca')
    node_key = ctx.keygen('node_key', 'ecdsa')
    user_ca.sign_user(node_key, ['tunnel'], validity='-5m:+10m')
    expect('Type: ecdsa-sha2-nistp256-cert-v01@openssh.com user certificate'
           in keys.cert_info(node_key.cert_path), 'user cert info')
    echo = ctx.echo_server()
    web = ctx.http_server()
    uecho = ctx.unix_echo_server()
    f1, f2, f3, denied = ports.free_ports(4)

    proxy = ctx.sshd('p1', host_key_types=('ecdsa', 'rsa', 'ed25519'),
                     trusted_user_ca=user_ca,
                     permit_listen='127.0.0.1:%d 127.0.0.1:%d 127.0.0.1:%d'
                     % (f1, f2, f3), client_alive=(1, 3))
    kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())
    c = ctx.ssh_forward('node', proxy, node_key, kh, [
        (f1, '127.0.0.1', echo.port), (f2, '127.0.0.1', web.port),
        '127.0.0.1:%d:%s' % (f3, uecho.path)],
        options=['ServerAliveInterval=1', 'ServerAliveCountMax=2'])
    c.wait_established()
    expect(proxy.accepted()[0][1].startswith('ECDSA-CERT'),
           'login not by user certificate: %r', proxy.accepted())
    expect_eq(proxy.forwards(), {('127.0.0.1', f1), ('127.0.0.1', f2),
                                 ('127.0.0.1', f3)}, 'forwards')
    send_and_check('127.0.0.1', f1, 1 << 20)
    expect_eq(http_get('127.0.0.1', f2, '/x'), (200, web.expected_body('/x')),
              'HTTP through the tunnel')
    echo_check(ports.connect('127.0.0.1', f3), 1 << 20, what='unix echo')

    # /proc readers on the session: monitor as root, child as 'tunnel'.
    tunnel_uid = pwd.getpwnam('tunnel').pw_uid
    tree = proxy.session_tree_pids()
    child = [p for p in tree if procs.uids(p)[0] == tunnel_uid]
    expect(child, 'no session process runs as tunnel: %r',
           [(p, procs.title(p)) for p in tree])
    expect('sshd: tunnel' in procs.title(child[0]), 'title %r',
           procs.title(child[0]))
    expect(procs.rss_kib(child[0]) > 0 and procs.fds(child[0]),
           'rss/fds readers')
    expect(procs.cap_eff(child[0]) == 0, 'unprivileged child has caps')
    expect(procs.children(proxy.pid) == proxy.session_pids(), 'children')

    # PermitListen refuses another port: ssh exits (ExitOnForwardFailure).
    bad = ctx.ssh_forward('denied', proxy, node_key, kh,
                          [(denied, '127.0.0.1', echo.port)])
    bad.proc.wait(15)
    expect('remote port forwarding failed' in bad.log_text(),
           'refused forward not reported by ssh')
    proxy.wait_log(r'remote forward to host 127\.0\.0\.1 port %d, but the '
                   r'request was denied' % denied)

    # Listener restart and reload keep the session and its forwards.
    proxy.restart(keep_sessions=True)
    proxy.reload()
    send_and_check('127.0.0.1', f1, 256 << 10)
    expect(c.alive(), 'ssh client died across listener restart/reload')

    # Black hole: everything of the proxy stopped, the client's keepalives
    # notice within ~3 s and it exits.
    proxy.pause()
    c.proc.wait(15)
    expect('Timeout, server' in c.log_text(), 'client exit reason: %s',
           c.log_text()[-300:])
    proxy.resume()
    proxy.wait_no_forward(f1, 15)

    # A crash: SIGKILL of listener and sessions; the client sees EOF.
    c2 = ctx.ssh_forward('node2', proxy, node_key, kh,
                         [(f1, '127.0.0.1', echo.port)])
    c2.wait_established()
    proxy.kill()
    c2.proc.wait(10)
    ports.wait_closed(f1)
    expect(not proxy.all_pids(), 'sshd pids left after kill: %r',
           proxy.all_pids())

    # haproxy: random balance over two TCP backends, then one removed.
    proxy.start()
    other = ctx.sshd('p2', trusted_user_ca=user_ca)
    lb = ctx.haproxy([proxy, other], balance='random')
    kh2 = ctx.known_hosts('known_hosts_lb', [
        keys.known_hosts_pin('127.0.0.1', k, lb.port)
        for s in (proxy, other) for k in s.host_keys])
    lb.remove_backend('p2')
    c3 = ctx.ssh_forward('node3', (lb.host, lb.port), node_key, kh2,
                         [(f2, '127.0.0.1', web.port)])
    c3.wait_established()
    proxy.wait_forward(f2)
    expect_eq(lb.server_counts(), {'p1': 1}, 'haproxy servers used')
    # Soft reload keeps the tunnel (old haproxy serves it), restart drops it.
    lb.add_backend(other)
    expect_eq([b[0] for b in lb.backends], ['p1', 'p2'], 'backends')
    expect(lb.old_pids(), 'old haproxy gone despite an open connection')
    expect_eq(http_get('127.0.0.1', f2, '/after-reload'),
              (200, web.expected_body('/after-reload')), 'HTTP after reload')
    expect(c3.alive(), 'ssh through haproxy died on a soft reload')
    lb.restart()
    c3.proc.wait(10)
    proxy.wait_no_forward(f2)
