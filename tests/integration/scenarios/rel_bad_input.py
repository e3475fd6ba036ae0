"""Broken input never reaches what runs.  Every entry of the corpus
tests/integration/corpus/bad_config/ -- broken main configurations
(main/NAME.yaml) and tunnel files (tunnels/NAME.yaml): syntax errors, wrong
types, unknown and duplicate keys, bad addresses, bad durations, values out
of range, missing key files, a directory in place of a file, a half-written
file, bad UTF-8, NUL bytes, YAML tags, extra documents -- plus generated
ones (files larger than the limits, the main file itself a directory):

1. gives exactly one precise error from `tunnelpool check-config -c`:
   `file:line:column: message` (or `file: message` for a whole-file
   problem), equal to the golden NAME.err next to it;
2. applied to a running supervisor (a tunnel file dropped into tunnels.d,
   or the main file replaced, then `tunnelpool reload`), is refused with
   that same error, and changes nothing that runs: same worker PIDs, the
   forwards carry data, no new worker was started.  Also: an existing
   good tunnel file rewritten broken keeps its tunnel on its last good
   contents.  Restoring the good files makes reload succeed again.

Golden files use placeholders (@FILE@, @DIR@, @TUNNELS_DIR@, ...): see
corpus/bad_config/README.  TP_BAD_CONFIG_REGEN=1 rewrites them from what
check-config prints (then review the diff)."""

import os
import re
import shutil
import time

from harness import ScenarioFailure, expect, expect_eq, ports, procs
from harness.target import send_and_check
from harness.tunnelpool import one_proxy

NAME = 'rel_bad_input'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90

CORPUS = os.path.normpath(os.path.join(os.path.dirname(__file__), '..',
                                       'corpus', 'bad_config'))
REGEN = os.environ.get('TP_BAD_CONFIG_REGEN') == '1'
# Cases that still change what runs, with the diagnosis.  Strict: a case
# listed here that stops misbehaving fails the scenario (remove it then).
KNOWN_BUGS = {}
MAIN_MAX = 1024 * 1024              # supervisor/config.h CONFIG_MAX_FILE
TUNNEL_MAX = 16 * 1024 * 1024       # supervisor/tunnels.h TUNNEL_MAX_FILE


def connected(st):
    return sorted((a['cluster'], a['pid']) for a in st['agents']
                  if a['state'] == 'connected')


class Case:
    def __init__(self, kind, name, text=None, expected=None, make=None):
        self.kind, self.name = kind, name      # kind: 'main' | 'tunnels'
        self.text = text                       # bytes with placeholders
        self.expected = expected               # golden line (placeholders)
        self.make = make                       # callable(path) for generated

    def __repr__(self):
        return '%s/%s' % (self.kind, self.name)


def corpus_cases():
    cases = []
    for kind in ('main', 'tunnels'):
        d = os.path.join(CORPUS, kind)
        for fn in sorted(os.listdir(d)):
            if not fn.endswith('.yaml'):
                continue
            name = fn[:-5]
            with open(os.path.join(d, fn), 'rb') as f:
                text = f.read()
            err = os.path.join(d, name + '.err')
            expected = None
            if os.path.exists(err):
                with open(err) as f:
                    expected = f.read().rstrip('\n')
            cases.append(Case(kind, name, text, expected))
    return cases


