"""A virtual board on a serial endpoint: the ESP32 ROM loader for esptool, MicroPython for mpremote.

    with VBoard.start("esp32-devkitc", state_dir="vb1") as vb:
        print(vb.url)          # socket://127.0.0.1:PORT, or /dev/pts/N with listen="pty"

The board has a flash chip (`state_dir/flash.bin`, the size its board file says) and MicroPython's
filesystem (`state_dir/flash/`, the simulator's view of the vfs partition). It is in one of two
modes, as a real chip is after reset:
- "download": the ROM serial bootloader (rom.py) answers esptool. A blank board starts here.
- "run": the flash holds a MicroPython app (esp_image.app_info), so the simulator boots it: the
  firmware found on the filesystem runs unchanged (`floorwatch.sim`), its console and raw REPL on
  the port (console.py). Files compiled by mpy-cross run from the source they were built from,
  found by the .mpy's hash among the builds of this checkout's firmware (build.py).

Over a socket or a pty there are no DTR/RTS lines to pull the chip into the bootloader and out of
it, so the virtual board reads the session instead: a SLIP SYNC frame arriving while MicroPython
runs is the auto-reset into download mode (esptool `--before no-reset` sends nothing else first),
and the program closing the port after a download session is the hard reset out of it (what
esptool's `--after hard-reset` does by RTS). FLASH_END asking to run the app boots it too, and so
does machine.bootloader() leave MicroPython for download mode.

`broker=(host, port)` puts the board on a LAN with one broker: every name the node looks up and
every TCP connection it opens leads there, so a config naming the plant's broker
(mqtt.plant.local:1883) works against a local mosquitto.
"""

import fcntl
import hashlib
import shutil
import socket
import tempfile
import threading
from pathlib import Path

from .. import boards, build, esp_image
from ..sim.board import Board, WifiAccessPoint
from ..sim.fleet import wire
from ..sim.physics import Machine
from ..sim.runtime import FIRMWARE_DIR
from .console import Console
from .rom import RomLoader, find_sync
from .serve import open_endpoint
from .spiflash import SpiFlash

FLASH_SIZES = {"2MB": 2 << 20, "4MB": 4 << 20, "8MB": 8 << 20, "16MB": 16 << 20, "32MB": 32 << 20}
VFS_START = 0x200000  # MicroPython's filesystem partition on ESP32 boards (its partitions.csv)
SYNC_TAIL = 64  # bytes kept from the last chunk, to see a SYNC frame split across two reads


class VBoardError(ValueError):
    """A virtual board that cannot start; str() is one line."""


def _lock(state_dir):
    """Hold state_dir for this board: two boards on one flash image would corrupt each other."""
    held = open(state_dir / ".lock", "w")
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.close()
        raise VBoardError("%s is in use by another virtual board" % state_dir) from None
    return held


