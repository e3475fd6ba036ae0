"""Throughput: bulk data through one forwarded channel and through 8 at
once, tunnelpool's worker against OpenSSH `ssh -N -R`, same sshd, same
cipher, same sink; interleaved A B A B.  Per cipher and channel count: MB/s
of both and the ratio, client CPU s/GiB (worker vs ssh), sshd CPU s/GiB
under each client, syscalls per MiB (perf) of the worker and of ssh, and
the sshd-bound ceiling: 1 / sshd's CPU share (of one core) under ssh -R,
the most any client can gain over ssh while sshd, single-threaded per
connection, is what runs out.  That is the proxy -> node direction (a
client of the proxy sends, the node's target reads); the other one
(upstream: the node's target sends, as a web server behind the tunnel
does) is measured too, 1 and 8 channels, MB/s and both CPUs.  Also the
crypto ceiling (openssl speed, one core) and a CPU profile (perf) of the
worker and of ssh.

Placement: a client's CPU per GiB depends on where the scheduler puts the
local reader (the sink): +30-50% for either client when the sink reads on
another core (measured; the likely cause, not proven, is that the pages
its write(2) fills were last touched on the reader's core).  The
scheduler picks per process and keeps its pick, so an unpinned comparison
mixes the two.  One more pass pins sshd and the source to the last CPU,
the client to the first, and the sink to the client's core and then to
sshd's, interleaved: CPU s/GiB and MB/s of each client in each
placement.

Remote proxy: on loopback the receiver's TCP input runs inside the
sender's send call, so part of the client's receive work is charged to
sshd.  The last pass repeats the four transfer passes (both directions, 1
and 8 channels) against an sshd in its own namespace behind a veth pair
with threaded NAPI, where each side's receive path runs in a kernel
thread, as on two hosts."""

import json
import os
import re
import shutil
import subprocess

from harness import ports
from harness.netns import IP

from . import perfprof
from .common import (Row, CpuMeter, BenchError, GIB, MIB, median, ratio,
                     fmt_num, fmt_ratio, tpb_server, run_tool, loadavg,
                     io_syscalls)

NAME = 'throughput'
CIPHERS = [('aes128-gcm@openssh.com', 'aes128-gcm', 'aes-128-gcm'),
           ('chacha20-poly1305@openssh.com', 'chacha20', 'chacha20-poly1305')]
AIM_RATIO = 1.0          # issue 15 (stretch 1.1)
AIM_CPU_RATIO = 1.0      # worker CPU/GiB <= ssh's; sshd's under us <= under ssh
AIM_SYSCALL_RATIO = 2.0  # worker syscalls/MiB <= 2 x ssh's


def openssl_speed(evp):
    """Bytes/s of `openssl speed -evp EVP -seconds 1 -bytes 16384` (one
    core, 16 KiB blocks: the size of a full SSH packet's payload)."""
    out = run_tool(['openssl', 'speed', '-evp', evp, '-seconds', '1',
                    '-bytes', '16384', '-mr'], timeout=60)
    m = re.search(r'^\+F:\d+:[^:]+:([0-9.]+)', out, re.M)
    if not m:
        raise BenchError('openssl speed output not understood: %s' % out[-300:])
    return float(m.group(1))


def transfer(bench, verb, port, nbytes, nconn, cpu=None, wrap=None):
    """`tpb blast` (to the node's sink) or `tpb pull` (from its source) of
    nbytes over nconn connections; with cpu, tpb runs on it; with wrap (a
    Netns), inside that namespace, where its proxy listens.  Seconds."""
    pin_src = ['taskset', '-c', str(cpu)] if cpu is not None else []
    argv = pin_src + [bench.tools['tpb'], verb, '127.0.0.1', port, nbytes,
                      nconn]
    out = run_tool(wrap.wrap(argv) if wrap else argv, timeout=600)
    r = json.loads(out.strip().splitlines()[-1])
    if not r.get('ok'):
        raise BenchError('short transfer: %r' % r)
    return r['seconds']


def blast(bench, port, nbytes, nconn, cpu=None, wrap=None):
    """nbytes to the node's sink over nconn connections (downstream)."""
    return transfer(bench, 'blast', port, nbytes, nconn, cpu, wrap)


# The passes: key, tpb verb, the side's port for it, channels.
PASSES = (('x1', 'blast', 'port', 1), ('x8', 'blast', 'port', 8),
          ('up1', 'pull', 'up_port', 1), ('up8', 'pull', 'up_port', 8))


