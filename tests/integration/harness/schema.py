"""The golden schema of `tunnelpool status --json` (tests/integration/
golden/status.schema.json) and a tiny validator for the JSON Schema subset
it uses.  ops_status_schema proves the validator catches what it must."""

import os

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..',
                      'golden', 'status.schema.json')


def type_ok(v, t):
    if t == 'integer':
        return isinstance(v, int) and not isinstance(v, bool)
    if t == 'number':
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, {'object': dict, 'array': list, 'string': str,
                          'boolean': bool, 'null': type(None)}[t])


def validate(v, schema, path='$'):
    """Returns a list of 'path: problem' strings (empty = valid)."""
    types = schema.get('type')
    types = [types] if isinstance(types, str) else types
    if types and not any(type_ok(v, t) for t in types):
        return ['%s: %r is not %s' % (path, v, '|'.join(types))]
    errs = []
    if 'enum' in schema and v not in schema['enum']:
        errs.append('%s: %r not one of %r' % (path, v, schema['enum']))
    if 'minimum' in schema and type_ok(v, 'number') and v < schema['minimum']:
        errs.append('%s: %r < %r' % (path, v, schema['minimum']))
    if isinstance(v, dict):
        props = schema.get('properties', {})
        errs += ['%s: missing %r' % (path, k)
                 for k in schema.get('required', []) if k not in v]
        for k, sub in v.items():
            if k in props:
                errs += validate(sub, props[k], '%s.%s' % (path, k))
            elif schema.get('additionalProperties') is False:
                errs.append('%s: undocumented key %r' % (path, k))
    if isinstance(v, list) and 'items' in schema:
        for i, item in enumerate(v):
            errs += validate(item, schema['items'], '%s[%d]' % (path, i))
    return errs


def check(status):
    """Problems of a status document against the golden schema."""
    import json
    with open(SCHEMA) as f:
        return validate(status, json.load(f))
