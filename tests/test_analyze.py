"""`floorwatch analyze`: the firmware's vibration analytics over recorded CSV captures.

Captures are synthesised with numpy from tones of known velocity, so the expected figures are
analytic: a sine of velocity RMS v at f Hz has acceleration RMS v * 2*pi*f, crest factor sqrt(2)
and kurtosis 1.5.
"""

import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner

from floorwatch import analyze, cli

G_MM_S2 = 9806.65  # standard gravity, mm/s^2


def tone(v_mm_s, f_hz, odr_hz, samples, phase=0.3):
    """Acceleration in g of a sine whose velocity RMS is v_mm_s."""
    t = np.arange(samples) / odr_hz
    peak_g = math.sqrt(2) * v_mm_s * 2 * math.pi * f_hz / G_MM_S2
    return peak_g * np.sin(2 * math.pi * f_hz * t + phase)


def write(tmp_path, columns, header=None, name="capture.csv"):
    path = tmp_path / name
    data = np.column_stack(columns)
    np.savetxt(path, data, delimiter=",", fmt="%.9f", header=header or "", comments="")
    if header is None:
        path.write_text(path.read_text().lstrip("\n"))
    return path


def analyze_json(path, *options):
    res = CliRunner().invoke(analyze.command, [str(path), "--json", *options])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return json.loads(res.output)


@pytest.fixture
def floorwatch(capsys):
    """Run `floorwatch ARGS` through cli.main: (exit status, stdout, stderr)."""
    added = "analyze" not in cli.cli.commands
    if added:  # until the lead registers it in cli.py
        cli.cli.add_command(analyze.command)

    def run(*args):
        try:
            cli.main([str(a) for a in args])
            status = 0
        except SystemExit as exc:
            status = exc.code
        out, err = capsys.readouterr()
        return status, out, err

    yield run
    if added:
        cli.cli.commands.pop("analyze")


def test_tones_give_their_velocity_and_zone(tmp_path):
    odr, n = 3200, 4096
    path = write(tmp_path, [tone(2.0, 50, odr, n), tone(0.5, 50, odr, n, phase=1.0),
                            1.0 + tone(5.0, 50, odr, n, phase=2.0)], header="x,y,z")
    rep = analyze_json(path)
    assert (rep["samples"], rep["window"], rep["windows"], rep["unused_samples"]) == (4096, 1024, 4, 0)
    assert rep["band"] == {"lo_hz": 10, "hi_hz": 1000, "limited": False}
    assert rep["counts_per_g"] == 16384 and rep["range_g"] == 2  # peak ~1.09 g: +-2 g does not clip
    assert rep["zone_limits_mm_s"] == [1.4, 2.8, 4.5]  # group 2, rigid by default
    axes = rep["axes"]
    assert list(axes) == ["x", "y", "z"]
    for name, v, zone in (("x", 2.0, "B"), ("y", 0.5, "A"), ("z", 5.0, "D")):
        figures = axes[name]
        assert figures["vel_mm_s"] == pytest.approx(v, rel=0.05), name
        assert figures["zone"] == zone, name
        assert figures["rms_g"] == pytest.approx(v * 2 * math.pi * 50 / G_MM_S2, rel=0.01), name
        assert figures["cf"] == pytest.approx(math.sqrt(2), rel=0.02), name
        assert figures["kurt"] == pytest.approx(1.5, rel=0.02), name
    # overall is the largest axis, figure by figure; z's gravity is removed with the mean
    assert rep["overall"]["vel_mm_s"] == axes["z"]["vel_mm_s"] and rep["overall"]["zone"] == "D"
    assert rep["overall"]["rms_g"] == max(a["rms_g"] for a in axes.values())
    assert len(rep["per_window"]) == 4
    mean_vel = sum(w["axes"]["x"]["vel_mm_s"] for w in rep["per_window"]) / 4
    assert axes["x"]["vel_mm_s"] == pytest.approx(mean_vel, rel=1e-12)


def test_machine_class_sets_the_zone(tmp_path):
    path = write(tmp_path, [tone(5.0, 50, 3200, 2048)])
    assert analyze_json(path)["axes"]["axis"]["zone"] == "D"
    rep = analyze_json(path, "--machine-group", "1", "--foundation", "flexible")
    assert rep["zone_limits_mm_s"] == [3.5, 7.1, 11.0] and rep["axes"]["axis"]["zone"] == "B"
    assert rep["machine"] == {"group": 1, "foundation": "flexible", "rpm": None}


