"""Commands: the one table of what a node accepts (docs/contract.md, "cmd and ack"), and its reader.

A command is checked whole before anything runs: the bytes (size, nesting, strict JSON), the id,
the name, then each argument's type AND value. Value checks are node.config's own checks and
tables, so `set` accepts exactly the intervals and threshold fields config.json does, with the
same ranges, and errors read alike. cmd.json says the same for the host; tests hold both to the
same verdicts (tests/security/test_cmd_fuzz.py) and a corpus runs this code in the MicroPython VM.

parse_command() reads a command and checks all of it against the table (_ARGUMENTS); COMMANDS is
that table's argument types, for host tools. The answer is built by node.payload.ack().
"""
import json
from micropython import const
from node import config

MAX_COMMAND = const(512)  # bytes; the link discards a longer command unread
MAX_ID = const(64)
_MAX_DEPTH = const(4)  # a valid command nests 3 deep: the command, thresholds, one metric's limits
_ID_PUNCTUATION = "_.:-"
_SENSOR_LEN = config._SENSOR_HEAD[0][2]  # a sensor name's length limit, as config.json has it
# Metrics a threshold may name (config.py's list) and an alarm may carry (also <sensor>.early).
_THRESHOLD_SUFFIXES = config.VIB_METRICS + config.TEMP_METRICS
_ALARM_SUFFIXES = _THRESHOLD_SUFFIXES + ("early",)


class CommandError(ValueError):
    """A command that cannot be run; str() is one line. cmd_id is the command's id once it has been
    read and found valid, cmd its name once known to be a command; None otherwise, so an error ack
    echoes nothing the node has not checked."""

    def __init__(self, message, cmd_id=None, cmd=None):
        super().__init__(message)
        self.cmd_id = cmd_id
        self.cmd = cmd


def _metric(v, suffixes, path):
    """<sensor name> or <sensor name>.<suffix>, as config.json's thresholds name metrics."""
    if type(v) is not str:
        raise config._bad(path, v, "is not a string")
    dot = v.find(".")
    name, suffix = (v, None) if dot < 0 else (v[:dot], v[dot + 1:])
    try:
        config._ident(name, _SENSOR_LEN, path)
        ok = suffix is None or suffix in suffixes
    except config.ConfigError:
        ok = False
    if not ok:
        raise config._bad(path, v, "is not a metric name (a sensor name, or <sensor>.%s)" % "|".join(suffixes))
    return v


def _merge_patch(v, rows, path):
    """An object merging into the config object `rows` (node.config table rows) describes: each
    key one of the rows', each value null (back to the default) or what the row's check accepts."""
    if type(v) is not dict:
        raise config._bad(path, v, "is not an object")
    for key in sorted(v):
        row = None
        for r in rows:
            if r[0] == key:
                row = r
        if row is None:
            raise config.ConfigError(path, key, "unknown key %s (it takes %s)" % (
                config._show("", key), ", ".join([r[0] for r in rows])))
        if v[key] is not None:
            row[1](v[key], row[2], path + "." + key)
    return v


def _thresholds_patch(v, arg, path):
    if type(v) is not dict:
        raise config._bad(path, v, "is not an object")
    for metric in sorted(v):
        _metric(metric, _THRESHOLD_SUFFIXES, path)
        if v[metric] is not None:
            _merge_patch(v[metric], config._LIMIT, path + "." + metric)
    return v


# Each command's arguments, all optional: (name, check, arg), check(value, arg, path) as in
# node.config (returns the value or raises ConfigError).
_ARGUMENTS = {
    "ping": (),
    "diag": (),
    "ack-alarm": (("metric", _metric, _ALARM_SUFFIXES),),
    "rebaseline": (("sensor", config._ident, _SENSOR_LEN),),
    "reboot": (),
    "resume": (),
    "set": (("intervals", _merge_patch, config._INTERVALS), ("thresholds", _thresholds_patch, None)),
    "identify": (("s", config._int, (0, 3600)),),
}
_NEEDS_ARGUMENT = ("set",)  # a set without intervals or thresholds would change nothing
_JSON_TYPE = {_metric: str, config._ident: str, config._int: int, _merge_patch: dict, _thresholds_patch: dict}
# The same table as {command: {argument: the JSON type it takes}}, for host tools.
COMMANDS = {}
for _cmd in _ARGUMENTS:
    COMMANDS[_cmd] = {}
    for _row in _ARGUMENTS[_cmd]:
        COMMANDS[_cmd][_row[0]] = _JSON_TYPE[_row[1]]


def _valid_id(v):
    if type(v) is not str or not 0 < len(v) <= MAX_ID:
        return False
    for c in v:
        if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in _ID_PUNCTUATION):
            return False
    return True


# Strict JSON, by hand: MicroPython's json.loads accepts documents that are not JSON ({"a":1 2},
# trailing commas, 01, {]}), so on its own it would run commands the host's contract rejects. One
# pass over the bytes, no allocation, no recursion; it also bounds nesting before json.loads runs
# and counts object members, so a duplicate key (which json.loads would silently merge) shows.

def _skip_ws(b, i):
    n = len(b)
    while i < n and b[i] in (32, 9, 10, 13):
        i += 1
    return i


def _digits(b, i):
    n = len(b)
    start = i
    while i < n and 48 <= b[i] <= 57:
        i += 1
    if i == start:
        raise ValueError(i)
    return i


def _number(b, i):
    n = len(b)
    if b[i] == 45:  # -
        i += 1
    if i < n and b[i] == 48:  # a leading 0 stands alone
        i += 1
    else:
        i = _digits(b, i)
    if i < n and b[i] == 46:  # .
        i = _digits(b, i + 1)
    if i < n and b[i] in (69, 101):  # E e
        i += 1
        if i < n and b[i] in (43, 45):
            i += 1
        i = _digits(b, i)
    return i


