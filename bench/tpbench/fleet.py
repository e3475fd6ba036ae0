"""Fleet source: 10,000 tunnels under one etcd prefix against the same
10,000 as tunnels.d files, in the same run, side by side.  For each side:
initial load (supervisor exec -> the 10,000 in the desired set and synced),
the supervisor's RSS with them loaded, and put-to-agent-spawned latency
over 200 puts (a new tunnel each: an etcd put through the JSON gateway, or
a file written and renamed into tunnels.d; until the supervisor logs
"worker started" for it), p50 and p99.

The 10,000 dial 127.0.0.1:1 (refused at once) and then back off for an
hour, so nothing but the measured tunnels ever forks; the measured ones
dial a listener that completes TCP handshakes and never answers (the
agent is forked and waits for an SSH banner); each is deleted once its
agent started.  spawn_rate is opened (10,000/s) so the limiter does not
queue the puts behind the 10,000 first dials.  Files are noticed through
inotify with the supervisor's 200 ms debounce, then a reload of the
directory: that, not parsing, is most of their latency."""

import base64
import json
import os
import socket
import time
import urllib.request

from harness import procs
from harness.procs import wait_for
from harness.tunnelpool import tunnel_doc
from harness import yamlw

from .common import Row, BenchError, percentile, median, log_records

NAME = 'fleet'
N = 10000
PREFIX = '/tunnelpool/bench/'
BASE_DIAL = '127.0.0.1:1'


def value(i, dial):
    return yamlw.dumps(tunnel_doc('t%05d' % i, 't%05d' % i, [dial],
                                  [('127.0.0.1:%d' % (20000 + i % 20000),
                                    '127.0.0.1:22')]))


def gw(url, path, body, timeout=30):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def b64(s):
    return base64.b64encode(s.encode()).decode()


def load_etcd(url, n):
    """n keys in transactions of 128 puts (etcd's --max-txn-ops)."""
    for start in range(0, n, 128):
        ops = [{'request_put': {'key': b64(PREFIX + 't%05d' % i),
                                'value': b64(value(i, BASE_DIAL))}}
               for i in range(start, min(n, start + 128))]
        gw(url, '/v3/kv/txn', {'success': ops})


class LogWatch:
    """Incremental reader of the supervisor's log for 'worker started'
    lines: cluster -> epoch seconds of the log line."""

    def __init__(self, path):
        self.path = path
        self.off = 0
        self.seen = {}

    def poll(self):
        with open(self.path, 'rb') as f:
            f.seek(self.off)
            data = f.read()
        cut = data.rfind(b'\n') + 1
        self.off += cut
        for rec in log_records(data[:cut].decode('utf-8', 'replace')):
            if rec.get('msg', '').startswith('worker started') and \
                    rec.get('cluster'):
                self.seen.setdefault(rec['cluster'], rec['t'])
        return self.seen


def first_log(path, pred, timeout, what, fail_if=None):
    def check():
        for rec in log_records(open(path, errors='replace').read()):
            if pred(rec):
                return rec
        return None
    return wait_for(check, timeout, what, interval=0.05, fail_if=fail_if)


