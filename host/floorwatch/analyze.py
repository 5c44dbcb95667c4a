"""`floorwatch analyze`: the node's vibration analytics over a recorded accelerometer capture.

The figures come from the firmware's own module, firmware/node/vibration.py, run unchanged on
CPython (imported as the simulator imports it, see firmware_import) or, with --micropython, inside
a real MicroPython VM (floorwatch.mpvm). So a capture yields what a node would report for it.

Input: CSV text, a row per sample, in g: three columns x,y,z, or a single column (one axis, then
the only one reported). An optional first row without any number is a header; blank lines and
lines starting with '#' are skipped.

The samples become int16 counts, as the accelerometer would deliver them. The scale is the
MPU6050's 16384 counts/g (its +-2 g range), halved until the capture's largest |value| fits in
16 bits: the finest of the ranges +-2, 4, 8, 16, ... g that does not clip.

The capture is cut into consecutive windows of --window samples (a power of two, 64..2048;
default 1024, or the largest power of two within a shorter capture); samples after the last full
window are left out. Each window is analysed as the node analyses one. The table shows the mean of
each figure over the windows, as a node publishing every window would show on average; the JSON
also lists every window. "overall" is the largest axis for each figure, as the node's NAME.rms,
NAME.vel, ... metrics are; zones are judged on the mean velocity.
"""

import binascii
import json
import math
import struct
import sys
from array import array
from pathlib import Path

import click

from . import firmware_import
from .sim.runtime import FIRMWARE_DIR

MIN_WINDOW = 64
MAX_WINDOW = 2048
DEFAULT_WINDOW = 1024
FINEST_COUNTS_PER_G = 16384  # MPU6050, +-2 g
INT16_MAX = 32767
ATTRS = ("rms", "pk", "cf", "kurt", "vel")  # the Analyzer's result lists, x,y,z each
FIELDS = ("rms_g", "pk_g", "cf", "kurt", "vel_mm_s")  # their names in the report
XYZ = ("x", "y", "z")

# MicroPython VM budget. Measured: ~75M fuel and ~15 ms per 1024-sample window, ~60M to start;
# the limits only stop a runaway. The VM's GC is off (see mpvm) and each window leaves ~6 KB of
# garbage in its 16 MB heap, so long captures are run in batches of windows.
VM_FUEL_BASE = 500_000_000
VM_FUEL_PER_SAMPLE = 250_000
VM_WALL_PER_SAMPLE_S = 0.001
VM_BATCH = 1024  # windows per VM run


def _fail(path, lineno, message):
    raise click.ClickException("%s line %d: %s" % (path, lineno, message))


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_capture(path):
    """(header names or None, rows of 1 or 3 floats) from a CSV capture.

    Raises click.ClickException naming the file (and the line) for anything that is not a capture.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is no field
    except UnicodeDecodeError:
        raise click.ClickException("%s: not a text (CSV) file" % path)
    except OSError as exc:
        raise click.ClickException("%s: cannot read it: %s" % (path, exc.strerror or exc))
    names = None
    rows = []
    width = None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split(",")]
        if width is None:
            if len(fields) not in (1, 3):
                _fail(path, lineno, "%d columns; a capture has 3 (x,y,z) or 1" % len(fields))
            width = len(fields)
            if not any(_is_number(field) for field in fields):
                names = fields
                continue
        elif len(fields) != width:
            _fail(path, lineno, "%d column%s where the file has %d" % (
                len(fields), "" if len(fields) == 1 else "s", width))
        values = []
        for field in fields:
            try:
                value = float(field)
            except ValueError:
                _fail(path, lineno, "%r is not a number" % field)
            if not math.isfinite(value):
                _fail(path, lineno, "%r is not a finite number" % field)
            values.append(value)
        rows.append(values)
    return names, rows


def counts_per_g(rows):
    """The finest scale (16384 counts/g halved k times) at which no sample clips; None if none does."""
    peak = max((abs(v) for row in rows for v in row), default=0.0)
    scale = FINEST_COUNTS_PER_G
    while peak * scale > INT16_MAX:
        if scale == 1:
            return None
        scale //= 2
    return scale


def to_counts(rows, n_samples, scale):
    """array('h') of the first n_samples rows, x,y,z interleaved; a single axis goes in x."""
    counts = array("h", bytes(6 * n_samples))
    for i in range(n_samples):
        for axis, value in enumerate(rows[i]):
            counts[3 * i + axis] = round(value * scale)
    return counts


def run_cpython(analyzer, counts, n, windows, scale_g):
    """Per window: [rms, pk, cf, kurt, vel], each a list of 3 floats (x, y, z)."""
    results = []
    for w in range(windows):
        analyzer.run(counts[3 * n * w: 3 * n * (w + 1)], scale_g)
        results.append([list(getattr(analyzer, attr)) for attr in ATTRS])
    return results


# Runs in the VM. Floats cross both ways as IEEE doubles in hex (MicroPython's decimal float
# parsing and printing are not exact), so the two runs can be compared to the last bit.
_VM_CODE = """
import sys, struct, binascii
from array import array
sys.path.insert(0, "/input/firmware")
from node import vibration
N = %(n)d
ODR, LO, HI, SCALE = struct.unpack("<4d", binascii.unhexlify(%(params)r))
analyzer = vibration.Analyzer(N, ODR, LO, HI)
buf = array("h", bytes(6 * N))
f = open("/input/counts.bin", "rb")
for w in range(%(windows)d):
    f.readinto(buf)
    analyzer.run(buf, SCALE)
    r = analyzer.rms + analyzer.pk + analyzer.cf + analyzer.kurt + analyzer.vel
    print("W", binascii.hexlify(struct.pack("<15d", *r)).decode())
