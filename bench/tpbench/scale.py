"""Scale: N tunnels (one forward each, on distinct ports) to one sshd
(MaxStartups 2000:30:4000).  Time from supervisor start until all N are
connected with their forwards bound, the supervisor's CPU time, where the
CPU went (supervisor / workers / sshd), supervisor RSS and worker PSS at N,
and the supervisor's event-loop lag over a window with every worker sending
STATS each 2 s.  Default spawn limiter (spawn_rate 20/s, burst 10) against
one opened just enough for the 10 s aim at 1,000 (spawn_rate 100/s,
burst 20), interleaved.  (spawn_rate 1000, burst 1000 thrashes a 2-core
machine: the supervisor forks 1,000 workers in one loop iteration, ~5 s,
and 1,000 concurrent handshakes starve each other.)"""

import json
import os
import subprocess
import time

from harness import ports
from harness.procs import wait_for, alive

from .common import (Row, BenchError, cpu_ticks, mem_summary, median,
                     hist_percentile, fmt_num, tpb_server, log_records,
                     loadavg, CLK_TCK)

NAME = 'scale'
PORT_BASE = 20000            # below the ephemeral range (32768-60999)
AIM_1000_S = 10.0
AIM_LAG_P999_US = 5000
AIM_WORKER_PSS_KIB = 1024     # issue 15, with 100 workers
WORKER_SETTLE_S = 3.0
SETTINGS = {
    'default': {},
    'rate100': {'spawn_rate': 100, 'spawn_burst': 20},
}


def pick_ports(n):
    """n consecutive-ish ports from PORT_BASE that nothing listens on."""
    out, p = [], PORT_BASE
    while len(out) < n:
        if p >= 32768:
            raise BenchError('not enough free ports below 32768')
        if not ports.is_listening(p):
            out.append(p)
        p += 1
    return out


def agent_phases(recs):
    """Median per-agent milliseconds of each step, from the daemon's log:
    spawn (supervisor start or previous step) is not logged at info, so
    the phases start at 'worker ready' (exec'd and sandboxed)."""
    steps = [('ready', lambda x: x.get('prog') == 'tunnelpool' and
              x.get('msg', '').startswith('worker ready')),
             ('kex', lambda x: x.get('prog') == 'tunnelpool-agent' and
              x.get('msg', '').startswith('key exchange done')),
             ('auth', lambda x: x.get('prog') == 'tunnelpool-agent' and
              x.get('msg', '').startswith('authenticated')),
             ('connected', lambda x: x.get('prog') == 'tunnelpool' and
              x.get('func') == 'recv_state' and
              x.get('msg', '').startswith(('state connected',
                                           'state discovered')))]
    per = {}
    for x in recs:
        pid = x.get('pid')
        if not pid:
            continue
        for name, pred in steps:
            if pred(x):
                per.setdefault(pid, {}).setdefault(name, x['t'])
    out = {}
    names = [n for n, _ in steps]
    for a, b in zip(names, names[1:]):
        d = [(v[b] - v[a]) * 1000 for v in per.values() if a in v and b in v]
        out['%s->%s' % (a, b)] = median(d)
    d = [(v['connected'] - v['ready']) * 1000 for v in per.values()
         if 'ready' in v and 'connected' in v]
    out['ready->connected'] = median(d)
    out['agents'] = len(d)
    return out


class LogTail:
    """Reads a growing log incrementally; counts distinct clusters whose
    forward the supervisor saw bound (func=recv_forward): convergence is
    watched from the log, because polling `status --json` costs the
    supervisor a full JSON dump of every agent each time."""

    def __init__(self, path):
        self.path = path
        self.off = 0
        self.rest = b''
        self.bound = set()

    def poll(self):
        try:
            with open(self.path, 'rb') as f:
                f.seek(self.off)
                data = f.read()
        except OSError:
            return len(self.bound)
        self.off += len(data)
        data = self.rest + data
        lines = data.split(b'\n')
        self.rest = lines.pop()
        for line in lines:
            if b'func=recv_forward' in line and b'prog=tunnelpool ' in line:
                i = line.find(b' cluster=')
                if i >= 0:
                    self.bound.add(line[i + 9:].split(b' ', 1)[0])
        return len(self.bound)


def scrape(port, timeout=120):
    """GET /metrics: the loop lag histogram (le in µs, -1 = +Inf, cumulative
    counts) and its sum; also how long the scrape took."""
    import urllib.request
    t = time.monotonic()
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port,
                                timeout=timeout) as f:
        text = f.read().decode()
    took = time.monotonic() - t
    lag, total = {}, 0.0
    for line in text.splitlines():
        if line.startswith('tunnelpool_loop_lag_seconds_bucket{le="'):
            le = line.split('"')[1]
            n = int(float(line.split()[-1]))
            lag[-1 if le == '+Inf' else int(round(float(le) * 1e6))] = n
        elif line.startswith('tunnelpool_loop_lag_seconds_sum '):
            total = float(line.split()[-1])
    return {'lag': lag, 'lag_sum_s': total}, took