def test_single_column_with_and_without_header(tmp_path):
    signal = tone(3.0, 50, 3200, 1024)
    named = analyze_json(write(tmp_path, [signal], header="accel", name="named.csv"))
    bare = analyze_json(write(tmp_path, [signal], name="bare.csv"))
    assert list(named["axes"]) == ["accel"] and list(bare["axes"]) == ["axis"]
    assert named["axes"]["accel"] == bare["axes"]["axis"]
    assert bare["axes"]["axis"]["vel_mm_s"] == pytest.approx(3.0, rel=0.05)
    assert bare["overall"] == bare["axes"]["axis"]
    # the same axis in a 3-column file gives the same figures
    three = analyze_json(write(tmp_path, [signal, 0 * signal, 0 * signal + 1], name="three.csv"))
    assert three["axes"]["x"]["vel_mm_s"] == pytest.approx(bare["axes"]["axis"]["vel_mm_s"], rel=1e-9)


def test_comments_blank_lines_and_byte_order_mark(tmp_path):
    signal = tone(3.0, 50, 3200, 128)
    plain = analyze_json(write(tmp_path, [signal], name="plain.csv"))
    decorated = tmp_path / "decorated.csv"
    lines = ["%.9f" % v for v in signal]
    lines[5:5] = ["", "# a comment, with a comma", "   "]
    decorated.write_bytes(b"\xef\xbb\xbf" + ("accel\r\n" + "\r\n".join(lines) + "\r\n").encode())
    rep = analyze_json(decorated)
    assert rep["samples"] == 128 and rep["axes"]["accel"] == plain["axes"]["axis"]


