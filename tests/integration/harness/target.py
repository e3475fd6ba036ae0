"""Node-side target services (what the tunnels forward to) and clients that
push data through a tunnel and check it came back intact."""

import hashlib
import http.client
import http.server
import os
import socket
import threading
import time

from .errors import HarnessError, ScenarioFailure, expect
from . import ports

CHUNK = 64 * 1024


# --------------------------------------------------------------------------
# servers

class _StreamServer:
    """Accept loop in a thread, one thread per connection."""

    def __init__(self, env, name, sock):
        self.env = env
        self.name = name
        self.sock = sock
        self.sock.listen(512)
        self.sock.settimeout(0.2)
        self.connections = 0         # accepted so far
        self.active = 0              # open right now
        self.bytes = 0               # echoed/served so far
        self._conns = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop,
                                        name='%s-accept' % name, daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            conn.settimeout(None)
            with self._lock:
                self.connections += 1
                self.active += 1
                self._conns.add(conn)
            threading.Thread(target=self._serve_wrap, args=(conn,),
                             daemon=True, name='%s-conn' % self.name).start()

    def _serve_wrap(self, conn):
        try:
            self.serve(conn)
        except OSError:
            pass
        finally:
            with self._lock:
                self.active -= 1
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def serve(self, conn):
        raise NotImplementedError

    def _count(self, n):
        with self._lock:
            self.bytes += n

    def wait_connections(self, n, timeout=10):
        """Waits until at least n connections were accepted in total."""
        from .procs import wait_for
        return wait_for(lambda: self.connections >= n, timeout,
                        '%d connections on %s' % (n, self.name))

    def drop_all(self):
        """Closes every open connection (the target restarts)."""
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self.drop_all()
        self._thread.join(2)


