"""The idle trim, under the real sandbox: a worker that carried traffic
(with key re-exchanges, sshd RekeyLimit 1M, so the deepest calls ran) and
then sat idle for 2 s trims once -- libssh's buffers, malloc_trim, the
stack below its loop (madvise MADV_DONTNEED, the one advice the allowlist
has) -- and its heap and stack then hold fewer resident pages than right
after the traffic.  The same worker then carries traffic again, through
more re-exchanges that fault the dropped stack pages back in, intact; and
trims again once it is idle again (activity re-arms the trim)."""

import re

from harness import expect, procs, ports
from harness.env import build_options
from harness.target import send_and_check

NAME = 'worker_idle_trim'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 120

TRIMMED = r'idle: memory trimmed'
KEX = r'kex: algorithm: '
MIB = 1 << 20


def resident(pid):
    """Private dirty KiB of [heap] and [stack]."""
    m = procs.smaps_by_mapping(pid)
    return {k: m.get(k, {}).get('dirty_kib', 0)
            for k in ('[heap]', '[stack]')}


def run(ctx):
    node_key = ctx.keygen('node_key')
    echo = ctx.echo_server()
    proxy = ctx.sshd('p1', authorized_keys=[node_key], rekey_limit='1M')
    kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())
    fwd = ports.free_port()
    tp = ctx.tunnelpool(node_key, kh)
    tp.add_tunnel('c1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % fwd, '127.0.0.1:%d' % echo.port)])
    tp.start()
    pid = tp.wait_connected()['pid']
    proxy.wait_forward(fwd)
    # The first trim comes 2 s after authentication: let it pass, so that
    # the one this test looks at follows the traffic below.
    tp.wait_log(TRIMMED, 15)
    # ASan's allocator keeps its heap in mappings of its own (no [heap],
    # and malloc_trim has nothing to give back there): the heap check is
    # for glibc's malloc, the stack check holds in every build.
    glibc_heap = build_options(ctx.build_dir).get('b_sanitize',
                                                   'none') == 'none'

    for round_ in (1, 2):
        kex0 = len(re.findall(KEX, proxy.log_text()))
        mark = tp.log_mark()
        send_and_check('127.0.0.1', fwd, 4 * MIB)
        busy = resident(pid)
        kex = len(re.findall(KEX, proxy.log_text())) - kex0
        expect(kex >= 2, 'round %d: %d key re-exchanges in 8 MiB with '
               'RekeyLimit 1M', round_, kex)
        tp.wait_log(TRIMMED, 15, since=mark)
        # The trim is logged after it ran; smaps reads the result.
        idle = resident(pid)
        ctx.log('round %d: %d re-exchanges; heap %d -> %d KiB, stack '
                '%d -> %d KiB', round_, kex, busy['[heap]'], idle['[heap]'],
                busy['[stack]'], idle['[stack]'])
        expect(not glibc_heap or idle['[heap]'] < busy['[heap]'],
               'round %d: heap not trimmed: %r -> %r', round_, busy, idle)
        expect(idle['[stack]'] < busy['[stack]'],
               'round %d: stack not trimmed: %r -> %r', round_, busy, idle)
        expect(len(re.findall(TRIMMED, tp.log_text(since=mark))) == 1,
               'round %d: more than one trim for one idle period', round_)

    st = tp.status_json()
    pids = [a['pid'] for a in st['agents'] if a['state'] == 'connected']
    expect(pids == [pid], 'the worker changed: %r -> %r', pid, pids)
    expect(procs.alive(pid), 'worker %d gone', pid)
    send_and_check('127.0.0.1', fwd, 64 * 1024)