def profile(ctx, bench, short, sides, pids, nbytes, cpu_too):
    """Transfers of nbytes per side under perf: syscalls per MiB by name,
    per process, for each of the PASSES (both directions, 1 and 8
    channels); with cpu_too also a CPU profile of the 1-channel downstream
    transfer (see perfprof for why not strace)."""
    out = {}
    for name, side in sides.items():
        o = {}
        for key, verb, port, nconn in PASSES:
            counts, _ = perfprof.syscalls(
                ctx, 'sys-%s-%s-%s' % (short, name, key),
                lambda: transfer(bench, verb, side[port], nbytes, nconn),
                pids[name])
            for label, c in counts.items():
                total = sum(c.values())
                o.setdefault(label, {})[key] = {
                    'syscalls': total, 'per_mib': total / (nbytes / MIB),
                    'top': c.most_common(10)}
        if cpu_too:
            prof, _ = perfprof.cpu(
                ctx, 'cpu-%s-%s' % (short, name),
                lambda: blast(bench, side['port'], nbytes, 1), pids[name])
            for label in o:
                o[label]['cpu'] = prof.get(label)
        out[name] = o
    return out


def run(bench):
    size = bench.pick(256 * MIB, GIB)
    reps = bench.pick(3, 5)
    prof_bytes = bench.pick(64 * MIB, 256 * MIB)
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
        sink, sink_port = tpb_server(ctx, bench, 'sink')
        _source, source_port = tpb_server(ctx, bench, 'source')
        proxy = ctx.sshd('p1', authorized_keys=[node_key])
        kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())
        remote = remote_proxy(ctx, bench, node_key)
        for cipher, short, evp in CIPHERS:
            bench.log('throughput %s: setting up', short)
            # quick mode samples CPU for one cipher only (perf -a is slow)
            cpu_too = not bench.quick or short == 'aes128-gcm'
            r = one_cipher(ctx, bench, proxy, node_key, kh, sink, sink_port,
                           source_port, cipher, short, size, reps,
                           prof_bytes, cpu_too)
            if remote:
                bench.log('throughput %s: remote-proxy pass', short)
                try:
                    r['remote'] = remote_passes(ctx, bench, remote, node_key,
                                                sink_port, source_port,
                                                cipher, short, size, reps)
                except Exception as exc:    # reported, the rest goes on
                    r['remote_error'] = str(exc)
                    bench.log('remote-proxy pass: %s', exc)
            res['ciphers'][short] = r
            rows += cipher_rows(short, r, res['ceiling'].get(short))
    res['load_after'] = loadavg()
    return res, rows


def pin(pid, cpus):
    """Every thread of pid onto cpus (a set); a thread gone is skipped."""
    try:
        tids = [int(t) for t in os.listdir('/proc/%d/task' % pid)]
    except OSError:
        return
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass


def placement(bench, sides, groups, sink, proxy, size, reps):
    """One channel, sshd and the source on the last CPU (a remote proxy's
    side), the client on the first, the sink on the client's core ('same')
    or on sshd's ('other'); A B A B.  Every affinity is given back
    afterwards."""
    allc = os.sched_getaffinity(0)
    lo, hi = min(allc), max(allc)
    group = {'tunnelpool': 'worker', 'ssh': 'ssh'}     # side -> its client
    clients = [pid for g in group.values() for pid in groups[g]()]
    runs = {(n, w): [] for n in sides for w in ('same', 'other')}
    try:
        for pid in proxy.all_pids():
            pin(pid, {hi})
        for pid in clients:
            pin(pid, {lo})
        for _rep in range(reps):
            for where in ('same', 'other'):
                pin(sink.pid, {lo if where == 'same' else hi})
                for name, side in sides.items():
                    meter = CpuMeter(groups)
                    meter.start()
                    secs = blast(bench, side['port'], size, 1, cpu=hi)
                    cpu = meter.stop()
                    runs[(name, where)].append(
                        {'mb_s': size / secs / 1e6,
                         'cpu_s_per_gib': cpu[group[name]] / (size / GIB)})
    finally:
        for pid in [sink.pid] + proxy.all_pids() + clients:
            pin(pid, allc)
    out = {}
    for (name, where), rs in runs.items():
        out.setdefault(where, {})[name] = {
            'mb_s_median': median([x['mb_s'] for x in rs]),
            'cpu_s_per_gib_median': median([x['cpu_s_per_gib'] for x in rs]),
            'runs': rs}
    return out