def side(bench, ctx, kind, puts):
    node_key = ctx.keygen('node_key_%s' % kind)
    kh = ctx.known_hosts('known_hosts_%s' % kind, [])
    extra = {'spawn_rate': 10000, 'spawn_burst': 10000,
             'backoff': {'min': '1h', 'max': '1h'}}
    tp = ctx.tunnelpool(node_key, kh, name='tp-%s' % kind, log_level='debug',
                        resync_interval='1h', extra=extra)
    etcd = None
    if kind == 'etcd':
        etcd = ctx.etcd('etcd-bench')
        url = etcd.endpoints()[0]
        t = time.monotonic()
        load_etcd(url, N)
        bench.log('etcd: %d keys loaded in %.1f s', N, time.monotonic() - t)
        tp.use_etcd([url], PREFIX, tunnels_dir=False)
    else:
        for i in range(N):
            yamlw.dump(tunnel_doc('t%05d' % i, 't%05d' % i, [BASE_DIAL],
                                  [('127.0.0.1:%d' % (20000 + i % 20000),
                                    '127.0.0.1:22')]),
                       tp.tunnel_path('t%05d' % i))
    # Files written a moment ago are "racily clean" (tunnels.c): wait so
    # the supervisor's first reload is the ordinary one.
    time.sleep(2.5 if kind == 'files' else 0)
    t0 = time.time()
    tp.start(wait_ready=False)
    if kind == 'etcd':
        rec = first_log(tp.log_path, lambda r: r.get('msg', '').startswith(
            'sync of %d endpoints' % N), 300, 'etcd load synced',
            fail_if=tp.proc.died)
    else:
        rec = first_log(tp.log_path, lambda r: r.get('msg', '').startswith(
            'supervisor started: %d tunnel endpoints' % N), 300,
            'files loaded', fail_if=tp.proc.died)
    load_s = rec['t'] - t0
    # The first dials (all refused) and their log lines settle.
    wait_for(lambda: os.path.exists(tp.control_socket), 60, 'control socket')
    time.sleep(3)
    rss = procs.rss_kib(tp.pid)
    bench.log('%s: %d tunnels loaded in %.3f s, RSS %d KiB', kind, N, load_s,
              rss)

    lsock = socket.socket()
    lsock.bind(('127.0.0.1', 0))
    lsock.listen(1024)
    dial = '127.0.0.1:%d' % lsock.getsockname()[1]
    watch = LogWatch(tp.log_path)
    watch.poll()
    lat = []
    try:
        for j in range(puts):
            i = N + j
            name = 't%05d' % i
            if kind == 'etcd':
                gw(url, '/v3/kv/put', {'key': b64(PREFIX + name),
                                       'value': b64(value(i, dial))})
            else:
                tmp = os.path.join(tp.tunnels_dir, '.tmp-%s' % name)
                with open(tmp, 'w') as f:
                    f.write(value(i, dial))
                os.rename(tmp, tp.tunnel_path(name))
            t_put = time.time()
            ts = wait_for(lambda: watch.poll().get(name), 30,
                          'agent of %s started' % name, interval=0.002,
                          fail_if=tp.proc.died)
            lat.append(max(0.0, ts - t_put) * 1000)
            if kind == 'etcd':
                gw(url, '/v3/kv/deleterange', {'key': b64(PREFIX + name)})
            else:
                os.unlink(tp.tunnel_path(name))
    finally:
        lsock.close()
    rss_after = procs.rss_kib(tp.pid)
    tp.stop(30)
    if etcd is not None:
        etcd.close()
    return {'load_s': load_s, 'rss_kib': rss, 'rss_after_kib': rss_after,
            'put_ms': lat}


def run(bench):
    puts = 200
    res = {}
    with bench.env('fleet') as ctx:
        for kind in ('etcd', 'files'):
            res[kind] = side(bench, ctx, kind, puts)
    e, f = res['etcd'], res['files']
    rows = []

    def pq(r, q):
        return percentile(r['put_ms'], q)
    rows.append(Row('fleet 10,000', 'initial load -> synced, s',
                    '%.3f' % e['load_s'], '%.3f (tunnels.d)' % f['load_s'],
                    '%.2fx' % (e['load_s'] / f['load_s']) if f['load_s']
                    else None,
                    note='etcd: range of %d keys in pages of 500 through '
                    'the JSON gateway, parse, sync; files: read and parse '
                    'of %d files, sync' % (N, N)))
    rows.append(Row('fleet 10,000', 'supervisor RSS KiB, loaded',
                    '{:,}'.format(e['rss_kib']),
                    '{:,} (tunnels.d)'.format(f['rss_kib']),
                    '%.2fx' % (e['rss_kib'] / f['rss_kib']),
                    note='after %d puts: etcd %s KiB, files %s KiB' % (
                        puts, '{:,}'.format(e['rss_after_kib']),
                        '{:,}'.format(f['rss_after_kib']))))
    rows.append(Row('fleet 10,000', 'put -> agent spawned p50 / p99, ms '
                    '(%d puts)' % puts, '%.1f / %.1f' % (pq(e, 50), pq(e, 99)),
                    '%.1f / %.1f (tunnels.d)' % (pq(f, 50), pq(f, 99)),
                    '%.3fx' % (pq(e, 50) / pq(f, 50)) if pq(f, 50) else None,
                    note='median etcd %.1f ms, files %.1f ms; files wait '
                    'for the 200 ms inotify debounce' % (
                        median(e['put_ms']), median(f['put_ms']))))
    return res, rows
