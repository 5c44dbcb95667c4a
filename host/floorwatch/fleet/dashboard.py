"""The fleet dashboard: a rich table, one row per device, sortable and filterable; and its live runner.

    console.print(render(state.devices(), state.summary(), sort="-rssi", filter="site=plant-a offline"))
    run_dashboard(lambda: (state.devices(), state.summary()), sort, filter, stop_event=stop)

It reads DeviceState.as_dict()-style dicts (DeviceState objects are turned into them), so it needs
nothing of FleetState but those keys. The filter language is hand-written: it is a few comparisons,
smaller than the glue any query library would need. Cells are rich Text, never markup: ids, fw
versions and the like come off the network.
"""

import fnmatch
import ipaddress
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

_STATE_STYLE = {"online": "green", "safe_mode": "yellow", "offline": "red"}
_HEALTH_STYLE = {"ok": "green", "degraded": "yellow", "fault": "red"}
_LEVEL_STYLE = {"warning": "yellow", "alarm": "red"}
_STATES = ("online", "safe_mode", "offline", "unknown")


class DashboardError(ValueError):
    """A bad --sort or --filter."""


def _active_alarms(d):
    return {metric: level for metric, level in sorted((d.get("alarms") or {}).items()) if level != "ok"}


def _ago(d, now):
    return None if d.get("last_seen") is None else max(0.0, now - d["last_seen"])


