"""Discovery convergence: N proxies (each sshd in its own network namespace,
with the tunnelpool-discovery subsystem and a proxies file listing all N)
behind one haproxy (roundrobin, random); one tunnel with discovery: true
dialled at haproxy.  Wall time and dials (supervisor spawns) until all N
proxies are claimed, default settings (max_inflight_dials 3) against
max_inflight_dials 1, interleaved A B A B."""

import time

from harness import ports, yamlw
from harness.procs import wait_for

from .common import (Row, median, fmt_num, ratio, log_records, tpb_server,
                     loadavg)
from .scale import agent_phases

NAME = 'discovery'
CLUSTER = 'disc'
SETTINGS = [('default', None), ('inflight1', 1)]
AIM_HANDSHAKES_PER_PROXY = 2.0


def write_proxies_file(path, proxies):
    yamlw.dump({'cluster': CLUSTER,
                'proxies': [{'name': p.name, 'host_key': p.host_keys[0].public}
                            for p in proxies]}, path)


def claimed(st):
    for c in st.get('clusters', []):
        if c.get('name') == CLUSTER:
            return c.get('proxies_claimed', 0)
    return 0


def one_run(ctx, bench, proxies, hap, kh, node_key, echo_port, fwd, n,
            label, inflight, tag):
    tp = ctx.tunnelpool(node_key, kh, name='tp-%s' % tag, log_level='info',
                        resync_interval='5s', max_inflight_dials=inflight,
                        extra={'metrics_listen': ''})
    tp.add_tunnel(CLUSTER, CLUSTER, [hap.address()],
                  [('127.0.0.1:%d' % fwd, '127.0.0.1:%d' % echo_port)],
                  discovery=True)
    hap_mark = hap.log_mark()
    t0 = time.time()
    tp.start()
    limit = bench.pick(60, 120)
    st = None
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        st = tp.status_json(timeout=20)
        if claimed(st) >= n:
            break
        time.sleep(0.1)
    poll_s = time.time() - t0
    done = st is not None and claimed(st) >= n

    # the time each distinct proxy was first held (state connected for the
    # tunnel agent, discovered for discovery agents), from the supervisor;
    # a claim shows in status a moment before the agent's state line
    def held_times():
        held = {}
        for x in log_records(tp.log_text()):
            if x.get('prog') == 'tunnelpool' and \
                    x.get('func') == 'recv_state' and \
                    x.get('msg', '').startswith(('state connected',
                                                 'state discovered')):
                held.setdefault(x.get('proxy'), x['t'])
        return sorted(held.values())
    if done:
        try:
            wait_for(lambda: len(held_times()) >= n, 10, 'state lines')
        except Exception:
            pass
    times = held_times()
    recs = log_records(tp.log_text())
    t_start = recs[0]['t'] if recs else t0
    ready_t = sorted(x['t'] for x in recs if x.get('prog') == 'tunnelpool'
                     and x.get('msg', '').startswith('worker ready'))
    ready = sum(1 for x in recs if x.get('prog') == 'tunnelpool' and
                x.get('msg', '').startswith('worker ready'))
    refused = sum(1 for x in recs if x.get('prog') == 'tunnelpool' and
                  'claim of' in x.get('msg', '') and
                  'refused' in x.get('msg', ''))
    sup = st['supervisor'] if st else {}
    cl = [c for c in (st or {}).get('clusters', [])
          if c.get('name') == CLUSTER]
    r = {'n': n, 'setting': label, 'converged': done, 'poll_s': poll_s,
         'spawns': sup.get('spawns'), 'workers_ready': ready,
         'claims_refused': refused,
         'misses': cl[0].get('discovery_misses') if cl else None,
         'claimed': claimed(st) if st else 0,
         'lb_connections': sum(hap.server_counts(hap_mark).values()),
         'phases_ms': agent_phases(recs)}
    if len(times) >= n:
        r['all_claimed_s'] = times[n - 1] - t_start
    if times:
        r['first_claimed_s'] = times[0] - t_start
        # from the first proxy held (its discovery set follows at once)
        # to the next worker ready: how long the first discovery dial waits
        nxt = [t for t in ready_t if t > times[0]]
        if nxt:
            r['first_discovery_wait_ms'] = (nxt[0] - times[0]) * 1000
    hs = r['phases_ms'].get('ready->connected')
    if hs and r.get('all_claimed_s') is not None:
        r['handshake_ms'] = hs
        r['handshakes_per_proxy'] = r['all_claimed_s'] * 1000.0 / hs / n
    if r['spawns']:
        r['dials_per_proxy'] = r['spawns'] / float(n)
    if not done:
        text = tp.log_text()
        lines = [l for l in text.splitlines()
                 if 'level=debug' not in l][-40:]
        r['log_excerpt'] = '\n'.join(lines)
        bench.log('discovery %s n=%d %s: NOT converged (%d of %d claimed '
                  'after %.0fs)', hap.balance, n, label, r['claimed'], n,
                  limit)
    else:
        bench.log('discovery %s n=%d %s: %d claimed in %.2fs, %s dials, %s '
                  'refused', hap.balance, n, label, n,
                  r.get('all_claimed_s', poll_s), r['spawns'], refused)
    tp.stop(timeout=30)
    # sessions (and their discovery helpers) end before the next run
    for p in proxies:
        try:
            wait_for(lambda: not [x for x in p.all_pids() if x != p.pid],
                     30, 'sshd %s sessions to end' % p.name)
        except Exception as exc:
            bench.log('discovery: %s', exc)
    return r


