"""1-Wire bus and DS18B20 probe models, at the level of time slots.

The bus is wired-AND: in every slot the master and each selected device may pull the line low, and
everybody sees the AND. Each probe runs the DS18B20 protocol as a small coroutine that yields the
level it drives (1 = released) and receives the level it saw, so ROM search, match/skip/read ROM
and the function commands behave as on a real bus, including collisions when two probes talk at
once. Timing that matters to firmware is taken from the board clock: a temperature conversion lasts
93.75/187.5/375/750 ms by resolution and read slots return 0 until it is done.

Fault knobs on DS18B20: `present` (unplug; plugging back in is a power-up, so the probe shows
85.0 C again), `corrupt_next_scratchpad`, `zero_scratchpad`, and `power_cycle()`.

A device on the bus offers `present`, `bus_reset()`, `drive()`, `sample(line)` and `quiet`: True
while it neither drives the line nor listens (a probe not selected, until the next reset), which
lets the bus skip it; the line is the same as with it. The bus takes a byte's 8 slots in one loop
and looks at who is present once a byte (a device unplugged by another thread mid-byte leaves at
the byte's end).
"""

import time

FAMILY_DS18B20 = 0x28

CMD_READ_ROM = 0x33
CMD_MATCH_ROM = 0x55
CMD_SKIP_ROM = 0xCC
CMD_SEARCH_ROM = 0xF0
CMD_ALARM_SEARCH = 0xEC
CMD_CONVERT_T = 0x44
CMD_READ_SCRATCHPAD = 0xBE
CMD_WRITE_SCRATCHPAD = 0x4E
CMD_COPY_SCRATCHPAD = 0x48
CMD_RECALL_E2 = 0xB8
CMD_READ_POWER_SUPPLY = 0xB4

POWER_ON_RAW = 0x0550           # 85.0 C, in the scratchpad until a conversion completes
CONVERT_S_12BIT = 0.750
COPY_S = 0.010                  # EEPROM write time
_BUSY = None                    # drive value meaning "0 while busy, 1 when done"


def _crc8_bitwise(data):
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


_CRC8 = bytes(_crc8_bitwise((i,)) for i in range(256))  # the CRC of each byte from crc 0


def crc8(data):
    """Dallas/Maxim CRC-8 (X^8 + X^5 + X^4 + 1, reflected 0x8C); over data+crc it gives 0."""
    crc = 0
    table = _CRC8
    for byte in data:
        crc = table[crc ^ byte]
    return crc


def make_rom(serial_int, family=FAMILY_DS18B20):
    """A valid 64-bit ROM: family, 48-bit serial (least significant byte first), CRC."""
    body = bytes([family]) + (serial_int & 0xFFFFFFFFFFFF).to_bytes(6, "little")
    return body + bytes([crc8(body)])


def conversion_time_s(config):
    """Maximum conversion time for a config byte (R1:R0 in bits 6:5)."""
    return CONVERT_S_12BIT / (1 << (3 - ((config >> 5) & 0x03)))


class OneWireBus:
    """One GPIO with a pull-up and any number of probes on it."""

    def __init__(self):
        self._devices = []
        self.resets = 0

    def attach(self, device):
        self.detach(device.rom)
        self._devices.append(device)
        return device

    def detach(self, rom):
        rom = bytes(rom)
        self._devices = [d for d in self._devices if d.rom != rom]

    def device(self, rom):
        rom = bytes(rom)
        for d in self._devices:
            if d.rom == rom:
                return d
        return None

    @property
    def devices(self):
        return list(self._devices)

    def reset(self):
        """Reset pulse; True when at least one device answers with a presence pulse."""
        self.resets += 1
        present = False
        for d in self._devices:
            if d.present:
                d.bus_reset()
                present = True
        return present

    def slot(self, level):
        """One time slot: the master drives `level` (1 = release/read); returns the line level."""
        return self._slots(level & 1, 1)

    def _slots(self, levels, count):
        """`count` time slots, the master driving bit i of `levels` in slot i; the line levels seen,
        bit i for slot i."""
        active = [d for d in self._devices if d.present]
        seen = 0
        for i in range(count):
            line = (levels >> i) & 1
            for d in active:
                if not d.quiet:
                    line &= d.drive()
            for d in active:
                if not d.quiet:
                    d.sample(line)
            seen |= line << i
        return seen

    def write_bit(self, b):
        self._slots(1 if b else 0, 1)

    def read_bit(self):
        return self._slots(1, 1)

    def write_byte(self, b):
        self._slots(b & 0xFF, 8)

    def read_byte(self):
        return self._slots(0xFF, 8)