def _ago_text(seconds):
    s = int(seconds)
    if s < 60:
        return "%ds ago" % s
    if s < 3600:
        return "%dm%02ds ago" % (s // 60, s % 60)
    if s < 86400:
        return "%dh%02dm ago" % (s // 3600, s // 60 % 60)
    return "%dd%02dh ago" % (s // 86400, s // 3600 % 24)


def _ip_order(text):
    try:
        address = ipaddress.ip_address(text)
        return (address.version, int(address), "")
    except ValueError:
        return (9, 0, text)


def _alarms_cell(d):
    active = _active_alarms(d)
    if not active:
        return Text("-")
    text = Text()
    for n, (metric, level) in enumerate(active.items()):
        text.append(", " if n else "")
        text.append("%s:%s" % (metric, level), style=_LEVEL_STYLE.get(level, ""))
    return text


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable  # (device dict, now) -> what sort and filter compare; None when unknown
    numeric: bool = False
    cell: Callable = None  # (device dict, value) -> Text; default: the value, or "-"
    order: Callable = None  # value -> sort key, when the value itself does not sort right


def _field(key):
    return lambda d, now: d.get(key)


def _styled(styles):
    return lambda d, value: Text(str(value or "-"), style=styles.get(value, "dim"))


COLUMNS = {
    "device": Column("device", _field("device_id")),
    "site": Column("site", _field("site")),
    "state": Column("state", _field("state"), cell=_styled(_STATE_STYLE)),
    "last_seen": Column("last seen", _ago, numeric=True,
                        cell=lambda d, value: Text("never" if value is None else _ago_text(value))),
    "fw": Column("fw", _field("fw")),
    "board": Column("board", _field("board")),
    "ip": Column("ip", _field("ip"), order=_ip_order),
    "rssi": Column("rssi", _field("rssi"), numeric=True),
    "heap": Column("heap", _field("heap_free"), numeric=True),
    "health": Column("health", _field("health"), cell=_styled(_HEALTH_STYLE)),
    "alarms": Column("alarms", lambda d, now: len(_active_alarms(d)), numeric=True,
                     cell=lambda d, value: _alarms_cell(d)),
    "queued": Column("queued", _field("queued"), numeric=True),
    "dropped": Column("dropped", _field("dropped"), numeric=True),
}
_ALIASES = {"device_id": "device", "heap_free": "heap"}


def column_name(name):
    """The COLUMNS key for a name as a user types it: "last seen", "Last-Seen", "heap_free", ..."""
    key = re.sub(r"[\s-]+", "_", name.strip().lower())
    key = _ALIASES.get(key, key)
    if key not in COLUMNS:
        raise DashboardError("unknown column %r (columns: %s)" % (name, ", ".join(COLUMNS)))
    return key


def sort_devices(devices, sort="device", now=None):
    """`sort` is a column name; a leading "-" sorts descending. Unknown values go last either way;
    ties keep device-id order. `last_seen` sorts by how long ago, so the freshest come first."""
    now = time.time() if now is None else now
    descending = sort.startswith("-")
    column = COLUMNS[column_name(sort[1:] if descending else sort)]
    rows = sorted(devices, key=lambda d: str(d.get("device_id")))
    key = column.order or (lambda v: v.lower() if isinstance(v, str) else v)
    known = [d for d in rows if column.value(d, now) is not None]
    unknown = [d for d in rows if column.value(d, now) is None]
    return sorted(known, key=lambda d: key(column.value(d, now)), reverse=descending) + unknown


_OPERATORS = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
              ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}
_TERM = re.compile(r"^([A-Za-z_][\w-]*)(!=|<=|>=|=|<|>)(.*)$")


def parse_filter(expr):
    """A predicate `(device dict, now) -> bool` for a filter expression.

    The expression is terms separated by spaces or commas; a device must match all of them:
      COLUMN=VALUE, COLUMN!=VALUE  text columns: case-insensitive, shell wildcards allowed
                                   (site=plant-*); an empty VALUE means unknown (fw=)
      COLUMN<N, >N, <=N, >=N, =N   numeric columns: rssi, heap (bytes), queued, dropped,
                                   alarms (how many active), last_seen (seconds ago)
      alarming                     at least one alarm above ok
      online, offline, safe_mode, unknown   that state
      anything else                a substring of the device id
    e.g. `state=offline`, `site=plant-a health!=ok`, `rssi<-80`, `last_seen>300`, `alarming,line-3`.
    Raises DashboardError (one line) for an unknown column or a comparison that makes no sense.
    """
    spaced = re.sub(r"\s*(!=|<=|>=|=|<|>)\s*", r"\1", (expr or "").strip())
    tests = [_term(term, expr) for term in re.split(r"[,\s]+", spaced) if term]
    return lambda d, now: all(test(d, now) for test in tests)


def _term(term, expr):
    match = _TERM.match(term)
    if not match:
        word = term.lower()
        if word == "alarming":
            return lambda d, now: bool(_active_alarms(d))
        if word in _STATES:
            return lambda d, now: d.get("state") == word
        return lambda d, now: word in str(d.get("device_id", "")).lower()
    name, op, wanted = match.groups()
    try:
        column = COLUMNS[column_name(name)]
    except DashboardError as exc:
        raise DashboardError("filter %r: %s" % (expr, exc)) from None
    compare = _OPERATORS[op]
    if wanted in ("", "-"):
        if op not in ("=", "!="):
            raise DashboardError("filter %r: %r needs a value" % (expr, term))
        return lambda d, now: compare(column.value(d, now), None)
    if column.numeric:
        try:
            number = float(wanted)
        except ValueError:
            raise DashboardError("filter %r: %s takes a number, not %r" % (expr, name, wanted)) from None
        # Unknown is no number: it passes only "!=".
        return lambda d, now: (op == "!=") if column.value(d, now) is None else compare(column.value(d, now), number)
    if op not in ("=", "!="):
        raise DashboardError("filter %r: %s is text; use = or !=" % (expr, name))
    pattern = wanted.lower()
    return lambda d, now: compare(fnmatch.fnmatchcase(str(column.value(d, now) or "").lower(), pattern), True)


def summary_line(summary, shown=None):
    line = "%d devices: %d online, %d offline, %d alarming" % (
        summary["total"], summary["online"], summary["offline"], summary["alarming"])
    return line if shown is None else line + " (showing %d)" % shown


def render(devices, summary, sort="device", filter=None, now=None):
    """The dashboard: the summary line over a table of the devices that pass `filter` (see
    parse_filter), sorted by `sort` (see sort_devices). `devices` are DeviceState objects or their
    as_dict() dicts; `summary` is FleetState.summary(). Raises DashboardError for a bad sort or filter."""
    now = time.time() if now is None else now
    keep = parse_filter(filter)
    rows = [d.as_dict() if hasattr(d, "as_dict") else d for d in devices]
    rows = sort_devices([d for d in rows if keep(d, now)], sort, now)
    table = Table()
    for column in COLUMNS.values():
        plain_number = column.numeric and column.cell is None  # right-aligned, so digits line up
        table.add_column(column.header, justify="right" if plain_number else "left", no_wrap=True)
    for d in rows:
        cells = []
        for column in COLUMNS.values():
            value = column.value(d, now)
            cells.append(column.cell(d, value) if column.cell else Text("-" if value is None else str(value)))
        table.add_row(*cells)
    return Group(Text(summary_line(summary, len(rows) if filter else None)), table)


def run_dashboard(get_snapshot, sort="device", filter=None, refresh_s=1.0, stop_event=None, console=None):
    """Show `render(*get_snapshot(), sort, filter)` live, redrawn every refresh_s, until stop_event is
    set (without one: until KeyboardInterrupt, which is left to the caller). A bad sort or filter
    raises DashboardError before anything is drawn."""
    stop_event = stop_event or threading.Event()
    first = render(*get_snapshot(), sort, filter)
    with Live(first, console=console, auto_refresh=False) as live:
        live.refresh()
        while not stop_event.wait(refresh_s):
            live.update(render(*get_snapshot(), sort, filter), refresh=True)
        live.update(render(*get_snapshot(), sort, filter), refresh=True)
