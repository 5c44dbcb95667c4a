"""Fake MicroPython `onewire` module: the OneWire class on top of a board's simulated 1-Wire bus.

Same surface as MicroPython's module (OneWireError, OneWire with reset/readbit/readbyte/writebit/
writebyte/write/readinto/select_rom/scan/crc8, and the ROM command constants). Everything goes
through bus time slots, so `scan()` runs the real ROM search and finds whatever answers on the wire.
"""

from . import new_module
from ..devices.onewire import crc8 as _crc8

SEARCH_ROM = 0xF0
MATCH_ROM = 0x55
SKIP_ROM = 0xCC
_MAX_SEARCH_PASSES = 255


def module(board):
    class OneWireError(Exception):
        pass

    class OneWire:
        SEARCH_ROM = SEARCH_ROM
        MATCH_ROM = MATCH_ROM
        SKIP_ROM = SKIP_ROM

        def __init__(self, pin):
            self.pin = pin
            self._bus = board.onewire_bus(pin._number)

        def reset(self, required=False):
            board.checkpoint()
            present = self._bus.reset()
            if required and not present:
                raise OneWireError()
            return present

        def readbit(self):
            return self._bus.read_bit()

        def readbyte(self):
            return self._bus.read_byte()

        def readinto(self, buf):
            board.checkpoint()
            for i in range(len(buf)):
                buf[i] = self._bus.read_byte()

        def writebit(self, value):
            self._bus.write_bit(value)

        def writebyte(self, value):
            self._bus.write_byte(value & 0xFF)

        def write(self, buf):
            board.checkpoint()
            for b in buf:
                self._bus.write_byte(b)

        def select_rom(self, rom):
            self.reset()
            self.writebyte(MATCH_ROM)
            self.write(rom)

        def crc8(self, data):
            return _crc8(data)

        def scan(self):
            """All ROMs on the bus, by the binary-tree ROM search (one device found per pass)."""
            found = []
            rom = bytearray(8)
            last_fork = -1          # bit index where the previous pass chose 0 at a conflict
            for _ in range(_MAX_SEARCH_PASSES):
                if not self.reset():
                    break
                self.writebyte(SEARCH_ROM)
                fork = -1
                for i in range(64):
                    bit = self.readbit()
                    comp = self.readbit()
                    if bit and comp:
                        return found    # nobody answered this bit (device left mid-search)
                    if bit == comp:     # both values present: a branch point
                        prev = (rom[i >> 3] >> (i & 7)) & 1
                        if i < last_fork:
                            bit = prev
                        else:
                            bit = 1 if i == last_fork else 0
                        if bit == 0:
                            fork = i
                    if bit:
                        rom[i >> 3] |= 1 << (i & 7)
                    else:
                        rom[i >> 3] &= ~(1 << (i & 7)) & 0xFF
                    self.writebit(bit)
                found.append(bytearray(rom))
                last_fork = fork
                if fork < 0:
                    break
            return found

    return new_module("onewire", __doc__, OneWireError=OneWireError, OneWire=OneWire,
                      SEARCH_ROM=SEARCH_ROM, MATCH_ROM=MATCH_ROM, SKIP_ROM=SKIP_ROM, crc8=_crc8)
