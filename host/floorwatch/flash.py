"""`floorwatch flash`: write a firmware image (e.g. MicroPython's .bin) to a board's flash.

Everything on the wire is esptool's, through its public Python API (esptool.cmds: detect_chip,
run_stub, attach_flash, write_flash, erase_flash, reset_chip); this module decides what to do
and turns failures into one line:

1. Before the port is touched, the file must be an ESP image for the board's chip
   (`esp_image.chip_of`) that fits the board's flash at its image_offset.
2. Connect at 115200 (--before default-reset pulses DTR/RTS; esptool itself skips that on
   socket://), and the chip found must be the board definition's chip.
3. Load the flasher stub; a board that refuses it is flashed through the ROM loader instead,
   which is slower but reads and writes the same flash (noted in the result).
4. Switch to the fast baud rate; if the link fails there, connect again and stay at 115200.
5. --erase: erase the whole chip (the stub's ERASE_FLASH; the ROM has no such command, so there
   one FLASH_BEGIN announcing the whole flash makes the ROM erase all of it).
6. Write at the board's image_offset, deflate-compressed (the ESP32/S3/C3 ROMs inflate too);
   esptool compares the flash's MD5 with the image's and fails on a mismatch.
7. Reset into the new firmware: a hard reset by RTS; a socket has no RTS, so there the loader is
   asked to leave download mode itself.

esptool 5.x builds a hex dump of every packet it sends and receives for its trace even when
tracing is off (f-strings format its lazy HexFormatter at once): some 2 s of CPU per 1.5 MB
written, which serialises parallel flashes on the interpreter lock. We never trace, so while this
module is loaded a HexFormatter formats as its length only (`_no_hex_dumps`).

esptool logs through one process-wide logger (esptool issue #1102: progress bars of parallel
flashes get mixed up). This module installs one logger of its own, `_Router`, that hands each
message and progress update to the flash running in the calling thread, so boards can be flashed
in parallel threads, each with its own progress callback.
"""

import hashlib
import json
import multiprocessing
import queue
import re
import threading
import time
from pathlib import Path

import click
from esptool import cmds
from esptool import loader as esptool_loader
from esptool.loader import ESPLoader
from esptool.logger import TemplateLogger, log as esptool_log
from esptool.util import FatalError, flash_size_bytes
from rich.console import Console
from rich.markup import MarkupError
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from . import boards, esp_image
from .ports import resolve

ROM_BAUD = ESPLoader.ESP_ROM_BAUD  # 115200: every ROM loader auto-bauds to it
DEFAULT_BAUD = 460800
REPLY_TIMEOUT = 3.0  # seconds, for reads esptool does not time itself
CONNECT_ATTEMPTS = 7  # esptool's default: resets (or plain syncs) before giving up
BEFORE = ("default-reset", "usb-reset", "no-reset")


class FlashError(ValueError):
    """A flash that could not be done; str() is one line naming the file or port and why."""


def _first_line(exc):
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# --- esptool's output, per thread -----------------------------------------------------------

