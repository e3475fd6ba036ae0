"""The node's private key never reaches a worker.  After authentication
(and traffic), every readable mapping of every worker is read through
/proc/PID/maps + /proc/PID/mem and searched for the key file's base64 body
lines and the raw private key bytes parsed from the openssh-key-v1 file
(ed25519: the 32-byte seed and the 64-byte private part; ECDSA and RSA as
well: the private scalar, d, p and q, in big- and little-endian byte order,
the latter being how OpenSSL keeps BIGNUM words).  None may appear.

Controls that prove the scan works: the same scan finds the private key
bytes in the supervisor's memory (it holds the key), and finds the public
key in each worker's memory (the worker learnt it from the signer)."""

import base64
import struct

from harness import expect, expect_eq, ports
from harness.target import send_and_check

NAME = 'sandbox_key_memory'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90

KEY_TYPES = [('ed25519', None), ('ecdsa', 256), ('rsa', 3072)]
SKIP_MAPS = ('[vvar]', '[vvar_vclock]', '[vsyscall]')
CHUNK = 1 << 20


# --------------------------------------------------------------------------
# openssh-key-v1

class Reader:
    def __init__(self, data):
        self.data, self.off = data, 0

    def u32(self):
        v, = struct.unpack('>I', self.data[self.off:self.off + 4])
        self.off += 4
        return v

    def string(self):
        n = self.u32()
        v = self.data[self.off:self.off + n]
        expect(len(v) == n, 'truncated openssh-key-v1 string')
        self.off += n
        return v

    def mpint(self):
        return int.from_bytes(self.string(), 'big')


def int_needles(name, v):
    n = (v.bit_length() + 7) // 8
    return {name + ' (big-endian)': v.to_bytes(n, 'big'),
            name + ' (little-endian)': v.to_bytes(n, 'little')}


def parse_key(path):
    """(base64 body lines, {secret name: bytes}, public key blob)."""
    with open(path) as f:
        lines = [l.strip() for l in f if l.strip()]
    expect_eq(lines[0], '-----BEGIN OPENSSH PRIVATE KEY-----', 'key header')
    body = lines[1:-1]
    r = Reader(base64.b64decode(''.join(body)))
    expect(r.data.startswith(b'openssh-key-v1\0'), 'not openssh-key-v1')
    r.off = len(b'openssh-key-v1\0')
    expect_eq(r.string(), b'none', 'cipher (the key must be unencrypted)')
    r.string()                              # kdfname
    r.string()                              # kdfoptions
    expect_eq(r.u32(), 1, 'number of keys')
    pub = r.string()
    p = Reader(r.string())
    expect_eq(p.u32(), p.u32(), 'check integers')
    ktype = p.string()
    secrets = {}
    if ktype == b'ssh-ed25519':
        p.string()                          # public part (32 bytes)
        priv = p.string()
        expect_eq(len(priv), 64, 'ed25519 private part length')
        secrets['ed25519 seed (32 bytes)'] = priv[:32]
        secrets['ed25519 private part (64 bytes)'] = priv
    elif ktype.startswith(b'ecdsa-sha2-'):
        p.string()                          # curve
        p.string()                          # public point
        secrets.update(int_needles('ecdsa private scalar', p.mpint()))
    elif ktype == b'ssh-rsa':
        p.mpint()                           # n
        p.mpint()                           # e
        d = p.mpint()
        p.mpint()                           # iqmp
        pp, q = p.mpint(), p.mpint()
        for name, v in (('rsa d', d), ('rsa p', pp), ('rsa q', q)):
            secrets.update(int_needles(name, v))
    else:
        expect(False, 'unsupported key type %r', ktype)
    return body, secrets, pub


# --------------------------------------------------------------------------
# reading a process's memory

