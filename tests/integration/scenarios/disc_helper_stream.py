"""The real tunnelpool-discovery helper alone, on a proxies file
(docs/discovery-protocol.md): the first full set, a new set within 2 s of
an atomic rename, no re-announcement of an unchanged set, a broken file
(error on stderr, old set kept, helper alive), an in-place rewrite,
certificate renewal, contiguous seq, exit when its stdout reader goes away
or stdin is closed, a bad file at start, a symlink swapped above the
file's directory, the 256-proxy and 64 KiB limits; -V and usage errors."""

import base64
import os
import re
import struct

from harness import expect
from harness.discovery import (Helper, cert_blob, proxies_yaml,
                               write_atomic)
from harness.procs import run as run_cmd

NAME = 'disc_helper_stream'
REQUIRES = {'root': False, 'binaries': ['tunnelpool-discovery'],
            'tools': ['ssh-keygen']}
TIMEOUT = 240


def check_cli(ctx, binary):
    cp = run_cmd([binary, '-V'], check=False)
    expect(cp.returncode == 0 and re.match(r'tunnelpool-discovery ',
                                           cp.stdout),
           '-V: exit %d, %r', cp.returncode, cp.stdout)
    cp = run_cmd([binary, '-i', '0', '-f', 'x'], check=False,
                 stdin=open(os.devnull))
    expect(cp.returncode == 2, 'bad -i exit status %d', cp.returncode)
    ctx.log('ok - -V and usage errors')


def check_files(ctx, binary, k, ca):
    px1, px2, px3 = k['px1'], k['px2'], k['px3']
    cert = px1.cert_path
    path = ctx.path('proxies.yaml')
    with open(path, 'w') as f:
        f.write(proxies_yaml('prod-eu', [px2, px1], cert))
    h = Helper(ctx, 'a', binary, path)
    s = h.stream

    s.wait('proxies', what='the first set')
    s.expect_set('prod-eu', [px1, px2])
    expect(s.lines()[0].get('type') == 'proxies',
           'first line is not the set: %s', s.lines()[0])
    ctx.log('ok - first line is the full set, sorted, fingerprints as '
            'ssh-keygen\'s')

    s.wait('cert', what='a cert line')
    expect(s.last('cert').get('cert') == cert_blob(cert), 'cert line %s',
           s.last('cert'))
    ctx.log('ok - host certificate announced')

    s.wait('heartbeat', what='a heartbeat')
    expect(s.last('heartbeat').get('interval') == 1, 'heartbeat interval %s',
           s.last('heartbeat'))
    ctx.log('ok - heartbeat arrives')

    write_atomic(path, proxies_yaml('prod-eu', [px1, px3], cert))
    took = s.within(2, 'proxies', 2, 'the set after an atomic rename')
    s.expect_set('prod-eu', [px1, px3])
    ctx.log('ok - atomic rename: new set within 2 s (%.2f s)', took)

    # Same set, other order and comments: nothing to announce.
    write_atomic(path, proxies_yaml('prod-eu', [px3, px1], cert,
                                    comment='edited'))
    s.settle(1.5, 2)
    expect(s.count('proxies') == 2, 'unchanged set re-sent')
    ctx.log('ok - an unchanged set is not announced again')

    write_atomic(path, 'cluster: prod-eu\nproxies:\n  - name: px1\n'
                 '    host_key: [\n')
    err_re = r'^tunnelpool-discovery: %s:[0-9]+:[0-9]+: .+' % re.escape(path)
    h.proc.wait_log(err_re, 2)
    s.settle(1.5, 2)
    expect(s.count('proxies') == 2, 'broken file announced')
    expect(h.proc.alive(), 'helper died on a broken file')
    first_err = re.search(err_re, h.err(), re.M).group(0)
    ctx.log('ok - broken file: %r, old set kept',
            first_err.replace(ctx.dir, '$T'))

    # An in-place rewrite (no rename) is seen too.
    with open(path, 'w') as f:
        f.write(proxies_yaml('prod-eu', [px2, px3], cert))
    s.within(2, 'proxies', 3, 'the set after an in-place rewrite')
    s.expect_set('prod-eu', [px2, px3])
    ctx.log('ok - in-place rewrite: new set')

    ca.sign_host(px1, ['px1.example'], identity='px1', validity=None,
                 serial=2)
    s.within(2, 'cert', 2, 'the renewed certificate')
    expect(s.last('cert').get('cert') == cert_blob(cert), 'new cert line %s',
           s.last('cert'))
    ctx.log('ok - renewed certificate announced')

    s.expect_seqs()
    ctx.log('ok - seq runs 1..N over all line types')

    h.stop_reader()
    rc = h.exits_within(2, 'reader gone')
    expect(rc == 0, 'helper exit status %d after its reader left', rc)
    ctx.log('ok - reader gone: helper exits within interval + 1 s')
    return path


