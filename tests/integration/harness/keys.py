"""ssh-keygen wrappers: keys, CAs, certificates, known_hosts lines.

All files are written by ssh-keygen itself, so they are exactly what OpenSSH
and the daemon will meet in production.
"""

import os

from .errors import HarnessError
from .procs import run

SSH_KEYGEN = '/usr/bin/ssh-keygen'
DEFAULT_BITS = {'rsa': 2048, 'ecdsa': 256}


class Key:
    """A key pair on disk: `path` (private, 0600) and `path`.pub."""

    def __init__(self, path, type=None):
        self.path = str(path)
        self.pub_path = self.path + '.pub'
        self.type = type

    def __repr__(self):
        return '<Key %s>' % self.path

    @property
    def public(self):
        """The .pub line as written by ssh-keygen (type, base64, comment)."""
        with open(self.pub_path) as f:
            return f.read().strip()

    @property
    def blob(self):
        """'TYPE BASE64' without the comment: what known_hosts and
        authorized_keys lines need."""
        return ' '.join(self.public.split()[:2])

    @property
    def algo(self):
        return self.public.split()[0]

    def fingerprint(self, hash='sha256'):
        """'SHA256:...' as ssh-keygen -l prints it."""
        out = run([SSH_KEYGEN, '-l', '-E', hash, '-f', self.pub_path]).stdout
        return out.split()[1]

    @property
    def cert_path(self):
        """Where ssh-keygen -s puts this key's certificate."""
        return self.path + '-cert.pub'

    @property
    def cert(self):
        with open(self.cert_path) as f:
            return f.read().strip()

    def has_cert(self):
        return os.path.exists(self.cert_path)


def generate(path, type='ed25519', bits=None, comment=None):
    """Creates a new unencrypted key pair (OpenSSH format) at path.

    type: 'ed25519', 'ecdsa' (bits 256/384/521) or 'rsa' (bits >= 2048).
    Overwrites nothing: fails if path exists.
    """
    path = str(path)
    if os.path.exists(path):
        raise HarnessError('key %s already exists' % path)
    argv = [SSH_KEYGEN, '-q', '-t', type, '-N', '', '-f', path,
            '-C', comment or os.path.basename(path)]
    bits = bits or DEFAULT_BITS.get(type)
    if bits:
        argv += ['-b', str(bits)]
    run(argv)
    return Key(path, type)


def host_keys(directory, name, types=('ed25519',)):
    """One host key per type: DIR/NAME_host_TYPE_key (sshd naming)."""
    return [generate(os.path.join(directory, '%s_host_%s_key' % (name, t)), t,
                     comment='%s-host-%s' % (name, t))
            for t in types]


class CA(Key):
    """A certificate authority key (host or user CA)."""

    def _sign(self, key, identity, principals, validity, serial, extra):
        pub = key.pub_path if isinstance(key, Key) else str(key)
        argv = [SSH_KEYGEN, '-q', '-s', self.path, '-I', identity]
        if principals:
            argv += ['-n', ','.join(principals)]
        if validity:
            argv += ['-V', validity]
        if serial is not None:
            argv += ['-z', str(serial)]
        argv += list(extra) + [pub]
        run(argv)
        cert = pub[:-4] + '-cert.pub' if pub.endswith('.pub') else \
            pub + '-cert.pub'
        if not os.path.exists(cert):
            raise HarnessError('ssh-keygen made no certificate at %s' % cert)
        return cert

    def sign_host(self, key, principals, identity=None,
                  validity='-5m:+1h', serial=None):
        """Host certificate (-h) for key; returns the -cert.pub path.

        principals: host names the cert is valid for, e.g. ['127.0.0.1'].
        validity: ssh-keygen -V syntax, e.g. '-5m:+1h', '20200101:20200102'.
        """
        return self._sign(key, identity or 'host-%s' % principals[0],
                          principals, validity, serial, ['-h'])

    def sign_user(self, key, principals=('tunnel',), identity=None,
                  validity='-5m:+1h', serial=None, options=()):
        """User certificate for key; returns the -cert.pub path.

        options: ssh-keygen -O values, e.g. ['clear', 'permit-port-forwarding'].
        """
        extra = []
        for o in options:
            extra += ['-O', o]
        return self._sign(key, identity or 'user-%s' % principals[0],
                          principals, validity, serial, extra)


def generate_ca(path, type='ed25519', bits=None, comment=None):
    """Creates a CA key pair; returns a CA."""
    k = generate(path, type, bits, comment or os.path.basename(path))
    return CA(k.path, type)


def cert_info(cert_path):
    """ssh-keygen -L output for a certificate (for logs and asserts)."""
    return run([SSH_KEYGEN, '-L', '-f', str(cert_path)]).stdout


# --------------------------------------------------------------------------
# known_hosts and authorized_keys

def host_pattern(host, port=22):
    """known_hosts host field: 'host' for port 22, else '[host]:port'."""
    return host if int(port) == 22 else '[%s]:%d' % (host, int(port))


def _blob(key):
    if isinstance(key, Key):
        return key.blob
    return ' '.join(str(key).split()[:2])


def known_hosts_pin(hosts, key, port=22):
    """A plain pin line.  hosts: one host or a list (each with `port`)."""
    if isinstance(hosts, str):
        hosts = [hosts]
    return '%s %s' % (','.join(host_pattern(h, port) for h in hosts),
                      _blob(key))


def known_hosts_ca(patterns, ca):
    """'@cert-authority PATTERNS CA-KEY'; patterns may use wildcards, e.g.
    '[127.0.0.1]:*' or '*'."""
    if isinstance(patterns, str):
        patterns = [patterns]
    return '@cert-authority %s %s' % (','.join(patterns), _blob(ca))


def known_hosts_revoked(patterns, key):
    if isinstance(patterns, str):
        patterns = [patterns]
    return '@revoked %s %s' % (','.join(patterns), _blob(key))


def write_known_hosts(path, lines):
    """Writes lines (strings) to path, 0644; returns path."""
    return write_lines(path, lines, 0o644)


def authorized_keys_line(key, options=None):
    """'[OPTIONS ]TYPE BASE64 COMMENT'; options like
    'restrict,port-forwarding,permitlisten="127.0.0.1:22001"'."""
    line = key.public if isinstance(key, Key) else str(key).strip()
    return '%s %s' % (options, line) if options else line


def cert_authority_authorized_line(ca, principals=None):
    """authorized_keys line trusting a user CA for this account."""
    opts = 'cert-authority'
    if principals:
        opts += ',principals="%s"' % ','.join(principals)
    return '%s %s' % (opts, _blob(ca))


def write_lines(path, lines, mode=0o644):
    path = str(path)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        for line in lines:
            f.write(line.rstrip('\n') + '\n')
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path
