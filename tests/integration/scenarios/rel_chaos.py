"""Chaos: 20 tunnels over 3 stock sshd proxies (directly and through
haproxy) while, every 1-3 s at random, a worker is SIGKILLed, a proxy is
restarted, haproxy is restarted, a proxy is SIGSTOPped for longer than the
dead-peer timeout (keepalive 1s x 3) and then continued, tunnel files are
rewritten (half-written, invalid, an extra invalid file, a valid change --
a good set is always restored right after), or the supervisor gets SIGHUP.
One proxy is protected: three tunnels dial it directly and carry long
echo streams whose every byte is checked; nothing aims at them.

Checked continuously: the supervisor never dies; no zombie child lives
longer than 2 s; the protected tunnels keep their workers (same PIDs) and
never lose, reorder or corrupt a byte; the supervisor's fd count and RSS
stay under hard caps and show no growth trend (after a warm-up, the mean
of the last third of the samples against the first third, with slack).
After the chaos: every tunnel is back (connected, forward bound, data
flows) within backoff.max + 10 s, and the fd count is back to its value
before the chaos.  Prints the count of each event.

Length: TP_CHAOS_SECONDS (default 120).  TP_CHAOS_SEED reproduces a run."""

import os
import random
import socket
import threading
import time

from harness import ScenarioFailure, expect, expect_eq, ports, procs
from harness.target import send_and_check

NAME = 'rel_chaos'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent'],
            'tools': ['sshd', 'ssh', 'ssh-keygen', 'socat', 'ip', 'ss',
                      'haproxy']}
CHAOS_SECONDS = float(os.environ.get('TP_CHAOS_SECONDS', '120'))
TIMEOUT = CHAOS_SECONDS + 150

KEEPALIVE = ('1s', 3)
DEAD_PEER_S = 3.0
BACKOFF = ('200ms', '2s')
BACKOFF_MAX_S = 2.0
N_PROTECTED = 3
LAYOUT = [('p1', 5), ('p2', 5), ('lb', 7)]      # + N_PROTECTED on p0 = 20
STREAM_CHUNK = 16 * 1024
STREAM_PERIOD = 0.05                            # ~320 KiB/s per stream
FD_HARD_CAP = 400
RSS_HARD_CAP_KIB = 64 * 1024
FD_SLACK = 24
RSS_SLACK = 1.25
ZOMBIE_GRACE_S = 2.0


# --------------------------------------------------------------------------
# long-running checked echo streams

class Stream:
    """One connection through a protected tunnel: a sender writes a
    deterministic pseudo-random byte stream at a steady pace, a receiver
    compares every echoed byte with the same stream, in order."""

    def __init__(self, name, port, seed):
        self.name, self.port, self.seed = name, port, seed
        self.sent = self.received = 0
        self.error = None
        self.stop_sending = threading.Event()
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=10)
        self.sock.settimeout(30)
        self.tx = threading.Thread(target=self._send, daemon=True,
                                   name='%s-tx' % name)
        self.rx = threading.Thread(target=self._recv, daemon=True,
                                   name='%s-rx' % name)

    def start(self):
        self.tx.start()
        self.rx.start()
        return self

    def _fail(self, msg):
        if self.error is None:
            self.error = '%s: %s (sent %d, received %d)' % (
                self.name, msg, self.sent, self.received)

    def _send(self):
        gen = random.Random(self.seed)
        try:
            while not self.stop_sending.is_set() and self.error is None:
                t0 = time.monotonic()
                self.sock.sendall(gen.randbytes(STREAM_CHUNK))
                self.sent += STREAM_CHUNK
                self.stop_sending.wait(max(0.0, STREAM_PERIOD -
                                           (time.monotonic() - t0)))
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fail('send failed: %s' % exc)

    def _recv(self):
        gen = random.Random(self.seed)
        want = b''
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    if self.received != self.sent or \
                            not self.stop_sending.is_set():
                        self._fail('connection closed early')
                    return
                while len(want) < len(data):
                    want += gen.randbytes(STREAM_CHUNK)
                if data != want[:len(data)]:
                    off = next(i for i in range(len(data))
                               if data[i] != want[i])
                    self._fail('corrupted at byte %d' % (self.received + off))
                    return
                want = want[len(data):]
                self.received += len(data)
        except OSError as exc:
            self._fail('receive failed: %s' % exc)

    def close(self):
        self.stop_sending.set()
        try:
            self.sock.close()
        except OSError:
            pass

    def finish(self, timeout=30):
        self.stop_sending.set()
        self.tx.join(timeout)
        self.rx.join(timeout)
        self.sock.close()
        if self.rx.is_alive():
            self._fail('echo did not drain')
        if self.error is None and self.received != self.sent:
            self._fail('lost bytes')
        return self.error