# The proxy as a host of its own (module docstring; bench/README Findings,
# "sshd CPU per GiB", has the measurements behind it).
def remote_proxy(ctx, bench, node_key):
    """An sshd in its own network namespace behind a veth pair (GRO on, TSO
    off so TCP takes the NAPI path, NAPI threaded, MTU near loopback's), its
    known_hosts, and the pids of the two NAPI threads (as a CpuMeter group).  None
    (logged) where ethtool or the kernel cannot do it."""
    if not shutil.which('ethtool'):
        bench.log('remote-proxy pass skipped: no ethtool')
        return None
    ns = ctx.netns()
    tag = ns.name.rsplit('-', 1)[-1][:8]
    host_dev, ns_dev = 'tv%sh' % tag, 'tv%sp' % tag
    net = '10.201.%d' % int(tag[:2], 16)
    host_ip, ns_ip = net + '.1', net + '.2'
    try:
        run_tool([IP, 'link', 'add', host_dev, 'type', 'veth', 'peer',
                  'name', ns_dev, 'netns', ns.name])
        run_tool([IP, 'addr', 'add', host_ip + '/30', 'dev', host_dev])
        run_tool(ns.wrap([IP, 'addr', 'add', ns_ip + '/30', 'dev',
                          ns_dev]))
        for wrap, dev in ((list, host_dev), (ns.wrap, ns_dev)):
            run_tool(wrap([IP, 'link', 'set', dev, 'mtu', '65520', 'up']))
            run_tool(wrap(['ethtool', '-K', dev, 'gro', 'on', 'tso', 'off']))
            run_tool(wrap(['sh', '-c', 'echo 1 > /sys/class/net/%s/threaded'
                           % dev]))
    except (BenchError, OSError) as exc:
        bench.log('remote-proxy pass skipped: %s', exc)
        return None

    # The two NAPI threads live as long as the devices: found once.
    napi = []
    for d in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/comm' % d) as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm.startswith(('napi/%s-' % host_dev, 'napi/%s-' % ns_dev)):
            napi.append(int(d))
    if len(napi) != 2:
        bench.log('remote-proxy pass skipped: NAPI threads %r', napi)
        return None
    proxy = ctx.sshd('p-remote', netns=ns, authorized_keys=[node_key],
                     extra=['ListenAddress %s:22' % ns_ip])
    proxy.host, proxy.port = ns_ip, 22
    kh = ctx.known_hosts('known_hosts_remote', proxy.known_hosts_pins())
    return {'proxy': proxy, 'known_hosts': kh, 'napi': lambda: napi}


def remote_passes(ctx, bench, remote, node_key, sink_port, source_port,
                  cipher, short, size, reps):
    """The PASSES (both directions, 1 and 8 channels) through the remote
    proxy: MB/s, the clients' and sshd's CPU, and the NAPI threads' (the
    two hosts' receive paths)."""
    proxy = remote['proxy']
    tp, _worker, ssh, sides, groups = start_clients(
        ctx, proxy, node_key, remote['known_hosts'], cipher,
        'remote-%s' % short, {'port': sink_port, 'up_port': source_port})
    groups['napi'] = remote['napi']
    try:
        return run_passes(bench, sides, groups, size, reps,
                          '%s remote' % short, wrap=proxy.netns)
    finally:
        ssh.stop()
        tp.stop()