f.close()
print("END")
"""


def run_micropython(firmware_dir, counts, n, windows, odr, lo, hi, scale_g):
    """run_cpython's result, computed by the firmware inside the MicroPython VM."""
    results = []
    for first in range(0, windows, VM_BATCH):
        batch = min(VM_BATCH, windows - first)
        data = counts[3 * n * first: 3 * n * (first + batch)]
        results += _vm_run(firmware_dir, data, n, batch, odr, lo, hi, scale_g)
    return results


def _vm_run(firmware_dir, counts, n, windows, odr, lo, hi, scale_g):
    from . import mpvm

    data = array("h", counts)
    if sys.byteorder != "little":
        data.byteswap()
    params = binascii.hexlify(struct.pack("<4d", odr, lo, hi, scale_g)).decode()
    code = _VM_CODE % {"n": n, "params": params, "windows": windows}
    samples = n * windows
    try:
        res = mpvm.run_in_vm(code, mounts={"firmware/node": Path(firmware_dir) / "node",
                                           "counts.bin": data.tobytes()},
                             fuel=VM_FUEL_BASE + VM_FUEL_PER_SAMPLE * samples,
                             wall_timeout_seconds=60 + VM_WALL_PER_SAMPLE_S * samples)
    except mpvm.VMError as exc:
        raise click.ClickException("the MicroPython VM failed: %s" % str(exc).strip().splitlines()[-1])
    results = []
    for line in res.stdout.splitlines():
        if line.startswith("W "):
            flat = struct.unpack("<15d", binascii.unhexlify(line[2:]))
            results.append([list(flat[3 * k: 3 * k + 3]) for k in range(len(ATTRS))])
    if len(results) != windows or not res.stdout.rstrip().endswith("END"):
        raise click.ClickException("the MicroPython VM gave %d of %d windows" % (len(results), windows))
    return results


def _figures(values, axes, vibration, limits):
    """{"axes": {name: {field: value, "zone": Z}}, "overall": {...}} from [rms, pk, cf, kurt, vel]."""
    per_axis = {}
    for index, name in enumerate(axes):
        figures = {field: values[k][index] for k, field in enumerate(FIELDS)}
        figures["zone"] = vibration.zone(figures["vel_mm_s"], limits)
        per_axis[name] = figures
    overall = {field: max(per_axis[name][field] for name in axes) for field in FIELDS}
    overall["zone"] = vibration.zone(overall["vel_mm_s"], limits)
    return {"axes": per_axis, "overall": overall}


def report(path, rows, names, odr, group, foundation, rpm, window, micropython, firmware_dir=None):
    """The analysis as a JSON-able dict (see --json); click exceptions for unusable input."""
    firmware_dir = Path(firmware_dir or FIRMWARE_DIR)
    if not (firmware_dir / "node" / "vibration.py").is_file():
        raise click.ClickException("%s/node/vibration.py not found: analyze runs the firmware from a "
                                   "clone of the floorwatch repository" % firmware_dir)
    vibration = firmware_import.load("node.vibration", firmware_dir)
    total = len(rows)
    if total < MIN_WINDOW:
        raise click.ClickException("%s: %d samples; at least %d are needed" % (path, total, MIN_WINDOW))
    if window is None:
        window = DEFAULT_WINDOW
        while window > total:
            window //= 2
    elif window > total:
        raise click.ClickException("%s: %d samples, fewer than one window of %d" % (path, total, window))
    lo, hi, limited = vibration.band(odr, rpm)
    if lo >= hi:
        raise click.BadParameter("%g Hz leaves no velocity band (%g..%g Hz)" % (odr, lo, hi),
                                 param_hint="'--odr'")
    scale = counts_per_g(rows)
    if scale is None:
        raise click.ClickException("%s: values beyond +-32767 g; is the capture in g?" % path)
    odr, lo, hi = float(odr), float(lo), float(hi)  # the VM gets them as doubles: the same here
    try:  # the firmware's own checks (e.g. no FFT bin in the band)
        analyzer = vibration.Analyzer(window, odr, lo, hi)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--odr'")
    windows = total // window
    counts = to_counts(rows, windows * window, scale)
    if micropython:
        results = run_micropython(firmware_dir, counts, window, windows, odr, lo, hi, 1.0 / scale)
    else:
        results = run_cpython(analyzer, counts, window, windows, 1.0 / scale)

    axes = list(XYZ) if len(rows[0]) == 3 else [(names[0] if names and names[0] else "axis")]
    limits = vibration.zone_limits(group, foundation)
    mean = [[sum(r[k][a] for r in results) / windows for a in range(3)] for k in range(len(ATTRS))]
    summary = _figures(mean, axes, vibration, limits)
    return {
        "file": str(path),
        "engine": "micropython" if micropython else "cpython",
        "odr_hz": odr,
        "samples": total,
        "window": window,
        "windows": windows,
        "unused_samples": total - windows * window,
        "counts_per_g": scale,
        "range_g": (INT16_MAX + 1) // scale,
        "band": {"lo_hz": lo, "hi_hz": hi, "limited": bool(limited)},
        "machine": {"group": group, "foundation": foundation, "rpm": rpm},
        "zone_limits_mm_s": list(limits),
        "axes": summary["axes"],
        "overall": summary["overall"],
        "per_window": [_figures(r, axes, vibration, limits) for r in results],
    }


