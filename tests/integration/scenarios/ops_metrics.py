"""Prometheus /metrics during a run with connected tunnels and traffic:
`promtool check metrics` passes, no series appears twice, the values agree
with `status --json` (agents per cluster and state, bytes, channels,
workers, build_info, config state), the loop-lag histogram is consistent,
and /healthz answers 200 while other paths and methods are refused."""

import re
import urllib.error
import urllib.request

from harness import expect, expect_eq, procs
from harness.target import send_and_check
from harness.tunnelpool import one_proxy_pool

NAME = 'ops_metrics'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent'],
            'tools': ['sshd', 'ssh', 'ssh-keygen', 'socat', 'ip', 'ss',
                      'promtool']}
TIMEOUT = 90

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
STATES = ('connecting', 'discovering', 'connected', 'discovered',
          'disconnected')


def http(url, method='GET'):
    """(status, body) of one request."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse(text):
    """{(name, frozenset(labels)): value}; fails on a malformed or
    duplicate sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = SAMPLE.match(line)
        expect(m, 'malformed sample line %r', line)
        labels = frozenset(LABEL.findall(m.group(2) or ''))
        key = (m.group(1), labels)
        expect(key not in out, 'series appears twice: %r', line)
        out[key] = float(m.group(3))
    return out


def get(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    expect(key in samples, 'no sample %s%r', name, labels)
    return samples[key]


def sums(st, cluster, field):
    return sum(a[field] for a in st['agents'] if a['cluster'] == cluster)


def check_against_status(s, st1, st2):
    """st1 was taken just before the scrape, st2 just after."""
    for c in st2['clusters']:
        for state in STATES:
            expect_eq(get(s, 'tunnelpool_agents', cluster=c['name'],
                          state=state), c['states'][state],
                      'tunnelpool_agents{%s,%s}' % (c['name'], state))
        for d, field in (('rx', 'rx_bytes'), ('tx', 'tx_bytes')):
            v = get(s, 'tunnelpool_tunnel_bytes_total', cluster=c['name'],
                    direction=d)
            lo, hi = sums(st1, c['name'], field), sums(st2, c['name'], field)
            expect(lo <= v <= hi, 'bytes %s of %s: metrics %d, status %d..%d',
                   d, c['name'], v, lo, hi)
        expect_eq(get(s, 'tunnelpool_forward_channels_total',
                      cluster=c['name']), sums(st2, c['name'],
                                               'channels_total'),
                  'channels_total of %s' % c['name'])
        expect_eq(get(s, 'tunnelpool_discovery_proxies', cluster=c['name'],
                      kind='claimed'), c['proxies_claimed'], 'claimed')
    sup = st2['supervisor']
    expect_eq(get(s, 'tunnelpool_build_info', version=sup['version']), 1,
              'build_info')
    expect_eq(get(s, 'tunnelpool_config_last_reload_successful'), 1,
              'config_last_reload_successful')
    expect_eq(get(s, 'tunnelpool_sandbox_violations_total'),
              sup['sandbox_violations'], 'sandbox violations')
    fds = get(s, 'process_open_fds')
    expect(abs(fds - sup['open_fds']) <= 4, 'open fds: metrics %d, status %d',
           fds, sup['open_fds'])
    expect(get(s, 'process_resident_memory_bytes') > 0, 'no RSS')


def check_lag(s):
    buckets = sorted(((float('inf') if dict(l)['le'] == '+Inf'
                       else float(dict(l)['le'])), v)
                     for (n, l), v in s.items()
                     if n == 'tunnelpool_loop_lag_seconds_bucket')
    expect(len(buckets) >= 2 and buckets[-1][0] == float('inf'),
           'lag buckets %r', buckets)
    counts = [v for _, v in buckets]
    expect(counts == sorted(counts), 'lag buckets not cumulative: %r', counts)
    expect_eq(get(s, 'tunnelpool_loop_lag_seconds_count'), counts[-1],
              'lag _count vs +Inf bucket')
    expect(counts[-1] > 0, 'no lag samples')


def run(ctx):
    pool = one_proxy_pool(ctx)
    tp, fwd, mport = pool.tp, pool.fwd, pool.mport
    send_and_check('127.0.0.1', fwd[0], 1 << 20)
    tp.wait_state(lambda s: sums(s, 'c1', 'rx_bytes') >= 1 << 20 and
                  sums(s, 'c1', 'tx_bytes') >= 1 << 20, 15,
                  'c1 byte counters reported')

    base = 'http://127.0.0.1:%d' % mport
    st1 = tp.status_json()
    code, text = http(base + '/metrics')
    st2 = tp.status_json()
    expect_eq(code, 200, 'GET /metrics')
    ctx.log('/metrics: %d lines', len(text.splitlines()))

    cp = procs.run(['promtool', 'check', 'metrics'], input=text, check=False)
    expect(cp.returncode == 0, 'promtool check metrics failed (exit %d):\n%s%s',
           cp.returncode, cp.stdout, cp.stderr)
    s = parse(text)
    check_against_status(s, st1, st2)
    check_lag(s)
    expect(get(s, 'tunnelpool_tunnel_bytes_total', cluster='c2',
               direction='rx') == 0, 'c2 saw traffic it never carried')

    code, body = http(base + '/healthz')
    expect(code == 200 and body.startswith('ok'), '/healthz: %d %r', code,
           body)
    expect_eq(http(base + '/nope')[0], 404, 'GET /nope')
    expect(http(base + '/metrics', 'POST')[0] in (405, 501),
           'POST /metrics was not refused')
