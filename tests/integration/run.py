#!/usr/bin/python3
"""tunnelpool integration test driver.

    run.py [--build-dir DIR] [--filter PATTERN] [--list] [--keep-logs]
           [--require-all] [--timeout-scale X]

Discovers scenarios/*.py (each defines NAME, optional REQUIRES and TIMEOUT,
and run(ctx)), runs each in its own runner process with a fresh work dir and
Env, and prints one line per scenario, then 'N passed, N failed[, N
skipped]'.  Exit status 1 if any scenario failed (2 on usage errors).

A scenario is skipped only when a project binary it requires is not built
yet; with --require-all such a skip is a failure.
"""

import argparse
import fnmatch
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import procs                                    # noqa: E402
from harness.env import Env, find_binary, find_tool          # noqa: E402
from harness.errors import (HarnessError, ScenarioFailure,   # noqa: E402
                            ScenarioTimeout)

SCENARIO_DIR = os.path.join(HERE, 'scenarios')
DEFAULT_TIMEOUT = 300
CLEANUP_GRACE = 45          # seconds a runner gets to tear down after SIGTERM
LOG_TAIL_LINES = 80
DEFAULT_TOOLS = ['sshd', 'ssh', 'ssh-keygen', 'socat', 'ip', 'ss']


def default_build_dir():
    return os.environ.get('TP_BUILD_DIR') or \
        os.path.normpath(os.path.join(HERE, '..', '..', 'build'))


# ----------------------------------------------------------------------
# scenarios

class Scenario:
    def __init__(self, path):
        self.path = path
        self.stem = os.path.splitext(os.path.basename(path))[0]
        self.module = load_module(path)
        m = self.module
        self.name = getattr(m, 'NAME', self.stem)
        self.requires = dict(getattr(m, 'REQUIRES', {}) or {})
        self.timeout = float(getattr(m, 'TIMEOUT', DEFAULT_TIMEOUT))
        self.doc = (m.__doc__ or '').strip().splitlines()[0:1]
        if not callable(getattr(m, 'run', None)):
            raise HarnessError('%s defines no run(ctx)' % path)

    def missing_binaries(self, build_dir):
        return [b for b in self.requires.get('binaries', [])
                if find_binary(build_dir, b) is None]

    def missing_tools(self):
        tools = self.requires.get('tools', DEFAULT_TOOLS)
        return [t for t in tools if find_tool(t) is None]


