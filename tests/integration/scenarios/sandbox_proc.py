"""The worker sandbox as the kernel reports it, for every worker the real
supervisor started: seccomp filter mode, no_new_privs, the configured
unprivileged uid/gid, no capabilities, not dumpable, rlimits; only fds 0-5
plus one socket per open channel (which go away when the channels close);
no signal handler (SigCgt 0; SIGSYS only in trap builds); and, started as
root, a root directory that is the configured empty directory
(worker.empty_root)."""

import os
import pwd
import re

from harness import expect, expect_eq, ports, procs
from harness.env import build_options
from harness.target import echo_check
from harness.tunnelpool import one_proxy

NAME = 'sandbox_proc'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90

N_TUNNELS = 3
N_CHANNELS = 4
BASE_FDS = {0, 1, 2, 3, 4, 5}


def connected(st):
    return [a for a in st['agents'] if a['state'] == 'connected']


def limits(pid):
    """/proc/PID/limits as {name: (soft, hard)}."""
    out = {}
    with open('/proc/%d/limits' % pid) as f:
        next(f)
        for line in f:
            name, soft, hard = line[:26].strip(), *line[26:].split()[:2]
            out[name] = (soft, hard)
    return out


def trap_build(ctx):
    return build_options(ctx.build_dir).get('sandbox_trap') is True


def check_identity(ctx, pid, uid, gid):
    st = procs.status(pid)
    ctx.log('worker %d: Seccomp %s NoNewPrivs %s Uid %s Gid %s Groups %r '
            'CapEff %s CapPrm %s', pid, st['Seccomp'], st['NoNewPrivs'],
            st['Uid'], st['Gid'], st.get('Groups'), st['CapEff'],
            st['CapPrm'])
    expect_eq(st['Seccomp'], '2', 'worker %d Seccomp' % pid)
    expect_eq(st['NoNewPrivs'], '1', 'worker %d NoNewPrivs' % pid)
    expect_eq(procs.uids(pid), (uid,) * 4, 'worker %d uids (real, effective, '
              'saved, fs)' % pid)
    expect_eq(procs.gids(pid), (gid,) * 4, 'worker %d gids' % pid)
    groups = [int(g) for g in st.get('Groups', '').split()]
    expect(set(groups) <= {gid}, 'worker %d keeps supplementary groups %r',
           pid, groups)
    expect_eq(st['CapEff'], '0000000000000000', 'worker %d CapEff' % pid)
    expect_eq(st['CapPrm'], '0000000000000000', 'worker %d CapPrm' % pid)
    # No signal handler that could return: the filter does not allow
    # rt_sigreturn (nor rt_sigaction, so none can be added).  Trap builds
    # catch SIGSYS only, and that reporter exits.
    sigcgt = int(st['SigCgt'], 16)
    expect_eq(sigcgt, 1 << (31 - 1) if trap_build(ctx) else 0,
              'worker %d SigCgt (caught signals) %s' % (pid, st['SigCgt']))
    # Not dumpable: /proc/PID entries then belong to root, not to the uid.
    expect_eq(os.stat('/proc/%d/status' % pid).st_uid, 0,
              'owner of /proc/%d/status (a dumpable worker would own it)'
              % pid)
    lim = limits(pid)
    expect_eq(lim['Max processes'], ('0', '0'), 'worker %d RLIMIT_NPROC' % pid)
    expect_eq(lim['Max core file size'], ('0', '0'),
              'worker %d RLIMIT_CORE' % pid)
    expect_eq(procs.threads(pid), 1, 'worker %d threads' % pid)
    expect_eq(procs.children(pid), [], 'worker %d children' % pid)


def check_root(ctx, pid, empty_root):
    link = os.readlink('/proc/%d/root' % pid)
    entries = os.listdir('/proc/%d/root' % pid)
    cwd = os.readlink('/proc/%d/cwd' % pid)
    ctx.log('worker %d: root %s (%d entries), cwd %s', pid, link,
            len(entries), cwd)
    expect_eq(link, empty_root, 'worker %d root directory' % pid)
    expect_eq(entries, [], 'entries in the root of worker %d' % pid)
    expect(os.path.samefile('/proc/%d/root' % pid, empty_root),
           'root of worker %d is not %s', pid, empty_root)
    expect(cwd in ('/', empty_root), 'worker %d cwd %r is outside its root',
           pid, cwd)