def _string(b, i):
    n = len(b)
    if i >= n or b[i] != 34:
        raise ValueError(i)
    i += 1
    while i < n:
        c = b[i]
        if c == 34:
            return i + 1
        if c < 32:
            raise ValueError(i)
        if c == 92:  # backslash
            e = b[i + 1] if i + 1 < n else 0
            if e == 117:  # \uXXXX
                for k in range(i + 2, i + 6):
                    h = b[k] if k < n else 0
                    if not (48 <= h <= 57 or 65 <= h <= 70 or 97 <= h <= 102):
                        raise ValueError(k)
                i += 6
            elif e in (34, 92, 47, 98, 102, 110, 114, 116):
                i += 2
            else:
                raise ValueError(i)
        else:
            i += 1
    raise ValueError(i)


def _key(b, i):
    i = _skip_ws(b, _string(b, _skip_ws(b, i)))
    if i >= len(b) or b[i] != 58:  # :
        raise ValueError(i)
    return i + 1


def _scan(b):
    """The number of object members in b when b is one strict JSON value nested at most
    _MAX_DEPTH deep; ValueError(offset) where it is not JSON; CommandError when too deep."""
    n = len(b)
    depth = 0
    objects = 0  # bit k set: the container at depth k + 1 is an object
    members = 0
    want_value = True
    i = 0
    while True:
        i = _skip_ws(b, i)
        if want_value:
            c = b[i] if i < n else 0
            if c == 123 or c == 91:  # { [
                if depth == _MAX_DEPTH:
                    raise CommandError("nested deeper than %d levels" % _MAX_DEPTH)
                objects = (objects | (1 << depth)) if c == 123 else (objects & ~(1 << depth))
                depth += 1
                i = _skip_ws(b, i + 1)
                if i < n and b[i] == c + 2:  # } ] right away: empty
                    depth -= 1
                    i += 1
                    want_value = False
                elif c == 123:
                    i = _key(b, i)
                    members += 1
                continue
            if c == 34:
                i = _string(b, i)
            elif c == 45 or 48 <= c <= 57:
                i = _number(b, i)
            elif b[i:i + 4] == b"true" or b[i:i + 4] == b"null":
                i += 4
            elif b[i:i + 5] == b"false":
                i += 5
            else:
                raise ValueError(i)
            want_value = False
        elif depth == 0:
            if i != n:
                raise ValueError(i)
            return members
        else:
            c = b[i] if i < n else 0
            is_object = objects & (1 << (depth - 1))
            if c == 44:  # ,
                want_value = True
                i += 1
                if is_object:
                    i = _key(b, i)
                    members += 1
            elif c == (125 if is_object else 93):
                depth -= 1
                i += 1
            else:
                raise ValueError(i)


def _members(v):
    """Object members in a parsed value (at most _MAX_DEPTH deep: _scan saw to that)."""
    if type(v) is dict:
        n = len(v)
        for k in v:
            n += _members(v[k])
        return n
    if type(v) is list:
        n = 0
        for x in v:
            n += _members(x)
        return n
    return 0


def parse_command(msg):
    """(cmd_id, cmd, args) from a cmd message, else CommandError.

    msg: bytes or str; or an int, the size of a command too large for the link to read. args holds
    the arguments given (all optional; _ARGUMENTS names them and what each accepts).
    """
    if type(msg) is int:
        raise CommandError("command is %d bytes, at most %d allowed" % (msg, MAX_COMMAND))
    if type(msg) is str:
        msg = msg.encode()
    if len(msg) > MAX_COMMAND:  # not parsed at all: bounds what a command can cost
        raise CommandError("command is %d bytes, at most %d allowed" % (len(msg), MAX_COMMAND))
    msg = bytes(msg)
    try:
        members = _scan(msg)
        d = json.loads(msg.decode())
    except ValueError as e:  # also UnicodeError; CommandError (too deep) goes through
        if isinstance(e, CommandError):
            raise
        where = e.args[0] if e.args and type(e.args[0]) is int else None
        raise CommandError("not valid JSON" if where is None else "not valid JSON (at byte %d)" % where)
    if type(d) is not dict:
        raise CommandError("not a JSON object")
    if _members(d) != members:
        raise CommandError("not valid JSON (a duplicate key)")
    cmd_id = d.get("id")
    if not _valid_id(cmd_id):
        raise CommandError("id must be 1..%d characters of A-Z a-z 0-9 %s" % (MAX_ID, " ".join(_ID_PUNCTUATION)))
    cmd = d.get("cmd")
    if cmd is None:
        raise CommandError("missing cmd", cmd_id)
    if type(cmd) is not str:
        raise CommandError("cmd is not a string", cmd_id)
    if cmd not in _ARGUMENTS:
        raise CommandError("unknown command " + config._show("", cmd), cmd_id)
    rows = _ARGUMENTS[cmd]
    args = {}
    for key in sorted(d):
        if key == "id" or key == "cmd":
            continue
        row = None
        for r in rows:
            if r[0] == key:
                row = r
        if row is None:
            raise CommandError("%s takes no argument %s" % (cmd, config._show("", key)), cmd_id, cmd)
        try:
            args[key] = row[1](d[key], row[2], key)
        except config.ConfigError as e:
            raise CommandError(cmd + ": " + str(e), cmd_id, cmd)
    if cmd in _NEEDS_ARGUMENT and not args:
        raise CommandError("%s: nothing to change: give %s" % (cmd, " or ".join([r[0] for r in rows])), cmd_id, cmd)
    return cmd_id, cmd, args