def format_table(rep):
    """The report as readable text."""
    lines = [
        "%s: %d samples at %g Hz; %d window%s of %d (%.3g s each)%s" % (
            rep["file"], rep["samples"], rep["odr_hz"], rep["windows"], "" if rep["windows"] == 1 else "s",
            rep["window"], rep["window"] / rep["odr_hz"],
            ", last %d samples left out" % rep["unused_samples"] if rep["unused_samples"] else ""),
        "scale: %d counts/g (the +-%d g range, the finest where nothing clips)" % (
            rep["counts_per_g"], rep["range_g"]),
    ]
    band = rep["band"]
    if band["limited"]:
        lines.append("velocity band: %g-%g Hz, band-limited: ISO 10816 measures up to 1000 Hz, which "
                     "takes an ODR of 2000 Hz; velocity may read low" % (band["lo_hz"], band["hi_hz"]))
    else:
        lines.append("velocity band: %g-%g Hz (not band-limited)" % (band["lo_hz"], band["hi_hz"]))
    machine = rep["machine"]
    lines.append("zones: ISO 10816-3 group %d, %s foundation: A/B %g, B/C %g, C/D %g mm/s" % (
        (machine["group"], machine["foundation"]) + tuple(rep["zone_limits_mm_s"])))
    lines.append("engine: %s running firmware/node/vibration.py; mean over %d window%s:" % (
        "MicroPython VM" if rep["engine"] == "micropython" else "CPython", rep["windows"],
        "" if rep["windows"] == 1 else "s"))
    lines.append("")
    lines.append("%-8s %9s %9s %7s %9s %9s %5s" % ("axis", "RMS g", "peak g", "crest", "kurtosis",
                                                   "vel mm/s", "zone"))
    rows = list(rep["axes"].items())
    if len(rows) > 1:
        rows.append(("overall", rep["overall"]))
    for name, f in rows:
        lines.append("%-8s %9.4f %9.4f %7.2f %9.2f %9.2f %5s" % (
            name[:8], f["rms_g"], f["pk_g"], f["cf"], f["kurt"], f["vel_mm_s"], f["zone"]))
    return "\n".join(lines)


def _window(ctx, param, value):
    if value is not None and (value < MIN_WINDOW or value > MAX_WINDOW or value & (value - 1)):
        raise click.BadParameter("%d is not a power of two from %d to %d" % (value, MIN_WINDOW, MAX_WINDOW))
    return value


@click.command("analyze")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--odr", default=3200.0, show_default=True, type=click.FloatRange(0, min_open=True),
              metavar="HZ", help="Sample rate of the capture (the node's default ADXL345 rate).")
@click.option("--machine-group", "group", default="2", show_default=True, type=click.Choice(["1", "2"]),
              help="ISO 10816-3 machine group: 1 large (above 300 kW), 2 medium (15-300 kW).")
@click.option("--foundation", default="rigid", show_default=True, type=click.Choice(["rigid", "flexible"]))
@click.option("--rpm", type=click.FloatRange(0, min_open=True), metavar="R",
              help="Machine speed; below 600 rpm the velocity band starts at 2 Hz instead of 10 Hz.")
@click.option("--window", type=int, callback=_window, metavar="N",
              help="Samples per window, a power of two 64..2048 [default: 1024, or fewer for a short capture].")
@click.option("--micropython", is_flag=True, help="Run the firmware inside the MicroPython VM instead of CPython.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def command(file, odr, group, foundation, rpm, window, micropython, as_json):
    """Run the node's vibration analytics over a recorded capture FILE.

    FILE is CSV in g, a row per sample: x,y,z or a single axis; a header row is optional.
    """
    names, rows = read_capture(file)
    rep = report(file, rows, names, odr, int(group), foundation, rpm, window, micropython)
    click.echo(json.dumps(rep) if as_json else format_table(rep))
