"""Run the firmware core's case files (tests/core/cases_*.py) as pytest tests.

The cases are plain functions in the MicroPython subset, so the same files run on CPython
(test_core.py) and inside a real MicroPython VM (test_core_vm.py). Case names are found by
parsing the files, so collection never imports firmware code; the firmware is imported only
inside the `firmware_env` fixture, which undoes its sys.path / sys.modules changes afterwards.
"""

import ast
import sys
from pathlib import Path

import pytest

CASES_DIR = Path(__file__).resolve().parent
TESTS_DIR = CASES_DIR.parent
ROOT = TESTS_DIR.parent
FIRMWARE = ROOT / "firmware"

# CPython has no `micropython` module; firmware only needs const() (and, later, the emitter
# decorators as no-ops). The simulator brings its own; this one exists only inside this runner.
_SHIM = '''"""micropython stand-in for running firmware core tests on CPython."""
def const(value):
    return value
def native(f):
    return f
viper = native
'''


def case_modules():
    return sorted(p.stem for p in CASES_DIR.glob("cases_*.py"))


def case_names(module):
    """The module's top-level test_* functions, in file order."""
    tree = ast.parse((CASES_DIR / (module + ".py")).read_text(), module + ".py")
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]


def pytest_generate_tests(metafunc):
    if "core_case" in metafunc.fixturenames:
        params = [(m, n) for m in case_modules() for n in case_names(m)]
        metafunc.parametrize("core_case", params, ids=["%s::%s" % (m[6:], n) for m, n in params])
    if "case_module" in metafunc.fixturenames:
        mods = case_modules()
        metafunc.parametrize("case_module", mods, ids=[m[6:] for m in mods])


@pytest.fixture
def list_cases():
    """case_names, for tests that check what ran against what the files define."""
    return case_names


def _ours(name):
    return name in ("node", "micropython") or name == "caselib" or name.startswith(("node.", "cases_"))


@pytest.fixture(scope="module")
def firmware_env(tmp_path_factory):
    """Firmware and case modules importable on CPython, with the micropython shim.

    Yields a loader: load(module_name) -> the imported case module, its FILES written to a
    temporary directory named by its DATA attribute.
    """
    shim = tmp_path_factory.mktemp("mpshim")
    (shim / "micropython.py").write_text(_SHIM)
    saved_path = list(sys.path)
    saved = {name: mod for name, mod in sys.modules.items() if _ours(name)}
    for name in saved:
        del sys.modules[name]
    sys.path[:0] = [str(FIRMWARE), str(CASES_DIR), str(shim)]
    loaded = {}

    def load(module):
        if module not in loaded:
            mod = __import__(module)
            files = getattr(mod, "FILES", None)
            if files:
                data = tmp_path_factory.mktemp(module)
                for name, text in files.items():
                    (data / name).write_text(text)
                mod.DATA = str(data)
            loaded[module] = mod
        return loaded[module]

    try:
        yield load
    finally:
        sys.path[:] = saved_path
        for name in [n for n in sys.modules if _ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