class EchoServer(_StreamServer):
    """TCP echo on 127.0.0.1:port (free port).  Echoes until the peer
    half-closes, then half-closes back."""

    def __init__(self, env, name='echo', port=0):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ports.LOOPBACK, port))
        self.host, self.port = s.getsockname()
        super().__init__(env, name, s)

    def address(self):
        return '%s:%d' % (self.host, self.port)

    def serve(self, conn):
        while True:
            data = conn.recv(CHUNK)
            if not data:
                break
            conn.sendall(data)
            self._count(len(data))
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class UnixEchoServer(EchoServer):
    """Echo on a unix stream socket at path."""

    def __init__(self, env, path, name='unix-echo'):
        if os.path.exists(path):
            os.unlink(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        self.path = path
        self.host, self.port = None, None
        _StreamServer.__init__(self, env, name, s)

    def address(self):
        return 'unix:%s' % self.path

    def close(self):
        super().close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_GET(self):
        body = ('tunnelpool-target %s %s\n' % (self.server.tp_name,
                                               self.path)).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.tp_requests += 1

    def log_message(self, fmt, *args):
        pass


class HttpServer:
    """Tiny threaded HTTP server on 127.0.0.1:port.  GET any path answers
    200 'tunnelpool-target NAME PATH\\n'."""

    def __init__(self, env, name='http', port=0):
        self.name = name
        self.httpd = http.server.ThreadingHTTPServer((ports.LOOPBACK, port),
                                                     _Handler)
        self.httpd.daemon_threads = True
        self.httpd.tp_name = name
        self.httpd.tp_requests = 0
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={'poll_interval': 0.1},
                                        daemon=True, name=name)
        self._thread.start()

    @property
    def requests(self):
        return self.httpd.tp_requests

    def address(self):
        return '%s:%d' % (self.host, self.port)

    def expected_body(self, path='/'):
        return 'tunnelpool-target %s %s\n' % (self.name, path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(2)


# --------------------------------------------------------------------------
# clients

def echo_check(sock, nbytes, timeout=30, what='echo'):
    """Sends nbytes of random data on a connected socket while reading the
    echo; checks length and SHA-256.  Closes the socket.  Returns seconds
    taken.  Raises ScenarioFailure with what went wrong."""
    data = os.urandom(nbytes)
    want = hashlib.sha256(data).hexdigest()
    sock.settimeout(timeout)
    err = []
    t0 = time.monotonic()

    def sender():
        try:
            view = memoryview(data)
            for off in range(0, nbytes, CHUNK):
                sock.sendall(view[off:off + CHUNK])
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            err.append(exc)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    h = hashlib.sha256()
    got = 0
    deadline = t0 + timeout
    try:
        while got < nbytes:
            if time.monotonic() > deadline:
                raise ScenarioFailure('%s: timed out after %ss with %d of %d '
                                      'bytes back' % (what, timeout, got,
                                                      nbytes))
            try:
                chunk = sock.recv(CHUNK)
            except socket.timeout:
                raise ScenarioFailure('%s: no data for %ss, %d of %d bytes '
                                      'back' % (what, timeout, got, nbytes))
            except OSError as exc:
                raise ScenarioFailure('%s: recv failed after %d of %d bytes: '
                                      '%s' % (what, got, nbytes, exc))
            if not chunk:
                raise ScenarioFailure('%s: connection closed after %d of %d '
                                      'bytes back%s' % (
                                          what, got, nbytes,
                                          ' (send error: %s)' % err[0]
                                          if err else ''))
            h.update(chunk)
            got += len(chunk)
    finally:
        th.join(timeout)
        sock.close()
    if got != nbytes or h.hexdigest() != want:
        raise ScenarioFailure('%s: data corrupted: %d bytes back, sha256 %s, '
                              'want %d bytes sha256 %s' % (
                                  what, got, h.hexdigest(), nbytes, want))
    return time.monotonic() - t0


class PacedEcho:
    """A long transfer through a tunnel, for drains and crashes midway.
    Sends nbytes of random data at about `rate` bytes/s on a connected
    socket while a thread reads the echo back; result() checks length and
    SHA-256.  `got` is the number of bytes echoed so far."""

    def __init__(self, sock, nbytes, rate, what):
        self.sock, self.nbytes, self.rate, self.what = sock, nbytes, rate, what
        self.data = os.urandom(nbytes)
        self.want = hashlib.sha256(self.data).hexdigest()
        self.got = 0
        self.error = None
        self.digest = None
        self.done = threading.Event()
        sock.settimeout(30)
        self._tx = threading.Thread(target=self._send, daemon=True)
        self._rx = threading.Thread(target=self._recv, daemon=True)
        self._tx.start()
        self._rx.start()

    def _send(self):
        t0 = time.monotonic()
        try:
            view = memoryview(self.data)
            for off in range(0, self.nbytes, CHUNK):
                ahead = off / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
                self.sock.sendall(view[off:off + CHUNK])
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self.error = self.error or 'send: %s' % exc

    def _recv(self):
        h = hashlib.sha256()
        try:
            while self.got < self.nbytes:
                chunk = self.sock.recv(CHUNK)
                if not chunk:
                    self.error = self.error or 'closed after %d of %d ' \
                        'bytes' % (self.got, self.nbytes)
                    break
                h.update(chunk)
                self.got += len(chunk)
            self.digest = h.hexdigest()
        except OSError as exc:
            self.error = self.error or 'recv after %d of %d bytes: %s' % (
                self.got, self.nbytes, exc)
        finally:
            self.done.set()

    def result(self, timeout):
        self.done.wait(timeout)
        self._tx.join(1)
        self.sock.close()
        expect(self.done.is_set(), '%s: not done after %ss (%d of %d bytes)',
               self.what, timeout, self.got, self.nbytes)
        expect(self.error is None, '%s: %s', self.what, self.error)
        expect(self.got == self.nbytes and self.digest == self.want,
               '%s: %d bytes back, sha256 %s, want %d bytes sha256 %s',
               self.what, self.got, self.digest, self.nbytes, self.want)


def send_and_check(host, port, nbytes, timeout=30):
    """Connects to host:port (an echo behind a tunnel), pushes nbytes of
    random data and checks the SHA-256 of what comes back."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ScenarioFailure('connect %s:%d failed: %s' % (host, port, exc))
    return echo_check(sock, nbytes, timeout, 'echo via %s:%d' % (host, port))


def concurrent_checks(connect, n, nbytes, timeout=60):
    """Runs n echo_checks at once.  connect() returns a fresh connected
    socket (e.g. lambda: proxy.connect_forward(22001)); nbytes is one size
    for all or a list of n sizes.  Raises ScenarioFailure listing every
    failed channel; returns the durations."""
    results = [None] * n
    errors = []
    sizes = list(nbytes) if isinstance(nbytes, (list, tuple)) else \
        [nbytes] * n

    def one(i):
        try:
            s = connect()
            results[i] = echo_check(s, sizes[i], timeout, 'channel %d' % i)
        except (ScenarioFailure, OSError, HarnessError) as exc:
            errors.append('channel %d: %s' % (i, exc))

    threads = [threading.Thread(target=one, args=(i,), daemon=True)
               for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout + 5
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        errors.append('%d channels still running after %ss' % (
            sum(t.is_alive() for t in threads), timeout))
    if errors:
        raise ScenarioFailure('%d of %d concurrent channels failed:\n  %s' % (
            len(errors), n, '\n  '.join(sorted(errors)[:20])))
    return results


def http_get(host, port, path='/', timeout=10):
    """(status, body text) of GET path on host:port."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request('GET', path)
        r = conn.getresponse()
        return r.status, r.read().decode('utf-8', 'replace')
    finally:
        conn.close()
