"""A ROM loader behind a TCP port, and the real esptool run against it, for the ROM tests.

Each connection is a chip freshly reset into download mode: a new RomLoader on the same flash.
`tamper(packet) -> packet` may rewrite each request on its way in (fault injection).
"""

import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

from esptool.loader import ESPLoader

from floorwatch.vboard.rom import RomLoader, SlipReader, slip_encode
from floorwatch.vboard.spiflash import SpiFlash

ESPTOOL = str(Path(sys.executable).with_name("esptool"))
MAC = "24:0a:c4:12:34:56"


class RomServer:
    def __init__(self, flash_path, chip="esp32", mac=MAC, flash_size=4 << 20, refuse_stub=True, tamper=None):
        self.chip, self.mac, self.refuse_stub, self.tamper = chip, mac, refuse_stub, tamper
        self.flash = SpiFlash(flash_path, flash_size)
        self.loaders = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = "socket://127.0.0.1:%d" % self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        self._server.close()
        self._thread.join(5)
        self.flash.close()

    def esptool(self, *args, chip=None, stub=False, after="hard-reset", baud=115200, timeout=60):
        """Run the esptool command line on this port; returns the CompletedProcess (text)."""
        command = [ESPTOOL, "--chip", chip or self.chip, "--port", self.url, "--before", "no-reset",
                   "--after", after, "--baud", str(baud)] + ([] if stub else ["--no-stub"])
        return subprocess.run(command + list(args), capture_output=True, text=True, timeout=timeout)

    def _accept(self):
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with client:
                loader = RomLoader(self.chip, self.mac, self.flash, refuse_stub=self.refuse_stub)
                self.loaders.append(loader)
                self._pump(client, loader)

    def _pump(self, client, loader):
        slip = SlipReader() if self.tamper else None
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                return
            if not data:
                return
            if slip:
                data = b"".join(slip_encode(self.tamper(packet)) for packet in slip.feed(data))
            try:
                client.sendall(loader.feed(data))
            except OSError:
                return


def request(op, data=b"", checksum=0):
    """A SLIP-encoded request packet, as esptool writes it."""
    return slip_encode(struct.pack("<BBHI", 0, op, len(data), checksum) + data)


def block_request(op, block, seq, checksum=None):
    """A FLASH_DATA-style request: length, seq, 0, 0, the block; checksum as the ROM computes it
    unless given."""
    if checksum is None:
        checksum = ESPLoader.checksum(block)
    return request(op, struct.pack("<IIII", len(block), seq, 0, 0) + block, checksum)


def answers(stream, status_len=4):
    """The answers in a byte stream from the ROM (4 status bytes; the stub sends 2):
    (op, value, data, (status, error)) each."""
    out = []
    for packet in SlipReader().feed(stream):
        direction, op, size, value = struct.unpack_from("<BBHI", packet)
        assert direction == 1 and size == len(packet) - 8, packet
        body = packet[8:]
        out.append((op, value, body[:-status_len], (body[-status_len], body[1 - status_len])))
    return out