def memory(pid):
    """Yields (mapping line, bytes) for every readable mapping of pid, and
    finally ('total', stats) with bytes read and unreadable."""
    read = unreadable = regions = 0
    with open('/proc/%d/maps' % pid) as f:
        maps = f.read().splitlines()
    with open('/proc/%d/mem' % pid, 'rb', buffering=0) as mem:
        for line in maps:
            fields = line.split()
            rng, perms = fields[0], fields[1]
            path = fields[5] if len(fields) > 5 else ''
            if perms[0] != 'r' or path in SKIP_MAPS:
                continue
            start, end = (int(x, 16) for x in rng.split('-'))
            data = bytearray()
            for off in range(start, end, CHUNK):
                n = min(CHUNK, end - off)
                try:
                    mem.seek(off)
                    chunk = mem.read(n)
                except OSError:
                    chunk = b''
                unreadable += n - len(chunk)
                data += chunk
            read += len(data)
            regions += 1
            yield line, bytes(data)
    yield 'total', {'read': read, 'unreadable': unreadable,
                    'regions': regions}


def scan(pid, needles):
    """{needle name: [mapping lines where found]} and the read stats."""
    found = {name: [] for name in needles}
    stats = None
    # A needle may straddle two adjacent mappings: keep a tail.
    tail = b''
    for line, data in memory(pid):
        if line == 'total':
            stats = data
            break
        hay = tail + data
        for name, needle in needles.items():
            if needle in hay:
                found[name].append(line)
        tail = data[-256:]
    return found, stats


# --------------------------------------------------------------------------

def connected(st):
    return [a for a in st['agents'] if a['state'] == 'connected']


def one_key(ctx, ktype, bits):
    node_key = ctx.keygen('node_%s' % ktype, ktype, bits)
    body, secrets, pub = parse_key(node_key.path)
    ctx.log('%s key: %d base64 lines, secrets %s, public blob %d bytes',
            ktype, len(body), ', '.join('%s=%d' % (k, len(v))
                                        for k, v in secrets.items()),
            len(pub))
    echo = ctx.echo_server('echo-%s' % ktype)
    proxy = ctx.sshd('p-%s' % ktype, authorized_keys=[node_key])
    kh = ctx.known_hosts('kh-%s' % ktype, proxy.known_hosts_pins())
    fwd = ports.free_ports(2)
    tp = ctx.tunnelpool(node_key, kh, name='tp-%s' % ktype)
    for i in range(2):
        tp.add_tunnel('t%d' % i, 'c%d' % i, [proxy.address()],
                      [('127.0.0.1:%d' % fwd[i], echo.address())])
    tp.start()
    st = tp.wait_state(lambda s: len(connected(s)) == 2, 30,
                       '2 tunnels connected (%s)' % ktype)
    for p in fwd:
        proxy.wait_forward(p)
        send_and_check('127.0.0.1', p, 256 * 1024)
    accepted = proxy.accepted()
    expect(len(accepted) >= 2, '%s: sshd accepted %r', ktype, accepted)

    needles = dict(secrets)
    for i, line in enumerate(body):
        needles['key file base64 line %d' % (i + 1)] = line.encode()
    workers = [a['pid'] for a in connected(st)]
    for pid in workers:
        found, stats = scan(pid, dict(needles, **{'public key blob': pub}))
        ctx.log('%s worker %d: read %d bytes in %d mappings (%d unreadable)',
                ktype, pid, stats['read'], stats['regions'],
                stats['unreadable'])
        expect(stats['read'] > 1 << 20, 'only %d bytes of worker %d read',
               stats['read'], pid)
        leaks = {k: v for k, v in found.items() if v and k != 'public key '
                 'blob'}
        expect(not leaks, '%s private key material in worker %d: %s',
               ktype, pid, '; '.join('%s in %s' % (k, v[0])
                                     for k, v in leaks.items()))
        expect(found['public key blob'], 'control: the public key blob is '
               'not in worker %d (does the scan read its heap?)', pid)

    # Positive control: the supervisor holds the key, and the scan sees it.
    found, stats = scan(tp.pid, needles)
    hits = sorted(k for k, v in found.items() if v)
    ctx.log('%s supervisor %d: read %d bytes in %d mappings; found: %s',
            ktype, tp.pid, stats['read'], stats['regions'],
            ', '.join(hits) or 'nothing')
    expect(any(found[k] for k in secrets), 'control: no private key bytes '
           'found in the supervisor %d either: the scan is blind', tp.pid)
    tp.stop()
    return hits


def run(ctx):
    summary = {}
    for ktype, bits in KEY_TYPES:
        summary[ktype] = one_key(ctx, ktype, bits)
    for k, hits in summary.items():
        ctx.log('supervisor holds (%s): %s', k, ', '.join(hits))