def check_stdin_eof(ctx, binary, path):
    h = Helper(ctx, 'b', binary, path)
    h.stream.wait('proxies', what='a set (b)')
    h.close_stdin()
    h.exits_within(1, 'stdin EOF')
    ctx.log('ok - stdin EOF: helper exits')


def check_bad_at_start(ctx, binary, k):
    late = ctx.path('late.yaml')
    with open(late, 'w') as f:
        f.write('cluster: prod-eu\nproxies: []\n')
    h = Helper(ctx, 'c', binary, late)
    s = h.stream
    s.wait('heartbeat', 2, what='two heartbeats (c)')
    expect('late.yaml:2:10: no proxies' in h.err(), 'no error (c): %s',
           h.err())
    expect(s.count('proxies') == 0, 'set from a bad file')
    write_atomic(late, proxies_yaml('prod-eu', [k['px1']],
                                    k['px1'].cert_path))
    s.within(2, 'proxies', 1, 'the fixed file picked up')
    s.expect_set('prod-eu', [k['px1']])
    s.expect_seqs()
    h.close_stdin()
    h.exits_within(1, 'stdin EOF (c)')
    ctx.log('ok - bad file at start: heartbeats only, fixed file picked up')


def check_symlink_swap(ctx, binary, k):
    """Kubernetes swaps a symlink above the file's directory: inotify (on
    the old directory) sees nothing, the stat() check at each heartbeat
    does."""
    cert = k['px1'].cert_path
    for v, key in (('v1', k['px1']), ('v2', k['px2'])):
        ctx.mkdir(v, 0o755)
        with open(ctx.path(v, 'proxies.yaml'), 'w') as f:
            f.write(proxies_yaml('prod-eu', [key], cert))
    current = ctx.path('current')
    os.symlink('v1', current)
    h = Helper(ctx, 'e', binary, os.path.join(current, 'proxies.yaml'))
    s = h.stream
    s.wait('proxies', what='a set (e)')
    os.symlink('v2', current + '.new')
    os.replace(current + '.new', current)
    s.within(3, 'proxies', 2, 'the set after the symlink swap')
    s.expect_set('prod-eu', [k['px2']])
    h.close_stdin()
    h.exits_within(1, 'stdin EOF (e)')
    ctx.log('ok - symlink swapped above the directory: seen by the stat() '
            'check')


def fake_keys(n):
    """n random, well-formed ed25519 public key lines."""
    head = struct.pack('>I', 11) + b'ssh-ed25519' + struct.pack('>I', 32)
    return ['ssh-ed25519 ' + base64.b64encode(head + os.urandom(32)).decode()
            for _ in range(n)]


def big_yaml(keys, pad):
    out = ['cluster: big', 'proxies:']
    out += ['  - {name: p%d%s, host_key: "%s"}' % (i + 1, pad, key)
            for i, key in enumerate(keys)]
    return '\n'.join(out) + '\n'


def check_limits(ctx, binary):
    keys = fake_keys(257)
    expect(len(set(keys)) == 257, 'fake_keys')
    big = ctx.path('big.yaml')
    with open(big, 'w') as f:
        f.write(big_yaml(keys[:256], ''))
    h = Helper(ctx, 'd', binary, big)
    s = h.stream
    s.wait('proxies', what='a set of 256 (d)')
    expect(len(s.last('proxies').get('proxies', [])) == 256,
           '256 proxies not announced')
    write_atomic(big, big_yaml(keys, ''))
    h.proc.wait_log(r'big\.yaml:[0-9]*:5: more than 256 proxies', 2)
    write_atomic(big, big_yaml(keys[:256], 'n' * 100))
    h.proc.wait_log(r'big\.yaml: the set of 256 proxies does not fit in one '
                    r'65536-byte line', 2)
    s.settle(0.5, 1)
    expect(s.count('proxies') == 1, 'refused set announced')
    h.close_stdin()
    h.exits_within(1, 'stdin EOF (d)')
    ctx.log('ok - limits: 256 proxies announced; 257, or a line over 64 KiB, '
            'refused')


def run(ctx):
    binary = ctx.binary('tunnelpool-discovery')
    k = {n: ctx.keygen(n) for n in ('px1', 'px2', 'px3')}
    ca = ctx.ca('ca')
    ca.sign_host(k['px1'], ['px1.example'], identity='px1', validity=None,
                 serial=1)
    check_cli(ctx, binary)
    path = check_files(ctx, binary, k, ca)
    check_stdin_eof(ctx, binary, path)
    check_bad_at_start(ctx, binary, k)
    check_symlink_swap(ctx, binary, k)
    check_limits(ctx, binary)