def check_fds(pid, extra=0):
    """fds are exactly 0-5 plus `extra` sockets; returns the extra fds."""
    fds = procs.fds(pid)
    more = {fd: t for fd, t in fds.items() if fd not in BASE_FDS}
    expect(BASE_FDS <= set(fds), 'worker %d lacks some of fds 0-5: %r',
           pid, fds)
    for fd in (3, 4, 5):
        expect(fds[fd].startswith('socket:'), 'worker %d fd %d is %r, not a '
               'socket', pid, fd, fds[fd])
    for fd in (0, 1, 2):
        expect(fds[fd] == '/dev/null' or fds[fd].startswith(('pipe:', '/')),
               'worker %d fd %d is %r', pid, fd, fds[fd])
    expect_eq(len(more), extra, 'worker %d fds beyond 0-5 (%r)' % (pid, more))
    for fd, target in more.items():
        expect(target.startswith('socket:'), 'worker %d fd %d is %r, not a '
               'socket', pid, fd, target)
    return more


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)
    fwd = ports.free_ports(N_TUNNELS)
    empty_root = ctx.path('empty')       # created by the supervisor

    tp = ctx.tunnelpool(node_key, kh, backoff=('500ms', '2s'))
    # The default is /var/empty/tunnelpool; this run proves the setting is
    # what the workers get by using another directory.
    tp.write_config()
    cp = procs.run([tp.binary, 'check-config', '-c', tp.config_path])
    expect(re.search(r'empty_root: "?/var/empty/tunnelpool"?\n', cp.stdout),
           'default worker.empty_root is not /var/empty/tunnelpool:\n%s',
           cp.stdout)
    tp.config['worker']['empty_root'] = empty_root
    for i in range(N_TUNNELS):
        tp.add_tunnel('t%d' % i, 'c%d' % i, [proxy.address()],
                      [('127.0.0.1:%d' % fwd[i], echo.address())])
    tp.start()
    st = tp.wait_state(lambda s: len(connected(s)) == N_TUNNELS, 30,
                       '%d tunnels connected' % N_TUNNELS)
    for p in fwd:
        proxy.wait_forward(p)
    agents = connected(st)
    pids = sorted(a['pid'] for a in agents)
    expect_eq(sorted(procs.children(tp.pid)), pids,
              'children of the supervisor vs agents in status')
    pw = pwd.getpwnam(tp.config['worker'].get('user', 'tunnelpool'))
    expect(pw.pw_uid != 0 and pw.pw_gid != 0, 'worker user is root')
    ctx.log('worker user %s = %d:%d, empty root %s', pw.pw_name, pw.pw_uid,
            pw.pw_gid, empty_root)

    for pid in pids:
        check_identity(ctx, pid, pw.pw_uid, pw.pw_gid)
        check_root(ctx, pid, empty_root)
        check_fds(pid)

    # Channels: one socket per open channel in the worker, gone on close.
    a = agents[0]
    pid, port = a['pid'], fwd[int(a['cluster'][1:])]
    socks = []
    for i in range(N_CHANNELS):
        s = proxy.connect_forward(port)
        s.settimeout(10)
        s.sendall(b'ping %d\n' % i)
        got = b''
        while not got.endswith(b'\n'):
            chunk = s.recv(100)
            expect(chunk, 'channel %d closed before its echo', i)
            got += chunk
        expect_eq(got, b'ping %d\n' % i, 'echo on channel %d' % i)
        socks.append(s)
    more = procs.wait_for(lambda: check_fds_quiet(pid, N_CHANNELS), 10,
                          '%d channel fds in worker %d' % (N_CHANNELS, pid))
    ctx.log('worker %d with %d channels open: extra fds %r', pid,
            N_CHANNELS, more)
    for other in pids:
        if other != pid:
            check_fds(other)
    # The channels still work, then close.
    for i, s in enumerate(socks):
        echo_check(s, 64 * 1024, 20, 'channel %d' % i)
    procs.wait_for(lambda: check_fds_quiet(pid, 0) is not None, 10,
                   'channel fds of worker %d to close' % pid)
    check_fds(pid)
    ctx.log('worker %d back to fds %r', pid, sorted(procs.fds(pid)))
    st = tp.status_json()
    expect_eq(sorted(a['pid'] for a in connected(st)), pids,
              'workers after the channel checks')


def check_fds_quiet(pid, extra):
    fds = procs.fds(pid)
    more = {fd: t for fd, t in fds.items() if fd not in BASE_FDS}
    if len(more) != extra:
        return None
    check_fds(pid, extra)
    return more or {'none': True}
