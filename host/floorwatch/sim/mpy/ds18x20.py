"""Fake MicroPython `ds18x20` module: the DS18X20 driver written against the `onewire` API.

It speaks the DS18x20 function commands over whatever OneWire object it is given, so it exercises
the simulated bus exactly as MicroPython's own driver would on hardware: convert_temp() is a
skip-ROM broadcast, read_scratch() raises Exception("CRC error") on a bad CRC (the bytes read stay
in `.buf`), and read_temp() decodes DS18S20 (family 0x10) and DS18B20/DS1822 formats.
"""

from . import new_module

_FAMILIES = (0x10, 0x22, 0x28)
_CONVERT = 0x44
_READ_SCRATCH = 0xBE
_WRITE_SCRATCH = 0x4E


def module(board):
    class DS18X20:
        def __init__(self, onewire):
            self.ow = onewire
            self.buf = bytearray(9)

        def scan(self):
            return [rom for rom in self.ow.scan() if rom[0] in _FAMILIES]

        def convert_temp(self):
            self.ow.reset(True)
            self.ow.writebyte(self.ow.SKIP_ROM)
            self.ow.writebyte(_CONVERT)

        def read_scratch(self, rom):
            self.ow.reset(True)
            self.ow.select_rom(rom)
            self.ow.writebyte(_READ_SCRATCH)
            self.ow.readinto(self.buf)
            if self.ow.crc8(self.buf):
                raise Exception("CRC error")
            return self.buf

        def write_scratch(self, rom, buf):
            self.ow.reset(True)
            self.ow.select_rom(rom)
            self.ow.writebyte(_WRITE_SCRATCH)
            self.ow.write(buf)

        def read_temp(self, rom):
            buf = self.read_scratch(rom)
            if rom[0] == 0x10:
                # DS18S20: 0.5 C steps in byte 0, sign in byte 1, refined with COUNT_REMAIN/PER_C.
                half = buf[0] - 256 if buf[1] else buf[0]
                return (half >> 1) - 0.25 + (buf[7] - buf[6]) / buf[7]
            raw = buf[1] << 8 | buf[0]
            if raw & 0x8000:
                raw -= 0x10000
            return raw / 16

    return new_module("ds18x20", __doc__, DS18X20=DS18X20)
