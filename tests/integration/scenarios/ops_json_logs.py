"""`tunnelpool run --log-format json` (the config file says logfmt: the
flag wins, for the supervisor and for every worker it starts): through a
connect, traffic, a forced reconnect, a reload and a shutdown, every log
line is one JSON object with ts, level, prog and msg, and every line about
an agent carries cluster, addr, pid and state."""

import json
import re

from harness import expect, ports
from harness.target import send_and_check
from harness.tunnelpool import one_proxy

NAME = 'ops_json_logs'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90

TS = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')
AGENT_KEYS = ('cluster', 'addr', 'pid', 'state')


def check_line(n, line):
    """Returns the parsed line; fails on anything but a conforming object."""
    try:
        o = json.loads(line)
    except ValueError as exc:
        expect(False, 'log line %d is not JSON (%s): %r', n, exc, line)
    expect(isinstance(o, dict), 'log line %d is not an object: %r', n, line)
    for k in ('ts', 'level', 'prog', 'msg'):
        expect(isinstance(o.get(k), str), 'log line %d lacks %s: %r', n, k,
               line)
    expect(TS.match(o['ts']), 'log line %d: ts %r', n, o['ts'])
    expect(o['level'] in ('debug', 'info', 'warn', 'error'),
           'log line %d: level %r', n, o['level'])
    expect(o['prog'] in ('tunnelpool', 'tunnelpool-agent'),
           'log line %d: prog %r', n, o['prog'])
    if any(k in o for k in AGENT_KEYS + ('proxy',)):
        missing = [k for k in AGENT_KEYS if not o.get(k)]
        expect(not missing, 'log line %d is about an agent but lacks %r: %r',
               n, missing, line)
        expect(o['pid'].isdigit(), 'log line %d: pid %r', n, o['pid'])
    return o


def run(ctx):
    node_key, echo, proxy, kh = one_proxy(ctx)
    fwd = ports.free_port()
    tp = ctx.tunnelpool(node_key, kh, backoff=('200ms', '1s'),
                        log_format='logfmt', log_level='debug')
    tp.add_tunnel('c1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % fwd, '127.0.0.1:%d' % echo.port)])
    tp.start(args=['--log-format', 'json'])
    st = tp.wait_state(lambda s: any(a['state'] == 'connected'
                                     for a in s['agents']), 30, 'connected')
    old = st['agents'][0]['pid']
    proxy.wait_forward(fwd)
    send_and_check('127.0.0.1', fwd, 256 * 1024)
    tp.ctl('close', '--pid', str(old))
    tp.wait_state(lambda s: any(a['state'] == 'connected' and a['pid'] != old
                                for a in s['agents']), 30, 'reconnected')
    tp.ctl('reload')
    proxy.wait_forward(fwd, 15)
    send_and_check('127.0.0.1', fwd, 64 * 1024)
    expect(tp.stop() == 'exit 0', 'supervisor did not exit 0')

    lines = [l for l in tp.log_text().splitlines()
             if l.strip() and not l.startswith('=== ')]
    objs = [check_line(i + 1, l) for i, l in enumerate(lines)]
    ctx.log('%d JSON log lines', len(objs))
    about = [o for o in objs if o.get('cluster') == 'c1']
    for prog in ('tunnelpool', 'tunnelpool-agent'):
        expect(any(o['prog'] == prog for o in about),
               'no %s line about the agent', prog)
    pids = {o['pid'] for o in about}
    expect(str(old) in pids and len(pids) >= 2,
           'agent lines name pids %r, want both workers', pids)
    for want in ('received signal 15', 'supervisor stopped', 'reloading'):
        expect(any(want in o['msg'] for o in objs), 'no %r line', want)