# --------------------------------------------------------------------------
# the supervisor watched from outside

class Monitor:
    """Samples the supervisor once a second: alive, zombies (none may
    outlive ZOMBIE_GRACE_S), fd count, RSS, and the protected workers."""

    def __init__(self, ctx, tp, protected_pids):
        self.ctx, self.tp, self.protected = ctx, tp, protected_pids
        self.samples = []                   # (t, fds, rss_kib)
        self.errors = []
        self.zombie_seen = {}
        self.max_zombies = 0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._loop, daemon=True,
                                    name='monitor')

    def start(self):
        self._th.start()
        return self

    def _loop(self):
        pid = self.tp.pid
        while not self._stop.is_set():
            try:
                self._sample(pid)
            except (OSError, ValueError) as exc:
                if not self.tp.alive():
                    self.errors.append('supervisor died: %s' %
                                       self.tp.proc.exit_reason())
                    return
                self.errors.append('sampling failed: %s' % exc)
            self._stop.wait(1.0)

    def _sample(self, pid):
        now = time.monotonic()
        if not procs.alive(pid):
            self.errors.append('supervisor %d is gone' % pid)
            return
        fds = len(os.listdir('/proc/%d/fd' % pid))
        rss = procs.rss_kib(pid)
        self.samples.append((now, fds, rss))
        if fds > FD_HARD_CAP:
            self.errors.append('supervisor has %d fds (cap %d)' % (
                fds, FD_HARD_CAP))
        if rss > RSS_HARD_CAP_KIB:
            self.errors.append('supervisor RSS %d KiB (cap %d)' % (
                rss, RSS_HARD_CAP_KIB))
        zs = set(procs.zombies(pid))
        self.max_zombies = max(self.max_zombies, len(zs))
        for z in zs:
            first = self.zombie_seen.setdefault(z, now)
            if now - first > ZOMBIE_GRACE_S:
                self.errors.append('zombie %d unreaped for %.1f s' % (
                    z, now - first))
        self.zombie_seen = {z: t for z, t in self.zombie_seen.items()
                            if z in zs}
        for c, p in self.protected.items():
            if not procs.alive(p):
                self.errors.append('protected worker %s pid %d died' % (c, p))

    def stop(self):
        self._stop.set()
        self._th.join(5)

    close = stop

    def check(self):
        if self.errors:
            raise ScenarioFailure('invariant broken: %s' % '; '.join(
                sorted(set(self.errors))[:5]))

    def trend(self, since):
        """(first-third, last-third) means of fds and RSS after `since`."""
        s = [x for x in self.samples if x[0] >= since]
        expect(len(s) >= 9, 'only %d samples after the warm-up', len(s))
        k = len(s) // 3
        mean = lambda v: sum(v) / len(v)                       # noqa: E731
        return ((mean([x[1] for x in s[:k]]), mean([x[1] for x in s[-k:]])),
                (mean([x[2] for x in s[:k]]), mean([x[2] for x in s[-k:]])))


# --------------------------------------------------------------------------

def connected(st):
    return {a['cluster']: a for a in st['agents'] if a['state'] ==
            'connected' and a['forwards'] and all(f['bound'] for f in
                                                   a['forwards'])}


