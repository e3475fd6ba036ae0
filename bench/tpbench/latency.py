"""Latency: small request/response round trips (64 bytes, TCP_NODELAY, one
connection per round) through the tunnel, against `ssh -N -R` and against a
direct loopback connection to the same echo; rounds interleaved A B C A B C.
"""

from harness import ports

from .common import (Row, percentile, median, ratio, fmt_num, fmt_ratio,
                     tpb_server, run_tool, loadavg)

NAME = 'latency'
CIPHER = 'aes128-gcm@openssh.com'
SIZE = 64


def ping(bench, port, count):
    out = run_tool([bench.tools['tpb'], 'ping', '127.0.0.1', port, count,
                    SIZE, 50], timeout=600)
    return [int(x) / 1000.0 for x in out.split()]        # µs


def run(bench):
    total = bench.pick(2000, 10000)
    rounds = bench.pick(4, 10)
    per = total // rounds
    res = {'round_trips': total, 'rounds': rounds, 'size': SIZE,
           'cipher': CIPHER, 'load_before': loadavg()}
    with bench.env(NAME) as ctx:
        node_key = ctx.keygen('node_key')
        _echo, echo_port = tpb_server(ctx, bench, 'echo')
        proxy = ctx.sshd('p1', authorized_keys=[node_key])
        kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())
        f_tp, f_ssh = ports.free_ports(2)
        tp = ctx.tunnelpool(node_key, kh, name='tp', log_level='info',
                            resync_interval='5s',
                            extra={'ssh': {'ciphers': CIPHER},
                                   'metrics_listen': ''})
        tp.add_tunnel('bench', 'bench', [proxy.address()],
                      [('127.0.0.1:%d' % f_tp, '127.0.0.1:%d' % echo_port)])
        tp.start()
        tp.wait_state(lambda s: [a for a in s['agents']
                                 if a['state'] == 'connected'], 30,
                      'tunnelpool connected')
        proxy.wait_forward(f_tp)
        ssh = ctx.ssh_forward('ssh', proxy, node_key, kh,
                              [(f_ssh, '127.0.0.1', echo_port)],
                              options=['Ciphers=%s' % CIPHER])
        ssh.wait_established()
        proxy.wait_forward(f_ssh)
        sides = {'tunnelpool': f_tp, 'ssh': f_ssh, 'direct': echo_port}
        samples = {k: [] for k in sides}
        round_p50 = {k: [] for k in sides}
        for r in range(rounds):
            for name, port in sides.items():          # A B C A B C ...
                s = ping(bench, port, per)
                samples[name] += s
                round_p50[name].append(percentile(s, 50))
            bench.log('latency round %d/%d: p50 tunnelpool %.0f us, ssh '
                      '%.0f us, direct %.0f us', r + 1, rounds,
                      round_p50['tunnelpool'][-1], round_p50['ssh'][-1],
                      round_p50['direct'][-1])
        ssh.stop()
        tp.stop()
    for name, s in samples.items():
        res[name] = {'n': len(s), 'p50_us': percentile(s, 50),
                     'p99_us': percentile(s, 99),
                     'p999_us': percentile(s, 99.9),
                     'max_us': max(s), 'round_p50_us': round_p50[name],
                     'median_of_round_p50_us': median(round_p50[name])}
    res['load_after'] = loadavg()
    t, s, d = res['tunnelpool'], res['ssh'], res['direct']
    rows = []
    for q, label in (('p50_us', 'p50'), ('p99_us', 'p99'),
                     ('p999_us', 'p99.9')):
        rows.append(Row('latency', '%s round trip, us (%d x %dB)' % (
            label, t['n'], SIZE), fmt_num(t[q]), '%s (ssh -R)' %
            fmt_num(s[q]), fmt_ratio(ratio(t[q], s[q])),
            note='direct loopback %s us' % fmt_num(d[q])
            if q == 'p50_us' else ''))
    rows.append(Row('latency', 'direct loopback p50 / p99 / p99.9, us',
                    '%s / %s / %s' % (fmt_num(d['p50_us']),
                                      fmt_num(d['p99_us']),
                                      fmt_num(d['p999_us']))))
    return res, rows
