"""A tiny YAML writer (stdlib has none): block mappings and sequences,
scalars quoted as JSON strings (valid YAML), ints/floats/bools/null bare."""

import json


def _scalar(v):
    if v is None:
        return 'null'
    if v is True:
        return 'true'
    if v is False:
        return 'false'
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def _emit(v, indent, out):
    pad = '  ' * indent
    if isinstance(v, dict):
        if not v:
            out[-1] += ' {}'
            return
        for k, val in v.items():
            if isinstance(val, (dict, list)) and val:
                out.append('%s%s:' % (pad, k))
                _emit(val, indent + 1, out)
            elif isinstance(val, dict):
                out.append('%s%s: {}' % (pad, k))
            elif isinstance(val, list):
                out.append('%s%s: []' % (pad, k))
            else:
                out.append('%s%s: %s' % (pad, k, _scalar(val)))
    elif isinstance(v, list):
        for item in v:
            if isinstance(item, dict) and item:
                sub = []
                _emit(item, indent + 1, sub)
                # first key goes on the dash line
                first = sub[0].lstrip()
                out.append('%s- %s' % (pad, first))
                out.extend(sub[1:])
            elif isinstance(item, list) and item:
                out.append('%s-' % pad)
                _emit(item, indent + 1, out)
            else:
                out.append('%s- %s' % (pad, _scalar(item) if not isinstance(
                    item, (dict, list)) else ('{}' if isinstance(item, dict)
                                              else '[]')))
    else:
        out.append(pad + _scalar(v))


def dumps(data):
    """YAML text for data (dicts keep insertion order)."""
    out = []
    _emit(data, 0, out)
    return '\n'.join(out) + '\n'


def dump(data, path, mode=0o644):
    import os
    tmp = str(path) + '.tmp'
    with open(tmp, 'w') as f:
        f.write(dumps(data))
    os.chmod(tmp, mode)
    os.replace(tmp, str(path))
    return str(path)
