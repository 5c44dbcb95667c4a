"""floorwatch.build: the firmware compiled for a board's arch, cached, with a stable app manifest.

Every test builds from a copy of firmware/ (never the tree itself) into its own build directory.
"""

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from floorwatch.build import MANIFEST_PATH, BuildError, build

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
ARCH_CODES = {"xtensawin": 10, "rv32imc": 11}  # MicroPython's native-arch numbers in a .mpy header


@pytest.fixture
def firmware(tmp_path):
    copy = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_the_deployable_set(firmware, tmp_path):
    built = build("xtensawin", firmware_dir=firmware, build_dir=tmp_path / "build")
    nodes = {f"/node/{p.stem}.mpy" for p in (FIRMWARE / "node").glob("*.py")}
    assert set(built.files) == {"/boot.py", "/main.py", "/lib/umqtt/simple.mpy"} | nodes
    # MicroPython starts only boot.py and main.py, and only as source.
    assert built.files["/boot.py"].read_bytes() == (FIRMWARE / "boot.py").read_bytes()
    assert built.files["/main.py"].read_bytes() == (FIRMWARE / "main.py").read_bytes()
    for path, local in built.files.items():
        data = local.read_bytes()
        assert built.hashes[path] == hashlib.sha256(data).hexdigest()
        if path.endswith(".mpy"):
            assert data[:2] == b"M\x06", path  # .mpy format 6: MicroPython 1.22 and later


def test_the_manifest_names_the_version_and_every_file(firmware, tmp_path):
    built = build("rv32imc", firmware_dir=firmware, build_dir=tmp_path / "build")
    version = re.search(r'VERSION = "([^"]+)"', (FIRMWARE / "node" / "__init__.py").read_text())[1]
    manifest = built.manifest()
    assert manifest["version"] == version == built.version
    assert manifest["files"] == built.hashes
    assert manifest["app"] == built.app and re.fullmatch(r"[0-9a-f]{64}", built.app)
    assert MANIFEST_PATH not in built.files  # the manifest describes the app; it is not part of it


@pytest.mark.parametrize("arch", sorted(ARCH_CODES))
def test_the_arch_flag_reaches_mpy_cross(firmware, tmp_path, arch):
    # Only a file with native code records its arch; the firmware has none, so add one.
    (firmware / "node" / "fast.py").write_text(
        "import micropython\n\n@micropython.native\ndef double(x):\n    return x * 2\n")
    built = build(arch, firmware_dir=firmware, build_dir=tmp_path / "build")
    assert built.files["/node/fast.mpy"].read_bytes()[2] >> 2 == ARCH_CODES[arch]
    assert built.files["/node/app.mpy"].read_bytes()[2] >> 2 == 0  # bytecode only: any chip


def test_a_rebuild_reuses_the_cache(firmware, tmp_path):
    first = build("xtensawin", firmware_dir=firmware, build_dir=tmp_path / "build")
    assert set(first.compiled) == {p for p in first.files if p.endswith(".mpy")}
    stamps = {p: local.stat().st_mtime_ns for p, local in first.files.items()}
    again = build("xtensawin", firmware_dir=firmware, build_dir=tmp_path / "build")
    assert again.compiled == ()
    assert again.files == first.files
    assert {p: local.stat().st_mtime_ns for p, local in again.files.items()} == stamps
    assert again.app == first.app


def test_the_arches_are_cached_apart(firmware, tmp_path):
    xtensa = build("xtensawin", firmware_dir=firmware, build_dir=tmp_path / "build")
    riscv = build("rv32imc", firmware_dir=firmware, build_dir=tmp_path / "build")
    assert riscv.compiled  # nothing of xtensawin's was taken for rv32imc
    assert not set(xtensa.files.values()) & {p for p in riscv.files.values() if p.suffix == ".mpy"}


def test_the_app_hash_is_stable_across_build_directories(firmware, tmp_path):
    one = build("xtensawin", firmware_dir=firmware, build_dir=tmp_path / "one")
    two = build("xtensawin", firmware_dir=firmware, build_dir=tmp_path / "two")
    assert two.compiled  # really compiled twice
    assert one.hashes == two.hashes
    assert one.manifest_bytes() == two.manifest_bytes()


def test_a_source_change_changes_that_file_and_the_app(firmware, tmp_path):
    before = build("xtensawin", firmware_dir=firmware, build_dir=tmp_path / "build")
    trend = firmware / "node" / "trend.py"
    trend.write_text(trend.read_text() + "\n_EXTRA = 1\n")
    after = build("xtensawin", firmware_dir=firmware, build_dir=tmp_path / "build")
    assert after.compiled == ("/node/trend.mpy",)
    assert after.app != before.app
    changed = {p for p in before.hashes if before.hashes[p] != after.hashes[p]}
    assert changed == {"/node/trend.mpy"}


def test_a_version_change_shows_in_the_manifest(firmware, tmp_path):
    init = firmware / "node" / "__init__.py"
    init.write_text(init.read_text().replace('VERSION = "', 'VERSION = "9.'))
    built = build("xtensawin", firmware_dir=firmware, build_dir=tmp_path / "build")
    assert built.version.startswith("9.")
    assert built.manifest()["version"] == built.version


def test_a_syntax_error_names_the_file(firmware, tmp_path):
    (firmware / "node" / "broken.py").write_text("def f(:\n    pass\n")
    with pytest.raises(BuildError) as caught:
        build("xtensawin", firmware_dir=firmware, build_dir=tmp_path / "build")
    message = str(caught.value)
    assert message.startswith("node/broken.py: ") and "SyntaxError" in message
    assert "\n" not in message
    leftovers = [p.name for p in (tmp_path / "build").rglob("*") if p.is_file() and "broken" in p.name]
    assert leftovers == []  # no half-written output to be mistaken for a cached one


def test_an_unknown_arch_or_a_wrong_directory_is_one_line(tmp_path):
    with pytest.raises(BuildError, match=r"^unknown mpy arch 'armv7m'; expected one of rv32imc, xtensawin$"):
        build("armv7m", build_dir=tmp_path)
    with pytest.raises(BuildError, match="no main.py"):
        build("xtensawin", firmware_dir=tmp_path, build_dir=tmp_path / "build")
