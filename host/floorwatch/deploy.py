"""`floorwatch deploy`: put the node firmware and one device's config on a board running MicroPython.

    deploy("/dev/ttyUSB0", "press-7.json", board="esp32-devkitc")   # -> what was done (a dict)

1. Before the board is touched: the config is checked against the contract (floorwatch.contract)
   and against the firmware's own rules (firmware/node/config.py, run on CPython), including its
   credentials check (a broker entry the node would refuse to log in with is not deployed), and
   the firmware is built for the board's architecture (floorwatch.build; cached).
2. Over the raw REPL, with mpremote's SerialTransport as a library (its fs_* calls are what
   `mpremote fs cp` sends): every file whose SHA-256 on the board already matches is skipped, the
   others are written; files under /node and /lib that the build does not have are removed
   (nothing else: config.good.json, the queue, baseline.json are the node's); config.json is
   written; the app manifest /app.json goes last, and an outdated one is removed before the first
   app file changes, so a deploy cut short never claims to be complete.
3. The board is reset as `mpremote reset` does it, and the console is read until the node prints
   `floorwatch <VERSION> device <device_id>`: the version and id it reports must be ours.

Written here, since mpremote has no such calls: the plan (skip, remove, manifest last), hashing
every file in one exchange (mpremote's fs_hashfile loop, batched: a no-op rerun costs one round
trip instead of two per file), entering the raw REPL with retries (a board still booting misses
the first Ctrl-C), and the wait for the boot line, on the port left open since the reset (output
with nobody listening is lost) and reopened only when it vanishes (native-USB boards re-enumerate).

installed(port) reads what a board runs (app manifest, config hash, MicroPython release, MAC)
without writing anything, then resets it so the node runs again.
"""

import contextlib
import errno
import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path

import click
import serial
from mpremote.transport import TransportError
from mpremote import transport_serial
from mpremote.transport_serial import SerialTransport

from . import boards, build as builder, contract, firmware_import
from .ports import resolve

DEFAULT_BOARD = "esp32-devkitc"
CONFIG_PATH = "/config.json"
MANAGED = ("/node", "/lib")  # the trees a deploy owns; everything else on the flash is the node's
RESET_CODE = "import time, machine; time.sleep_ms(100); machine.reset()"  # as `mpremote reset`
BOOT_LINE = re.compile(r"floorwatch (\S+) device (\S+)\s*$")
REPL_TIMEOUT_S = 10  # at most this long to find the raw REPL (mpremote's own limit)
REPL_ATTEMPT_S = 2.5  # one try: Ctrl-C, Ctrl-A, wait for the prompt
IO_TIMEOUT_S = 10  # a board silent this long in the middle of an exchange is gone
CHUNK = 4096  # bytes per write exec: most files in one; a fresh ESP32 heap (soft reset) has room
MPY_ARCH_CODES = {"xtensawin": 10, "rv32imc": 11}  # MicroPython's MP_NATIVE_ARCH_* numbers


class DeployError(ValueError):
    """A deploy that cannot start or did not finish; str() is one line saying why."""


