"""`tunnelpool status --json` matches the golden schema (every field, its
type, nothing undocumented), agrees with what is running, each line of the
control socket's "top" stream is the same document, the other control
commands answer as documented, and the human table shows the agent row."""

import json
import socket

from harness import expect, expect_eq, ports
from harness.schema import SCHEMA, validate
from harness.target import send_and_check
from harness.tunnelpool import one_proxy

NAME = 'ops_status_schema'
REQUIRES = {'root': True, 'binaries': ['tunnelpool', 'tunnelpool-agent']}
TIMEOUT = 90

def validator_self_test(schema, good):
    """The validator must catch a missing key, a wrong type, an extra key
    and a bad enum value, or a green run proves nothing."""
    bad = json.loads(json.dumps(good))
    del bad['supervisor']['uptime_s']
    bad['agents'][0]['pid'] = str(bad['agents'][0]['pid'])
    bad['agents'][0]['proxy']['surprise'] = 1
    bad['clusters'][0]['states'] = {}
    bad['agents'][0]['state'] = 'happy'
    errs = '\n'.join(validate(bad, schema))
    for what in ("missing 'uptime_s'", 'agents[0].pid', "'surprise'",
                 "missing 'connected'", "'happy' not one of"):
        expect(what in errs, 'validator missed %s:\n%s', what, errs)


# -- the control socket, spoken directly

def ctl_lines(path, request, n=1, timeout=5):
    """Sends one request line, returns the first n answer lines parsed."""
    s = ports.connect_unix(path, timeout)
    try:
        s.sendall(request if isinstance(request, bytes) else
                  (json.dumps(request) + '\n').encode())
        buf, out = b'', []
        while len(out) < n:
            chunk = s.recv(65536)
            expect(chunk, 'control socket closed after %d lines', len(out))
            buf += chunk
            while b'\n' in buf and len(out) < n:
                line, buf = buf.split(b'\n', 1)
                out.append(json.loads(line))
        return out
    finally:
        s.close()


def check_second_top(path):
    """A second "top" on a subscribed connection is refused, and the
    stream goes on."""
    s = ports.connect_unix(path, 10)
    try:
        f = s.makefile('rb')
        s.sendall(b'{"cmd":"top"}\n')
        expect('supervisor' in json.loads(f.readline()), 'no first document')
        s.sendall(b'{"cmd":"top"}\n')
        lines = [json.loads(f.readline()) for _ in range(3)]
        errs = [l for l in lines if 'supervisor' not in l]
        expect(errs == [{'ok': False, 'error': 'already subscribed'}] and
               len(lines) - len(errs) >= 2,
               'second top answered %r', lines)
    finally:
        s.close()


def check_protocol(ctx, tp, schema):
    v = ctl_lines(tp.control_socket, {'cmd': 'version'})[0]
    expect(v.get('ok') is True and isinstance(v.get('version'), str) and
           isinstance(v.get('protocol'), int), 'version answer %r', v)
    for req, want in (({'cmd': 'nope'}, 'unknown command'),
                      (b'not json\n', '"cmd"'),
                      ({'cmd': 'close'}, 'close needs'),
                      ({'cmd': 'close', 'pid': 1}, 'no agent with that pid'),
                      ({'cmd': 'close', 'cluster': 'x', 'dial_addr': 'y:1'},
                       'no such tunnel key')):
        a = ctl_lines(tp.control_socket, req)[0]
        expect(a.get('ok') is False and want in a.get('error', ''),
               '%r answered %r, want an error with %r', req, a, want)
    # "top": one status document per line, about a second apart.
    docs = ctl_lines(tp.control_socket, {'cmd': 'top'}, n=3, timeout=10)
    for i, d in enumerate(docs):
        errs = validate(d, schema)
        expect(not errs, 'top line %d breaks the schema:\n%s', i,
               '\n'.join(errs))
    lag = [d['supervisor']['loop_lag']['buckets'][-1]['count'] for d in docs]
    expect(lag[0] < lag[2], 'top documents do not advance: lag counts %r',
           lag)
    check_second_top(tp.control_socket)
    ctx.log('control protocol answers ok; top stream: %d documents', len(docs))


def check_values(st, tp, proxy, fwd):
    sup = st['supervisor']
    expect_eq(sup['pid'], tp.pid, 'supervisor.pid')
    expect(sup['config_ok'] is True and sup['config_error'] is None,
           'config_ok %r config_error %r', sup['config_ok'],
           sup['config_error'])
    expect_eq(sup['workers'], len(st['agents']), 'supervisor.workers')
    b = sup['loop_lag']['buckets']
    expect(b[-1]['le_us'] == -1 and all(x['le_us'] > 0 for x in b[:-1]),
           'lag bucket bounds %r', b)
    expect(all(b[i]['count'] <= b[i + 1]['count'] for i in range(len(b) - 1)),
           'lag buckets are not cumulative: %r', b)
    a = st['agents'][0]
    expect_eq((a['cluster'], a['dial_addr'], a['state'], a['role']),
              ('c1', proxy.address(), 'connected', 'tunnel'), 'agent')
    expect(a['proxy']['host_key'] in proxy.host_fingerprints(),
           'host_key %r', a['proxy']['host_key'])
    expect_eq([(f['id'], f['listen'], f['bound'], f['port'], f['error'])
               for f in a['forwards']],
              [(0, '127.0.0.1:%d' % fwd, True, fwd, '')], 'forwards')
    c = st['clusters'][0]
    expect_eq(c['name'], 'c1', 'cluster name')
    expect_eq(c['states'], {'connecting': 0, 'discovering': 0, 'connected': 1,
                            'discovered': 0, 'disconnected': 0}, 'states')


def check_table(tp, a):
    out = tp.ctl('status').stdout
    rows = [l for l in out.splitlines() if l.startswith('c1 ')]
    expect(any(a['dial_addr'] in r and ' connected ' in r and
               ' %d ' % a['pid'] in r for r in rows),
           'no agent row for c1/%s/pid %d in:\n%s', a['dial_addr'], a['pid'],
           out)
    expect('CLUSTER' in out and 'LAST ERROR' in out, 'no table header:\n%s',
           out)


def run(ctx):
    with open(SCHEMA) as f:
        schema = json.load(f)
    node_key, echo, proxy, kh = one_proxy(ctx)
    fwd = ports.free_port()
    tp = ctx.tunnelpool(node_key, kh, backoff=('500ms', '2s'))
    tp.add_tunnel('t1', 'c1', [proxy.address()],
                  [('127.0.0.1:%d' % fwd, '127.0.0.1:%d' % echo.port)])
    tp.start()
    tp.wait_state(lambda s: any(a['state'] == 'connected' and a['forwards']
                                for a in s['agents']), 30, 'c1 connected')
    proxy.wait_forward(fwd)
    send_and_check('127.0.0.1', fwd, 256 * 1024)
    st = tp.wait_state(lambda s: s['agents'] and
                       s['agents'][0]['rx_bytes'] > 0, 15, 'stats reported')
    ctx.log('status: %s', json.dumps(st, sort_keys=True)[:3000])

    errs = validate(st, schema)
    expect(not errs, 'status --json breaks %s:\n%s', SCHEMA, '\n'.join(errs))
    validator_self_test(schema, st)
    check_values(st, tp, proxy, fwd)
    check_table(tp, st['agents'][0])
    check_protocol(ctx, tp, schema)
