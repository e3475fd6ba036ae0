"""The newcomer's path: `./demo.sh --for N` as the first command of a
machine, with nothing made for it beforehand.

1. worker.empty_root TMP/a/b/empty and the control socket in TMP/run/x/,
   none of whose parents exist: the supervisor makes them (0755
   root:root), says so in its log, and the demo claims every proxy and gets
   every request through.
2. The default worker.empty_root with /var/empty moved away and the worker
   user deleted: check-config names the missing user with its fix and notes
   what `run` will create; the demo (which creates the user, as a new
   operator following docs/install.md would) brings the pool up from
   nothing.  /var/empty is put back as it was.
"""

import os
import pwd
import re
import shutil
import stat

from harness import expect, expect_eq, procs

NAME = 'firstrun_demo'
REQUIRES = {'root': True}
TIMEOUT = 900

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..',
                                    '..'))
DEMO_SECONDS = '8'
RESULT = 'demo: result: 3/3 proxies claimed, 3/3 requests succeeded'


def demo(ctx, *args):
    """Runs ./demo.sh --for N ARGS; returns (stdout, its log directory)."""
    cp = procs.run([os.path.join(REPO, 'demo.sh'), '--for', DEMO_SECONDS] +
                   list(args), timeout=600, check=False, cwd=REPO)
    out = cp.stdout + cp.stderr
    m = re.search(r'demo: logs are in (\S+)', out)
    logdir = m.group(1) if m else None
    if logdir:
        ctx.register_log(os.path.join(logdir, 'tunnelpool.log'),
                         'demo tunnelpool')
    expect_eq(cp.returncode, 0, 'demo.sh %s exit status:\n%s' %
              (' '.join(args), out[-3000:]))
    expect(RESULT in out, 'demo.sh %s: no %r in:\n%s', ' '.join(args), RESULT,
           out[-3000:])
    return out, logdir


def supervisor_log(logdir):
    with open(os.path.join(logdir, 'tunnelpool.log')) as f:
        return f.read()


def expect_root_dir(path):
    st = os.lstat(path)
    expect(stat.S_ISDIR(st.st_mode), '%s is not a directory', path)
    expect_eq((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, 0, 0o755),
              '%s owner, group and mode' % path)


def check_config(ctx, config):
    tp = os.path.join(REPO, 'build', 'supervisor', 'tunnelpool')
    return procs.run([tp, 'check-config', '-c', config], check=False)


def custom_paths(ctx):
    top = ctx.path('nothing-here')
    empty = os.path.join(top, 'a', 'b', 'empty')
    sock = os.path.join(top, 'run', 'x', 'control.sock')
    expect(not os.path.exists(top), '%s exists already', top)
    _, logdir = demo(ctx, '--empty-root', empty, '--control-socket', sock)
    for d in (top, os.path.join(top, 'a'), os.path.join(top, 'a', 'b'),
              empty):
        expect_root_dir(d)
    expect_eq(os.listdir(empty), [], 'contents of %s' % empty)
    log = supervisor_log(logdir)
    expect('worker.empty_root %s: created, with 3 missing parents from %s on'
           % (empty, top) in log,
           'the supervisor did not log what it created:\n%s', log[-2000:])
    expect('control_socket directory %s: created' %
           os.path.dirname(sock) in log,
           'no line about the control socket directory:\n%s', log[-2000:])
    ctx.log('custom paths: created %s and %s', empty, os.path.dirname(sock))
    return os.path.join(logdir, 'tunnelpool', 'tunnelpool.yaml')


def drop_worker_user(ctx):
    """Deletes the worker user if it exists; False if it is in use."""
    try:
        pwd.getpwnam('tunnelpool')
    except KeyError:
        return True
    cp = procs.run(['userdel', 'tunnelpool'], check=False)
    if cp.returncode != 0:
        ctx.log('worker user kept: userdel: %s', cp.stderr.strip())
        return False
    return True


def default_paths(ctx, config):
    saved = None
    if os.path.lexists('/var/empty'):
        saved = '/var/empty.tp-firstrun-%d' % os.getpid()
        os.rename('/var/empty', saved)
    try:
        if drop_worker_user(ctx):
            cp = check_config(ctx, config)
            expect_eq(cp.returncode, 1, 'check-config without the worker '
                      'user: %s' % cp.stderr)
            expect(re.search(r'^worker\.user "tunnelpool": no such user: '
                             r'create it \(useradd --system ', cp.stderr,
                             re.M), 'check-config: %s', cp.stderr)
        _, logdir = demo(ctx)
        expect_root_dir('/var/empty')
        expect_root_dir('/var/empty/tunnelpool')
        log = supervisor_log(logdir)
        expect('worker.empty_root /var/empty/tunnelpool: created, with 1 '
               'missing parent from /var/empty on' in log,
               'the supervisor did not log what it created:\n%s', log[-2000:])
        # Now that everything exists, check-config has nothing to note.
        cp = check_config(ctx, config)
        expect_eq(cp.returncode, 0, 'check-config: %s' % cp.stderr)
        ctx.log('default paths: created /var/empty/tunnelpool')
    finally:
        if saved is not None:
            shutil.rmtree('/var/empty', ignore_errors=True)
            os.rename(saved, '/var/empty')


def check_notes(ctx, config):
    """check-config names what `run` would create, and creates nothing."""
    with open(config) as f:
        text = f.read()
    top = ctx.path('later')
    empty = os.path.join(top, 'c', 'empty')
    text = re.sub(r'(?m)^(\s*empty_root:).*$', r'\1 %s' % empty, text)
    note_cfg = ctx.path('check-notes.yaml')
    with open(note_cfg, 'w') as f:
        f.write(text)
    cp = check_config(ctx, note_cfg)
    expect_eq(cp.returncode, 0, 'check-config: %s' % cp.stderr)
    expect('note: worker.empty_root %s: does not exist (from %s on): '
           '`tunnelpool run` creates it' % (empty, top) in cp.stderr,
           'check-config: %s', cp.stderr)
    expect(not os.path.exists(top), 'check-config created %s', top)


def run(ctx):
    config = custom_paths(ctx)
    check_notes(ctx, config)
    default_paths(ctx, config)
