"""Issue 16: malformed values, fed through etcd.  Every tunnel case of the
bad-input corpus (tests/integration/corpus/bad_config/tunnels, the one the
tunnel files are held to in rel_bad_input) is put under the prefix as a
new key: each is rejected with its golden error, the file name replaced by
etcd:KEY; nothing that runs changes (same workers, no spawn, data flows).
Each is then written over a running tunnel's key: the key keeps its last
good tunnel.  A cluster defined both by a tunnel file and by an etcd key is
an error for the later definition, in either order; a non-printable key is
ignored with an error."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _etcdfleet  # noqa: E402
from _etcdfleet import running  # noqa: E402

from harness import expect, expect_eq, ports  # noqa: E402
from harness.tunnelpool import tunnel_yaml  # noqa: E402

NAME = 'etcd_bad_input'
REQUIRES = _etcdfleet.REQUIRES
TIMEOUT = 240
CORPUS = os.path.normpath(os.path.join(os.path.dirname(__file__), '..',
                                       'corpus', 'bad_config', 'tunnels'))


def cases():
    out = []
    for fn in sorted(os.listdir(CORPUS)):
        if fn.endswith('.yaml'):
            name = fn[:-5]
            with open(os.path.join(CORPUS, fn), 'rb') as f:
                text = f.read()
            with open(os.path.join(CORPUS, name + '.err')) as f:
                err = f.read().strip()
            out.append((name, text, err))
    return out


def run(ctx):
    f = _etcdfleet.Fleet(ctx, tp_kw={'log_level': 'info'})
    f.tp.use_etcd(f.etcd.endpoints(), _etcdfleet.PREFIX, tunnels_dir=True)
    f.put('running')
    f.put('second')
    f.tp.add_tunnel('fromfile', 'fromfile', [f.proxy.address()],
                    [('127.0.0.1:%d' % f.port('fromfile'),
                      f.echo.address())])
    f.start()
    want = f.wait_connected(['running', 'second', 'fromfile'])
    spawns = f.tp.status_json()['supervisor']['spawns']
    subst = {'@PROXY@': f.proxy.address(), '@ECHO@': f.echo.address(),
             '@PORT@': str(ports.free_port())}

    def expand(text):
        for k, v in subst.items():
            text = text.replace(k.encode(), v.encode())
        return text

    def unchanged(what):
        st = f.tp.status_json()
        expect_eq(running(st), want, 'agents after %s' % what)
        expect_eq(st['supervisor']['spawns'], spawns, 'spawns after %s'
                  % what)

    def rejected(key, line, what):
        def seen(s):
            return s['tunnel_source']['bad_keys'] >= 1 and \
                s['tunnel_source']['last_error'].startswith(line)
        f.tp.wait_state(seen, 15, '%s rejected with %r' % (what, line))

    all_cases = cases()
    expect(len(all_cases) >= 20, 'corpus has %d tunnel cases',
           len(all_cases))
    for name, text, err in all_cases:
        key = f.key('bad_' + name)
        rev = f.put('bad_' + name, value=expand(text))
        if name == 'duplicate_cluster':
            line = ('etcd:%s:5:17: spec.cluster_name: duplicate cluster '
                    '"running" (first defined at etcd:%s:' %
                    (key, f.key('running')))
        else:
            line = err.replace('@FILE@', 'etcd:' + key)
            for k, v in subst.items():
                line = line.replace(k, v)
        rejected(key, line, name)
        src = f.source()
        expect(src['revision'] >= rev, '%s: revision', name)
        unchanged(name)
        f.delete('bad_' + name)
        f.wait_source(lambda s: s['bad_keys'] == 0, 10, 'bad key %s gone'
                      % name)
    ctx.log('%d corpus cases rejected by key name', len(all_cases))
    f.check_data(['running', 'second', 'fromfile'])

    # Over a running key: its last good tunnel stays.
    for name, text, err in all_cases:
        if name == 'duplicate_cluster':
            continue
        mark = f.tp.log_mark()
        f.put('running', value=expand(text))
        f.tp.wait_log(r'etcd key %s: rejected, its last good tunnels stay'
                      % re.escape(f.key('running')), 10, since=mark)
        unchanged('running = %s' % name)
    f.check_data(['running'])
    f.put('running')
    f.wait_source(lambda s: s['bad_keys'] == 0 and s['last_error'] == '',
                  10, 'running good again')
    unchanged('restore')

    # A cluster in a file and in etcd: the later definition is the error.
    f.put('dupfile', value=tunnel_yaml('dupfile', 'fromfile',
                                       [f.proxy.address()], []))
    rx = (r'etcd:%s:\d+:\d+: spec.cluster_name: duplicate cluster '
          r'"fromfile" \(first defined at %s:' % (
              re.escape(f.key('dupfile')),
              re.escape(f.tp.tunnel_path('fromfile'))))
    f.wait_source(lambda s: re.match(rx, s['last_error']) and
                  s['bad_keys'] == 1, 10, 'etcd key redefining a file '
                  'cluster rejected')
    unchanged('etcd redefines a file cluster')
    f.delete('dupfile')
    mark = f.tp.log_mark()
    f.tp.add_tunnel('dupkey', 'second', [f.proxy.address()], [])
    cp = f.tp.ctl('reload', check=False)
    expect(cp.returncode == 1 and re.search(
        r'dupkey\.yaml:\d+:\d+: spec.cluster_name: duplicate cluster '
        r'"second" \(first defined at etcd:%s:' % re.escape(f.key('second')),
        cp.stderr), 'reload with a file redefining an etcd cluster: %r',
        cp.stderr)
    unchanged('a file redefines an etcd cluster')
    f.tp.remove_tunnel('dupkey')
    f.tp.ctl('reload')

    # A key that cannot be named in a log line.
    f.etcd.put(_etcdfleet.PREFIX + 'bad\tkey', f.value('x'))
    f.wait_source(lambda s: s['last_error'] == 'etcd key "%sbad\\x09key": '
                  'not printable ASCII (or too long): ignored' %
                  _etcdfleet.PREFIX, 10, 'a non-printable key ignored')
    unchanged('a non-printable key')
    f.check_data(['running', 'second', 'fromfile'])