def run(bench):
    ns = bench.pick([3, 5], [3, 5, 8])
    reps = bench.pick(2, 3)
    res = {'runs': [], 'load_before': loadavg()}
    for n in ns:
        for balance in ('roundrobin', 'random'):
            with bench.env('%s-%d-%s' % (NAME, n, balance)) as ctx:
                res['runs'] += one_setup(ctx, bench, n, balance, reps)
    res['load_after'] = loadavg()
    return res, rows_for(res)


def one_setup(ctx, bench, n, balance, reps):
    node_key = ctx.keygen('node_key')
    _echo, echo_port = tpb_server(ctx, bench, 'echo')
    disc = ctx.binary('tunnelpool-discovery')
    pfile = ctx.path('proxies.yaml')
    proxies = [ctx.sshd('p%d' % (i + 1), netns=True, start=False,
                        authorized_keys=[node_key], log_level='INFO',
                        discovery=(disc, pfile)) for i in range(n)]
    write_proxies_file(pfile, proxies)
    for p in proxies:
        p.start()
    hap = ctx.haproxy(proxies, balance=balance)
    kh_lines = []
    for p in proxies:
        kh_lines += p.known_hosts_pins(host='127.0.0.1', port=hap.port)
    kh = ctx.known_hosts('known_hosts', kh_lines)
    fwd = ports.free_port()
    runs = []
    for rep in range(reps):
        for label, inflight in SETTINGS:                # A B A B
            r = one_run(ctx, bench, proxies, hap, kh, node_key, echo_port,
                        fwd, n, label, inflight,
                        '%d-%s-%s-%d' % (n, balance, label, rep))
            r['balance'] = balance
            r['rep'] = rep
            runs.append(r)
    return runs


def rows_for(res):
    rows = []
    groups = {}
    for r in res['runs']:
        groups.setdefault((r['n'], r['balance'], r['setting']), []).append(r)
    for (n, balance, label), rs in groups.items():
        sec = 'discovery %d %s' % (n, balance)
        ok = [r for r in rs if r['converged']]
        name = 'max_inflight_dials %s' % ('3 (default)' if label ==
                                          'default' else '1')
        if len(ok) < len(rs):
            bad = [r for r in rs if not r['converged']][0]
            rows.append(Row(sec, name, 'NOT converged in %d of %d' % (
                len(rs) - len(ok), len(rs)), met=False,
                note='%d of %d claimed; log: %s' % (
                    bad['claimed'], n, (bad.get('log_excerpt') or '')
                    [-400:].replace('\n', ' | '))))
            if not ok:
                continue
        wall = median([r['all_claimed_s'] for r in ok
                       if r.get('all_claimed_s') is not None])
        dials = median([r['spawns'] for r in ok if r['spawns']])
        hs = median([r['handshake_ms'] for r in ok if r.get('handshake_ms')])
        hpp = median([r['handshakes_per_proxy'] for r in ok
                      if r.get('handshakes_per_proxy') is not None])
        refused = median([r['claims_refused'] for r in ok])
        misses = median([r['misses'] for r in ok if r['misses'] is not None])
        first = median([r['first_claimed_s'] for r in ok
                        if r.get('first_claimed_s') is not None])
        wait = median([r['first_discovery_wait_ms'] for r in ok
                       if r.get('first_discovery_wait_ms') is not None])
        rows.append(Row(sec, '%s: all claimed s / dials' % name,
                        '%s s / %s' % (fmt_num(wall), fmt_num(dials)),
                        aim='<= %.0f handshakes/proxy' %
                        AIM_HANDSHAKES_PER_PROXY,
                        met=hpp is not None and
                        hpp <= AIM_HANDSHAKES_PER_PROXY,
                        ratio='%s hs/proxy' % fmt_num(hpp),
                        note='median of %d; handshake %s ms (worker ready '
                        '-> proxy held); first proxy held at %s s, first '
                        'discovery worker ready %s ms later; %s dials/proxy; '
                        'misses %s, claims refused %s' % (
                            len(ok), fmt_num(hs), fmt_num(first),
                            fmt_num(wait), fmt_num(ratio(dials, n)),
                            fmt_num(misses), fmt_num(refused))))
    return rows
