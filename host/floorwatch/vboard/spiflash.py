"""A NOR SPI flash chip whose contents live in a file, for the virtual board.

    flash = SpiFlash("state/flash.bin", 4 << 20)   # a new file starts erased (all 0xFF)
    flash.erase(0x10000, 0x1000)                   # whole 4 KB sectors back to 0xFF
    flash.write(0x10000, data)                     # programming only clears bits: old & new
    flash.md5(0x10000, len(data))                  # hex digest, as the ROM's SPI_FLASH_MD5 gives

NOR semantics matter because esptool relies on them: the ROM erases before it writes, and writing
over unerased bytes ANDs them, so a write that skipped its erase shows up in the MD5 check.
The file is memory-mapped, so the contents persist as they are written.
"""

import hashlib
import mmap
from pathlib import Path

SECTOR = 0x1000


class FlashRangeError(ValueError):
    """An access outside the chip; str() is one line."""


class SpiFlash:
    def __init__(self, path, size):
        self.path = Path(path)
        self.size = size
        if not self.path.exists() or self.path.stat().st_size != size:
            if self.path.exists():
                raise FlashRangeError(f"{self.path} holds {self.path.stat().st_size} bytes, "
                                      f"not a {size}-byte flash image")
            self.path.write_bytes(b"\xff" * size)
        self._file = open(self.path, "r+b")
        self._map = mmap.mmap(self._file.fileno(), size)

    def read(self, offset, length):
        self._check(offset, length)
        return self._map[offset:offset + length]

    def write(self, offset, data):
        """Program `data` at `offset`: each bit can only go from 1 to 0 (new = old & data)."""
        self._check(offset, len(data))
        old = int.from_bytes(self._map[offset:offset + len(data)], "little")
        new = old & int.from_bytes(data, "little")
        self._map[offset:offset + len(data)] = new.to_bytes(len(data), "little")

    def erase(self, offset, length):
        """Erase every 4 KB sector that [offset, offset + length) touches; returns (start, end)."""
        start = offset - offset % SECTOR
        end = -(-(offset + length) // SECTOR) * SECTOR
        self._check(start, end - start)
        self._map[start:end] = b"\xff" * (end - start)
        return start, end

    def md5(self, offset, size):
        self._check(offset, size)
        return hashlib.md5(self._map[offset:offset + size]).hexdigest()

    def close(self):
        if not self._map.closed:
            self._map.flush()
            self._map.close()
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check(self, offset, length):
        if offset < 0 or length < 0 or offset + length > self.size:
            raise FlashRangeError(f"flash access {offset:#x}+{length:#x} is outside the "
                                  f"{self.size:#x}-byte chip")
