"""Control plane without processes: pool_sync (the real supervisor/pool.c)
for 10,000 and 100,000 desired tunnels, and tunnel file parsing (one file
of N documents, a tunnels.d of N files) through the real tunnels.c, then
the supervisor's whole resync path (reload + want array + pool_sync).
See bench/tools/pool_bench.c."""

import json
import os
import shutil
import tempfile

from .common import Row, fmt_num, run_tool, loadavg

NAME = 'control'
AIM_SYNC_10K_MS = 5.0


def pool_bench(bench, *args):
    out = run_tool([bench.tools['pool_bench']] + [str(a) for a in args],
                   timeout=1800)
    res = {}
    for line in out.splitlines():
        if line.startswith('{'):
            d = json.loads(line)
            res[d['what']] = d
    return res


def run(bench):
    sync_ns = [10000, 100000]
    parse_ns = bench.pick([10000], [10000, 100000])
    res = {'sync': {}, 'parse': {}, 'load_before': loadavg()}
    for n in sync_ns:
        reps = bench.pick(21, 51) if n <= 10000 else bench.pick(5, 11)
        bench.log('control: pool_sync n=%d x%d', n, reps)
        res['sync'][n] = pool_bench(bench, 'sync', n, reps)
    for n in parse_ns:
        reps = bench.pick(3, 5) if n <= 10000 else 3
        d = tempfile.mkdtemp(prefix='tpb-tunnels-', dir=bench.tmp_dir)
        try:
            bench.log('control: parse n=%d x%d', n, reps)
            res['parse'][n] = pool_bench(bench, 'parse', n, reps,
                                         os.path.join(d, 'tunnels.d'))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    res['load_after'] = loadavg()
    rows = []
    for n, r in res['sync'].items():
        ms = lambda k: r[k]['median_us'] / 1000.0 if k in r else None
        aim = met = None
        if n == 10000:
            aim = '<= %.0f ms' % AIM_SYNC_10K_MS
            met = ms('resync_unchanged') <= AIM_SYNC_10K_MS
        rows.append(Row('control pool_sync', 'resync %s unchanged, ms' %
                        '{:,}'.format(n), fmt_num(ms('resync_unchanged')),
                        aim=aim, met=met,
                        note='min %s ms, max %s ms over %d; tick alone %s '
                        'ms' % (fmt_num(r['resync_unchanged']['min_us'] /
                                        1000.0),
                                fmt_num(r['resync_unchanged']['max_us'] /
                                        1000.0),
                                r['resync_unchanged']['reps'],
                                fmt_num(ms('tick')))))
        rows.append(Row('control pool_sync', '%s: first sync / 1%% changed '
                        '/ 1%% removed, ms' % '{:,}'.format(n),
                        '%s / %s / %s' % (
                            fmt_num(ms('first_sync_all_spawned')),
                            fmt_num(ms('resync_1pct_changed')),
                            fmt_num(ms('resync_1pct_removed'))),
                        note='first sync under the default limiter '
                        '(10 spawns) %s ms' % fmt_num(
                            ms('first_sync_default_limiter'))))
    for n, r in res['parse'].items():
        ms = lambda k: r[k]['median_us'] / 1000.0 \
            if 'median_us' in r.get(k, {}) else None
        nn = '{:,}'.format(n)
        one = r.get('parse_one_file_n_docs', {})
        if 'skipped' in one:
            rows.append(Row('control parse', 'one file of %s docs, ms' % nn,
                            'refused', note=one['skipped']))
        else:
            rows.append(Row('control parse', 'one file of %s docs, ms' % nn,
                            fmt_num(ms('parse_one_file_n_docs')),
                            note='%s bytes; %s us per document' % (
                                '{:,}'.format(r['one_file_bytes']['bytes']),
                                fmt_num(ms('parse_one_file_n_docs') *
                                        1000.0 / n))))
        rows.append(Row('control parse', 'tunnels.d of %s files: cold / '
                        'warm reload, ms' % nn, '%s / %s' % (
                            fmt_num(ms('cache_reload_cold_n_files')),
                            fmt_num(ms('cache_reload_warm_n_files')))))
        rows.append(Row('control parse', '%s: sync from cache / reload + '
                        'sync, ms' % nn, '%s / %s' % (
                            fmt_num(ms('sup_sync_path_unchanged')),
                            fmt_num(ms('resync_interval_total'))),
                        note='what each resync_interval costs with nothing '
                        'changed'))
    return res, rows
