#!/usr/bin/env python3
"""The live demo: a tunnelpool pool against three local stock OpenSSH sshd
proxies behind a real haproxy.

Each proxy runs in its own network namespace (so all three can forward the
same port), with the tunnelpool-discovery subsystem.  The node side runs a
small HTTP target and the supervisor with one tunnel whose only dial address
is haproxy's.  The demo prints `tunnelpool status` while the pool discovers
and claims every proxy, then makes one HTTP request through each proxy's
forwarded port and shows it arriving at the node.

  demo.py [--build-dir DIR] [--for SECONDS] [--empty-root DIR]
          [--control-socket PATH]

Runs until Ctrl-C, or for SECONDS and then exits 0 only if all three
proxies were claimed and every request succeeded.  Everything it starts is
stopped at the end; logs stay in the printed directory.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import ports, procs, yamlw          # noqa: E402
from harness.env import Env                       # noqa: E402
from harness.errors import HarnessError           # noqa: E402

CLUSTER = 'demo'
FWD = 8022          # the forwarded port on every proxy
NPROXIES = 3


class Stop(Exception):
    pass


def on_signal(signum, frame):
    raise Stop()


def say(msg, *args):
    print('demo: ' + (msg % args if args else msg), flush=True)


def build_pool(env, args):
    node_key = env.keygen('node_key')
    http = env.http_server('node-http')
    disc = env.binary('tunnelpool-discovery')
    proxies = [env.sshd('proxy-%d' % i, netns=True, authorized_keys=[node_key],
                        discovery=(disc, env.path('proxies-%d.yaml' % i)),
                        client_alive=(15, 3), start=False)
               for i in range(1, NPROXIES + 1)]
    for i, p in enumerate(proxies, 1):
        yamlw.dump({'cluster': CLUSTER,
                    'proxies': [{'name': q.name,
                                 'host_key': q.host_keys[0].public}
                                for q in proxies]},
                   env.path('proxies-%d.yaml' % i))
        p.start()
    lb = env.haproxy(proxies, balance='roundrobin')
    pins = [line for p in proxies
            for line in p.known_hosts_pins('127.0.0.1', lb.port)]
    kh = env.known_hosts('known_hosts', pins)
    tp = env.tunnelpool(node_key, kh, log_level='info',
                        backoff=('500ms', '5s'))
    # The supervisor makes both if missing (tests/.../firstrun_demo.py).
    if args.empty_root:
        tp.config['worker']['empty_root'] = args.empty_root
    if args.control_socket:
        tp.config['control_socket'] = tp.control_socket = args.control_socket
    tp.add_tunnel(CLUSTER, CLUSTER, ['127.0.0.1:%d' % lb.port],
                  [('127.0.0.1:%d' % FWD, '127.0.0.1:%d' % http.port)],
                  discovery=True)
    say('3 sshd proxies (own netns each) behind haproxy 127.0.0.1:%d; '
        'node HTTP target 127.0.0.1:%d', lb.port, http.port)
    tp.start()
    say('supervisor pid %d; control socket %s', tp.pid, tp.control_socket)
    return tp, proxies, http


def show_status(tp):
    cp = tp.ctl('status', check=False)
    print(cp.stdout.rstrip() or cp.stderr.rstrip(), flush=True)


def claimed(tp):
    st = tp.status_json()
    up = [a for a in st['agents'] if a['state'] in ('connected', 'discovered')]
    n = sum(c['proxies_claimed'] for c in st['clusters'])
    return n, len(up)


def converge(tp, deadline):
    last = 0
    while time.monotonic() < deadline:
        n, up = claimed(tp)
        if time.monotonic() - last > 1.0:
            say('%d of %d proxies claimed', n, NPROXIES)
            show_status(tp)
            last = time.monotonic()
        if n == NPROXIES and up == NPROXIES:
            return True
        time.sleep(0.2)
    return False


def http_over(sock, path):
    """GET path over an already-connected socket (the proxy's forwarded
    port, reached inside its namespace); returns the body."""
    sock.settimeout(10)
    try:
        sock.sendall(('GET %s HTTP/1.0\r\nHost: demo\r\n\r\n' % path)
                     .encode())
        data = b''
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b'\r\n\r\n')
    if not head.startswith(b'HTTP/1.') or b' 200 ' not in head.split(b'\r\n')[0]:
        raise HarnessError('bad HTTP answer: %r' % head[:80])
    return body.decode('utf-8', 'replace')


def request_each(proxies, http):
    ok = 0
    for p in proxies:
        p.wait_forward(FWD, 15)
        path = '/hello-from-%s' % p.name
        try:
            body = http_over(p.connect_forward(FWD), path)
        except (HarnessError, OSError) as exc:
            say('request via %s port %d FAILED: %s', p.name, FWD, exc)
            continue
        if body == http.expected_body(path):
            ok += 1
            say('request via %s (127.0.0.1:%d in its netns) reached the '
                'node: %r', p.name, FWD, body.strip()[:60])
        else:
            say('request via %s: unexpected answer %r', p.name, body[:80])
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build-dir', default=os.path.join(HERE, '..', '..',
                                                        'build'))
    ap.add_argument('--for', dest='seconds', type=float, default=None)
    ap.add_argument('--empty-root', default=None,
                    help='worker.empty_root (default: the daemon\'s, '
                    '/var/empty/tunnelpool)')
    ap.add_argument('--control-socket', default=None,
                    help='control_socket (default: in the log directory)')
    args = ap.parse_args()
    logdir = tempfile.mkdtemp(prefix='tunnelpool-demo-')
    procs.set_child_subreaper()
    env = Env(logdir, build_dir=args.build_dir, name='demo')
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ok_claimed, ok_requests = False, 0
    try:
        tp, proxies, http = build_pool(env, args)
        ok_claimed = converge(tp, time.monotonic() + 60)
        show_status(tp)
        if ok_claimed:
            say('all %d proxies claimed', NPROXIES)
            ok_requests = request_each(proxies, http)
        else:
            say('not every proxy was claimed within 60 s')
        end = time.monotonic() + args.seconds if args.seconds else None
        say('running%s; Ctrl-C to stop', ' for %.0f s' % args.seconds
            if args.seconds else '')
        while end is None or time.monotonic() < end:
            time.sleep(min(5.0, max(0.1, (end or 1e18) - time.monotonic())))
            if end is None or time.monotonic() < end:
                show_status(tp)
    except Stop:
        say('stopping')
    except HarnessError as exc:
        say('error: %s', exc)
    finally:
        problems = env.cleanup()
        for p in problems:
            say('teardown: %s', p)
        say('logs are in %s', logdir)
    good = ok_claimed and ok_requests == NPROXIES
    say('result: %d/%d proxies claimed, %d/%d requests succeeded',
        NPROXIES if ok_claimed else 0, NPROXIES, ok_requests, NPROXIES)
    return 0 if good else 1


if __name__ == '__main__':
    sys.exit(main())