def test_table_output(tmp_path):
    path = write(tmp_path, [tone(2.0, 50, 3200, 3000), tone(0.5, 50, 3200, 3000), tone(1.0, 50, 3200, 3000)],
                 header="x,y,z")
    res = CliRunner().invoke(analyze.command, [str(path)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "3000 samples at 3200 Hz; 2 windows of 1024" in lines[0] and "952 samples left out" in lines[0]
    assert "16384 counts/g" in res.output and "10-1000 Hz (not band-limited)" in res.output
    rows = {line.split()[0]: line.split() for line in lines if line.split()[:1] in (["x"], ["y"], ["z"], ["overall"])}
    assert rows["x"][-1] == "B" and rows["y"][-1] == "A" and rows["z"][-1] == "A" and rows["overall"][-1] == "B"
    assert float(rows["x"][5]) == pytest.approx(2.0, rel=0.05)


def test_scale_follows_the_peak(tmp_path):
    # 5 g peaks: +-4 g would clip, so +-8 g (4096 counts/g)
    path = write(tmp_path, [5.0 * np.sin(2 * math.pi * 100 * np.arange(1024) / 3200)])
    rep = analyze_json(path)
    assert (rep["counts_per_g"], rep["range_g"]) == (4096, 8)
    assert rep["axes"]["axis"]["pk_g"] == pytest.approx(5.0, abs=1 / 4096)
    small = analyze_json(write(tmp_path, [0.001 * np.sin(np.arange(1024))], name="small.csv"))
    assert small["counts_per_g"] == 16384


def test_window_choice(tmp_path):
    signal = tone(1.0, 50, 3200, 300)
    rep = analyze_json(write(tmp_path, [signal]))
    assert (rep["window"], rep["windows"], rep["unused_samples"]) == (256, 1, 44)
    rep = analyze_json(write(tmp_path, [tone(1.0, 50, 3200, 1000)]), "--window", "128")
    assert (rep["window"], rep["windows"], rep["unused_samples"]) == (128, 7, 104)
    assert len(rep["per_window"]) == 7


def test_band_follows_odr_and_rpm(tmp_path):
    # 47 Hz at 1000 Hz ODR falls between FFT bins: leakage must not cost the velocity figure
    path = write(tmp_path, [tone(2.0, 47, 1000, 2048)])
    rep = analyze_json(path, "--odr", "1000")
    assert rep["band"] == {"lo_hz": 10, "hi_hz": 500, "limited": True}
    assert rep["axes"]["axis"]["vel_mm_s"] == pytest.approx(2.0, rel=0.05)
    res = CliRunner().invoke(analyze.command, [str(path), "--odr", "1000"])
    assert "band-limited" in res.output
    assert analyze_json(path, "--odr", "1000", "--rpm", "300")["band"]["lo_hz"] == 2


@pytest.mark.micropython_vm
def test_micropython_gives_the_cpython_figures(tmp_path, monkeypatch):
    odr, n = 3200, 2300
    rng = np.random.default_rng(7)
    path = write(tmp_path, [tone(2.0, 50, odr, n) + 0.02 * rng.standard_normal(n),
                            tone(0.7, 120, odr, n), 1.0 + tone(4.0, 31, odr, n)], header="x,y,z")
    monkeypatch.setattr(analyze, "VM_BATCH", 3)  # 4 windows: two VM runs
    cpython = analyze_json(path, "--window", "512")
    micropython = analyze_json(path, "--window", "512", "--micropython")
    assert (cpython["engine"], micropython["engine"]) == ("cpython", "micropython")
    assert micropython["windows"] == 4 and len(micropython["per_window"]) == 4
    for key in ("per_window", "axes", "overall"):
        assert _close(micropython[key], cpython[key]), key


def _close(a, b):
    """Equal to double precision (the VM's floats are doubles too)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    return a == b


def _rows(n, row="0.1,0.2,1.0"):
    return "\n".join([row] * n) + "\n"


BAD_FILES = [
    ("two columns", "0.1,0.2\n" + _rows(100, "0.1,0.2"), "line 1: 2 columns; a capture has 3 (x,y,z) or 1"),
    ("short row", "x,y,z\n" + _rows(3) + "0.1,0.2\n" + _rows(100), "line 5: 2 columns where the file has 3"),
    ("long row", _rows(70, "0.5") + "0.5,0.5,0.5\n", "line 71: 3 columns where the file has 1"),
    ("trailing comma", _rows(10) + "0.1,0.2,1.0,\n", "line 11: 4 columns where the file has 3"),
    ("word", "x,y,z\n" + _rows(2) + "0.1,abc,1.0\n" + _rows(100), "line 4: 'abc' is not a number"),
    ("mixed first row", "0.1,y,1.0\n" + _rows(100), "line 1: 'y' is not a number"),
    ("second header", "x,y,z\n" + _rows(80) + "x,y,z\n", "line 82: 'x' is not a number"),
    ("empty field", _rows(5) + "0.1,,1.0\n", "line 6: '' is not a number"),
    ("nan", _rows(66) + "nan,0,0\n", "line 67: 'nan' is not a finite number"),
    ("few samples", "x,y,z\n" + _rows(63), "63 samples; at least 64 are needed"),
    ("header only", "x,y,z\n", "0 samples; at least 64 are needed"),
    ("empty", "", "0 samples; at least 64 are needed"),
    ("not in g", _rows(100, "40000,0,0"), "values beyond +-32767 g; is the capture in g?"),
]


@pytest.mark.parametrize("content,message", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_files_give_one_line(tmp_path, floorwatch, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    status, out, err = floorwatch("analyze", path)
    assert status == 1 and out == ""
    assert err == "floorwatch: error: %s%s%s\n" % (path, " " if message.startswith("line") else ": ", message)


def test_unusable_paths_and_options_give_one_line(tmp_path, floorwatch):
    good = write(tmp_path, [tone(1.0, 50, 3200, 128)])
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 40)
    cases = [
        ((tmp_path / "missing.csv",), 2, "does not exist"),
        ((tmp_path,), 2, "is a directory"),
        ((binary,), 1, "%s: not a text (CSV) file" % binary),
        ((good, "--odr", "0"), 2, "Invalid value for '--odr'"),
        ((good, "--odr", "-50"), 2, "Invalid value for '--odr'"),
        ((good, "--odr", "16"), 2, "16 Hz leaves no velocity band"),
        ((good, "--odr", "100000", "--window", "64"), 2, "no 64-point bin of 100000 Hz falls in 10..1000 Hz"),
        ((good, "--window", "100"), 2, "100 is not a power of two from 64 to 2048"),
        ((good, "--window", "4096"), 2, "4096 is not a power of two from 64 to 2048"),
        ((good, "--window", "256"), 1, "%s: 128 samples, fewer than one window of 256" % good),
        ((good, "--machine-group", "3"), 2, "Invalid value for '--machine-group'"),
        ((good, "--rpm", "0"), 2, "Invalid value for '--rpm'"),
    ]
    if os.name == "posix" and os.geteuid() != 0:  # root reads anything
        locked = write(tmp_path, [tone(1.0, 50, 3200, 128)], name="locked.csv")
        locked.chmod(0)
        cases.append(((locked,), 2, "is not readable"))
    for args, status_wanted, words in cases:
        status, out, err = floorwatch("analyze", *args)
        assert status == status_wanted, (args, err)
        assert err.startswith("floorwatch: error: ") and err.count("\n") == 1, (args, err)
        assert words in err, (args, err)
        assert "Traceback" not in err and out == ""
        if len(args) == 1:  # the problem is the file: it is named
            assert str(args[0]) in err, err
