"""A throwaway PKI made with the openssl CLI: a CA, a server certificate
for 127.0.0.1 (IP SAN) and client certificates, for TLS scenarios (etcd
with --client-cert-auth)."""

import os

from .procs import run

OPENSSL = '/usr/bin/openssl'


class Pki:
    def __init__(self, dir):
        self.dir = dir
        self.ca = os.path.join(dir, 'ca.pem')
        self.ca_key = os.path.join(dir, 'ca.key')
        self.server_cert = os.path.join(dir, 'server.pem')
        self.server_key = os.path.join(dir, 'server.key')
        self.client_cert = os.path.join(dir, 'client.pem')
        self.client_key = os.path.join(dir, 'client.key')

    def _key(self, path):
        run([OPENSSL, 'genpkey', '-algorithm', 'EC', '-pkeyopt',
             'ec_paramgen_curve:P-256', '-out', path])
        os.chmod(path, 0o600)

    def make_ca(self, name='tunnelpool test CA'):
        self._key(self.ca_key)
        run([OPENSSL, 'req', '-x509', '-new', '-key', self.ca_key, '-days',
             '2', '-subj', '/CN=%s' % name, '-out', self.ca,
             '-addext', 'basicConstraints=critical,CA:TRUE',
             '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])

    def issue(self, cert, key, cn, usage, san=None, ca=None, ca_key=None):
        """A certificate signed by the CA (or ca/ca_key).  usage:
        'serverAuth' or 'clientAuth'."""
        self._key(key)
        csr = cert + '.csr'
        ext = cert + '.ext'
        run([OPENSSL, 'req', '-new', '-key', key, '-subj', cn if
             cn.startswith('/') else '/CN=%s' % cn, '-out', csr])
        with open(ext, 'w') as f:
            f.write('basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n'
                    'keyUsage=digitalSignature,keyEncipherment\n' % usage)
            if san:
                f.write('subjectAltName=%s\n' % san)
        run([OPENSSL, 'x509', '-req', '-in', csr, '-CA', ca or self.ca,
             '-CAkey', ca_key or self.ca_key, '-CAcreateserial', '-days',
             '2', '-extfile', ext, '-out', cert])
        return cert, key


def make(dir):
    """CA + server (127.0.0.1, localhost; also clientAuth: etcd's own gateway
    dials the server with it) + client (O=tunnelpool, no CN)."""
    os.makedirs(dir, exist_ok=True)
    p = Pki(dir)
    p.make_ca()
    p.issue(p.server_cert, p.server_key, 'etcd', 'serverAuth,clientAuth',
            'IP:127.0.0.1,DNS:localhost')
    # No CommonName: etcd 3.4's JSON gateway refuses requests whose client
    # certificate has one (HTTP 400 "CommonName of client sending a
    # request against gateway will be ignored..."); who the client is
    # comes from username/password.
    p.issue(p.client_cert, p.client_key, '/O=tunnelpool', 'clientAuth')
    return p
