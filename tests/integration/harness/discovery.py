"""The proxy-side discovery helper (proxy/tunnelpool-discovery): proxies
files for it and checks on its JSON-lines stream, read from a file
(docs/discovery-protocol.md)."""

import json
import os
import time

from . import yamlw
from .errors import expect
from .procs import read_text, wait_for

WAIT = 20.0         # start-up waits: generous on a loaded machine


def proxies_yaml(cluster, keys, cert_path=None, comment=None):
    """A proxies file: the cluster, each key's name (its file name) and
    .pub line (its comment replaced by `comment` if given), and
    self_certificate."""
    out = ['cluster: %s' % cluster, 'proxies:']
    for k in keys:
        line = k.public if comment is None else '%s %s' % (k.blob, comment)
        out += ['  - name: %s' % os.path.basename(k.path),
                '    host_key: "%s"' % line]
    if cert_path:
        out.append('self_certificate: %s' % cert_path)
    return '\n'.join(out) + '\n'


def ca_proxy(env, name, ca, node_key, principals=('127.0.0.1',),
             cluster=None, serve_cert=None):
    """A started CA-mode proxy: sshd NAME authorizing node_key, its host key
    certified by `ca` for `principals`, and on its discovery stream a
    proxies file (WORKDIR/proxies-NAME.yaml, cluster `cluster` or NAME)
    naming it and carrying its own certificate -- or, with serve_cert, the
    file serve_cert(certificate path) returns."""
    pfile = env.path('proxies-%s.yaml' % name)
    p = env.sshd(name, authorized_keys=[node_key], host_ca=ca,
                 host_cert_principals=list(principals),
                 discovery=(env.binary('tunnelpool-discovery'), pfile),
                 start=False)
    cert = p.host_keys[0].cert_path
    if serve_cert:
        cert = serve_cert(cert)
    yamlw.dump({'cluster': cluster or name, 'self_certificate': cert,
                'proxies': [{'name': name,
                             'host_key': p.host_keys[0].public}]}, pfile)
    p.start()
    return p


def write_atomic(path, text):
    """Replaces path by rename, as deployment tools do."""
    tmp = '%s.tmp.%d' % (path, os.getpid())
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def cert_blob(cert_path):
    """'TYPE BASE64' of a -cert.pub file."""
    with open(cert_path) as f:
        return ' '.join(f.read().split()[:2])


class Stream:
    """The helper's stdout, as complete JSON lines of a file."""

    def __init__(self, path, what):
        self.path, self.what = path, what

    def lines(self):
        done = read_text(self.path).split('\n')[:-1]
        out = []
        for ln in done:
            try:
                out.append(json.loads(ln))
            except ValueError:
                expect(False, '%s: not a JSON line: %r', self.what, ln)
        return out

    def of(self, type_):
        return [o for o in self.lines() if o.get('type') == type_]

    def count(self, type_):
        return len(self.of(type_))

    def last(self, type_):
        got = self.of(type_)
        expect(got, '%s: no %s line', self.what, type_)
        return got[-1]

    def wait(self, type_, n=1, timeout=WAIT, what=None):
        return wait_for(lambda: self.count(type_) >= n, timeout,
                        what or '%d %s lines from %s' % (n, type_, self.what))

    def within(self, limit, type_, n, what):
        """Waits for the n-th type_ line; fails unless it came within
        limit seconds (from now: call it right after the change)."""
        t0 = time.monotonic()
        self.wait(type_, n, max(limit, WAIT), what)
        took = time.monotonic() - t0
        expect(took <= limit, '%s after %.2f s, limit %s s', what, took,
               limit)
        return took

    def settle(self, seconds, beats):
        """Lets the helper run: at least `seconds` and `beats` more
        heartbeats, so that a check of what it did not announce is not
        made before it looked (the old test slept `seconds`)."""
        t0, n0 = time.monotonic(), self.count('heartbeat')
        wait_for(lambda: time.monotonic() - t0 >= seconds and
                 self.count('heartbeat') >= n0 + beats, WAIT + seconds,
                 '%d more heartbeats from %s' % (beats, self.what))

    def expect_set(self, cluster, keys):
        """The last set is exactly these proxies, sorted by name, each
        with ssh-keygen's fingerprint and the 'TYPE BASE64' host key."""
        line = self.last('proxies')
        expect(line.get('cluster') == cluster, 'cluster in %s', line)
        got = line.get('proxies', [])
        expect(len(got) == len(keys), 'want %d proxies in %s', len(keys),
               line)
        for i, k in enumerate(keys):
            p = got[i]
            expect(p.get('name') == os.path.basename(k.path) and
                   p.get('fp') == k.fingerprint() and
                   p.get('host_key') == k.blob,
                   'proxy %d is not %s in %s', i, os.path.basename(k.path),
                   line)

    def expect_seqs(self):
        """Every line has seq = its line number: nothing lost, nothing
        repeated."""
        seqs = [o.get('seq') for o in self.lines()]
        expect(seqs == list(range(1, len(seqs) + 1)), '%s: seq not 1..N: %s',
               self.what, seqs)


class Helper:
    """tunnelpool-discovery -f PATH -i INTERVAL run alone: its stdin a pipe
    held here (close_stdin() is EOF), its stdout a pipe into a `cat` that
    copies it to WORKDIR/NAME.jsonl (stop_reader() makes the reader go
    away), its stderr WORKDIR/NAME.err."""

    def __init__(self, env, name, binary, path, interval=1):
        import subprocess
        self.name = name
        out_path = env.path('%s.jsonl' % name)
        self.err_path = env.path('%s.err' % name)
        self.stream = Stream(out_path, name)
        env.register_log(out_path, '%s stdout' % name)
        r, w = os.pipe()
        try:
            self.proc = env.spawn(name, [binary, '-f', path, '-i',
                                         str(interval)],
                                  log_path=self.err_path, stdout=w,
                                  stdin=subprocess.PIPE)
            self._out = open(out_path, 'wb')
            self.reader = env.spawn('%s-reader' % name, ['/bin/cat'],
                                    stdin=r, stdout=self._out)
        finally:
            os.close(r)
            os.close(w)

    def err(self):
        return read_text(self.err_path)

    def close_stdin(self):
        self.proc.popen.stdin.close()

    def stop_reader(self):
        self.reader.stop()
        self._out.close()

    def exits_within(self, limit, what):
        """Waits for the helper to exit; fails unless it did within limit
        seconds (from now).  Returns its exit status."""
        t0 = time.monotonic()
        rc = self.proc.wait(max(limit, WAIT))
        took = time.monotonic() - t0
        expect(took <= limit, '%s: helper exited after %.2f s, limit %s s',
               what, took, limit)
        return rc