def start_clients(ctx, proxy, node_key, kh, cipher, name, targets):
    """Both clients of a pass, against proxy with cipher: a tunnelpool
    daemon (tp-NAME) and `ssh -N -R` (ssh-NAME), each forwarding a fresh
    proxy port to each of targets (key -> the node-side port); both
    connected, every forward up, sshd's log showing the cipher.  Returns
    (tp, worker pid, ssh, sides, groups): sides maps 'tunnelpool' and 'ssh'
    to key -> that client's proxy port, groups are the CpuMeter groups.
    If a step fails, what started is stopped again."""
    keys = list(targets)
    free = ports.free_ports(2 * len(keys))
    sides = {'tunnelpool': dict(zip(keys, free[:len(keys)])),
             'ssh': dict(zip(keys, free[len(keys):]))}
    tp = ctx.tunnelpool(node_key, kh, name='tp-%s' % name, log_level='info',
                        resync_interval='5s',
                        extra={'ssh': {'ciphers': cipher},
                               'metrics_listen': ''})
    tp.add_tunnel('bench', 'bench', [proxy.address()],
                  [('127.0.0.1:%d' % sides['tunnelpool'][k],
                    '127.0.0.1:%d' % targets[k]) for k in keys])
    tp.start()
    ssh = None
    try:
        worker = tp.wait_connected()['pid']
        for port in sides['tunnelpool'].values():
            proxy.wait_forward(port)
        ssh = ctx.ssh_forward('ssh-%s' % name, proxy, node_key, kh,
                              [(sides['ssh'][k], '127.0.0.1', targets[k])
                               for k in keys],
                              options=['Ciphers=%s' % cipher])
        ssh.wait_established()
        for port in sides['ssh'].values():
            proxy.wait_forward(port)
        check_cipher(proxy, cipher)
    except Exception:
        if ssh is not None:
            ssh.stop()
        tp.stop()
        raise
    groups = {'worker': lambda: [worker], 'supervisor': lambda: [tp.pid],
              'ssh': lambda: [ssh.pid], 'sshd': proxy.all_pids}
    return tp, worker, ssh, sides, groups


def check_cipher(proxy, cipher):
    """Both clients' last key exchanges with proxy chose cipher (sshd at
    DEBUG1 logs each kex)."""
    used = re.findall(r'kex: client->server cipher: (\S+)', proxy.log_text())
    if len(used) < 2 or any(u != cipher for u in used[-2:]):
        raise BenchError('cipher check: sshd saw %r, want %s' % (used[-2:],
                                                                   cipher))


def measure(bench, sides, groups, verb, port, nconn, size, reps, label,
            wrap=None):
    """One pass: reps transfers of size per side, A B A B; the medians of
    MB/s, CPU s/GiB and I/O syscalls/MiB per group, and the ratio."""
    runs = {name: [] for name in sides}
    for rep in range(reps):
        for name, side in sides.items():          # A B A B ...
            meter = CpuMeter(groups)
            iom = CpuMeter(groups, reader=io_syscalls)
            meter.start()
            iom.start()
            secs = transfer(bench, verb, side[port], size, nconn,
                            wrap=wrap)
            cpu = meter.stop()
            io = iom.stop()
            runs[name].append({'seconds': secs,
                               'mb_s': size / secs / 1e6, 'cpu': cpu,
                               'io_syscalls': io})
        bench.log('throughput %s rep %d: tunnelpool %.0f MB/s, '
                  'ssh %.0f MB/s', label, rep + 1,
                  runs['tunnelpool'][-1]['mb_s'],
                  runs['ssh'][-1]['mb_s'])
    summary = {}
    for name, rs in runs.items():
        cpu_per_gib, io_per_mib = {}, {}
        for g in groups:
            cpu_per_gib[g] = median([x['cpu'][g] / (size / GIB)
                                     for x in rs])
            io_per_mib[g] = median([x['io_syscalls'][g] / (size / MIB)
                                    for x in rs])
        summary[name] = {'mb_s_median': median([x['mb_s'] for x in rs]),
                         'sshd_core_share': median(
                             [x['cpu']['sshd'] / x['seconds']
                              for x in rs]),
                         'mb_s_all': [x['mb_s'] for x in rs],
                         'cpu_s_per_gib': cpu_per_gib,
                         'io_syscalls_per_mib': io_per_mib, 'runs': rs}
    summary['ratio'] = ratio(summary['tunnelpool']['mb_s_median'],
                             summary['ssh']['mb_s_median'])
    return summary


def run_passes(bench, sides, groups, size, reps, label, wrap=None):
    """Both sides warmed up (16 MiB each way), then every one of the PASSES
    measured: {pass key: measure()'s summary}.  wrap: as for transfer."""
    for side in sides.values():
        transfer(bench, 'blast', side['port'], 16 * MIB, 1, wrap=wrap)
        transfer(bench, 'pull', side['up_port'], 16 * MIB, 1, wrap=wrap)
    return {key: measure(bench, sides, groups, verb, port, nconn, size, reps,
                         '%s %s' % (label, key), wrap=wrap)
            for key, verb, port, nconn in PASSES}