def run(ctx):
    seed = int(os.environ.get('TP_CHAOS_SEED', '0')) or \
        random.SystemRandom().randrange(1, 1 << 30)
    rnd = random.Random(seed)
    ctx.log('chaos for %.0f s, seed %d (TP_CHAOS_SEED=%d reproduces the '
            'event sequence)', CHAOS_SECONDS, seed, seed)

    node_key = ctx.keygen('node_key')
    echo = ctx.echo_server()
    proxies = {n: ctx.sshd(n, authorized_keys=[node_key], log_level='INFO',
                           max_startups='200')
               for n in ('p0', 'p1', 'p2')}
    lb = ctx.haproxy([proxies[n] for n in ('p0', 'p1', 'p2')],
                     balance='roundrobin')
    pins = []
    for p in proxies.values():
        pins += p.known_hosts_pins()
        pins += p.known_hosts_pins(port=lb.port)
    kh = ctx.known_hosts('known_hosts', pins)
    dial = {n: p.address() for n, p in proxies.items()}
    dial['lb'] = '127.0.0.1:%d' % lb.port

    tp = ctx.tunnelpool(node_key, kh, keepalive=KEEPALIVE, backoff=BACKOFF,
                        log_level='info', resync_interval='2s')
    tp.config['timeouts'] = {'handshake': '5s'}
    tunnels = {}                  # cluster -> (file name, dial name, port)
    layout = [('p0', N_PROTECTED)] + LAYOUT
    all_ports = ports.free_ports(sum(n for _, n in layout))
    i = 0
    for where, n in layout:
        for _ in range(n):
            c = '%s-%s' % ('prot' if where == 'p0' else 'ch', i)
            tunnels[c] = ('t%02d' % i, where, all_ports[i])
            i += 1
    good = {}

    def write_good(c):
        fname, where, port = tunnels[c]
        tp.add_tunnel(fname, c, [dial[where]],
                      [('127.0.0.1:%d' % port, echo.address())])
        with open(tp.tunnel_path(fname), 'rb') as f:
            good[fname] = f.read()

    for c in tunnels:
        write_good(c)
    tp.start()
    st = tp.wait_state(lambda s: len(connected(s)) == len(tunnels), 60,
                       'all %d tunnels connected' % len(tunnels))
    for c, (_, _, port) in tunnels.items():
        procs.wait_for(lambda: ports.is_listening(port), 15,
                       'forward %d of %s' % (port, c))
    prot = sorted(c for c in tunnels if c.startswith('prot'))
    chaotic = sorted(c for c in tunnels if not c.startswith('prot'))
    protected_pids = {c: connected(st)[c]['pid'] for c in prot}
    ctx.log('%d tunnels up: %d protected on p0 %r, %d exposed',
            len(tunnels), len(prot), protected_pids, len(chaotic))
    time.sleep(1.0)
    fds_before = len(os.listdir('/proc/%d/fd' % tp.pid))
    rss_before = procs.rss_kib(tp.pid)

    streams = [ctx.add(Stream('stream-%s' % c, tunnels[c][2], seed + k)
                       .start(), 'stream %s' % c)
               for k, c in enumerate(prot)]
    mon = ctx.add(Monitor(ctx, tp, protected_pids).start(), 'monitor')

    # -- the events ------------------------------------------------------
    counts = {}
    extras = []

    def restore_files():
        for fname, data in good.items():
            with open(tp.tunnel_path(fname), 'wb') as f:
                f.write(data)
        for x in extras:
            try:
                os.unlink(x)
            except FileNotFoundError:
                pass
        extras.clear()

    def ev_kill_worker():
        st = tp.status_json()
        victims = [a['pid'] for a in st['agents'] if a['cluster'] in chaotic
                   and a['pid'] > 0]
        if victims:
            procs.signal_pid(rnd.choice(victims), 9)

    def ev_restart_proxy():
        rnd.choice([proxies['p1'], proxies['p2']]).restart()

    def ev_restart_haproxy():
        lb.restart()

    def ev_stop_proxy():
        p = rnd.choice([proxies['p1'], proxies['p2']])
        p.pause()
        try:
            time.sleep(DEAD_PEER_S + 1.5 + rnd.random())
        finally:
            p.resume()

    def ev_rewrite_files():
        c = rnd.choice(chaotic)
        fname = tunnels[c][0]
        path = tp.tunnel_path(fname)
        kind = rnd.choice(['half', 'invalid', 'extra', 'valid change'])
        if kind == 'half':
            with open(path, 'wb') as f:
                f.write(good[fname][:rnd.randrange(1, len(good[fname]))])
        elif kind == 'invalid':
            with open(path, 'wb') as f:
                f.write(b'kind: reverse_tunnel\nspec: {cluster_name: [\n')
        elif kind == 'extra':
            x = tp.tunnel_path('junk%d' % rnd.randrange(1000))
            extras.append(x)
            with open(x, 'wb') as f:
                f.write(b'\x00\xffnot yaml at all: [}\n')
        else:
            other = rnd.choice([w for w in ('p1', 'p2', 'lb')
                                if w != tunnels[c][1]])
            tp.add_tunnel(fname, c, [dial[other]],
                          [('127.0.0.1:%d' % tunnels[c][2], echo.address())])
        counts['files: ' + kind] = counts.get('files: ' + kind, 0) + 1
        time.sleep(0.3 + rnd.random() * 0.7)
        restore_files()

    def ev_sighup():
        tp.reload()

    events = [('SIGKILL a worker', ev_kill_worker, 4),
              ('restart a proxy', ev_restart_proxy, 2),
              ('restart haproxy', ev_restart_haproxy, 2),
              ('SIGSTOP a proxy > dead-peer timeout', ev_stop_proxy, 1),
              ('rewrite tunnel files', ev_rewrite_files, 2),
              ('SIGHUP', ev_sighup, 2)]
    bag = [e for e in events for _ in range(e[2])]
    t_start = time.monotonic()
    t_end = t_start + CHAOS_SECONDS
    n_events = 0
    # Every kind of event once (in random order), then at random.
    first = events[:]
    rnd.shuffle(first)
    while time.monotonic() < t_end:
        name, fn, _ = first.pop() if first else rnd.choice(bag)
        fn()
        counts[name] = counts.get(name, 0) + 1
        n_events += 1
        mon.check()
        for s in streams:
            expect(s.error is None, 'protected stream broken: %s', s.error)
        gap = rnd.uniform(1.0, 3.0)
        if time.monotonic() + gap >= t_end:
            break           # recovery is timed from the last event
        time.sleep(gap)
    # A last blow at once, so that the recovery below has work to do: a
    # proxy and haproxy restarted, three exposed workers killed.
    procs.wait_for(lambda: len(connected(tp.status_json())) >= len(tunnels)
                   - 6, 20, 'most tunnels up before the last blow')
    ev_restart_proxy()
    ev_restart_haproxy()
    for _ in range(3):
        ev_kill_worker()
    counts['last blow: proxy + haproxy restart, 3 workers killed'] = 1
    restore_files()
    chaos_s = time.monotonic() - t_start
    ctx.log('chaos over after %.0f s: %d events', chaos_s, n_events)
    for k in sorted(counts):
        ctx.log('  %-52s %d', k, counts[k])

    # -- recovery --------------------------------------------------------
    t0 = time.monotonic()
    deadline = BACKOFF_MAX_S + 10
    st = tp.wait_state(lambda s: len(connected(s)) == len(tunnels),
                       deadline, 'all %d tunnels back within backoff.max + '
                       '10 s' % len(tunnels))
    for c, (_, _, port) in tunnels.items():
        procs.wait_for(lambda: ports.is_listening(port),
                       max(0.5, deadline - (time.monotonic() - t0)),
                       'forward %d of %s back' % (port, c))
    back = time.monotonic() - t0
    ctx.log('every tunnel back %.1f s after the chaos (limit %.0f s)', back,
            deadline)
    for c, (_, _, port) in tunnels.items():
        send_and_check('127.0.0.1', port, 32 * 1024)

    # -- the streams and the watched invariants ---------------------------
    for s in streams:
        err = s.finish()
        expect(err is None, 'protected stream: %s', err)
        ctx.log('%s: %d bytes sent, %d echoed, every byte checked', s.name,
                s.sent, s.received)
    mon.stop()
    mon.check()
    st = tp.status_json()
    now_prot = {c: connected(st)[c]['pid'] for c in prot}
    expect_eq(now_prot, protected_pids, 'protected workers after the chaos')
    expect(tp.alive(), 'supervisor died')
    warm = t_start + min(20.0, CHAOS_SECONDS / 6)
    (fd_a, fd_b), (rss_a, rss_b) = mon.trend(warm)
    ctx.log('supervisor fds: before %d, first third %.1f, last third %.1f, '
            'max %d; RSS KiB: before %d, first third %.0f, last third %.0f, '
            'max %d; max zombies at once %d', fds_before, fd_a, fd_b,
            max(x[1] for x in mon.samples), rss_before, rss_a, rss_b,
            max(x[2] for x in mon.samples), mon.max_zombies)
    expect(fd_b <= fd_a + FD_SLACK, 'fd count grows: %.1f -> %.1f', fd_a,
           fd_b)
    expect(rss_b <= rss_a * RSS_SLACK + 1024, 'RSS grows: %.0f -> %.0f KiB',
           rss_a, rss_b)
    fds_after = procs.wait_for(
        lambda: (lambda n: n if abs(n - fds_before) <= 2 else None)(
            len(os.listdir('/proc/%d/fd' % tp.pid))), 10,
        'supervisor fds back to %d' % fds_before)
    rss_after = procs.rss_kib(tp.pid)
    ctx.log('at rest after the chaos: %d fds (before: %d), RSS %d KiB '
            '(before: %d)', fds_after, fds_before, rss_after, rss_before)
    expect(rss_after <= rss_before * 2 + 2048, 'RSS at rest %d KiB, before '
           'the chaos %d KiB', rss_after, rss_before)
    expect(not procs.zombies(tp.pid), 'zombies at the end: %r',
           procs.zombies(tp.pid))
