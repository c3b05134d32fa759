"""Dump the QAPI subset strata-qmp needs, with real type names, from QEMU's qapi sources.

Usage: python3 dump_schema.py QEMU_SRC_DIR CONFIG_LIST COMMANDS EVENTS EXTRA_TYPES > ../src/schema/qsd-10.0.2.json

QEMU_SRC_DIR is an unpacked qemu-10.0.2 source tree (Debian source package
qemu_10.0.2+ds.orig.tar.xz); CONFIG_LIST the comma-separated CONFIG_* symbols
the installed qemu-storage-daemon was built with (found by comparing the dump
with its `query-qmp-schema`: they must agree member for member).  The result is
committed; this script is only needed to regenerate it.
"""
import sys, json
QEMU = sys.argv[1]
CONFIG = set(sys.argv[2].split(',')) if len(sys.argv) > 2 and sys.argv[2] else set()
sys.path.insert(0, QEMU + '/scripts')
from qapi.schema import (QAPISchema, QAPISchemaObjectType, QAPISchemaEnumType,
    QAPISchemaArrayType, QAPISchemaAlternateType, QAPISchemaBuiltinType)
S = QAPISchema(QEMU + '/storage-daemon/qapi/qapi-schema.json')
used_conds = set()
def ev(c):
    if c is None: return True
    if isinstance(c, str): used_conds.add(c); return c in CONFIG
    if 'all' in c: return all(ev(x) for x in c['all'])
    if 'any' in c: return any(ev(x) for x in c['any'])
    if 'not' in c: return not ev(c['not'])
    raise Exception(c)
def present(x): return ev(x.ifcond.ifcond)
def feats(x): return [f.name for f in x.features if present(f)]
out = {}
def add(t):
    if t is None: return None
    n = t.name
    if n in out: return n
    if isinstance(t, QAPISchemaBuiltinType):
        out[n] = {'meta': 'builtin'}
    elif isinstance(t, QAPISchemaEnumType):
        out[n] = {'meta': 'enum', 'values': [m.name for m in t.members if present(m)],
                  'deprecated': [m.name for m in t.members if present(m) and 'deprecated' in feats(m)]}
    elif isinstance(t, QAPISchemaArrayType):
        out[n] = {'meta': 'array'}
        out[n]['element'] = add(t.element_type)
    elif isinstance(t, QAPISchemaObjectType):
        e = {'meta': 'object'}; out[n] = e
        e['members'] = [{'name': m.name, 'type': None, 'optional': m.optional, **({'features': feats(m)} if feats(m) else {})}
                        for m in t.members if present(m)]
        for m, d in zip([m for m in t.members if present(m)], e['members']):
            d['type'] = add(m.type)
        if t.branches:
            e['tag'] = t.branches.tag_member.name
            e['variants'] = []
            for v in t.branches.variants:
                if present(v):
                    e['variants'].append({'case': v.name, 'type': add(v.type)})
    elif isinstance(t, QAPISchemaAlternateType):
        e = {'meta': 'alternate'}; out[n] = e
        e['members'] = [add(v.type) for v in t.alternatives.variants if present(v)]
    else:
        raise Exception(t)
    return n
CMDS = sys.argv[3].split(',')
EVENTS = sys.argv[4].split(',')
cmds = {}
for c in CMDS:
    e = S.lookup_entity(c)
    assert present(e), c
    cmds[c] = {'args': add(e.arg_type), 'boxed': e.boxed, 'ret': add(e.ret_type),
               'allow-oob': e.allow_oob, 'success-response': e.success_response,
               **({'features': feats(e)} if feats(e) else {})}
events = {}
for c in EVENTS:
    e = S.lookup_entity(c)
    events[c] = {'data': add(e.arg_type), 'boxed': e.boxed}
extra = [add(S.lookup_type(t)) for t in sys.argv[5].split(',')] if len(sys.argv) > 5 else []
json.dump({'commands': cmds, 'events': events, 'cli-types': extra, 'types': out}, sys.stdout, indent=1)
print(file=sys.stderr)
print('conds used:', sorted(used_conds), file=sys.stderr)
