"""`fleet export`: one row per measurement, the same rows in CSV and JSON Lines, valid per export.json."""

import csv
import io
import json
from importlib import resources

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from floorwatch import contract
from floorwatch.fleet.export import command, parse_since
from floorwatch.fleet.store import Store, StoreError

T0 = 1767225000000  # 2025-12-31T23:50:00Z, so up 600120 is 2026-01-01T00:00:00.120Z
COLS = {"t": ["bearing", "winding"], "v": ["motor"]}
RECORDS = [  # telemetry v2 (docs/contract.md): positional, rms and pk in mg, no cf
    [600120, [41.25, None], None, [[0.021, 1.25, 36000]]],
    [610120, [41.31], [[12.0, 11.0, 31.0, 41.0, 39.0, 101.0, 3.05, 2.98, 3.21, 0.81, 0.77, 1.12, "B", 1.04, 0.99, 1.02]]],
]
ROWS_PER_MESSAGE = 2 + 3 + 2 + 5 * 3 + 1 + 3  # the measurements in RECORDS (winding: a failed read twice)


def telemetry(seq, t0=T0, boot=7):
    body = {"boot": boot, "seq": seq, "n": len(RECORDS), "cols": COLS, "r": RECORDS}
    if t0 is not None:
        body["t0"] = t0
    return contract.validate("telemetry", body)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "fleet.db"
    with Store(path) as store:
        for _ in range(2):  # everything arrives twice
            store.add_telemetry("plant-a", "press-7", telemetry(0))
            store.add_telemetry("plant-a", "press-7", telemetry(2, t0=T0 + 3_600_000))
            store.add_telemetry("plant-b", "fan-1", telemetry(0, t0=None, boot=3))
    return str(path)


def export(*args):
    result = CliRunner().invoke(command, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def jsonl(*args):
    return [json.loads(line) for line in export("--format", "jsonl", *args).splitlines()]


def from_csv(text):
    """CSV rows typed as the JSON rows are: empty is null, numbers are numbers."""
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        for key in ("boot", "seq", "up_ms"):
            row[key] = int(row[key])
        for key in ("time", "axis", "value"):
            row[key] = row[key] or None
        if row["value"] is not None:
            row["value"] = float(row["value"])
    return rows


def test_every_measurement_once_and_every_row_valid_per_the_schema(db):
    rows = jsonl("--db", db)
    assert len(rows) == 3 * ROWS_PER_MESSAGE  # though every message was stored twice
    schema = json.loads(resources.files("floorwatch.contract").joinpath("schemas", "export.json").read_text())
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for row in rows:
        validator.validate(row)
    first = rows[0]
    assert (first["device"], first["boot"], first["seq"], first["time"], first["sensor"], first["quantity"],
            first["axis"], first["value"], first["unit"]) == \
        ("fan-1", 3, 0, None, "bearing", "temperature", None, 41.25, "°C")
    press = [r for r in rows if r["device"] == "press-7"]
    assert press[0]["time"] == "2026-01-01T00:00:00.120Z"  # t0 + up
    by_key = {(r["seq"], r["sensor"], r["quantity"], r["axis"]): r for r in press}
    assert by_key[(0, "winding", "temperature", None)]["value"] is None  # a failed read
    assert by_key[(1, "motor", "vel", "z")]["value"] == 1.12 and by_key[(1, "motor", "vel", "z")]["unit"] == "mm/s"
    # rms and pk are stored and exported in g, cf derived (pk / rms), as before telemetry v2
    assert by_key[(1, "motor", "rms", "x")]["value"] == 0.012 and by_key[(1, "motor", "rms", "x")]["unit"] == "g"
    assert by_key[(1, "motor", "pk", "z")]["value"] == 0.101
    assert by_key[(1, "motor", "cf", "y")]["value"] == 3.55 and by_key[(1, "motor", "cf", "y")]["unit"] == "1"
    assert by_key[(1, "winding", "temperature", None)]["value"] is None  # left out of the record: null
    assert by_key[(1, "motor", "zone", None)]["value"] == 2  # zone B
    assert by_key[(1, "motor", "rel_kurt", None)]["value"] == 1.02
    assert by_key[(0, "bearing", "eta", None)]["unit"] == "s"
    assert not any(r["quantity"] == "limited" for r in rows)


def test_csv_and_jsonl_carry_the_same_rows(db, tmp_path):
    out = tmp_path / "out.csv"
    assert export("--db", db, "--format", "csv", "--out", str(out)) == ""
    rows = jsonl("--db", db)
    for row in rows:
        row["value"] = None if row["value"] is None else float(row["value"])
    assert from_csv(out.read_text(encoding="utf-8")) == rows


@pytest.mark.parametrize("since", ["2026-01-01T00:30:00Z", "2026-01-01 01:30+01:00", "1767227400", "1767227400.0"])
def test_since_keeps_records_taken_at_or_after_it(db, since):
    rows = jsonl("--db", db, "--since", since)
    assert {(r["device"], r["seq"]) for r in rows} == {("press-7", 2), ("press-7", 3)}


def test_device_filter(db):
    assert {r["device"] for r in jsonl("--db", db, "--device", "fan-1")} == {"fan-1"}
    assert export("--db", db, "--device", "nobody") == "device,site,boot,seq,up_ms,time,sensor,quantity,axis,value,unit\n"


@pytest.mark.parametrize("bad", ["yesterday", "-5", "nan", "2026-13-01"])
def test_a_bad_since_is_a_one_line_usage_error(db, bad):
    result = CliRunner().invoke(command, ["--db", db, "--since", bad])
    assert result.exit_code == 2
    assert f"Invalid value for '--since': {bad!r}" in result.output
    with pytest.raises(ValueError) as exc:
        parse_since(bad)
    assert "\n" not in str(exc.value)


def test_a_file_that_is_no_store_is_refused(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\0garbage" * 200)
    with pytest.raises(StoreError, match="not a usable fleet store"):
        CliRunner().invoke(command, ["--db", str(junk)], catch_exceptions=False)