class DS18B20:
    """A DS18B20 probe (external power by default) with a 64-bit ROM."""

    EEPROM_DEFAULT = (0x4B, 0x46, 0x7F)     # TH 75 C, TL 70 C, 12-bit config

    def __init__(self, rom, clock=None, temperature=None, parasite=False):
        rom = bytes(rom)
        if len(rom) != 8 or crc8(rom) != 0:
            raise ValueError("ROM must be 8 bytes with a valid CRC: %s" % rom.hex())
        if rom[0] != FAMILY_DS18B20:
            raise ValueError("not a DS18B20 family code: 0x%02x" % rom[0])
        self.rom = rom
        self.clock = clock or time.monotonic
        self.temperature = temperature or (lambda t: 25.0)
        self.parasite = parasite
        self.corrupt_next_scratchpad = False
        self.zero_scratchpad = False
        self.conversions = 0
        self._present = True
        self._eeprom = list(self.EEPROM_DEFAULT)
        self.power_cycle()

    # ----- fault knobs -----
    @property
    def present(self):
        return self._present

    @present.setter
    def present(self, value):
        value = bool(value)
        if value and not self._present:
            self.power_cycle()      # a probe plugged back in powers up afresh
        self._present = value

    def power_cycle(self):
        """Back to the power-up state: 85.0 C in the scratchpad, TH/TL/config from EEPROM."""
        self._raw = POWER_ON_RAW
        self._th, self._tl, self._config = self._eeprom
        self._conv_end = None
        self._busy_until = None
        self._gen = self._idle()
        self._drive = next(self._gen)  # sets quiet

    # ----- state helpers -----
    @property
    def resolution_bits(self):
        return 9 + ((self._config >> 5) & 0x03)

    def _settle(self):
        """Finish a conversion whose time is up (the result lands in the scratchpad)."""
        if self._conv_end is not None and self.clock() >= self._conv_end:
            t_c = float(self.temperature(self._conv_end))
            t_c = max(-55.0, min(125.0, t_c))
            raw = int(round(t_c * 16))
            raw &= ~((1 << (12 - self.resolution_bits)) - 1)   # undefined low bits read as 0
            self._raw = raw & 0xFFFF
            self._conv_end = None
            self.conversions += 1

    def _busy(self):
        self._settle()
        now = self.clock()
        if self._conv_end is not None:
            return True
        return self._busy_until is not None and now < self._busy_until

    def scratchpad(self):
        """The 9 scratchpad bytes as the probe would send them now (no fault knobs applied)."""
        self._settle()
        body = bytes((self._raw & 0xFF, self._raw >> 8, self._th, self._tl, self._config,
                      0xFF, 0x0C, 0x10))
        return body + bytes([crc8(body)])

    def _alarm(self):
        raw = self._raw - 0x10000 if self._raw & 0x8000 else self._raw
        whole = raw >> 4

        def s8(v):
            return v - 256 if v & 0x80 else v
        return whole >= s8(self._th) or whole <= s8(self._tl)

    # ----- slot interface used by OneWireBus -----
    def bus_reset(self):
        self.quiet = False
        self._gen = self._rom_layer()
        self._drive = next(self._gen)

    def drive(self):
        if self._drive is _BUSY:
            if self.parasite:
                return 1        # a parasite-powered probe cannot signal; the line stays high
            return 0 if self._busy() else 1
        return self._drive

    def sample(self, line):
        self._drive = self._gen.send(line)

    # ----- protocol coroutines: yield the level to drive, receive the line level -----
    def _idle(self):
        self.quiet = True  # drives 1 and ignores the line from now on: the bus may skip it
        while True:
            yield 1

    def _recv_byte(self):
        v = 0
        for i in range(8):
            line = yield 1
            v |= (line & 1) << i
        return v

    def _send_bytes(self, data):
        for byte in data:
            for i in range(8):
                yield (byte >> i) & 1

    # The ROM layer, then the function layer, in one coroutine: the bytes of the common paths (the
    # commands, match ROM, the scratchpad read) are taken bit by bit in place, not through
    # `yield from` helpers, since every bus slot resumes each generator of the chain.
    def _rom_layer(self):
        cmd = 0
        for i in range(8):
            line = yield 1
            cmd |= (line & 1) << i
        if cmd == CMD_SKIP_ROM:
            pass
        elif cmd == CMD_READ_ROM:
            yield from self._send_bytes(self.rom)
        elif cmd == CMD_MATCH_ROM:
            for byte in self.rom:
                for i in range(8):
                    line = yield 1
                    if (line & 1) != (byte >> i) & 1:  # not us: nothing the master writes from here on concerns us
                        yield from self._idle()
        elif cmd in (CMD_SEARCH_ROM, CMD_ALARM_SEARCH):
            self._settle()
            if cmd == CMD_ALARM_SEARCH and not self._alarm():
                yield from self._idle()
            for byte in self.rom:
                for i in range(8):
                    bit = (byte >> i) & 1
                    yield bit
                    yield bit ^ 1
                    chosen = yield 1
                    if chosen != bit:
                        yield from self._idle()     # the master took the other branch
        else:
            yield from self._idle()
        # The function layer.
        cmd = 0
        for i in range(8):
            line = yield 1
            cmd |= (line & 1) << i
        if cmd == CMD_CONVERT_T:
            self._settle()
            if self._conv_end is None:
                self._conv_end = self.clock() + conversion_time_s(self._config)
            while True:
                yield _BUSY
        elif cmd == CMD_READ_SCRATCHPAD:
            data = self.scratchpad()
            if self.zero_scratchpad:
                data = bytes(9)
            elif self.corrupt_next_scratchpad:
                self.corrupt_next_scratchpad = False
                data = bytes((data[0] ^ 0x01,)) + data[1:]
            for byte in data:
                for i in range(8):
                    yield (byte >> i) & 1
        elif cmd == CMD_WRITE_SCRATCHPAD:
            self._th = yield from self._recv_byte()
            self._tl = yield from self._recv_byte()
            cfg = yield from self._recv_byte()
            self._config = (cfg & 0x60) | 0x1F
        elif cmd == CMD_COPY_SCRATCHPAD:
            self._eeprom = [self._th, self._tl, self._config]
            self._busy_until = self.clock() + COPY_S
            while True:
                yield _BUSY
        elif cmd == CMD_RECALL_E2:
            self._th, self._tl, self._config = self._eeprom
            # Recall is near-instant: read slots report "done" straight away.
        elif cmd == CMD_READ_POWER_SUPPLY:
            while True:
                yield 0 if self.parasite else 1
        yield from self._idle()