class VBoard:
    def __init__(self, board="esp32-devkitc", state_dir=None, listen="socket://127.0.0.1:0",
                 wifi=("floorwatch-sim", "sim-password"), seed=1, mac=None, echo=False, broker=None):
        self.board_def = boards.load(board)
        self.name = board
        self._tmp = None if state_dir else tempfile.mkdtemp(prefix="floorwatch-vboard-")
        self.state_dir = Path(state_dir or self._tmp)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock(self.state_dir)
        chip = self.board_def["chip"]
        self.mac = mac or bytes([0x24, 0x0A, 0xC4, (seed >> 16) & 0xFF, (seed >> 8) & 0xFF, seed & 0xFF])
        self.flash = SpiFlash(self.state_dir / "flash.bin", FLASH_SIZES[self.board_def["flash_size"]])
        self.endpoint = open_endpoint(listen)
        self.url = self.endpoint.url
        self.console = Console(self.endpoint.send, self._bootloader_called, roots=(self.state_dir / "flash", FIRMWARE_DIR))
        frozen = self.state_dir / "frozen"  # what a stock image has frozen that we run: nothing
        frozen.mkdir(exist_ok=True)
        self.board = Board("vboard-%s" % self.mac.hex()[-6:], seed=seed, flash_dir=self.state_dir, chip=chip,
                           mac=self.mac, ap=WifiAccessPoint(*wifi), firmware_dir=frozen, echo_log=echo,
                           console=self.console)
        self.board.mpy_source = self._mpy_source
        if broker is not None:  # (host, port): the node reaches this broker whatever its config names
            self.board.lan_broker = socket.getaddrinfo(*broker, socket.AF_INET, socket.SOCK_STREAM)[0][4]
        self.console.attach(self.board)
        machine = Machine.for_scenario(seed, "normal", clock=self.board.clock.now)
        wire(self.board, {"sensors": self.board_def["default_sensors"]}, machine)
        self.mode = "download"
        self.loader = None
        self._lock = threading.RLock()
        self._tail = b""
        self._session = False  # a download session is under way on the open port
        self._mpy_index = None
        self._closed = False

    @classmethod
    def start(cls, *args, **kwargs):
        vboard = cls(*args, **kwargs)
        vboard.open()
        return vboard

    def open(self):
        """Power up: boot MicroPython if the flash holds it, else wait in download mode."""
        with self._lock:
            if not self._boot():
                self._enter_download(banner=False)
        self.endpoint.serve(self._on_data, self._on_close)

    def close(self):
        if self._closed:
            return
        self._closed = True
        self.endpoint.close()
        self.board.power_off()
        self.console.close()
        self.flash.close()
        self._lock_file.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def preload(self, image):
        """Put a firmware image (a merged .bin) on the flash before open(), as a flash would."""
        chip = esp_image.chip_of(image)
        if chip != self.board_def["chip"]:
            raise VBoardError("the image is for %s, but %s has an %s" % (chip, self.name, self.board_def["chip"]))
        offset = self.board_def["image_offset"]
        self.flash.erase(offset, len(image))
        self.flash.write(offset, image)

    @property
    def app(self):
        """The app descriptor of what the flash would boot (project, version, ...), or None."""
        return esp_image.app_info(self.flash.read(0, 0x20000), self.board_def["image_offset"])

    # --- the port ---------------------------------------------------------------------------
    def _on_data(self, data):
        with self._lock:
            if self.mode == "run":
                seen = self._tail + data
                at = find_sync(seen)
                if at < 0:
                    self._tail = seen[-SYNC_TAIL:]
                    self.console.input(data)
                    return
                self._enter_download(banner=False)
                data = seen[at:]
            self._session = True
            self.endpoint.send(self.loader.feed(data))
            if self.loader.run_requested:
                self._session = False
                self._boot()

    def _on_close(self):
        with self._lock:
            if self._session and self.mode == "download":
                self._session = False
                self._boot()

    # --- modes ------------------------------------------------------------------------------
    def _enter_download(self, banner=True):
        # From machine.bootloader() the board's own thread is here: it stops itself afterwards.
        if self.board.running and threading.current_thread() is not self.board.thread:
            self.board.power_off()
        self.mode = "download"
        self._tail = b""
        self.loader = RomLoader(self.board_def["chip"], self.mac, self.flash)
        if banner:
            self.endpoint.send(self.loader.banner())

    def _bootloader_called(self):
        """machine.bootloader(), from the board's thread."""
        with self._lock:
            self._enter_download()

    def _boot(self):
        """Reset into the flash: MicroPython if it is there (True); else say what the ROM says."""
        if self.loader is not None and self._vfs_touched(self.loader):
            shutil.rmtree(self.board.flash_dir, ignore_errors=True)  # a new filesystem gets made
            self.board.flash_dir.mkdir()
        app = self.app
        self.mode = "run"
        self._tail = b""
        if self.board.running:
            self.board.power_off()
        if app is None or app["project"] != "micropython":
            self.endpoint.send(b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
                               b"invalid header: 0xffffffff\r\n")
            return False
        self.board.micropython = app["version"].lstrip("v")
        self.console.repl_state.banner = self._banner()
        self.board.power_on()
        return True

    @staticmethod
    def _vfs_touched(loader):
        return any(start + length > VFS_START for start, length in loader.written)

    def _banner(self):
        chip = self.board_def["chip"].upper().replace("ESP32S", "ESP32-S").replace("ESP32C", "ESP32-C")
        return "MicroPython v%s on 2024-11-29; Generic %s module with %s" % (self.board.micropython, chip, chip)

    def _mpy_source(self, path):
        """The firmware source a .mpy on the board was compiled from, found by its hash; None if
        it is no build of this checkout's firmware (the board then says "incompatible .mpy")."""
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        if self._mpy_index is None or digest not in self._mpy_index:  # the sources may have moved on
            built = build.build(self.board_def["mpy_arch"])
            self._mpy_index = {sha: FIRMWARE_DIR / (device_path[1:-4] + ".py")
                               for device_path, sha in built.hashes.items() if device_path.endswith(".mpy")}
        return self._mpy_index.get(digest)