class _Run:
    """One flash in progress: where esptool's output for it goes, and how far it got."""

    def __init__(self, port, size, offset, progress, log):
        self.port, self.size, self.offset = port, size, offset
        self.stage = "connect"
        self.address = offset  # where the write was when something went wrong
        self.notes = []
        self._progress, self._log = progress, log
        self._partial = ""

    def report(self, stage, done, total):
        self.stage = stage
        if self._progress is not None:
            self._progress(done, total, stage)

    def note(self, text):
        self.notes.append(text)
        self.line(text)

    def line(self, text):
        if self._log is not None:
            self._log(text)

    def output(self, text, end):
        # esptool builds some lines in pieces ("Connecting..", then dots, then the end).
        self._partial += text + end
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if line.strip():
                self.line(line.rstrip())

    def message(self, text):
        """A note or warning: a line of its own, even in the middle of a line in pieces."""
        if self._partial.strip():
            self.output("", "\n")
        self._partial = ""
        self.line(text)

    def write_progress(self, done, total, description):
        # esptool counts the (compressed) bytes it sent; the caller counts the image's bytes.
        found = re.search(r"at (0x[0-9a-f]+)", description or "")
        if found:
            self.address = int(found.group(1), 16)
        if total > 0:
            self.report("write", self.size * min(done, total) // total, self.size)


_here = threading.local()


def _plain(args):
    text = " ".join(str(a) for a in args)
    try:
        return Text.from_markup(text).plain  # esptool's messages are rich markup
    except MarkupError:
        return text


class _Router(TemplateLogger):
    """esptool's logger while this module is loaded: each message goes to the `_Run` of the
    calling thread; outside a flash, to stdout/stderr as plain lines.

    Holds no state of its own: esptool before 5.6 installs a custom logger by changing the class
    of its logger object, which keeps no instance attributes.
    """

    def print(self, *args, **kwargs):
        run = getattr(_here, "run", None)
        if run is not None:
            run.output(_plain(args), kwargs.get("end", "\n"))
        else:
            click.echo(_plain(args), nl=kwargs.get("end", "\n") == "\n",
                       err=kwargs.get("file") is not None)

    def _message(self, text):
        run = getattr(_here, "run", None)
        if run is not None:
            run.message(text)
        else:
            click.echo(text, err=True)

    def note(self, message):
        self._message("Note: " + _plain([message]))

    def warning(self, message):
        self._message("Warning: " + _plain([message]))

    def error(self, message):
        self._message("Error: " + _plain([message]))

    def stage(self, finish=False):
        pass  # collapsible terminal output: the caller draws its own progress

    def progress_bar(self, cur_iter, total_iters, prefix="", suffix="", bar_length=30):
        run = getattr(_here, "run", None)
        if run is not None and run.stage == "write":
            run.write_progress(cur_iter, total_iters, prefix)

    def set_verbosity(self, verbosity):
        pass


def _no_hex_dumps():
    def short(formatter, spec=""):
        return "<%d bytes>" % len(formatter._s)
    esptool_loader.HexFormatter.__format__ = short
    esptool_loader.HexFormatter.__str__ = short


_install_lock = threading.Lock()
_installed = False


def _install_router():
    global _installed
    with _install_lock:
        if not _installed:
            esptool_log.set_logger(_Router())  # esptool's documented way to redirect its output
            _no_hex_dumps()
            _installed = True


# --- the flash -------------------------------------------------------------------------------

def _read_image(path, board):
    """The image's bytes, checked against the board before any port is opened."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FlashError("%s: cannot read it: %s" % (path, exc.strerror or exc)) from None
    try:
        chip = esp_image.chip_of(data)
    except ValueError as exc:
        raise FlashError("%s: %s" % (path, exc)) from None
    if chip != board["chip"]:
        raise FlashError("%s is an image for %s, but board %s has an %s" % (
            path, chip, board["id"], board["chip"]))
    room = flash_size_bytes(board["flash_size"]) - board["image_offset"]
    if len(data) > room:
        raise FlashError("%s (%d bytes) does not fit in %s's %s flash at %#x" % (
            path, len(data), board["id"], board["flash_size"], board["image_offset"]))
    return data


def _chip_id(esp):
    return esp.CHIP_NAME.lower().replace("-", "")  # "ESP32-S3" -> "esp32s3", as boards say


class _StubRefused(FatalError):
    pass


def _connect(run, port, before, board, stub):
    """A loader for the board's chip on `port` at 115200, with the flasher stub if `stub`."""
    run.report("connect", 0, run.size)
    esp = cmds.detect_chip(port, ROM_BAUD, before, connect_attempts=CONNECT_ATTEMPTS)
    # esptool reads the stub's "OHAI" outside its timed commands, with the port's own timeout:
    # none by default, so a chip that goes silent once the stub is uploaded would hang it.
    esp._port.timeout = REPLY_TIMEOUT
    try:
        if _chip_id(esp) != board["chip"]:
            raise FlashError("the chip on %s is an %s, but board %s has an %s" % (
                port, esp.CHIP_NAME, board["id"], board["chip"]))
        if not stub:
            return esp
        try:
            return cmds.run_stub(esp)
        except FatalError as exc:
            raise _StubRefused(_first_line(exc)) from exc
    except BaseException:
        esp._port.close()
        raise


def _facts(esp):
    revision = esp.get_chip_revision()
    return {
        "chip": _chip_id(esp),
        "revision": "v%d.%d" % (revision // 100, revision % 100),
        "mac": ":".join("%02x" % b for b in esp.read_mac("BASE_MAC")),
    }


def _open(run, port, before, board, baud):
    """(loader, baud in use, chip facts), falling back to the ROM loader and to 115200.

    Each fallback starts again from a closed port: a chip whose stub did not start, or that
    listens at a rate the link cannot carry, only comes back through a reset (which reopening a
    port with --before default-reset does; a virtual board on a socket resets when the port
    closes). The facts are read after the baud change, so reading them proves the new rate.
    """
    try:
        esp = _connect(run, port, before, board, stub=True)
    except _StubRefused as exc:
        run.note("the board refused the flasher stub (%s): writing through the ROM loader" % exc)
        esp = _connect(run, port, before, board, stub=False)
    else:
        if not esp.IS_STUB:  # esptool turns it off itself, e.g. in Secure Download Mode
            run.note("esptool kept the flasher stub off: writing through the ROM loader")
    if baud == ROM_BAUD:
        return esp, ROM_BAUD, _facts(esp)
    try:
        esp.change_baud(baud)
        return esp, baud, _facts(esp)
    except (FatalError, OSError) as exc:  # OSError: serial.SerialException is one
        esp._port.close()
        run.note("%d baud failed (%s): going on at %d" % (baud, _first_line(exc), ROM_BAUD))
    esp = _connect(run, port, before, board, stub=esp.IS_STUB)
    return esp, ROM_BAUD, _facts(esp)


def _erase(run, esp, flash_bytes):
    run.report("erase", 0, flash_bytes)
    if esp.IS_STUB:
        cmds.erase_flash(esp)
    else:
        # The ROM loader has no ERASE_FLASH, but FLASH_BEGIN erases the whole region it is told
        # to expect before any data comes; no data follows, the next FLASH_BEGIN starts the write.
        esp.flash_set_parameters(flash_bytes)
        esp.flash_begin(flash_bytes, 0, logging=False)
    run.report("erase", flash_bytes, flash_bytes)


def _leave(run, esp, port):
    run.report("reset", run.size, run.size)
    if port.startswith("socket://"):
        # No DTR/RTS over TCP: ask the loader to leave download mode (the ROM runs the app,
        # the stub reboots into it).
        esp.flash_begin(0, 0, logging=False)
        esp.flash_finish(reboot=esp.IS_STUB)
    else:
        cmds.reset_chip(esp, "hard-reset")


def _explain(run, exc):
    """One line for what esptool or the port raised, by the stage it happened in."""
    port, why = run.port, _first_line(exc)
    where = " at %#x" % run.address if run.stage == "write" else ""
    if isinstance(exc, OSError):  # serial.SerialException is one
        return "port %s disappeared during %s%s: %s" % (port, run.stage, where, why)
    if run.stage == "connect":
        if why.startswith("Could not open"):  # pyserial's reason is in esptool's text
            reason = re.search(r"could not open port \S+?: (.*?)\)?$", str(exc), re.I | re.M)
            return "cannot open %s: %s" % (port, reason.group(1) if reason else why)
        if why.startswith("Failed to connect"):
            return "no answer from the ROM loader on %s (is the board in download mode?)" % port
    if "MD5" in why or "flash region is empty" in why:
        return "verification failed on %s: the flash at %#x does not hold the image (%s)" % (
            port, run.offset, why)
    return "%s failed on %s%s: %s" % (run.stage, port, where, why)


def flash(port, board, firmware, erase=False, baud=DEFAULT_BAUD, progress=None,
          before="default-reset", log=None):
    """Write `firmware` (an image file) to the board on `port` and start it.

    port: a device or pyserial URL (see ports.resolve); board: a board name (boards/<name>.json).
    progress(done_bytes, total_bytes, stage): stage is "connect", "erase", "write" or "reset";
    "write" counts the image's bytes. log(line): esptool's messages and this module's notes.
    Safe to call from several threads at once, one port each.

    Returns {"port", "board", "chip", "revision", "mac", "flash_size", "offset", "md5", "bytes",
    "seconds", "stub", "baud", "erased", "notes"}; raises FlashError (one line) otherwise.
    """
    if before not in BEFORE:
        raise FlashError("--before must be one of %s, not %r" % (", ".join(BEFORE), before))
    definition = boards.load(board)
    data = _read_image(firmware, definition)
    offset = definition["image_offset"]
    run = _Run(port, len(data), offset, progress, log)
    _install_router()
    _here.run = run
    started = time.monotonic()
    try:
        esp, baud_used, facts = _open(run, port, before, definition, baud)
        try:
            cmds.attach_flash(esp)
            flash_size = cmds.detect_flash_size(esp)
            if erase:
                _erase(run, esp, flash_size_bytes(flash_size or definition["flash_size"]))
            run.report("write", 0, len(data))
            cmds.write_flash(esp, [(offset, data)], compress=True)
            _leave(run, esp, port)
        finally:
            esp._port.close()
    except FlashError:
        raise
    except (FatalError, OSError) as exc:
        raise FlashError(_explain(run, exc)) from exc
    finally:
        _here.run = None
    padded = data + b"\xff" * (-len(data) % 4)  # esptool pads to a word; its MD5 covers that
    return {"port": port, "board": board, **facts, "flash_size": flash_size, "offset": offset,
            "md5": hashlib.md5(padded).hexdigest(), "bytes": len(data),
            "seconds": round(time.monotonic() - started, 3), "stub": esp.IS_STUB,
            "baud": baud_used, "erased": erase, "notes": run.notes}


def flash_in_process(port, board, firmware, progress=None, **options):
    """flash() in a process of its own, with the same result, errors and progress.

    esptool is pure Python and busy for every packet; boards flashed in threads of one process
    take turns on its interpreter lock, so a tray of boards flashes no faster than one after
    another. A spawned process (not forked: the caller has threads) costs about 0.2 s to start.
    """
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    child = context.Process(target=_flash_child, args=(messages, port, board, firmware, options),
                            name="flash " + port, daemon=True)
    child.start()
    try:
        while True:
            try:
                kind, *body = messages.get(timeout=1.0)
            except queue.Empty:
                if not child.is_alive():
                    raise FlashError("flashing %s stopped: its process died (exit %s)" % (port, child.exitcode)) from None
                continue
            if kind == "progress":
                if progress is not None:
                    progress(*body)
            elif kind == "done":
                return body[0]
            else:
                raise FlashError(body[0])
    finally:
        child.join(5)


def _flash_child(messages, port, board, firmware, options):
    try:
        result = flash(port, board, firmware, progress=lambda *p: messages.put(("progress", *p)), **options)
        messages.put(("done", result))
    except FlashError as exc:
        messages.put(("error", str(exc)))
    except Exception as exc:  # a bug: still one line for the caller, not a silent dead child
        messages.put(("error", "flashing %s failed: %s: %s" % (port, type(exc).__name__, _first_line(exc))))


# --- the command -----------------------------------------------------------------------------

@click.command("flash")
@click.option("--port", required=True, metavar="PORT",
              help="Device, socket://HOST:PORT, sn:SERIAL, loc:LOCATION (see `floorwatch ports`).")
@click.option("--board", required=True, metavar="BOARD", help="Board definition (boards/*.json).")
@click.option("--firmware", required=True, metavar="FILE", help="Image to write, e.g. MicroPython's .bin.")
@click.option("--erase", is_flag=True, help="Erase the whole flash first (settings and files too).")
@click.option("--baud", default=DEFAULT_BAUD, show_default=True, type=click.IntRange(9600, 5_000_000),
              help="Transfer rate after connecting; 115200 is used if the link fails at it.")
@click.option("--before", default="default-reset", show_default=True, type=click.Choice(BEFORE),
              help="How to put the board into download mode (socket:// ports: no reset).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Show esptool's messages.")
def command(port, board, firmware, erase, baud, before, as_json, verbose):
    """Write a firmware image to the board on PORT and start it."""
    device = resolve(port)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description:<8}"), BarColumn(), DownloadColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=as_json) as bar:
        task = bar.add_task("connect", total=None)

        def progress(done, total, stage):
            bar.update(task, completed=done, total=total or None, description=stage)

        def echo(line):
            bar.console.print(line, markup=False, highlight=False)

        result = flash(device, board, firmware, erase=erase, baud=baud, progress=progress,
                       before=before, log=echo if verbose else None)
    if as_json:
        click.echo(json.dumps(result))
        return
    for note in result["notes"]:
        click.echo("note: " + note)
    click.echo("flashed %s (%d bytes, md5 %s) to %s at %#x on %s in %.1f s: %s %s, MAC %s, "
               "%s flash, %s at %d baud" % (
                   firmware, result["bytes"], result["md5"], result["board"], result["offset"],
                   device, result["seconds"], result["chip"], result["revision"], result["mac"],
                   result["flash_size"] or "?", "stub" if result["stub"] else "ROM loader",
                   result["baud"]))
