"""Memory: private dirty and PSS (/proc/PID/smaps_rollup) of one idle
worker against one idle `ssh -N -R`, both freshly connected and again after
each carried traffic; the supervisor with one agent.  (Worker PSS with 100
agents, supervisor RSS with 100 and 1,000: the scale benchmark.)

Pages of a file written moments ago count as dirty in smaps until they
are written back, so a freshly built worker binary looked like 360 KiB
of private dirty memory: the run syncs first."""

import os
import re
import time

from harness import ports

from .common import (Row, mem_summary, smaps_breakdown, ratio, fmt_num, fmt_ratio, MIB,
                     tpb_server, run_tool, loadavg)

NAME = 'memory'
AIM_DIRTY_KIB = 768          # issue 15: idle worker private dirty
SETTLE_S = 3.0               # the worker trims 2 s after it went idle


def run(bench):
    res = {'load_before': loadavg()}
    os.sync()
    with bench.env(NAME) as ctx:
        node_key = ctx.keygen('node_key')
        _sink, sink_port = tpb_server(ctx, bench, 'sink')
        proxy = ctx.sshd('p1', authorized_keys=[node_key])
        kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())
        f_tp, f_ssh = ports.free_ports(2)
        tp = ctx.tunnelpool(node_key, kh, name='tp', log_level='info',
                            resync_interval='5s',
                            extra={'metrics_listen': ''})
        tp.add_tunnel('bench', 'bench', [proxy.address()],
                      [('127.0.0.1:%d' % f_tp, '127.0.0.1:%d' % sink_port)])
        tp.start()
        worker = tp.wait_connected()['pid']
        proxy.wait_forward(f_tp)
        ssh = ctx.ssh_forward('ssh', proxy, node_key, kh,
                              [(f_ssh, '127.0.0.1', sink_port)])
        ssh.wait_established()
        proxy.wait_forward(f_ssh)
        time.sleep(SETTLE_S)
        res['idle'] = {'worker': mem_summary(worker),
                       'ssh': mem_summary(ssh.pid),
                       'supervisor': mem_summary(tp.pid)}
        res['idle_breakdown'] = {'worker': smaps_breakdown(worker),
                                 'ssh': smaps_breakdown(ssh.pid)}
        # after traffic: 64 MiB through each, then idle again
        for port in (f_tp, f_ssh):
            run_tool([bench.tools['tpb'], 'blast', '127.0.0.1', port,
                      64 * MIB, 1])
        time.sleep(SETTLE_S)
        res['after_traffic'] = {'worker': mem_summary(worker),
                                'ssh': mem_summary(ssh.pid),
                                'supervisor': mem_summary(tp.pid)}
        ssh.stop()
        tp.stop()
    res['load_after'] = loadavg()
    rows = []
    for phase, label in (('idle', 'idle, fresh'),
                         ('after_traffic', 'idle after 64 MiB')):
        w, s = res[phase]['worker'], res[phase]['ssh']
        rows.append(Row('memory', 'private dirty KiB, %s' % label,
                        fmt_num(w['dirty_kib']),
                        '%s (ssh -N -R)' % fmt_num(s['dirty_kib']),
                        fmt_ratio(ratio(w['dirty_kib'], s['dirty_kib'])),
                        '<= %d KiB' % AIM_DIRTY_KIB,
                        w['dirty_kib'] <= AIM_DIRTY_KIB,
                        note='PSS %s vs %s KiB (one of each: the 100-worker '
                        'PSS is in scale 100), private %s vs %s KiB, RSS %s '
                        'vs %s KiB' % (
                            fmt_num(w['pss_kib']), fmt_num(s['pss_kib']),
                            fmt_num(w['private_kib']),
                            fmt_num(s['private_kib']),
                            fmt_num(w['rss_kib']), fmt_num(s['rss_kib']))))
    top = lambda who, k, f: ' '.join(
        '%s %d' % (re.sub(r'\.so(\.[0-9]+)*$', '', m['name']).strip('[]'),
                   m[f])
        for m in res['idle_breakdown'][who][:k] if m[f])
    rows.append(Row('memory', 'private dirty KiB by mapping, idle',
                    top('worker', 3, 'dirty_kib'),
                    top('ssh', 3, 'dirty_kib') + ' (ssh)',
                    note='private dirty, worker: %s; ssh: %s. private '
                    '(dirty + clean), worker: %s' % (
                        top('worker', 8, 'dirty_kib'),
                        top('ssh', 8, 'dirty_kib'),
                        top('worker', 8, 'private_kib'))))
    sv = res['idle']['supervisor']
    rows.append(Row('memory', 'supervisor RSS KiB, 1 agent',
                    fmt_num(sv['rss_kib']),
                    note='PSS %s KiB, private %s KiB' % (
                        fmt_num(sv['pss_kib']), fmt_num(sv['private_kib']))))
    return res, rows