def generated_cases(good_main, good_tunnel):
    """Whole-file problems made on the spot (too big for the repository)."""
    def huge_main(path):
        with open(path, 'wb') as f:
            f.write(good_main)
            f.write(b'#' * (MAIN_MAX + 1 - len(good_main)) + b'\n')

    def huge_tunnel(path):
        with open(path, 'wb') as f:
            f.write(good_tunnel.replace(b'@NAME@', b'huge'))
            pad = TUNNEL_MAX + 1 - len(good_tunnel)
            line = b'#' * 1023 + b'\n'
            f.write(line * (pad // 1024 + 1))

    def main_dir(path):
        os.mkdir(path)

    return [
        Case('main', 'gen_huge', make=huge_main, expected='@FILE@: file too '
             'large (%d bytes, limit %d)' % (MAIN_MAX + 2, MAIN_MAX)),
        Case('main', 'gen_directory', make=main_dir,
             expected='@FILE@: not a regular file'),
        Case('tunnels', 'gen_huge', make=huge_tunnel, expected=None),
    ]


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)
    fwd = ports.free_ports(2)
    spare = ports.free_port()
    adir = ctx.mkdir('a_directory', 0o755)

    tp = ctx.tunnelpool(node_key, kh, backoff=('200ms', '1s'),
                        log_level='info')
    tp.add_tunnel('running', 'running', [proxy.address()],
                  [('127.0.0.1:%d' % fwd[0], echo.address())])
    tp.add_tunnel('second', 'second', [proxy.address()],
                  [('127.0.0.1:%d' % fwd[1], echo.address())])
    tp.write_config()
    subst = {
        '@KEY@': node_key.path, '@KNOWN_HOSTS@': str(kh),
        '@TUNNELS_DIR@': tp.tunnels_dir, '@CONTROL@': tp.control_socket,
        '@METRICS@': tp.metrics_listen, '@WORKER@': tp.config['worker'][
            'path'], '@DIR@': adir, '@PROXY@': proxy.address(),
        '@PORT@': str(spare), '@ECHO@': echo.address(),
    }

    def expand(text):
        for k, v in subst.items():
            text = text.replace(k.encode(), v.encode())
        return text

    def unexpand(line, path, tunnels_dir):
        line = line.replace(path, '@FILE@').replace(tunnels_dir,
                                                     '@TUNNELS_DIR@')
        for k in ('@DIR@', '@KEY@', '@KNOWN_HOSTS@', '@WORKER@', '@CONTROL@',
                  '@METRICS@', '@PROXY@', '@ECHO@'):
            line = line.replace(subst[k], k)
        return line

    with open(tp.config_path, 'rb') as f:
        good_main = f.read()
    with open(tp.tunnel_path('running'), 'rb') as f:
        good_running = f.read()
    good_tunnel = good_running.replace(b'running', b'@NAME@')
    cases = corpus_cases() + generated_cases(good_main, good_tunnel)
    expect(len(cases) >= 40, 'corpus has only %d cases', len(cases))

    # -- 1. check-config: one precise error per case -------------------
    check_dir = ctx.mkdir('check', 0o755)
    check_tunnels = ctx.mkdir('check/tunnels.d', 0o755)
    shutil.copy(tp.tunnel_path('running'), check_tunnels)
    check_main = os.path.join(check_dir, 'main.yaml')
    with open(check_main, 'wb') as f:
        f.write(good_main.replace(tp.tunnels_dir.encode(),
                                  check_tunnels.encode()))
    cp = procs.run([tp.binary, 'check-config', '-c', check_main],
                   check=False)
    expect_eq(cp.returncode, 0, 'check-config of the good files: %s' %
              cp.stderr)

    def place(case, main_path, tunnels_dir):
        """Writes the case; returns the path it is reported under.  A file
        is written under a dot name (ignored by the supervisor) and renamed
        into place: the watcher must meet the broken file, not a prefix of
        it that happens to be valid (the huge file starts with a good
        tunnel)."""
        if case.kind == 'main':
            path = main_path
        else:
            path = os.path.join(tunnels_dir, 'bad_%s.yaml' % case.name)
        if os.path.isdir(path):
            os.rmdir(path)
        tmp = os.path.join(os.path.dirname(path), '.tmp-' +
                           os.path.basename(path))
        if case.make:
            case.make(tmp)
        else:
            with open(tmp, 'wb') as f:
                f.write(expand(case.text))
        os.rename(tmp, path)
        return path

    check_subst = dict(subst, **{'@TUNNELS_DIR@': check_tunnels})
    results = {}
    regen = []
    for case in cases:
        main_path = os.path.join(check_dir, 'case.yaml') \
            if case.kind == 'main' else check_main
        path = place(case, main_path, check_tunnels)
        cp = procs.run([tp.binary, 'check-config', '-c', main_path],
                       check=False)
        lines = [l for l in cp.stderr.splitlines() if l.strip()]
        if case.kind == 'main':
            if os.path.isdir(path):
                os.rmdir(path)
            else:
                os.unlink(path)
        else:
            os.unlink(path)
        expect_eq(cp.returncode, 1, '%r: check-config exit status (stderr '
                  '%r)' % (case, cp.stderr))
        expect(len(lines) == 1, '%r: %d error lines, want exactly one:\n%s',
               case, len(lines), '\n'.join(lines[:10]))
        got = lines[0]
        # A duplicate cluster is reported at the second definition in
        # file-name order, which may be the good file already there.
        where = re.escape(path) if case.name != 'duplicate_cluster' else \
            re.escape(check_tunnels) + r'/[^/:]+\.yaml'
        expect(re.match(r'^%s(:\d+:\d+|:\d+)?: \S' % where, got),
               '%r: error %r is not "%s[:LINE[:COL]]: message"', case, got,
               path)
        if case.expected is None and case.name == 'gen_huge':
            case.expected = '@FILE@: file too large (%d bytes, limit %d)' % (
                os.path.getsize(path) if os.path.exists(path) else -1,
                TUNNEL_MAX)
        if REGEN and not case.make:
            regen.append((case, unexpand(got, path, check_tunnels)))
            results[repr(case)] = got
            continue
        if case.name == 'gen_huge' and case.kind == 'tunnels':
            expect(re.match(r'^%s: file too large \(\d+ bytes, limit %d\)$'
                            % (re.escape(path), TUNNEL_MAX), got),
                   '%r: %r', case, got)
        else:
            want = case.expected.replace('@FILE@', path)
            for k, v in check_subst.items():
                want = want.replace(k, v)
            expect_eq(got, want, 'check-config error for %r' % case)
        results[repr(case)] = got
    if REGEN:
        for case, line in regen:
            with open(os.path.join(CORPUS, case.kind, case.name + '.err'),
                      'w') as f:
                f.write(line + '\n')
        ctx.log('regenerated %d golden files', len(regen))
    ctx.log('check-config: %d cases, one precise error each', len(results))
    for k, v in results.items():
        ctx.log('  %-40s %s', k, v.replace(ctx.dir, 'WORKDIR'))

    # -- 2. the same input, applied to a running supervisor --------------
    tp.start()
    st = tp.wait_state(lambda s: len(connected(s)) == 2, 30,
                       'two tunnels connected')
    want = connected(st)
    for p in fwd:
        proxy.wait_forward(p)
    spawns = st['supervisor']['spawns']

    def unchanged(case):
        st = tp.status_json()
        expect_eq(connected(st), want, 'workers after %r' % case)
        expect_eq(st['supervisor']['spawns'], spawns, 'spawns after %r (a '
                  'worker was started)' % case)
        return st

    def reload_fails(case, path):
        cp = tp.ctl('reload', check=False)
        expect_eq(cp.returncode, 1, 'reload exit status for %r (stderr %r)'
                  % (case, cp.stderr))
        return cp.stderr.strip()

    def rebaseline():
        st = tp.wait_state(lambda s: len(s['agents']) == 2 and len(
            connected(s)) == 2 and all(a['forwards'] and all(
                f['bound'] for f in a['forwards']) for a in s['agents']), 30,
            'two tunnels connected again, forwards bound')
        for p in fwd:
            proxy.wait_forward(p, 15)
        return connected(st), st['supervisor']['spawns']

    known = []
    for i, case in enumerate(cases):
        if case.kind == 'main':
            os.unlink(tp.config_path)
            path = place(case, tp.config_path, tp.tunnels_dir)
        else:
            path = place(case, None, tp.tunnels_dir)
        err = reload_fails(case, path)
        expect(path in err, '%r: reload error %r does not name %s', case,
               err, path)
        bug = KNOWN_BUGS.get(repr(case))
        try:
            if bug:
                time.sleep(2)       # let the takeover happen, if it does
            st = unchanged(case)
            expect(st['supervisor']['config_ok'] is False, '%r: config_ok '
                   '%r', case, st['supervisor']['config_ok'])
            if bug:
                expect(False, '%r is listed in KNOWN_BUGS but now changes '
                       'nothing that runs: remove it from KNOWN_BUGS', case)
        except ScenarioFailure as exc:
            if not bug or 'KNOWN_BUGS' in str(exc):
                raise
            ctx.log('KNOWN BUG %r: %s -- %s', case, exc, bug)
            known.append(repr(case))
        # Restore, reload cleanly.
        if os.path.isdir(path):
            os.rmdir(path)
        else:
            os.unlink(path)
        if case.kind == 'main':
            with open(tp.config_path, 'wb') as f:
                f.write(good_main)
        cp = tp.ctl('reload', check=False)
        expect_eq(cp.returncode, 0, 'reload after restoring from %r: %s' %
                  (case, cp.stderr))
        if bug:
            want, spawns = rebaseline()
        if i % 8 == 0:
            for p in fwd:
                send_and_check('127.0.0.1', p, 32 * 1024)
    st = unchanged('all cases')
    expect(st['supervisor']['config_ok'] is True, 'config_ok after restore')
    for p in fwd:
        send_and_check('127.0.0.1', p, 256 * 1024)
    ctx.log('running supervisor: %d broken inputs refused, workers %r '
            'untouched%s', len(cases), want, ' (except known bugs: %s)' %
            ', '.join(known) if known else '')

    # -- 3. an existing tunnel file rewritten broken: last good stays ----
    # (duplicate_cluster is only broken next to another file defining the
    # cluster: alone, as running.yaml, it is a valid new spec.)
    for case in [c for c in cases if c.kind == 'tunnels' and not c.make
                 and c.name != 'duplicate_cluster']:
        tmp = os.path.join(tp.tunnels_dir, '.tmp-running')
        with open(tmp, 'wb') as f:
            f.write(expand(case.text))
        os.rename(tmp, tp.tunnel_path('running'))
        cp = tp.ctl('reload', check=False)
        expect_eq(cp.returncode, 1, 'reload with running.yaml = %r' % case)
        unchanged('running.yaml replaced by %r' % case)
    send_and_check('127.0.0.1', fwd[0], 256 * 1024)
    with open(tp.tunnel_path('running'), 'wb') as f:
        f.write(good_running)
    cp = tp.ctl('reload', check=False)
    expect_eq(cp.returncode, 0, 'final reload: %s' % cp.stderr)
    st = unchanged('final restore')
    expect(st['supervisor']['config_ok'] is True, 'config_ok at the end')
    for p in fwd:
        send_and_check('127.0.0.1', p, 64 * 1024)
    expect(tp.alive(), 'supervisor died')
