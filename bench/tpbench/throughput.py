"""Throughput: bulk data through one forwarded channel and through 8 at
once, tunnelpool's worker against OpenSSH `ssh -N -R`, same sshd, same
cipher, same sink; interleaved A B A B.  Also the crypto ceiling (openssl
speed, one core) and CPU seconds per GiB of every process on the path, and
a syscall profile (strace -c) of the worker and of ssh."""

import os
import re
import signal
import subprocess
import time

from harness import ports
from harness.procs import descendants

from .common import (Row, CpuMeter, BenchError, GIB, MIB, median, ratio,
                     fmt_num, fmt_ratio, tpb_server, run_tool, loadavg)

NAME = 'throughput'
CIPHERS = [('aes128-gcm@openssh.com', 'aes128-gcm', 'aes-128-gcm'),
           ('chacha20-poly1305@openssh.com', 'chacha20', 'chacha20-poly1305')]
AIM_RATIO = 1.2


def openssl_speed(evp):
    """Bytes/s of `openssl speed -evp EVP -seconds 1 -bytes 16384` (one
    core, 16 KiB blocks: the size of a full SSH packet's payload)."""
    out = run_tool(['openssl', 'speed', '-evp', evp, '-seconds', '1',
                    '-bytes', '16384', '-mr'], timeout=60)
    m = re.search(r'^\+F:\d+:[^:]+:([0-9.]+)', out, re.M)
    if not m:
        raise BenchError('openssl speed output not understood: %s' % out[-300:])
    return float(m.group(1))


def blast(bench, port, nbytes, nconn):
    out = run_tool([bench.tools['tpb'], 'blast', '127.0.0.1', port, nbytes,
                    nconn], timeout=600)
    import json
    r = json.loads(out.strip().splitlines()[-1])
    if not r.get('ok'):
        raise BenchError('short transfer: %r' % r)
    return r['seconds']


def strace_profile(ctx, bench, pid, port, nbytes, label):
    """strace -c -f of one process while nbytes cross one channel: total
    syscalls, per MiB, and the top calls."""
    out_path = ctx.path('strace-%s.txt' % label)
    p = ctx.spawn('strace-%s' % label, ['strace', '-c', '-f', '-S', 'calls',
                                        '-o', out_path, '-p', str(pid)])
    time.sleep(0.5)                  # attached (strace prints nothing)
    secs = blast(bench, port, nbytes, 1)
    p.signal(signal.SIGINT)
    p.wait(20)
    text = open(out_path).read()
    calls = {}
    total = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit():
            try:
                n = int(parts[3])
            except ValueError:
                continue
            name = parts[-1]
            if name == 'total':
                total = n
            else:
                calls[name] = n
    if total is None:
        total = sum(calls.values())
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:8]
    return {'bytes': nbytes, 'seconds_under_strace': secs,
            'syscalls': total, 'syscalls_per_mib': total / (nbytes / MIB),
            'top': top, 'raw': text}


def run(bench):
    size = bench.pick(256 * MIB, GIB)
    reps = bench.pick(3, 5)
    strace_bytes = bench.pick(32 * MIB, 128 * MIB)
    res = {'bytes_per_run': size, 'reps': reps, 'ceiling': {},
           'ciphers': {}, 'load_before': loadavg()}
    rows = []
    for cipher, short, evp in CIPHERS:
        try:
            res['ceiling'][short] = openssl_speed(evp)
        except (BenchError, OSError, subprocess.SubprocessError) as exc:
            res['ceiling'][short] = None
            bench.log('openssl speed %s: %s', evp, exc)

    with bench.env(NAME) as ctx:
        node_key = ctx.keygen('node_key')
        _sink, sink_port = tpb_server(ctx, bench, 'sink')
        proxy = ctx.sshd('p1', authorized_keys=[node_key])
        kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())
        for cipher, short, evp in CIPHERS:
            bench.log('throughput %s: setting up', short)
            r = one_cipher(ctx, bench, proxy, node_key, kh, sink_port,
                           cipher, short, size, reps,
                           strace_bytes if short == 'aes128-gcm' else 0)
            res['ciphers'][short] = r
            rows += cipher_rows(short, r, res['ceiling'].get(short))
    res['load_after'] = loadavg()
    return res, rows


