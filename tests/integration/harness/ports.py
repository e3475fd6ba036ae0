"""Loopback ports: picking free ones, probing, waiting."""

import random
import socket

from .procs import wait_for

LOOPBACK = '127.0.0.1'


BELOW_EPHEMERAL_FROM = 22000


def _ephemeral_low():
    """The first port of the kernel's ephemeral range (32768 by default)."""
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bind_below_ephemeral(host):
    """A socket bound to a random free port below the ephemeral range.

    Not bind(host, 0): that port comes from the ephemeral range, where the
    kernel also picks the local port of every outgoing connection, so a
    connection made in between (a client of etcd, a dial of the daemon)
    could take it before the server binds (seen: sshd's "bind
    [127.0.0.1]:46421: Address already in use" for a remote forward).
    Below the range only servers bind, and those pick here too; from
    BELOW_EPHEMERAL_FROM up, since bench/run's scale and fleet forwards
    use the fixed ports 20000-21999.
    """
    low = _ephemeral_low()
    lo = BELOW_EPHEMERAL_FROM if low > BELOW_EPHEMERAL_FROM + 1000 else \
        max(1024, low // 2)
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, random.randrange(lo, low)))
            return s
        except OSError:
            s.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    return s


def free_port(host=LOOPBACK):
    """A port that was free a moment ago (bind, read, close), below the
    ephemeral range.

    Racy by nature: callers that hand the port to a server must retry with a
    new port when the server fails to bind (see Sshd/Haproxy start loops).
    """
    with _bind_below_ephemeral(host) as s:
        return s.getsockname()[1]


def free_ports(n, host=LOOPBACK):
    """n distinct free ports (all held open at once while choosing)."""
    socks = []
    try:
        for _ in range(n):
            socks.append(_bind_below_ephemeral(host))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def can_connect(host, port, timeout=1.0):
    """True if a TCP connect to host:port succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def can_connect_unix(path, timeout=1.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def is_listening(port, host=LOOPBACK):
    """True if something listens on host:port in this netns (no connect:
    reads /proc/net/tcp, so the listener sees no probe connection)."""
    want = '%s:%04X' % (_hexaddr(host), port)
    for table in ('/proc/net/tcp',):
        with open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == '0A' and (parts[1] == want or parts[1] ==
                                         '00000000:%04X' % port):
                    return True
    return False


def unix_listening(path, pid=None):
    """True if a unix stream socket is listening (accept() ready, not just
    bound) at path.  /proc/net/unix is per network namespace: pass the pid
    of a process in the listener's namespace (e.g. the socat itself)."""
    table = '/proc/%s/net/unix' % (pid if pid else 'self')
    with open(table) as f:
        next(f)
        for line in f:
            parts = line.split()
            if len(parts) >= 8 and parts[7] == path and \
                    int(parts[3], 16) & 0x10000:
                return True
    return False


def wait_unix_listening(path, timeout=10, pid=None, fail_if=None):
    return wait_for(lambda: unix_listening(path, pid), timeout,
                    'a listener on unix socket %s' % path, fail_if=fail_if)


def _hexaddr(host):
    return ''.join('%02X' % b for b in reversed(socket.inet_aton(host)))


def wait_listening(port, timeout=10, host=LOOPBACK, fail_if=None):
    return wait_for(lambda: is_listening(port, host), timeout,
                    'a listener on %s:%d' % (host, port), fail_if=fail_if)


def wait_closed(port, timeout=10, host=LOOPBACK):
    return wait_for(lambda: not is_listening(port, host), timeout,
                    'nothing listening on %s:%d' % (host, port))


def connect(host, port, timeout=10):
    s = socket.create_connection((host, port), timeout=timeout)
    return s


def connect_unix(path, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except OSError:
        s.close()
        raise
    return s
