"""Worker (through worker-drive): 64 MiB of random bytes through one
forward each way at once, with half-close both ways; SHA-256 equal at both
ends.  With TP_STRACE=FILE the agent runs under `strace -f -c -o FILE`
(TP_STRACE_OPTS replaces "-f -c"), the syscall census the sandbox
allowlist is built from; TP_BULK_MIB changes the size."""

import hashlib
import os
import socket
import threading

from harness import expect, ports, wait_for
from harness.workerdrive import forward_drive

NAME = 'worker_bulk'
REQUIRES = {'root': True, 'binaries': ['tunnelpool-agent', 'worker-drive']}
TIMEOUT = 600

SIZE = int(os.environ.get('TP_BULK_MIB', '64')) << 20
CHUNK = 256 * 1024
DEADLINE = 300


class Pump:
    """Sends SIZE random bytes on a connected socket, then half-closes,
    while reading what the other end sends until its EOF.  `result` is
    (sha256 sent, sha256 received, bytes received) or an error string."""

    def __init__(self, sock, what):
        self.sock, self.what = sock, what
        self.sent, self.got, self.n = hashlib.sha256(), hashlib.sha256(), 0
        self.error = None
        self.done = threading.Event()
        sock.settimeout(DEADLINE)
        self._tx = threading.Thread(target=self._send, daemon=True)
        self._tx.start()
        threading.Thread(target=self._recv, daemon=True).start()

    def _send(self):
        try:
            for off in range(0, SIZE, CHUNK):
                chunk = os.urandom(min(CHUNK, SIZE - off))
                self.sent.update(chunk)
                self.sock.sendall(chunk)
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self.error = self.error or 'send: %s' % exc

    def _recv(self):
        try:
            while True:
                b = self.sock.recv(1 << 20)
                if not b:
                    break
                self.got.update(b)
                self.n += len(b)
        except OSError as exc:
            self.error = self.error or 'recv after %d bytes: %s' % (self.n,
                                                                  exc)
        self._tx.join()
        self.sock.close()
        self.done.set()

    def result(self):
        expect(self.error is None, '%s: %s', self.what, self.error)
        return self.sent.hexdigest(), self.got.hexdigest(), self.n


class BulkTarget:
    """The node-side end: a Pump per accepted connection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.pumps = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.pumps.append(Pump(conn, 'target'))

    def close(self):
        self.sock.close()


def run(ctx):
    target = ctx.add(BulkTarget(), 'bulk target')
    args = ['--stats-ms', '1000']
    if os.environ.get('TP_STRACE'):
        opts = os.environ.get('TP_STRACE_OPTS', '-f -c')
        args += ['--wrap', 'strace %s -o %s' % (opts, os.environ['TP_STRACE'])]
    d, _, fport = forward_drive(ctx, args, '127.0.0.1:%d' % target.port)
    client = Pump(ports.connect('127.0.0.1', fport), 'client')
    wait_for(client.done.is_set, DEADLINE, 'the client end to finish')
    # The client is done once the target's EOF reached it; the target's
    # own last bytes may still be on their way.
    wait_for(lambda: target.pumps and target.pumps[0].done.is_set(), 120,
             'the target end to finish')
    c_sent, c_got, c_n = client.result()
    t_sent, t_got, t_n = target.pumps[0].result()
    expect(c_n == SIZE and t_n == SIZE, 'sizes: client got %d, target got %d',
           c_n, t_n)
    expect(c_sent == t_got, 'node-bound stream differs')
    expect(t_sent == c_got, 'proxy-bound stream differs')
    d.send('close 5000 bulk done')
    expect(d.exit(60)['code'] == 0, 'exit code')
    ctx.log('bulk: %d MiB each way ok, %d STATS', SIZE >> 20,
            len(d.messages('STATS')))