def load_module(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location('scenario_' + stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def discover(filters, scenario_dir=SCENARIO_DIR):
    out, errors = [], []
    for fn in sorted(os.listdir(scenario_dir)):
        if not fn.endswith('.py') or fn.startswith('_'):
            continue
        path = os.path.join(scenario_dir, fn)
        try:
            sc = Scenario(path)
        except Exception as exc:            # a broken scenario file fails
            stem = os.path.splitext(fn)[0]
            if filters and not any(
                    fnmatch.fnmatch(stem, f) if any(c in f for c in '*?[')
                    else f in stem for f in filters):
                continue
            errors.append((os.path.splitext(fn)[0], '%s: %s' % (
                type(exc).__name__, exc)))
            continue
        if filters and not any(matches(f, sc) for f in filters):
            continue
        out.append(sc)
    return out, errors


def matches(pattern, sc):
    if any(c in pattern for c in '*?['):
        return fnmatch.fnmatch(sc.name, pattern) or \
            fnmatch.fnmatch(sc.stem, pattern)
    return pattern in sc.name or pattern in sc.stem


# ----------------------------------------------------------------------
# the runner (child) side

def child_main(args):
    """Runs one scenario in this process; writes WORKDIR/result.json."""
    procs.set_child_subreaper()
    sc_path, workdir = args.child, args.workdir
    result = {'status': 'FAIL', 'reason': 'runner did not finish'}

    def on_term(signum, frame):
        raise ScenarioTimeout('interrupted' if signum == signal.SIGINT
                              else 'timeout')
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    env = None
    try:
        mod = load_module(sc_path)
        env = Env(workdir, args.build_dir,
                  getattr(mod, 'NAME', os.path.basename(sc_path)),
                  timeout=args.timeout)
        env.log('scenario %s in %s', env.name, workdir)
        mod.run(env)
        result = {'status': 'PASS', 'reason': ''}
    except ScenarioTimeout as exc:
        result = {'status': 'FAIL', 'reason': 'interrupted'
                  if str(exc) == 'interrupted' else
                  'timed out after %ss' % args.timeout}
        traceback.print_exc(file=sys.stdout)
    except (ScenarioFailure, AssertionError) as exc:
        result = {'status': 'FAIL', 'reason': first_line(exc) or
                  'assertion failed'}
        traceback.print_exc(file=sys.stdout)
    except HarnessError as exc:
        result = {'status': 'FAIL', 'reason': first_line(exc)}
        traceback.print_exc(file=sys.stdout)
    except BaseException as exc:
        result = {'status': 'FAIL', 'reason': '%s: %s' % (
            type(exc).__name__, first_line(exc))}
        traceback.print_exc(file=sys.stdout)
    finally:
        # A second SIGTERM must not cut the teardown short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if env is not None:
            env.log('teardown')
            problems = env.cleanup()
            for p in problems:
                env.log('teardown problem: %s', p)
            if problems and result['status'] == 'PASS':
                result = {'status': 'FAIL', 'reason': 'unclean teardown: ' +
                          problems[0]}
            env.log('done: %s', result['status'])
        with open(os.path.join(workdir, 'result.json'), 'w') as f:
            json.dump(result, f)
        sys.stdout.flush()
    return 0


def first_line(exc):
    s = str(exc).strip()
    return s.splitlines()[0] if s else ''


# ----------------------------------------------------------------------
# the driver (parent) side

class Driver:
    def __init__(self, args):
        self.args = args
        self.child = None
        self.interrupted = False
        self.counts = {'PASS': 0, 'FAIL': 0, 'SKIP': 0}

    def on_signal(self, signum, frame):
        self.interrupted = True
        if self.child is not None and self.child.poll() is None:
            procs.signal_pid(self.child.pid, signal.SIGINT)

    def report(self, status, name, text):
        self.counts[status] += 1
        print('%s %s%s' % (status, name, text), flush=True)

    def run_all(self, scenarios, load_errors):
        for name, err in load_errors:
            self.report('FAIL', name, ': cannot load scenario: %s' % err)
        for sc in scenarios:
            if self.interrupted:
                break
            self.run_one(sc)
        summary = '%d passed, %d failed' % (self.counts['PASS'],
                                            self.counts['FAIL'])
        if self.counts['SKIP']:
            summary += ', %d skipped' % self.counts['SKIP']
        if self.interrupted:
            print('interrupted', flush=True)
        print(summary, flush=True)
        return 1 if self.counts['FAIL'] or self.interrupted else 0

    def run_one(self, sc):
        missing = sc.missing_binaries(self.args.build_dir)
        if missing:
            why = '%s not built in %s' % (', '.join(missing),
                                          self.args.build_dir)
            if self.args.require_all:
                self.report('FAIL', sc.name, ': %s (--require-all)' % why)
            else:
                self.report('SKIP', sc.name, ': %s' % why)
            return
        tools = sc.missing_tools()
        if tools:
            self.report('FAIL', sc.name, ': missing system tools: %s' %
                        ', '.join(tools))
            return
        if sc.requires.get('root', True) and os.geteuid() != 0:
            self.report('FAIL', sc.name, ': needs root')
            return

        timeout = sc.timeout * self.args.timeout_scale
        workdir = tempfile.mkdtemp(prefix='tpit-', dir=self.args.tmp_dir)
        os.chmod(workdir, 0o755)
        out_path = os.path.join(workdir, 'scenario.out')
        t0 = time.monotonic()
        with open(out_path, 'wb') as out:
            self.child = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), '--_child',
                 sc.path, '--workdir', workdir, '--build-dir',
                 self.args.build_dir, '--_timeout', str(timeout)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True)
            killed = self.wait_child(timeout)
        self.child = None
        elapsed = time.monotonic() - t0

        problems = self.sweep(workdir)
        result = read_json(os.path.join(workdir, 'result.json')) or {
            'status': 'FAIL', 'reason': 'runner died without a result'}
        if killed:
            result = {'status': 'FAIL', 'reason': 'timed out after %.0fs and '
                      'the runner did not tear down in time' % timeout}
        if problems and result['status'] == 'PASS':
            result = {'status': 'FAIL', 'reason': problems[0]}

        if result['status'] == 'PASS':
            self.report('PASS', sc.name, ' (%.1fs)' % elapsed)
        else:
            self.report('FAIL', sc.name, ': %s (%.1fs)' % (result['reason'],
                                                           elapsed))
            for p in problems:
                print('  driver cleanup: %s' % p)
            self.dump_logs(workdir)
        if self.args.keep_logs:
            print('  logs kept in %s' % workdir, flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    def wait_child(self, timeout):
        """Waits for the runner; on timeout SIGTERM (the runner tears down),
        then SIGKILL after CLEANUP_GRACE.  Returns True if it was killed."""
        try:
            self.child.wait(timeout)
            return False
        except subprocess.TimeoutExpired:
            pass
        procs.signal_pid(self.child.pid, signal.SIGTERM)
        try:
            self.child.wait(CLEANUP_GRACE)
            return False
        except subprocess.TimeoutExpired:
            procs.signal_pid(self.child.pid, signal.SIGKILL)
            self.child.wait(10)
            return True

    def sweep(self, workdir):
        """After the runner: kill whatever is left (orphans come to us, the
        subreaper), delete namespaces the manifest still lists."""
        problems = []
        man = read_json(os.path.join(workdir, 'manifest.json')) or {}
        for pid, start, name in man.get('processes', []):
            try:
                if start is not None and procs.start_time(pid) == start and \
                        procs.alive(pid):
                    procs.signal_pid(pid, signal.SIGKILL)
                    problems.append('process %s pid %d left behind' % (
                        name, pid))
            except (OSError, ValueError, IndexError):
                pass
        leaked = procs.kill_descendants(os.getpid())
        procs.reap_zombie_children()
        if leaked:
            problems.append('processes left behind: %s' % '; '.join(leaked))
        for ns in man.get('netns', []):
            if os.path.exists('/run/netns/%s' % ns):
                cp = procs.run(['ip', 'netns', 'pids', ns], check=False)
                procs.kill_pids(int(p) for p in cp.stdout.split())
                procs.run(['ip', 'netns', 'del', ns], check=False)
                problems.append('netns %s left behind' % ns)
        return problems

    def dump_logs(self, workdir):
        man = read_json(os.path.join(workdir, 'manifest.json')) or {}
        logs = [(os.path.join(workdir, 'scenario.out'), 'scenario output')]
        logs += [tuple(x) for x in man.get('logs', [])]
        for path, label in logs:
            text = procs.read_text(path)
            if not text.strip():
                continue
            lines = text.rstrip('\n').splitlines()
            shown = lines[-LOG_TAIL_LINES:]
            print('  ----- %s: %s (%s) -----' % (
                label, path, 'last %d of %d lines' % (len(shown), len(lines))
                if len(lines) > len(shown) else '%d lines' % len(lines)))
            for line in shown:
                print('  | ' + line)
        print('  ----- end of logs -----', flush=True)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--build-dir', default=default_build_dir(),
                    help='meson build dir (default: %(default)s)')
    ap.add_argument('--filter', action='append', default=[],
                    help='run only scenarios whose name contains PATTERN '
                    '(or matches it as a glob); repeatable, comma-separated')
    ap.add_argument('--list', action='store_true',
                    help='list scenarios and what they require, run nothing')
    ap.add_argument('--keep-logs', action='store_true',
                    help='keep every work dir (logs, configs) and print it')
    ap.add_argument('--require-all', action='store_true',
                    help='a scenario whose binaries are not built fails '
                    'instead of being skipped')
    ap.add_argument('--timeout-scale', type=float, default=1.0,
                    help='multiply every scenario timeout (slow builds)')
    ap.add_argument('--tmp-dir', default=None,
                    help='where work dirs are made (default: $TMPDIR or '
                    '/tmp; keep it short: unix socket paths live there)')
    ap.add_argument('--scenario-dir', default=SCENARIO_DIR,
                    help='where scenarios are (default: %(default)s)')
    ap.add_argument('--_child', dest='child', help=argparse.SUPPRESS)
    ap.add_argument('--workdir', help=argparse.SUPPRESS)
    ap.add_argument('--_timeout', dest='timeout', type=float,
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.build_dir = os.path.abspath(args.build_dir)

    if args.child:
        return child_main(args)

    filters = [p.strip() for f in args.filter for p in f.split(',')
               if p.strip()]
    scenarios, load_errors = discover(filters, args.scenario_dir)
    if args.list:
        for sc in scenarios:
            miss = sc.missing_binaries(args.build_dir)
            print('%-40s timeout %4.0fs  %s%s' % (
                sc.name, sc.timeout,
                'needs ' + ', '.join(sc.requires.get('binaries', []))
                if sc.requires.get('binaries') else '',
                ' (not built: %s)' % ', '.join(miss) if miss else ''))
        for name, err in load_errors:
            print('%-40s BROKEN: %s' % (name, err))
        return 1 if load_errors else 0
    if not scenarios and not load_errors:
        print('no scenario matches %s' % ', '.join(filters), file=sys.stderr)
        print('0 passed, 0 failed')
        return 1

    procs.set_child_subreaper()
    driver = Driver(args)
    signal.signal(signal.SIGINT, driver.on_signal)
    signal.signal(signal.SIGTERM, driver.on_signal)
    return driver.run_all(scenarios, load_errors)


if __name__ == '__main__':
    sys.exit(main())
