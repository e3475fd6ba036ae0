"""The supervisor's signer against real OpenSSH: a stock sshd and the
real ssh client authenticating through tests/tools/agent-serve (the signer
on a unix socket).  Interop for ed25519, ed25519 + user certificate, ecdsa
and rsa (rsa-sha2-256 and -512); refusals really refuse (another proxy
user, the host-bound method); a key sshd does not know is never signed
for."""

import re

from harness import expect, ports
from harness.procs import run as run_cmd

NAME = 'signer_openssh'
REQUIRES = {'root': True, 'binaries': ['agent-serve'],
            'tools': ['sshd', 'ssh', 'ssh-keygen']}
TIMEOUT = 180

SSH = '/usr/bin/ssh'
SESSION_BIND = 'refused agent request type 27:'


class Agent:
    """agent-serve [-c CERT] -u USER KEY SOCKET, until stop()."""

    def __init__(self, ctx, name, key, user, cert=None):
        self.sock = ctx.path('%s.sock' % name)
        self.stats_path = ctx.path('%s.stats' % name)
        argv = [ctx.binary('agent-serve'), '-u', user]
        if cert:
            argv += ['-c', cert]
        self._stats = open(self.stats_path, 'wb')
        self.proc = ctx.spawn(name, argv + [key.path, self.sock],
                              stdout=self._stats)
        ports.wait_unix_listening(self.sock, 30, fail_if=self.proc.died)

    def stop(self):
        """SIGTERM; returns its 'signatures=N refusals=M' line."""
        reason = self.proc.stop()
        self._stats.close()
        expect(reason == 'exit 0', 'agent-serve ended with %s', reason)
        with open(self.stats_path) as f:
            return f.read().strip()

    def log(self):
        return self.proc.log_text()


def ssh(ctx, proxy, kh, agent, options=()):
    """ssh through the agent only; True if it logged in and ran `true`.
    PubkeyAuthentication=unbound: OpenSSH >= 8.9 otherwise signs for the
    publickey-hostbound-v00@openssh.com method, which the signer refuses
    (libssh, the worker, always uses plain "publickey").  `options` come
    first: for ssh the first value wins."""
    argv = [SSH, '-F', '/dev/null', '-p', str(proxy.port)]
    for o in options:
        argv += ['-o', o]
    for o in ('IdentityAgent=%s' % agent.sock, 'IdentitiesOnly=no',
              'IdentityFile=%s' % ctx.path('no-such-file'), 'BatchMode=yes',
              'PubkeyAuthentication=unbound',
              'PreferredAuthentications=publickey',
              'UserKnownHostsFile=%s' % kh,
              'GlobalKnownHostsFile=/dev/null',
              'StrictHostKeyChecking=yes', 'ConnectTimeout=10'):
        argv += ['-o', o]
    cp = run_cmd(argv + ['%s@127.0.0.1' % proxy.user, 'true'], timeout=60,
                 check=False)
    ctx.log('ssh %s: exit %d %s', ' '.join(options) or '(defaults)',
            cp.returncode, cp.stderr.strip().replace('\n', ' | ')[:300])
    return cp.returncode == 0


def expect_ok(ctx, proxy, kh, name, key, user, cert=None, options=()):
    agent = Agent(ctx, 'agent-%s' % name.replace(' ', '_'), key, user, cert)
    ok = ssh(ctx, proxy, kh, agent, options)
    stats = agent.stop()
    expect(ok, '%s: ssh did not log in', name)
    # OpenSSH's ssh also sends the session-bind@openssh.com extension
    # (request type 27); the signer refuses it, which ssh ignores.  That
    # must be the only refusal.
    binds = agent.log().count(SESSION_BIND)
    expect(stats == 'signatures=1 refusals=%d' % binds,
           '%s: agent stats: %s (%d session-bind)', name, stats, binds)
    ctx.log('ok: %s (%s, %d session-bind)', name, stats, binds)


def expect_refused(ctx, proxy, kh, name, key, user, options=()):
    agent = Agent(ctx, 'agent-%s' % name.replace(' ', '_'), key, user)
    ok = ssh(ctx, proxy, kh, agent, options)
    stats = agent.stop()
    expect(not ok, '%s: ssh logged in', name)
    expect(re.fullmatch(r'signatures=0 refusals=[1-9]\d*', stats),
           '%s: agent stats: %s', name, stats)
    expect(re.search(r'level=warn.*refused agent sign request', agent.log()),
           '%s: no refusal logged', name)
    ctx.log('ok: %s refused (%s)', name, stats)


def run(ctx):
    user_ca = ctx.ca('user_ca')
    ed = ctx.keygen('ed25519')
    ecdsa = ctx.keygen('ecdsa', 'ecdsa', 256)
    rsa = ctx.keygen('rsa', 'rsa', 2048)
    edcert = ctx.keygen('edcert')
    stranger = ctx.keygen('stranger')
    # The certified key is deliberately not in authorized_keys: only the
    # certificate (TrustedUserCAKeys) can let it in.
    proxy = ctx.sshd('p1', authorized_keys=[ed, ecdsa, rsa],
                     trusted_user_ca=user_ca)
    cert = user_ca.sign_user(edcert, [proxy.user],
                             identity='tp-signer-test')
    kh = ctx.known_hosts('known_hosts', proxy.known_hosts_pins())
    user = proxy.user

    expect_ok(ctx, proxy, kh, 'ed25519 key', ed, user)
    expect_ok(ctx, proxy, kh, 'ed25519 certificate', edcert, user, cert)
    expect_ok(ctx, proxy, kh, 'ecdsa key', ecdsa, user)
    expect_ok(ctx, proxy, kh, 'rsa key, rsa-sha2-256', rsa, user,
              options=['PubkeyAcceptedAlgorithms=rsa-sha2-256'])
    expect_ok(ctx, proxy, kh, 'rsa key, rsa-sha2-512', rsa, user,
              options=['PubkeyAcceptedAlgorithms=rsa-sha2-512'])

    # The signer must refuse, not merely fail to be accepted: the agent
    # configured for another user, and ssh using the host-bound method.
    expect_refused(ctx, proxy, kh, 'other proxy user', ed, 'nobody')
    expect_refused(ctx, proxy, kh, 'host-bound method', ed, user,
                   options=['PubkeyAuthentication=yes'])

    # A key sshd does not know: the signer is never asked (sshd refuses
    # the key before any signature), so ssh simply fails.
    agent = Agent(ctx, 'agent-stranger', stranger, user)
    ok = ssh(ctx, proxy, kh, agent)
    stats = agent.stop()
    expect(not ok, 'stranger key logged in')
    expect(stats.startswith('signatures=0 refusals='), 'stranger: %s', stats)
    expect('refused agent sign request' not in agent.log(),
           'stranger: the signer was asked to sign')
    ctx.log('ok: unknown key not accepted (%s)', stats)

    expect(re.search(r'Accepted publickey for %s .* ED25519-CERT' % user,
                     proxy.log_text()),
           'sshd never accepted the certificate')
