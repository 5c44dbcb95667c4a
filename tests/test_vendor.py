"""The vendored umqtt.simple is byte-for-byte the release recorded in its ORIGIN.md."""

import hashlib
import re
from pathlib import Path

UMQTT = Path(__file__).resolve().parents[1] / "firmware" / "lib" / "umqtt"


def recorded_hash():
    text = (UMQTT / "ORIGIN.md").read_text(encoding="utf-8")
    found = re.findall(r"sha256 of `simple\.py`: `([0-9a-f]{64})`", text)
    assert len(found) == 1, "ORIGIN.md should record exactly one sha256 for simple.py"
    return found[0]


def test_simple_py_matches_origin_md():
    actual = hashlib.sha256((UMQTT / "simple.py").read_bytes()).hexdigest()
    assert actual == recorded_hash(), "firmware/lib/umqtt/simple.py differs from the vendored release"


def test_licence_is_kept_beside_it():
    assert "MIT" in (UMQTT / "LICENSE").read_text(encoding="utf-8")
