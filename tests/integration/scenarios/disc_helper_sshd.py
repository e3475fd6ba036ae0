"""The real tunnelpool-discovery helper under a real sshd running the
packaging recipe (packaging/proxy/sshd_config.d/tunnelpool.conf, paths
pointed at the build): the recipe as shipped passes `sshd -t` included from
a Debian-like config; the stream over `ssh -s`; the helper gone after the
ssh client is killed; an exec request forced to the helper (ForceCommand),
which exits at EOF."""

import json
import os
import time

from harness import expect, wait_for
from harness.discovery import Stream, cert_blob, proxies_yaml
from harness.procs import run as run_cmd
from harness.sshclient import ssh_argv
from harness.sshd import SSHD, ensure_privsep_dir

NAME = 'disc_helper_sshd'
REQUIRES = {'root': True, 'binaries': ['tunnelpool-discovery']}
TIMEOUT = 120

SRC = os.path.normpath(os.path.join(os.path.dirname(
    os.path.abspath(__file__)), '..', '..', '..'))
SNIPPET = os.path.join(SRC, 'packaging', 'proxy', 'sshd_config.d',
                       'tunnelpool.conf')


def recipe_lines(binary, proxies, authorized_keys):
    """The recipe, pointed at this build and this scenario's files."""
    with open(SNIPPET) as f:
        text = f.read()
    text = text.replace('/usr/lib/tunnelpool/tunnelpool-discovery', binary)
    text = text.replace('/etc/tunnelpool/proxies.yaml', proxies + ' -i 1')
    text = text.replace('/etc/tunnelpool/authorized_keys', authorized_keys)
    return text.splitlines()


def helpers_gone_within(ctx, limit, pattern, what):
    t0 = time.monotonic()
    wait_for(lambda: not ctx.find_processes(pattern), max(limit, 20), what)
    took = time.monotonic() - t0
    expect(took <= limit, '%s after %.2f s, limit %s s', what, took, limit)


def run(ctx):
    binary = ctx.binary('tunnelpool-discovery')
    ensure_privsep_dir()
    # The recipe as shipped parses, included from a Debian-like config.
    hostkey = ctx.keygen('hostkey')
    debian = ctx.path('debian.conf')
    with open(debian, 'w') as f:
        f.write('Include %s\nHostKey %s\nX11Forwarding yes\n'
                'Subsystem sftp /usr/lib/openssh/sftp-server\n' % (
                    SNIPPET, hostkey.path))
    cp = run_cmd([SSHD, '-t', '-f', debian], check=False)
    expect(cp.returncode == 0, 'sshd -t rejects the recipe: %s%s',
           cp.stdout, cp.stderr)
    ctx.log('ok - packaging recipe passes sshd -t')

    node = ctx.keygen('node')
    px1, px2 = ctx.keygen('px1'), ctx.keygen('px2')
    ca = ctx.ca('ca')
    ca.sign_host(px1, ['px1.example'], identity='px1', validity=None,
                 serial=1)
    proxies = ctx.path('proxies.yaml')
    with open(proxies, 'w') as f:
        f.write(proxies_yaml('prod-eu', [px1, px2], px1.cert_path))
    proxy = ctx.sshd('p1', start=False, authorized_keys=[node])
    proxy.configure(extra=recipe_lines(binary, proxies,
                                       proxy.authorized_keys_path))
    proxy.start()
    kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())
    helper = '%s -f %s' % (binary, proxies)

    sub = ctx.ssh_subsystem('disc', proxy, node, kh, 'tunnelpool-discovery')
    sub.wait_json(lambda o: o.get('type') == 'heartbeat', timeout=30,
                  what='a heartbeat through sshd')
    s = Stream(sub.out_path, 'ssh -s')
    s.expect_set('prod-eu', [px1, px2])
    expect(s.last('cert').get('cert') == cert_blob(px1.cert_path),
           'cert line %s', s.last('cert'))
    s.expect_seqs()
    expect(ctx.find_processes(helper), 'no helper process under sshd')
    ctx.log('ok - subsystem stream through sshd: set, cert, heartbeat')

    sub.stop()
    helpers_gone_within(ctx, 3, helper, 'the helper to exit after ssh')
    ctx.log('ok - ssh client killed: helper gone')

    # ForceCommand: asking for anything else still gets only the helper.
    argv = ssh_argv(node, kh, proxy.host, proxy.port, user=proxy.user,
                    verbose=0) + ['id']
    cp = run_cmd(argv, timeout=60, check=False, stdin=open(os.devnull))
    first = cp.stdout.split('\n', 1)[0]
    try:
        kind = json.loads(first).get('type')
    except (ValueError, AttributeError):
        kind = None
    expect(kind == 'proxies', 'exec was not forced to the helper: %r '
           '(exit %d, %s)', first, cp.returncode, cp.stderr[-500:])
    helpers_gone_within(ctx, 3, helper, 'the helper to exit after exec')
    ctx.log('ok - exec request runs the helper (ForceCommand), which exits '
            'at EOF')
