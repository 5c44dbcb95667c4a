"""`floorwatch fleet export`: the stored telemetry as one row per measurement (docs/fleet-export.md).

The "long" (tidy) layout analytics tools ingest without knowing the node's record structure: every
temperature, trend figure and per-axis vibration feature of every record becomes one row
(device, site, boot, seq, up_ms, time, sensor, quantity, axis, value, unit). The row is described by
floorwatch/contract/schemas/export.json. CSV and JSON Lines carry the same rows; what is null in
JSON is an empty field in CSV.

Flattening is written here by hand: it is a few loops over the stored record, which is the host's
view of a telemetry record (floorwatch.contract.records: t, dt, v with rms and pk in g and cf
derived; docs/contract.md). Keys a later version adds inside t, dt or v are exported too (numbers and
[x, y, z] lists, with an empty unit); booleans (`limited`, in records stored before telemetry v2)
are not measurements and are left out.
"""

import csv
import datetime
import json
import math

import click

from .store import Store

COLUMNS = ("device", "site", "boot", "seq", "up_ms", "time", "sensor", "quantity", "axis", "value", "unit")
AXES = ("x", "y", "z")
UNITS = {"temperature": "°C", "rate": "°C/min", "rise": "K", "eta": "s", "rms": "g", "pk": "g", "cf": "1",
         "kurt": "1", "vel": "mm/s", "zone": "zone", "rel_vel": "1", "rel_cf": "1", "rel_kurt": "1"}
ZONES = {"A": 1, "B": 2, "C": 3, "D": 4}  # ISO 10816-3 zones as an ordinal number, so they plot and compare
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def iso_time(t_ms):
    """Unix ms as ISO 8601 UTC with milliseconds (2026-01-01T00:00:00.120Z); None stays None."""
    if t_ms is None:
        return None
    return (_EPOCH + datetime.timedelta(milliseconds=t_ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _measurements(record):
    """(sensor, quantity, axis, value) for every reading of one telemetry record."""
    for sensor, value in record.get("t", {}).items():
        yield sensor, "temperature", None, value  # null: the read failed
    for sensor, trend in record.get("dt", {}).items():
        for quantity, value in trend.items():
            yield from _feature(sensor, quantity, value)
    for sensor, features in record.get("v", {}).items():
        for quantity, value in features.items():
            if quantity == "rel":
                for base, ratio in value.items():
                    yield from _feature(sensor, "rel_" + base, ratio)
            elif quantity == "zone":
                yield sensor, "zone", None, ZONES.get(value)
            else:
                yield from _feature(sensor, quantity, value)


def _feature(sensor, quantity, value):
    if isinstance(value, list) and len(value) == len(AXES):
        for axis, v in zip(AXES, value):
            yield sensor, quantity, axis, v
    elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        yield sensor, quantity, None, value


def rows(store, since_ms=None, device=None):
    """Export rows (dicts keyed by COLUMNS) of the stored records, oldest first per device."""
    for dev, site, boot, seq, up, t_ms, record in store.records(since_ms=since_ms, device=device):
        time = iso_time(t_ms)
        for sensor, quantity, axis, value in _measurements(record):
            yield {"device": dev, "site": site, "boot": boot, "seq": seq, "up_ms": up, "time": time,
                   "sensor": sensor, "quantity": quantity, "axis": axis, "value": value,
                   "unit": UNITS.get(quantity, "")}


def write_csv(row_iter, out):
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in row_iter:
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])


def write_jsonl(row_iter, out):
    for row in row_iter:
        out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")


def parse_since(text):
    """Unix ms from an ISO 8601 date/time (UTC unless it names an offset) or a Unix time in seconds."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is neither an ISO 8601 date/time (2026-01-31, 2026-01-31T08:00Z) "
                             "nor a Unix time in seconds") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        return (when - _EPOCH) // datetime.timedelta(milliseconds=1)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{text!r} is not a Unix time (seconds since 1970, not negative)")
    return round(seconds * 1000)


def _since(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("export")
@click.option("--db", "db_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The fleet monitor's SQLite store.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--since", callback=_since, metavar="TIME",
              help="Only records taken at or after TIME: ISO 8601 (UTC unless an offset is given) or Unix "
                   "seconds. Records without wall time are left out.")
@click.option("--device", metavar="ID", help="Only this device.")
@click.option("--out", type=click.File("w", encoding="utf-8", lazy=True), default="-",
              help="Output file (default: standard output).")
def command(db_path, fmt, since, device, out):
    """Export stored telemetry, one row per measurement (CSV or JSON Lines)."""
    with Store(db_path, readonly=True) as store:
        (write_csv if fmt == "csv" else write_jsonl)(rows(store, since, device), out)
    out.flush()