def one_cipher(ctx, bench, proxy, node_key, kh, sink, sink_port, source_port,
               cipher, short, size, reps, prof_bytes, cpu_too):
    tp, worker, ssh, sides, groups = start_clients(
        ctx, proxy, node_key, kh, cipher, short,
        {'port': sink_port, 'up_port': source_port})
    out = {'cipher': cipher, 'worker_pid': worker, 'ssh_pid': ssh.pid}
    out.update(run_passes(bench, sides, groups, size, reps, short))

    if (os.cpu_count() or 1) >= 2:
        bench.log('throughput %s: placement pass', short)
        out['placement'] = placement(bench, sides, groups, sink, proxy,
                                     size, reps)

    if prof_bytes and perfprof.have_perf():
        bench.log('throughput %s: perf profile (syscalls, CPU)', short)
        sessions = lambda: [p for p in proxy.all_pids() if p != proxy.pid]
        pids = {'tunnelpool': {'worker': [worker], 'sshd': sessions()},
                'ssh': {'ssh': [ssh.pid], 'sshd': sessions()}}
        try:
            out['profile'] = profile(ctx, bench, short, sides, pids,
                                     prof_bytes, cpu_too)
        except Exception as exc:          # a profile is a bonus
            out['profile_error'] = str(exc)
            bench.log('perf profile: %s', exc)
    ssh.stop()
    tp.stop()
    return out


def short_dso(d):
    if d == '[kernel.kallsyms]':
        return 'kernel'
    return re.sub(r'\.so(\.[0-9]+)*$', '', os.path.basename(d))


def transfer_rows(sec, s, n, up, remote=False):
    """MB/s, client CPU and sshd CPU rows of one pass (s: its summary);
    remote: the pass through the proxy behind veth."""
    ch = '%s%s%dch' % ('remote ' if remote else '', 'up ' if up else '', n)
    rows = []
    tpv, sshv = s['tunnelpool']['mb_s_median'], s['ssh']['mb_s_median']
    rt = s['ratio']
    rows.append(Row(sec, '%s%s%d channel%s, MB/s (median)' % (
        'remote proxy (veth) ' if remote else '',
        'upstream (node -> proxy) ' if up else '', n, 's' if n > 1 else ''),
        fmt_num(tpv), '%s (ssh -R)' % fmt_num(sshv), fmt_ratio(rt),
        '>= %.1fx' % AIM_RATIO, rt is not None and rt >= AIM_RATIO,
        note='all runs: tunnelpool %s, ssh %s MB/s' % (
            ' '.join(fmt_num(x) for x in s['tunnelpool']['mb_s_all']),
            ' '.join(fmt_num(x) for x in s['ssh']['mb_s_all']))))
    tc, sc = s['tunnelpool']['cpu_s_per_gib'], s['ssh']['cpu_s_per_gib']
    cr = ratio(tc['worker'], sc['ssh'])
    rows.append(Row(sec, '%s client CPU s/GiB: worker vs ssh' % ch,
                    fmt_num(tc['worker']), '%s (ssh)' % fmt_num(sc['ssh']),
                    fmt_ratio(cr), '<= %.1fx' % AIM_CPU_RATIO,
                    cr is not None and cr <= AIM_CPU_RATIO,
                    note='whole path (client + sshd + supervisor) %s vs '
                    '%s s/GiB; read+write syscalls/MiB (/proc/PID/io) '
                    'worker %s, ssh %s' % (
                        fmt_num(tc['worker'] + tc['sshd'] +
                                tc['supervisor']),
                        fmt_num(sc['ssh'] + sc['sshd']),
                        fmt_num(s['tunnelpool']['io_syscalls_per_mib'][
                            'worker']),
                        fmt_num(s['ssh']['io_syscalls_per_mib']['ssh']))))
    dr = ratio(tc['sshd'], sc['sshd'])
    rows.append(Row(sec, '%s sshd CPU s/GiB: under tunnelpool vs ssh' % ch,
                    fmt_num(tc['sshd']), '%s (under ssh)' %
                    fmt_num(sc['sshd']), fmt_ratio(dr),
                    '<= %.1fx' % AIM_CPU_RATIO,
                    dr is not None and dr <= AIM_CPU_RATIO,
                    note=('receive paths (NAPI threads, both hosts) %s '
                          'under tunnelpool, %s under ssh s/GiB' % (
                              fmt_num(tc['napi']), fmt_num(sc['napi']))
                          if 'napi' in tc else '')))
    return rows