def timed_status(tp, timeout=180):
    t = time.monotonic()
    st = tp.status_json(timeout=timeout)
    return st, time.monotonic() - t


def raw_status_s(tp, timeout=60):
    """Seconds for one `status` request on the control socket itself, to
    the last byte of the answer: the supervisor's share of a status dump
    (the CLI adds its own start and parse)."""
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(tp.control_socket)
        t = time.monotonic()
        s.sendall(b'{"cmd":"status"}\n')
        buf = b''
        while not buf.endswith(b'\n'):
            d = s.recv(1 << 20)
            if not d:
                break
            buf += d
        return time.monotonic() - t
    finally:
        s.close()


def one_run(ctx, bench, proxy, kh, node_key, n, fwd_ports, target, label,
            extra):
    name = 'tp-%s-%d' % (label, n)
    mport = ports.free_port()
    cfg = {'metrics_listen': '127.0.0.1:%d' % mport,
           'timeouts': {'handshake': '60s', 'ready': '30s'}}
    cfg.update(extra)
    tp = ctx.tunnelpool(node_key, kh, name=name, log_level='info',
                        resync_interval='5s', extra=cfg)
    for i in range(n):
        tp.add_tunnel('s%04d' % i, 's%04d' % i, [proxy.address()],
                      [('127.0.0.1:%d' % fwd_ports[i], target)])
    sshd_cpu0 = sum(cpu_ticks(p) or 0 for p in proxy.all_pids())
    t0 = time.time()
    # Not tp.start()'s readiness check: during a spawn storm on a small
    # machine `status` may not answer within its 2 s for minutes.
    tp.start(wait_ready=False)
    wait_for(lambda: os.path.exists(tp.control_socket), 120,
             'control socket %s' % tp.control_socket, fail_if=tp.proc.died)
    rate = extra.get('spawn_rate', 20)
    limit = 60 + n / float(rate) + n * bench.pick(0.1, 0.1)
    tail = LogTail(tp.log_path)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and tp.alive():
        if tail.poll() >= n:
            break
        time.sleep(0.2)
    t_poll = time.time() - t0
    done = tail.poll() >= n
    # CPU right after convergence
    sup_cpu = (cpu_ticks(tp.pid) or 0) / float(CLK_TCK)
    workers = tp.worker_pids()
    workers_cpu = sum(cpu_ticks(p) or 0 for p in workers) / float(CLK_TCK)
    sshd_cpu = (sum(cpu_ticks(p) or 0 for p in proxy.all_pids()) -
                sshd_cpu0) / float(CLK_TCK)
    try:
        st, st_s = timed_status(tp)
    except Exception as exc:
        st, st_s = None, None
        bench.log('scale %s n=%d: status failed: %s', label, n, exc)
    recs = log_records(tp.log_text())
    t_start = recs[0]['t'] if recs else t0
    sup = [x for x in recs if x.get('prog') == 'tunnelpool']
    conn_t = sorted(x['t'] for x in sup if x.get('func') == 'recv_state' and
                    x.get('msg', '').startswith('state connected'))
    first_bound = {}
    for x in sup:
        if x.get('func') == 'recv_forward':
            first_bound.setdefault(x.get('cluster'), x['t'])
    fwd_t = sorted(first_bound.values())
    r = {'n': n, 'setting': label, 'config': extra, 'converged': done,
         'bound': len(fwd_t), 'poll_s': t_poll,
         'spawns': st['supervisor']['spawns'] if st else None,
         'status_s_at_convergence': st_s,
         'supervisor_cpu_s': sup_cpu, 'workers_cpu_s': workers_cpu,
         'sshd_cpu_s': sshd_cpu}
    if len(fwd_t) >= n:
        r['all_bound_s'] = fwd_t[n - 1] - t_start
    if fwd_t:
        r['half_bound_s'] = fwd_t[min(len(fwd_t), n // 2) - 1] - t_start
    if len(conn_t) >= 1:
        r['first_connected_s'] = conn_t[0] - t_start
    r['phases_ms'] = agent_phases(recs)
    if not done or st is None:
        r['last_status'] = {k: st['supervisor'][k] for k in (
            'workers', 'spawns')} if st else None
        r['log_tail'] = '\n'.join(l for l in tp.log_text().splitlines()
                                  if 'level=debug' not in l)[-3000:]
        bench.log('scale %s n=%d: NOT converged in %.0fs (%d of %d bound)',
                  label, n, limit, len(fwd_t), n)
        r['converged'] = False
        tp.stop(timeout=120)
        wait_sessions_gone(bench, proxy)
        return r
    bench.log('scale %s n=%d: all bound in %.2fs (poll %.1fs), supervisor '
              'cpu %.2fs, spawns %s', label, n, r.get('all_bound_s', -1),
              t_poll, sup_cpu, r['spawns'])
    # memory at N
    sv = mem_summary(tp.pid)
    r['supervisor_mem'] = sv
    r['supervisor_rss_status'] = st['supervisor'].get('rss_bytes')
    # Workers trim their memory 2 s after they are up and idle
    # (worker.c IDLE_TRIM_MS): measure them settled.
    time.sleep(WORKER_SETTLE_S)
    sample = workers[:200]
    pss = [mem_summary(p) for p in sample if alive(p)]
    r['worker_pss_kib_median'] = median([m['pss_kib'] for m in pss])
    r['worker_private_kib_median'] = median([m['private_kib'] for m in pss])
    r['worker_dirty_kib_median'] = median([m['dirty_kib'] for m in pss])
    sess = [p for p in proxy.all_pids() if p != proxy.pid]
    r['sshd_pss_kib_total'] = sum(mem_summary(p)['pss_kib'] for p in sess
                                  if alive(p))
    # status latency at N (a full JSON dump of every agent)
    r['status_s'] = median([timed_status(tp)[1] for _ in range(3)])
    r['status_raw_s'] = median([raw_status_s(tp) for _ in range(3)])
    # loop lag over a window
    # (read from /metrics: a status --json dump of N agents would itself
    # delay the timer sample right after it, inside the window)
    window = bench.pick(20, 60)
    m0, r['metrics_s'] = scrape(mport)
    s0 = tp.status_json(timeout=180)
    time.sleep(1.0)                 # the sample the status dump delays
    m0, _ = scrape(mport)
    probe = subprocess.Popen([bench.tools['tpb'], 'lag', str(window)],
                             stdout=subprocess.PIPE, text=True)
    time.sleep(window)
    m1, _ = scrape(mport)
    s1 = tp.status_json(timeout=180)
    pb = json.loads(probe.communicate(timeout=30)[0])
    pbk = [(b['le_us'], b['count']) for b in pb['buckets']]
    buckets = [(le, c - m0['lag'].get(le, 0))
               for le, c in sorted(m1['lag'].items(),
                                   key=lambda kv: (kv[0] < 0, kv[0]))]
    msgs = s1['supervisor']['messages'] - s0['supervisor']['messages']
    r['lag'] = {'window_s': window, 'samples': buckets[-1][1],
                'buckets': buckets,
                'p50_le_us': hist_percentile(buckets, 50),
                'p99_le_us': hist_percentile(buckets, 99),
                'p999_le_us': hist_percentile(buckets, 99.9),
                'sum_us': (m1['lag_sum_s'] - m0['lag_sum_s']) * 1e6,
                'messages_per_s': msgs / float(window),
                'probe': {'buckets': pbk, 'samples': pbk[-1][1],
                          'p50_le_us': hist_percentile(pbk, 50),
                          'p99_le_us': hist_percentile(pbk, 99),
                          'p999_le_us': hist_percentile(pbk, 99.9)}}
    r['steady_supervisor_cpu_pct'] = 100.0 * (
        (cpu_ticks(tp.pid) or 0) / float(CLK_TCK) - sup_cpu) / window
    bench.log('scale %s n=%d: loop lag p50 <=%s us p99 <=%s us p99.9 <=%s '
              'us, %.0f msg/s', label, n, r['lag']['p50_le_us'],
              r['lag']['p99_le_us'], r['lag']['p999_le_us'],
              r['lag']['messages_per_s'])
    t_stop = time.monotonic()
    tp.stop(timeout=120)
    wait_sessions_gone(bench, proxy)
    r['stop_s'] = time.monotonic() - t_stop
    return r


def wait_sessions_gone(bench, proxy):
    try:
        wait_for(lambda: not [p for p in proxy.all_pids()
                              if p != proxy.pid], 120,
                 'sshd sessions to end')
    except Exception as exc:
        bench.log('scale: %s', exc)


def run(bench):
    ns = bench.pick([100], [100, 1000])
    reps = bench.pick(1, 1)
    res = {'runs': [], 'load_before': loadavg()}
    with bench.env(NAME) as ctx:
        node_key = ctx.keygen('node_key')
        _echo, echo_port = tpb_server(ctx, bench, 'echo')
        target = '127.0.0.1:%d' % echo_port
        proxy = ctx.sshd('p1', authorized_keys=[node_key],
                         max_startups='2000:30:4000', max_sessions=100,
                         log_level='INFO')
        kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())
        for n in ns:
            fwd_ports = pick_ports(n)
            for rep in range(reps):
                for label, extra in SETTINGS.items():     # A B A B
                    r = one_run(ctx, bench, proxy, kh, node_key, n,
                                fwd_ports, target, label, extra)
                    r['rep'] = rep
                    res['runs'].append(r)
    res['load_after'] = loadavg()
    return res, rows_for(res)


def rows_for(res):
    rows = []
    for r in res['runs']:
        n, label = r['n'], r['setting']
        sec = 'scale %d (%s)' % (n, 'spawn_rate 20' if label == 'default'
                                 else 'spawn_rate 100')
        if not r['converged']:
            rows.append(Row(sec, 'start -> all %d forwards bound, s' % n,
                            'NOT converged: %d bound after %ss' % (
                                r['bound'], fmt_num(r['poll_s'])),
                            met=False if n >= 1000 else None,
                            note='CPU s supervisor / workers / sshd: %s / %s '
                            '/ %s; log: %s' % (
                                fmt_num(r['supervisor_cpu_s']),
                                fmt_num(r['workers_cpu_s']),
                                fmt_num(r['sshd_cpu_s']),
                                (r.get('log_tail') or '')[-300:].replace(
                                    '\n', ' | '))))
            continue
        t = r.get('all_bound_s')
        aim = met = None
        if n == 1000:
            aim, met = '<= %.0f s' % AIM_1000_S, t is not None and \
                t <= AIM_1000_S
        rows.append(Row(sec, 'start -> all %d forwards bound, s' % n,
                        fmt_num(t), aim=aim, met=met,
                        note='first connected %ss, half %ss; spawns %s; '
                        'status --json at N takes %ss (control socket '
                        'alone %ss), GET /metrics %ss' % (
                            fmt_num(r.get('first_connected_s')),
                            fmt_num(r.get('half_bound_s')), r['spawns'],
                            fmt_num(r.get('status_s')),
                            fmt_num(r.get('status_raw_s')),
                            fmt_num(r.get('metrics_s')))))
        ph = r.get('phases_ms') or {}
        rows.append(Row(sec, 'CPU s until then: supervisor / workers / '
                        'sshd', '%s / %s / %s' % (
                            fmt_num(r['supervisor_cpu_s']),
                            fmt_num(r['workers_cpu_s']),
                            fmt_num(r['sshd_cpu_s'])),
                        note='per agent median ms: ready->kex %s, kex->auth '
                        '%s, auth->connected %s' % (
                            fmt_num(ph.get('ready->kex')),
                            fmt_num(ph.get('kex->auth')),
                            fmt_num(ph.get('auth->connected')))))
        aim = met = None
        if n == 100:
            aim = '<= %d KiB' % AIM_WORKER_PSS_KIB
            met = r['worker_pss_kib_median'] is not None and \
                r['worker_pss_kib_median'] <= AIM_WORKER_PSS_KIB
        rows.append(Row(sec, 'worker PSS KiB at %d agents, idle (median)' % n,
                        fmt_num(r['worker_pss_kib_median']), aim=aim, met=met,
                        note='private %s KiB, private dirty %s KiB (median '
                        'of %d)' % (fmt_num(r['worker_private_kib_median']),
                                    fmt_num(r.get('worker_dirty_kib_median')),
                                    min(n, 200))))
        sv = r['supervisor_mem']
        rows.append(Row(sec, 'supervisor RSS KiB at %d agents' % n,
                        fmt_num(sv['rss_kib']),
                        note='PSS %s KiB; worker PSS median %s KiB '
                        '(private %s KiB)' % (
                            fmt_num(sv['pss_kib']),
                            fmt_num(r['worker_pss_kib_median']),
                            fmt_num(r['worker_private_kib_median']))))
        lag = r['lag']
        aim = met = None
        if n >= 1000:
            aim = 'p99.9 <= %d us' % AIM_LAG_P999_US
            met = lag['p999_le_us'] is not None and \
                0 <= lag['p999_le_us'] <= AIM_LAG_P999_US
        pr = lag['probe']
        rows.append(Row(sec, 'loop lag p50/p99/p99.9 (bucket <=), us',
                        '%s / %s / %s' % (
                            fmt_num(lag['p50_le_us']),
                            fmt_num(lag['p99_le_us']),
                            fmt_num(lag['p999_le_us'])),
                        '%s / %s / %s (idle timer probe)' % (
                            fmt_num(pr['p50_le_us']),
                            fmt_num(pr['p99_le_us']),
                            fmt_num(pr['p999_le_us'])), aim=aim, met=met,
                        note='%d samples over %ds, %.0f msg/s, supervisor '
                        'CPU %.1f%%' % (lag['samples'], lag['window_s'],
                                        lag['messages_per_s'],
                                        r['steady_supervisor_cpu_pct'])))
    return rows