# --- what goes onto the board ------------------------------------------------------------------
def config_bytes(config):
    """The bytes config.json gets: a file's own bytes, or a dict as canonical JSON."""
    if isinstance(config, (str, os.PathLike)):
        try:
            return Path(config).read_bytes()
        except OSError as exc:
            raise DeployError(f"{config}: cannot read it: {exc.strerror or exc}") from None
    try:
        return (json.dumps(config, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()
    except (TypeError, ValueError) as exc:
        raise DeployError(f"config: not JSON: {exc}") from None


def config_sha256(config):
    """SHA-256 (hex) of the config.json a deploy of `config` writes; installed() reports the same."""
    return hashlib.sha256(config_bytes(config)).hexdigest()


def check_config(config, firmware_dir=None):
    """(parsed config, bytes for config.json), or DeployError naming the file and the field.

    The contract's schema and rules first, then the firmware's config.validate: the node itself
    would refuse what it refuses. Then the firmware's credentials_problem for every broker entry:
    the node would run on such a config but never connect (no user, no password, a placeholder,
    too short), so it is not deployed. No message shows a password.
    """
    label = str(config) if isinstance(config, (str, os.PathLike)) else "config"
    data = config_bytes(config)
    node_config = firmware_import.load("node.config", firmware_dir)
    try:
        cfg = contract.validate("config", data)
        validated = node_config.validate(cfg)
    except ValueError as exc:  # ContractError, and the firmware's ConfigError
        raise DeployError(f"{label}: {exc}") from None
    for field, server in zip(("broker", "broker.backup"), node_config.brokers(validated["broker"])):
        problem = node_config.credentials_problem(server, field)
        if problem is not None:
            raise DeployError(f"{label}: {problem}")
    return cfg, data


def build_app(arch, firmware_dir=None, build_dir=None):
    """The app manifest of the firmware built for `arch`: {"version", "app", "files"}."""
    return _build(arch, firmware_dir, build_dir).manifest()


def _build(arch, firmware_dir, build_dir):
    try:
        return builder.build(arch, firmware_dir=firmware_dir, build_dir=build_dir)
    except builder.BuildError as exc:
        raise DeployError(f"cannot build the firmware: {exc}") from None


# --- talking to the board ----------------------------------------------------------------------
def _one_line(text, limit=200):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else "..." + text[-(limit - 3):]


def _open(port):
    try:
        return SerialTransport(port, timeout=IO_TIMEOUT_S)
    except (TransportError, OSError, ValueError) as exc:  # SerialException is an OSError
        raise DeployError(f"cannot open {port}: {_one_line(exc)}") from None


_printed = threading.local()


def _mpremote_print(*args, **kwargs):
    """print() inside mpremote's serial transport: what it prints when it cannot enter the raw REPL
    belongs in our error message, kept per thread (several boards may connect at once; a
    redirect of sys.stdout would be process-wide)."""
    lines = getattr(_printed, "lines", None)
    if lines is None:
        print(*args, **kwargs)
    else:
        lines.append(" ".join(str(a) for a in args))


transport_serial.print = _mpremote_print


def _connect(port, timeout=REPL_TIMEOUT_S):
    """An open transport in the raw REPL, with a fresh heap (soft reset; main.py does not run).

    Retries until `timeout`: a native-USB port may still be re-enumerating, and a board still
    booting misses the Ctrl-C that should stop its program.
    """
    try:
        return _try_connect(port, timeout)
    finally:
        _printed.lines = None


def _try_connect(port, timeout):
    deadline = time.monotonic() + timeout
    transport, opened, last = None, False, ""
    while True:
        printed = _printed.lines = []  # mpremote prints what it got when it gives up
        try:
            if transport is None:
                transport = _open(port)
                opened = True
            attempt = max(0.5, min(REPL_ATTEMPT_S, deadline - time.monotonic()))
            transport.enter_raw_repl(soft_reset=True, timeout_overall=attempt)
            return transport
        except DeployError as exc:  # the port cannot be opened (yet)
            last = str(exc)
        except TransportError as exc:
            last = " ".join(printed).strip() or str(exc)
        except OSError as exc:  # the port went away under us: open it again
            last = str(exc)
            _close(transport)
            transport = None
        if time.monotonic() >= deadline:
            break
        if transport is None:
            time.sleep(0.25)
    if transport is not None:
        _close(transport)
    if not opened:
        raise DeployError(last)
    got = "no answer" if last in ("", "b''") else f"last output: {_one_line(last)}"
    raise DeployError(f"no MicroPython raw REPL on {port} within {timeout:g} s ({got})")


def _restart(transport):
    """After a failed deploy: reset the board rather than leave its node stopped at the REPL."""
    with contextlib.suppress(Exception):
        transport.exec_raw_no_follow(RESET_CODE)
    _close(transport)


def _close(transport):
    with contextlib.suppress(Exception):
        transport.close()


def _board_facts(transport):
    """(MicroPython release, sys.implementation._mpy or 0, MAC as aa:bb:..)."""
    transport.exec("import os, sys, machine")
    release, mpy, mac = transport.eval(
        "(os.uname()[2], getattr(sys.implementation, '_mpy', 0), machine.unique_id())")
    return release, mpy, ":".join(f"{b:02x}" for b in mac)


def _check_mpy(port, board, release, mpy, built):
    """The board must load what we built: the .mpy version, and the arch when it says one."""
    if not mpy:
        return  # too old to say: a wrong file shows as an import error in the boot output
    compiled = next(local for path, local in built.files.items() if path.endswith(".mpy"))
    made = compiled.read_bytes()[1]  # the header: b"M", then the format version
    if mpy & 0xFF != made:
        raise DeployError(f"the board on {port} runs MicroPython {release}, which loads .mpy version "
                          f"{mpy & 0xFF}; mpy-cross made version {made}")
    arch = mpy >> 10
    if arch and arch != MPY_ARCH_CODES[board["mpy_arch"]]:
        names = {code: name for name, code in MPY_ARCH_CODES.items()}
        raise DeployError(f"the board on {port} is a {names.get(arch, f'arch {arch}')} chip, not "
                          f"{board['mpy_arch']} as board {board['id']} is: pass the right --board")


# mpremote's fs_hashfile costs two round trips per file; this is its loop, run over every path
# in one exec, so a deploy that changes nothing takes one exchange to find that out.
_SHA256_DEF = """import hashlib
def _fw_sha256(path, buf=memoryview(bytearray(256))):
    try:
        f = open(path, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    with f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(buf[:n])
    return h.digest()
"""


def _board_hashes(transport, paths):
    """{path: SHA-256 hex of the file on the board, or None when it is not there}."""
    transport.exec(_SHA256_DEF)
    digests = transport.eval("[_fw_sha256(p) for p in %r]" % (list(paths),))
    return {path: None if digest is None else digest.hex() for path, digest in zip(paths, digests)}


def _walk(transport, root):
    """(files, directories) under root on the board, root itself among the directories;
    both empty when root is not there."""
    try:
        entries = transport.fs_listdir(root)
    except OSError:
        return [], []
    files, dirs = [], [root]
    for entry in entries:
        path = f"{root}/{entry.name}"
        if entry.st_mode & 0x4000:
            sub_files, sub_dirs = _walk(transport, path)
            files += sub_files
            dirs += sub_dirs
        else:
            files.append(path)
    return files, dirs


def _parents(path):
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


# --- deploy -------------------------------------------------------------------------------------
def deploy(port, config, board=DEFAULT_BOARD, force=False, progress=None, timeout=30,
           firmware_dir=None, build_dir=None):
    """Deploy the firmware and `config` (a path to a config.json, or a dict) to the board on `port`.

    Returns {"version", "app", "device_id", "micropython", "mac", "copied", "skipped", "removed"}
    (paths on the board). force=True writes every file even when the board has it already.
    progress(done, total, what) is called after each step. Raises DeployError, one line.
    """
    try:
        board_def = boards.load(board)
    except ValueError as exc:
        raise DeployError(str(exc)) from None
    cfg, cfg_data = check_config(config, firmware_dir)
    built = _build(board_def["mpy_arch"], firmware_dir, build_dir)
    report = progress or (lambda done, total, what: None)
    transport = _connect(port, min(timeout, REPL_TIMEOUT_S))
    run = _Transfer(transport, built, force, report)
    try:
        release, mpy, mac = _board_facts(transport)
        _check_mpy(port, board_def, release, mpy, built)
        report(0, run.total, f"connected: MicroPython {release}")
        run.prepare()
        for path, local in built.files.items():
            run.put(path, local.read_bytes(), app=True)
        run.put(CONFIG_PATH, cfg_data, app=False)
        run.seal()
        run.doing = "resetting the board"
        transport.exec_raw_no_follow(RESET_CODE)
    except (TransportError, serial.SerialException) as exc:
        _close(transport)
        raise DeployError(f"lost the board on {port} while {run.doing}: {_one_line(exc)}") from None
    except OSError as exc:  # from the board's filesystem (mpremote turns its errors into these)
        _restart(transport)
        raise DeployError(f"{run.doing} on {port} failed: {_fs_error(exc)}") from None
    except DeployError:
        _restart(transport)
        raise
    except BaseException:
        _close(transport)
        raise
    report(run.total - 1, run.total, "waiting for the node to boot")
    _await_boot(port, transport, built.version, cfg["device_id"], timeout)
    report(run.total, run.total, f"node {cfg['device_id']} runs floorwatch {built.version}")
    return {"version": built.version, "app": built.app, "device_id": cfg["device_id"],
            "micropython": release, "mac": mac, **run.result}


def _fs_error(exc):
    """An OSError from the board's filesystem in words: its errno name, or what it means."""
    name = errno.errorcode.get(exc.errno, str(exc.errno)) if isinstance(exc.errno, int) else str(exc)
    return {"ENOSPC": "the flash is full"}.get(name, name)


class _Transfer:
    """The file side of one deploy: prepare(), put() each file, then seal() with the manifest.

    `doing` names the step under way, for the error when the board stops answering midway.
    """

    def __init__(self, transport, built, force, report):
        self.transport = transport
        self.built = built
        self.force = force
        self.report = report
        self.total = len(built.files) + 4  # + cleaning, config, manifest, boot
        self.done = 0
        self.doing = "reading what the board runs"
        self.result = {"copied": [], "skipped": [], "removed": []}
        self.on_board = {}  # path -> SHA-256 hex of the board's copy (None: absent), by prepare()
        self.invalidated = False  # the old manifest is gone: it no longer describes the board
        self.dirs = set()  # directories known to exist on the board

    def _step_done(self, what):
        self.done += 1
        self.report(self.done, self.total, what)

    def _invalidate(self):
        if not self.invalidated and self.on_board[builder.MANIFEST_PATH] is not None:
            self.doing = f"removing {builder.MANIFEST_PATH}"
            self.transport.fs_rmfile(builder.MANIFEST_PATH)
        self.invalidated = True

    def prepare(self):
        """Hash what the board has of ours; remove what /node and /lib hold beyond the build
        (files, then the directories that leaves empty)."""
        self.doing = "hashing the board's files"
        paths = [*self.built.files, CONFIG_PATH, builder.MANIFEST_PATH]
        self.on_board = _board_hashes(self.transport, paths)
        self.doing = f"listing {' and '.join(MANAGED)}"
        files, dirs = [], []
        for root in MANAGED:
            root_files, root_dirs = _walk(self.transport, root)
            files += root_files
            dirs += root_dirs
        keep = {parent for path in self.built.files for parent in _parents(path)}
        stale = sorted(f for f in files if f not in self.built.files)
        emptied = sorted((d for d in dirs if d not in keep), key=lambda d: -d.count("/"))  # deepest first
        for path in stale + emptied:
            self._invalidate()
            self.doing = f"removing {path}"
            (self.transport.fs_rmfile if path in stale else self.transport.fs_rmdir)(path)
            self.result["removed"].append(path)
        self.dirs = set(dirs) & keep
        self._step_done(f"cleaned {', '.join(MANAGED)}: {len(self.result['removed'])} removed")

    def put(self, path, data, app):
        """Write path unless the board has these bytes already; an app file voids the manifest."""
        self.doing = f"checking {path}"
        if not self.force and self.on_board[path] == hashlib.sha256(data).hexdigest():
            self.result["skipped"].append(path)
            self._step_done(f"unchanged {path}")
            return
        if app:
            self._invalidate()
        for parent in _parents(path):
            if parent not in self.dirs:
                self.doing = f"creating {parent}"
                self.transport.fs_mkdir(parent)
                self.dirs.add(parent)
        self.doing = f"writing {path}"
        self.transport.fs_writefile(path, data, chunk_size=CHUNK)
        self.result["copied"].append(path)
        self._step_done(f"copied {path}")

    def seal(self):
        """The manifest, last: from now on the board claims this app."""
        manifest = self.built.manifest_bytes()
        path = builder.MANIFEST_PATH
        if self.force or self.invalidated or self.on_board[path] != hashlib.sha256(manifest).hexdigest():
            self.doing = f"writing {path}"
            self.transport.fs_writefile(path, manifest, chunk_size=CHUNK)
            self.result["copied"].append(path)
        else:
            self.result["skipped"].append(path)
        self._step_done(f"app {self.built.app[:12]} complete")


def _await_boot(port, transport, version, device_id, timeout):
    """Read the console until the node's boot line; reopen the port whenever it goes away."""
    deadline = time.monotonic() + timeout
    pending, lines = b"", []
    while time.monotonic() < deadline:
        try:
            if transport is None:
                transport = _open(port)
            transport.serial.timeout = 0.2
            chunk = transport.serial.read(max(1, transport.serial.in_waiting))
        except (DeployError, OSError, TransportError):  # the port went away with the reset
            if transport is not None:
                _close(transport)
            transport = None
            time.sleep(0.2)
            continue
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace").replace("\x04", "").strip()
            if not line:
                continue
            lines = (lines + [line])[-3:]
            match = BOOT_LINE.search(line)
            if match is None:
                continue
            _close(transport)
            if match.groups() != (version, device_id):
                raise DeployError(f"node on {port} booted floorwatch {match[1]} device {match[2]}, "
                                  f"expected floorwatch {version} device {device_id}")
            return
    if transport is not None:
        _close(transport)
    seen = " | ".join(lines) or "nothing"
    raise DeployError(f"node on {port} did not report booting within {timeout:g} s: "
                      f"last console output: {_one_line(seen)}")


# --- installed ----------------------------------------------------------------------------------
def installed(port, timeout=REPL_TIMEOUT_S):
    """What the board on `port` runs, read without writing anything:
    {"app", "version" (from /app.json; None when there is none), "config_sha256" (None when no
    config.json), "micropython", "mac"}. The board is reset afterwards, so the node runs again.

    /app.json is trusted as it stands (deploy writes it last); deploy itself checks every file.
    Raises DeployError when no MicroPython answers.
    """
    transport = _connect(port, timeout)
    try:
        release, _, mac = _board_facts(transport)
        try:
            manifest = json.loads(transport.fs_readfile(builder.MANIFEST_PATH))
        except (OSError, ValueError):
            manifest = {}
        if not isinstance(manifest, dict):
            manifest = {}
        config_hash = _board_hashes(transport, [CONFIG_PATH])[CONFIG_PATH]
        transport.exec_raw_no_follow(RESET_CODE)
    except (TransportError, serial.SerialException) as exc:
        raise DeployError(f"lost the board on {port}: {_one_line(exc)}") from None
    finally:
        _close(transport)
    return {"app": manifest.get("app"), "version": manifest.get("version"),
            "config_sha256": config_hash, "micropython": release, "mac": mac}


def reset(port, timeout=REPL_TIMEOUT_S):
    """Restart the board on `port` as `mpremote reset` does (machine.reset() from the raw REPL)."""
    transport = _connect(port, timeout)
    try:
        transport.exec_raw_no_follow(RESET_CODE)
    except (TransportError, serial.SerialException) as exc:
        raise DeployError(f"lost the board on {port}: {_one_line(exc)}") from None
    finally:
        _close(transport)


# --- the command --------------------------------------------------------------------------------
@click.command("deploy")
@click.option("--port", required=True, metavar="PORT",
              help="The board: a port path, sn:SERIAL, loc:LOCATION, or a pyserial URL such as socket://127.0.0.1:4000.")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              metavar="DEVICE.json", help="The device's config.json (checked before the board is touched).")
@click.option("--board", default=DEFAULT_BOARD, show_default=True, metavar="NAME",
              help="Board definition (boards/NAME.json): which architecture to compile for.")
@click.option("--force", is_flag=True, help="Write every file, even those the board already has.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(1, 600),
              metavar="SECONDS", help="How long the node may take to boot after the reset.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def command(port, config_path, board, force, timeout, as_json):
    """Copy the node firmware and a device config to a board running MicroPython, then reboot it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    columns = (TextColumn("deploy"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("checking the config", total=None)

        def progress(done, total, what):
            bar.update(task, completed=done, total=total, description=what)

        try:
            result = deploy(resolve(port), config_path, board=board, force=force, progress=progress,
                            timeout=timeout)
        except DeployError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{port}: node {result['device_id']} runs floorwatch {result['version']} "
               f"(app {result['app'][:12]}) on MicroPython {result['micropython']}: "
               f"{len(result['copied'])} copied, {len(result['skipped'])} unchanged, "
               f"{len(result['removed'])} removed")