def syscall_rows(sec, pr, key, ch):
    """The syscalls-per-MiB row of one pass of the perf profile pr."""
    if not pr:
        return []
    w = pr['tunnelpool']['worker'].get(key)
    o = pr['ssh']['ssh'].get(key)
    if not (w and o):
        return []
    sr = ratio(w['per_mib'], o['per_mib'])
    return [Row(sec, '%s syscalls per MiB (perf): worker vs ssh' % ch,
                fmt_num(w['per_mib']), '%s (ssh)' % fmt_num(o['per_mib']),
                fmt_ratio(sr), '<= %.1fx' % AIM_SYSCALL_RATIO,
                sr is not None and sr <= AIM_SYSCALL_RATIO,
                note='worker: ' + ', '.join(
                    '%s %d' % kv for kv in w['top'][:5]) +
                ' | ssh: ' + ', '.join('%s %d' % kv for kv in o['top'][:5]))]


def cipher_rows(short, r, ceiling):
    rows = []
    sec = 'throughput %s' % short
    pr = r.get('profile')
    for n in (1, 8):
        s = r['x%d' % n]
        ch = '%dch' % n
        rows += transfer_rows(sec, s, n, False)
        rows += syscall_rows(sec, pr, 'x%d' % n, ch)
        share = s['ssh']['sshd_core_share']
        tshare = s['tunnelpool']['sshd_core_share']
        rows.append(Row(sec, '%s sshd-bound ceiling: 1 / sshd core share '
                        'under ssh -R' % ch,
                        fmt_ratio(1 / share if share else None),
                        note='sshd used %s of a core under ssh -R, %s under '
                        'tunnelpool' % (fmt_num(share), fmt_num(tshare))))
    for n in (1, 8):
        if r.get('up%d' % n):
            rows += transfer_rows(sec, r['up%d' % n], n, True)
            rows += syscall_rows(sec, pr, 'up%d' % n, 'up %dch' % n)
    if r.get('remote_error'):
        rows.append(Row(sec, 'remote proxy (veth): ERROR',
                        r['remote_error'].splitlines()[0][:120]))
    for key, _verb, _port, n in PASSES:
        if (r.get('remote') or {}).get(key):
            rows += transfer_rows(sec, r['remote'][key], n,
                                  key.startswith('up'), remote=True)
    for where, what in (('same', "on the client's core"),
                        ('other', "on sshd's core")):
        pl = (r.get('placement') or {}).get(where)
        if not pl:
            continue
        t, o = pl['tunnelpool'], pl['ssh']
        cr = ratio(t['cpu_s_per_gib_median'], o['cpu_s_per_gib_median'])
        rows.append(Row(sec, '1ch pinned, sink %s: client CPU s/GiB' % what,
                        fmt_num(t['cpu_s_per_gib_median']),
                        '%s (ssh)' % fmt_num(o['cpu_s_per_gib_median']),
                        fmt_ratio(cr), '<= %.1fx' % AIM_CPU_RATIO,
                        cr is not None and cr <= AIM_CPU_RATIO,
                        note='MB/s tunnelpool %s, ssh %s (%s); CPU all runs '
                        'worker %s, ssh %s' % (
                            fmt_num(t['mb_s_median']),
                            fmt_num(o['mb_s_median']),
                            fmt_ratio(ratio(t['mb_s_median'],
                                            o['mb_s_median'])),
                            ' '.join(fmt_num(x['cpu_s_per_gib'])
                                     for x in t['runs']),
                            ' '.join(fmt_num(x['cpu_s_per_gib'])
                                     for x in o['runs']))))
    if ceiling:
        rows.append(Row(sec, 'openssl speed (1 core, 16 KiB), MB/s',
                        fmt_num(ceiling / 1e6), note='crypto ceiling'))
    if pr:
        w, o = pr['tunnelpool']['worker'], pr['ssh']['ssh']
        if w.get('cpu') or o.get('cpu'):
            split = lambda p: ' '.join(
                '%s %.0f%%' % (short_dso(d), v) for d, v in
                (p.get('cpu') or {}).get('dso_pct', [])[:3])
            rows.append(Row(sec, 'CPU split by DSO, 1ch (perf)', split(w),
                            split(o) + ' (ssh)',
                            note='worker top symbols: ' + ', '.join(
                                '%s %.0f%%' % kv for kv in
                                (w.get('cpu') or {}).get('top_pct', [])[:5])))
    return rows
