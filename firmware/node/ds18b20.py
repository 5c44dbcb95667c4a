"""DS18B20 temperature probes sharing one 1-Wire pin, with the sanity checks a plain read lacks.

All probes convert together (one skip-ROM broadcast), then each is read by ROM. A read is refused,
with a short reason in SensorError, when the value cannot be trusted: nothing on the bus, the ROM
does not answer (all ones), a CRC error, an all-zero scratchpad (its CRC is 0, so it passes), or
the 85.0 C power-on value (raw 0x0550), which means no conversion finished since the probe powered
up, e.g. after a brown-out or a loose connector.
"""

from micropython import const
import machine
import onewire
import ds18x20

_FAMILY = const(0x28)
_POWER_ON_RAW = const(0x0550)
_HEX = "0123456789abcdefABCDEF"


class SensorError(Exception):
    pass


def _all(buf, value):
    for b in buf:
        if b != value:
            return False
    return True


class ProbeBus:
    CONVERT_MS = 750    # 12-bit conversion time; wait this long between convert() and read()

    def __init__(self, pin_number):
        self.pin_number = pin_number
        self.ow = onewire.OneWire(machine.Pin(pin_number))
        self.ds = ds18x20.DS18X20(self.ow)
        self._only = None

    def scan(self):
        """ROMs of the DS18B20 probes on the pin (other 1-Wire families are left out)."""
        return [rom for rom in self.ds.scan() if rom[0] == _FAMILY]

    def convert(self):
        try:
            self.ds.convert_temp()
        except onewire.OneWireError:
            raise SensorError("not present")

    def _single(self):
        # rom None means "the only probe on this pin": find it once, look again after a failure.
        if self._only is None:
            roms = self.scan()
            if not roms:
                raise SensorError("not present")
            if len(roms) > 1:
                raise SensorError("several probes")
            self._only = roms[0]
        return self._only

    def read(self, rom):
        """Temperature in degC of the probe `rom` (None: the only probe), from the last convert()."""
        single = rom is None
        if single:
            rom = self._single()
        try:
            buf = self.ds.read_scratch(rom)
        except onewire.OneWireError:
            self._only = None
            raise SensorError("not present")
        except Exception:
            # ds18x20 keeps the bytes it read in .buf; a ROM nobody answers reads as all ones.
            got = getattr(self.ds, "buf", None)
            if got is not None and _all(got, 0xFF):
                if single:
                    self._only = None
                raise SensorError("no such probe")
            raise SensorError("crc error")
        if _all(buf, 0):
            raise SensorError("all-zero scratchpad")
        raw = buf[0] | (buf[1] << 8)
        if raw == _POWER_ON_RAW:
            raise SensorError("power-on value")
        # Below 12-bit resolution the low bits are undefined: clear them.
        raw &= (0xFFFF << (3 - ((buf[4] >> 5) & 3))) & 0xFFFF
        if raw & 0x8000:
            raw -= 0x10000
        return raw / 16


def rom_from_hex(s):
    """8-byte ROM from 16 hex digits (family code first, as printed by rom_to_hex)."""
    if len(s) != 16:
        raise ValueError("rom must be 16 hex digits")
    for ch in s:
        if ch not in _HEX:
            raise ValueError("rom must be 16 hex digits")
    rom = bytearray(8)
    for i in range(8):
        rom[i] = int(s[2 * i:2 * i + 2], 16)
    return bytes(rom)


def rom_to_hex(rom):
    return "".join("%02x" % b for b in rom)