def one_cipher(ctx, bench, proxy, node_key, kh, sink_port, cipher, short,
               size, reps, strace_bytes):
    f_tp, f_ssh = ports.free_ports(2)
    target = '127.0.0.1:%d' % sink_port
    tp = ctx.tunnelpool(node_key, kh, name='tp-%s' % short, log_level='info',
                        resync_interval='5s',
                        extra={'ssh': {'ciphers': cipher},
                               'metrics_listen': ''})
    tp.add_tunnel('bench', 'bench', [proxy.address()],
                  [('127.0.0.1:%d' % f_tp, target)])
    tp.start()
    st = tp.wait_state(lambda s: [a for a in s['agents']
                                  if a['state'] == 'connected'], 30,
                       'tunnelpool connected')
    worker = [a for a in st['agents'] if a['state'] == 'connected'][0]['pid']
    proxy.wait_forward(f_tp)
    ssh = ctx.ssh_forward('ssh-%s' % short, proxy, node_key, kh,
                          [(f_ssh, '127.0.0.1', sink_port)],
                          options=['Ciphers=%s' % cipher])
    ssh.wait_established()
    proxy.wait_forward(f_ssh)

    # Both sides use the cipher asked for (sshd at DEBUG1 logs each kex).
    used = re.findall(r'kex: client->server cipher: (\S+)', proxy.log_text())
    if len(used) < 2 or any(u != cipher for u in used[-2:]):
        raise BenchError('cipher check: sshd saw %r, want %s' % (used[-2:],
                                                                   cipher))

    sides = {
        'tunnelpool': {'port': f_tp},
        'ssh': {'port': f_ssh},
    }
    groups = {
        'worker': lambda: [worker],
        'supervisor': lambda: [tp.pid],
        'ssh': lambda: [ssh.pid],
        'sshd': proxy.all_pids,
    }
    for side in sides.values():                       # warm up both
        blast(bench, side['port'], 16 * MIB, 1)
    out = {'cipher': cipher, 'worker_pid': worker, 'ssh_pid': ssh.pid}
    for nconn in (1, 8):
        runs = {name: [] for name in sides}
        for rep in range(reps):
            for name, side in sides.items():          # A B A B ...
                meter = CpuMeter(groups)
                meter.start()
                secs = blast(bench, side['port'], size, nconn)
                cpu = meter.stop()
                runs[name].append({'seconds': secs,
                                   'mb_s': size / secs / 1e6, 'cpu': cpu})
            bench.log('throughput %s x%d rep %d: tunnelpool %.0f MB/s, '
                      'ssh %.0f MB/s', short, nconn, rep + 1,
                      runs['tunnelpool'][-1]['mb_s'],
                      runs['ssh'][-1]['mb_s'])
        summary = {}
        for name, rs in runs.items():
            cpu_per_gib = {}
            for g in groups:
                cpu_per_gib[g] = median([x['cpu'][g] / (size / GIB)
                                         for x in rs])
            summary[name] = {'mb_s_median': median([x['mb_s'] for x in rs]),
                             'mb_s_all': [x['mb_s'] for x in rs],
                             'cpu_s_per_gib': cpu_per_gib, 'runs': rs}
        summary['ratio'] = ratio(summary['tunnelpool']['mb_s_median'],
                                 summary['ssh']['mb_s_median'])
        out['x%d' % nconn] = summary

    if strace_bytes:
        bench.log('throughput %s: strace -c of worker and ssh', short)
        try:
            out['strace'] = {
                'worker': strace_profile(ctx, bench, worker, f_tp,
                                         strace_bytes, 'worker'),
                'ssh': strace_profile(ctx, bench, ssh.pid, f_ssh,
                                      strace_bytes, 'ssh'),
            }
        except Exception as exc:          # a profile is a bonus
            out['strace_error'] = str(exc)
            bench.log('strace: %s', exc)
    ssh.stop()
    tp.stop()
    return out


def cipher_rows(short, r, ceiling):
    rows = []
    sec = 'throughput %s' % short
    for n in (1, 8):
        s = r['x%d' % n]
        tpv, sshv = s['tunnelpool']['mb_s_median'], s['ssh']['mb_s_median']
        rt = s['ratio']
        rows.append(Row(sec, '%d channel%s, MB/s (median)' % (
            n, 's' if n > 1 else ''), fmt_num(tpv), '%s (ssh -R)' %
            fmt_num(sshv), fmt_ratio(rt), '>= %.1fx' % AIM_RATIO,
            rt is not None and rt >= AIM_RATIO))
        tc, sc = s['tunnelpool']['cpu_s_per_gib'], s['ssh']['cpu_s_per_gib']
        rows.append(Row(sec, '%dch CPU s/GiB: client / sshd' % n,
                        '%s / %s' % (fmt_num(tc['worker']),
                                     fmt_num(tc['sshd'])),
                        '%s / %s' % (fmt_num(sc['ssh']), fmt_num(sc['sshd'])),
                        fmt_ratio(ratio(tc['worker'], sc['ssh'])),
                        note='supervisor %s s/GiB' % fmt_num(
                            tc['supervisor'])))
    if ceiling:
        rows.append(Row(sec, 'openssl speed (1 core, 16 KiB), MB/s',
                        fmt_num(ceiling / 1e6), note='crypto ceiling'))
    st = r.get('strace')
    if st:
        w, s = st['worker'], st['ssh']
        rows.append(Row(sec, 'syscalls per MiB (strace -c, 1ch)',
                        fmt_num(w['syscalls_per_mib']),
                        '%s (ssh)' % fmt_num(s['syscalls_per_mib']),
                        fmt_ratio(ratio(w['syscalls_per_mib'],
                                        s['syscalls_per_mib'])),
                        note='worker top: ' + ', '.join(
                            '%s %d' % kv for kv in w['top'][:4])))
    return rows
