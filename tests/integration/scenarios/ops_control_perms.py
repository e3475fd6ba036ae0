"""Who may use the control socket.  It is mode 0660 (root's group, or
control_group).  Without control_group a non-root user is refused
("permission denied", exit 1).  With `control_group: G`, a member of G may
run status (the socket is group G), a non-member is still refused; and
even if the file mode were opened up, the supervisor's own SO_PEERCRED
check refuses a non-member (status, reload and top all exit 1)."""

import grp
import os
import pwd
import stat

from harness import expect, expect_eq, ports, procs
from harness.tunnelpool import one_proxy

NAME = 'ops_control_perms'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90

GROUP = 'tpopsctl'
MEMBER = 'tpopsin'        # in GROUP
OUTSIDER = 'tpopsout'     # not in GROUP


def ensure_accounts():
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        procs.run(['groupadd', '--system', GROUP])
    for user in (MEMBER, OUTSIDER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            procs.run(['useradd', '--system', '--no-create-home', '--home-dir',
                       '/nonexistent', '--shell', '/usr/sbin/nologin', user])
    procs.run(['usermod', '-aG', GROUP, MEMBER])
    # An earlier run must not have left the outsider in the group.
    procs.run(['gpasswd', '-d', OUTSIDER, GROUP], check=False)
    expect(OUTSIDER not in grp.getgrnam(GROUP).gr_mem, '%s still in %s',
           OUTSIDER, GROUP)


def as_user(tp, user, *args):
    return procs.run(['runuser', '-u', user, '--', tp.binary] + list(args) +
                     ['-s', tp.control_socket], check=False, timeout=15)


def refused(tp, user, *args):
    cp = as_user(tp, user, *args)
    expect(cp.returncode == 1 and 'permission denied' in cp.stderr.lower(),
           '%s as %s: exit %d, stderr %r (want 1, permission denied)',
           ' '.join(args), user, cp.returncode, cp.stderr)
    expect(cp.stdout == '', '%s as %s printed %r', ' '.join(args), user,
           cp.stdout)


def socket_mode(tp, gid):
    s = os.stat(tp.control_socket)
    expect(stat.S_ISSOCK(s.st_mode), 'control socket is not a socket')
    expect_eq(stat.S_IMODE(s.st_mode), 0o660, 'control socket mode')
    expect_eq((s.st_uid, s.st_gid), (0, gid), 'control socket owner')
    parent = os.stat(os.path.dirname(tp.control_socket))
    expect(parent.st_mode & 0o005 == 0o005, 'socket dir not traversable')


def run(ctx):
    ensure_accounts()
    node_key, echo, proxy, kh = one_proxy(ctx)
    tp = ctx.tunnelpool(node_key, kh)
    tp.add_tunnel('c1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % ports.free_port(),
                    '127.0.0.1:%d' % echo.port)])

    # 1. No control_group: root only.
    tp.start()
    tp.wait_state(lambda s: any(a['state'] == 'connected'
                                for a in s['agents']), 30, 'c1 connected')
    socket_mode(tp, 0)
    refused(tp, MEMBER, 'status')
    refused(tp, OUTSIDER, 'status', '--json')
    expect(tp.ctl('status').returncode == 0, 'root refused')

    # 2. control_group: members allowed, others refused.
    tp.stop()
    tp.config['control_group'] = GROUP
    tp.start()
    st = tp.wait_state(lambda s: any(a['state'] == 'connected'
                                     for a in s['agents']), 30,
                       'c1 connected again')
    socket_mode(tp, grp.getgrnam(GROUP).gr_gid)
    cp = as_user(tp, MEMBER, 'status')
    pid = [a['pid'] for a in st['agents'] if a['state'] == 'connected'][0]
    expect(cp.returncode == 0 and ' %d ' % pid in cp.stdout,
           'status as group member: exit %d\n%s%s', cp.returncode, cp.stdout,
           cp.stderr)
    expect(as_user(tp, MEMBER, 'status', '--json').returncode == 0,
           'status --json as group member failed')
    refused(tp, OUTSIDER, 'status')

    # 3. The file mode is only the first gate: the supervisor checks the
    # peer's credentials itself.
    os.chmod(tp.control_socket, 0o666)
    try:
        mark = tp.log_mark()
        refused(tp, OUTSIDER, 'status')
        refused(tp, OUTSIDER, 'status', '--json')
        refused(tp, OUTSIDER, 'reload')
        refused(tp, OUTSIDER, 'top')
        tp.wait_log(r'control connection refused', 5, since=mark)
    finally:
        os.chmod(tp.control_socket, 0o660)
    expect(tp.alive(), 'supervisor died')
