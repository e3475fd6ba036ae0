"""A private tmux server running one command in a real terminal, for the
views that need one (`tunnelpool top`)."""

from . import procs
from .errors import expect


class Tmux:
    """A private tmux server (its own socket in the work dir), one session
    running one command; closed (kill-server) at teardown."""

    def __init__(self, ctx, command, name='top'):
        self.sock = ctx.path('tmux.sock')
        self.rc_path = ctx.path('%s.rc' % name)
        self.err_path = ctx.path('%s.stderr' % name)
        self.name = name
        shell = '%s 2>%s; echo $? > %s' % (command, self.err_path,
                                            self.rc_path)
        self.tmux(['-f', '/dev/null', 'new-session', '-d', '-s', name,
                   '-x', '200', '-y', '50', 'sh', '-c', shell])
        ctx.defer(self.close, 'tmux server')

    def tmux(self, args, check=True):
        return procs.run(['tmux', '-S', self.sock] + args, check=check)

    def screen(self):
        return self.tmux(['capture-pane', '-p', '-t', self.name]).stdout

    def keys(self, *keys):
        self.tmux(['send-keys', '-t', self.name] + list(keys))

    def exit_code(self):
        try:
            with open(self.rc_path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def close(self):
        self.tmux(['kill-server'], check=False)


def wait_screen(ctx, tm, pred, what, timeout=15):
    last = ['']

    def check():
        last[0] = tm.screen()
        return pred(last[0])
    try:
        return procs.wait_for(check, timeout, what, interval=0.2)
    except procs.WaitTimeout:
        expect(False, 'top never showed %s; the screen was:\n%s', what,
               last[0])
