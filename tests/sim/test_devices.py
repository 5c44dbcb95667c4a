"""Register- and slot-level checks of the simulated sensor hardware against datasheet facts."""

import errno

import pytest

from floorwatch.sim.devices.adxl345 import ADXL345
from floorwatch.sim.devices.i2cbus import I2CBus, I2CDevice
from floorwatch.sim.devices.mpu6050 import MPU6050
from floorwatch.sim.devices.onewire import DS18B20, OneWireBus, crc8, make_rom
from floorwatch.sim.mpy import ds18x20 as fake_ds18x20
from floorwatch.sim.mpy import onewire as fake_onewire


class Clock:
    """A hand-driven board clock."""

    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += seconds


def constant(x, y, z):
    def signal(t0, n, rate):
        return [x] * n, [y] * n, [z] * n
    return signal


def ramp(t0, n, rate):
    """x carries the sample's own time (g == seconds) so tests can tell which samples they got."""
    ts = [t0 + k / rate for k in range(n)]
    return ts, [0.0] * n, [1.0] * n


def reg(bus, addr, r, n=1):
    buf = bytearray(n)
    bus.readfrom_mem_into(addr, r, buf)
    return buf[0] if n == 1 else bytes(buf)


def s16le(b, i):
    v = b[i] | b[i + 1] << 8
    return v - 65536 if v & 0x8000 else v


def s16be(b, i):
    v = b[i] << 8 | b[i + 1]
    return v - 65536 if v & 0x8000 else v


# ---------------------------------------------------------------- I2C bus

class Regs(I2CDevice):
    def __init__(self, addr):
        super().__init__(addr)
        self.mem = bytearray(range(256))

    def read(self, reg, n):
        return bytes(self.mem[(reg + i) & 0xFF] for i in range(n))

    def write(self, reg, data):
        for i, v in enumerate(data):
            self.mem[(reg + i) & 0xFF] = v


def test_scan_lists_present_devices_in_the_probed_range():
    bus = I2CBus()
    for addr in (0x68, 0x1D, 0x53, 0x05, 0x7A):
        bus.attach(Regs(addr))
    bus.device(0x1D).present = False
    assert bus.scan() == [0x53, 0x68]


def test_absent_and_unplugged_devices_raise_enodev():
    bus = I2CBus()
    dev = bus.attach(Regs(0x53))
    with pytest.raises(OSError) as absent:
        reg(bus, 0x40, 0)
    assert absent.value.errno == errno.ENODEV == absent.value.args[0] == 19
    dev.present = False
    with pytest.raises(OSError) as unplugged:
        bus.writeto_mem(0x53, 0x10, b"\x01")
    assert unplugged.value.errno == errno.ENODEV
    dev.present = True
    assert reg(bus, 0x53, 0x10) == 0x10   # the failed write did not happen
    bus.detach(0x53)
    with pytest.raises(OSError):
        reg(bus, 0x53, 0)


def test_injected_errors_hit_the_next_transactions_only():
    bus = I2CBus()
    bus.attach(Regs(0x53))
    bus.inject_error(errno.ETIMEDOUT, count=2)
    for _ in range(2):
        with pytest.raises(OSError) as e:
            reg(bus, 0x53, 7)
        assert e.value.errno == 110
    assert reg(bus, 0x53, 7) == 7


def test_register_pointer_for_plain_reads_and_writes():
    bus = I2CBus()
    dev = bus.attach(Regs(0x53))
    bus.writeto(0x53, b"\x20\xAA\xBB")          # pointer 0x20, then two data bytes
    assert dev.mem[0x20:0x22] == b"\xAA\xBB"
    bus.writeto(0x53, b"\x20")                  # set the pointer only
    buf = bytearray(3)
    bus.readfrom_into(0x53, buf)
    assert bytes(buf) == b"\xAA\xBB\x22"
    bus.readfrom_into(0x53, buf)                # continues where the last read stopped
    assert bytes(buf) == bytes((0x23, 0x24, 0x25))


# ---------------------------------------------------------------- ADXL345

def adxl(signal=None, rate_code=0x0A, fmt=0x08, fifo=0x80, measure=True):
    clock = Clock()
    bus = I2CBus()
    dev = bus.attach(ADXL345(clock=clock, signal=signal or constant(0.5, -0.25, 1.0)))
    bus.writeto_mem(0x53, 0x31, bytes([fmt]))
    bus.writeto_mem(0x53, 0x2C, bytes([rate_code]))
    bus.writeto_mem(0x53, 0x38, bytes([fifo]))
    if measure:
        bus.writeto_mem(0x53, 0x2D, b"\x08")
    return bus, dev, clock


def test_adxl345_reset_values():
    bus = I2CBus()
    bus.attach(ADXL345(clock=Clock()))
    assert reg(bus, 0x53, 0x00) == 0xE5
    assert reg(bus, 0x53, 0x2C) == 0x0A
    assert reg(bus, 0x53, 0x2D) == 0x00
    assert reg(bus, 0x53, 0x31) == 0x00
    assert reg(bus, 0x53, 0x38) == 0x00
    assert reg(bus, 0x53, 0x39) == 0x00
    assert reg(bus, 0x53, 0x30) == 0x02      # watermark bit: 0 entries >= 0 samples
    bus.writeto_mem(0x53, 0x00, b"\x12")     # DEVID is read-only
    assert reg(bus, 0x53, 0x00) == 0xE5


def test_adxl345_standby_makes_no_samples():
    bus, dev, clock = adxl(measure=False)
    clock.advance(5.0)
    assert reg(bus, 0x53, 0x39) == 0
    assert not reg(bus, 0x53, 0x30) & 0x80
    assert dev.samples_made == 0
    bus.writeto_mem(0x53, 0x2D, b"\x08")
    clock.advance(0.105)                      # 100 Hz: samples at 10, 20, ... 100 ms
    assert reg(bus, 0x53, 0x30) & 0x80
    assert dev.samples_made == 10
    bus.writeto_mem(0x53, 0x2D, b"\x00")      # back to standby: production stops
    clock.advance(1.0)
    reg(bus, 0x53, 0x39)
    assert dev.samples_made == 10


@pytest.mark.parametrize("rng, lsb_per_g", [(0, 256), (1, 128), (2, 64), (3, 32)])
def test_adxl345_10bit_scaling_per_range(rng, lsb_per_g):
    bus, _, clock = adxl(fmt=rng)
    clock.advance(0.011)
    data = reg(bus, 0x53, 0x32, 6)
    assert s16le(data, 0) == round(0.5 * lsb_per_g)
    assert s16le(data, 2) == round(-0.25 * lsb_per_g)
    assert s16le(data, 4) == lsb_per_g


@pytest.mark.parametrize("rng", [0, 1, 2, 3])
def test_adxl345_full_resolution_is_256_per_g_at_every_range(rng):
    bus, _, clock = adxl(fmt=0x08 | rng)
    clock.advance(0.011)
    data = reg(bus, 0x53, 0x32, 6)
    assert (s16le(data, 0), s16le(data, 2), s16le(data, 4)) == (128, -64, 256)
    assert data[2:4] == b"\xC0\xFF"          # little-endian two's complement of -64


@pytest.mark.parametrize("rng, top", [(0, 511), (1, 1023), (2, 2047), (3, 4095)])
def test_adxl345_clips_to_the_selected_range(rng, top):
    bus, _, clock = adxl(signal=constant(20.0, -20.0, 0.0), fmt=0x08 | rng)
    clock.advance(0.011)
    data = reg(bus, 0x53, 0x32, 6)
    assert s16le(data, 0) == top
    assert s16le(data, 2) == -top - 1


def test_adxl345_output_lsb_is_zero_at_1600hz_full_resolution():
    bus, _, clock = adxl(signal=constant(129 / 256, 0.0, 1.0), rate_code=0x0E)
    clock.advance(0.002)
    assert s16le(reg(bus, 0x53, 0x32, 6), 0) == 128
    bus2, _, clock2 = adxl(signal=constant(129 / 256, 0.0, 1.0), rate_code=0x0C)
    clock2.advance(0.005)
    assert s16le(reg(bus2, 0x53, 0x32, 6), 0) == 129


def test_adxl345_output_rate_follows_bw_rate():
    for code, hz in ((0x0A, 100), (0x0D, 800), (0x0F, 3200)):
        _, dev, clock = adxl(rate_code=code)
        clock.advance(0.5)
        dev.read(0x39, 1)
        assert abs(dev.samples_made - 0.5 * hz) <= 1


def test_adxl345_stream_fifo_depth_and_overrun():
    bus, dev, clock = adxl(signal=ramp, rate_code=0x0A, fifo=0x80 | 20)
    clock.advance(0.1)                        # 10 samples
    assert reg(bus, 0x53, 0x39) == 9          # one sits in the output register
    assert reg(bus, 0x53, 0x30) & 0x83 == 0x80
    clock.advance(0.11)                       # 21 samples: watermark (20 entries) reached
    assert reg(bus, 0x53, 0x39) == 20
    assert reg(bus, 0x53, 0x30) & 0x03 == 0x02
    clock.advance(1.0)                        # far more than 33 samples
    assert reg(bus, 0x53, 0x39) & 0x3F == 32  # 32 FIFO levels ...
    assert reg(bus, 0x53, 0x30) & 0x01        # ... overrun
    newest = dev.samples_made
    first = s16le(reg(bus, 0x53, 0x32, 6), 0)
    assert not reg(bus, 0x53, 0x30) & 0x01    # reading data clears the overrun
    # Stream mode keeps the newest 33: the first one read is sample newest-33 (x == its time).
    t_first = (first / 256.0)
    assert abs(t_first - (0.01 + (newest - 33) * 0.01)) < 0.02
    popped = 1
    while reg(bus, 0x53, 0x30) & 0x80:
        reg(bus, 0x53, 0x32, 6)
        popped += 1
    assert popped == 33
    assert reg(bus, 0x53, 0x39) == 0


def test_adxl345_fifo_mode_keeps_the_oldest_and_stops_when_full():
    bus, dev, clock = adxl(signal=ramp, rate_code=0x0A, fifo=0x40)
    clock.advance(2.0)
    assert reg(bus, 0x53, 0x39) == 32
    assert reg(bus, 0x53, 0x30) & 0x01
    first = s16le(reg(bus, 0x53, 0x32, 6), 0) / 256.0
    assert abs(first - 0.01) < 0.005          # the very first sample, at 10 ms


def test_adxl345_each_burst_pops_one_level_and_bypass_clears():
    bus, _, clock = adxl(signal=ramp, rate_code=0x0A)
    clock.advance(0.2)                        # 20 samples
    a = s16le(reg(bus, 0x53, 0x32, 6), 0)
    b = s16le(reg(bus, 0x53, 0x32, 6), 0)
    assert 2 <= b - a <= 3                    # consecutive samples, 10 ms (2.56 counts) apart
    assert reg(bus, 0x53, 0x39) == 17
    bus.writeto_mem(0x53, 0x38, b"\x00")      # bypass: FIFO emptied
    assert reg(bus, 0x53, 0x39) == 0
    assert reg(bus, 0x53, 0x30) & 0x80        # the newest sample is still in the output register


def test_adxl345_bypass_overrun_when_unread_data_is_replaced():
    bus, _, clock = adxl(fifo=0x00)
    clock.advance(0.011)
    assert not reg(bus, 0x53, 0x30) & 0x01
    clock.advance(0.01)
    assert reg(bus, 0x53, 0x30) & 0x01
    assert reg(bus, 0x53, 0x39) == 0          # bypass: no FIFO entries


# ---------------------------------------------------------------- MPU-6050

def mpu(signal=None, temperature=None, wake=True, div=0, dlpf=1, afs=0, fifo=True):
    clock = Clock()
    bus = I2CBus()
    dev = bus.attach(MPU6050(clock=clock, signal=signal or constant(0.5, -0.25, 1.0),
                             temperature=temperature))
    bus.writeto_mem(0x68, 0x1A, bytes([dlpf]))
    bus.writeto_mem(0x68, 0x19, bytes([div]))
    bus.writeto_mem(0x68, 0x1C, bytes([afs << 3]))
    if fifo:
        bus.writeto_mem(0x68, 0x23, b"\x08")
        bus.writeto_mem(0x68, 0x6A, b"\x44")
    if wake:
        bus.writeto_mem(0x68, 0x6B, b"\x01")
    return bus, dev, clock


def fifo_count(bus):
    b = reg(bus, 0x68, 0x72, 2)
    return b[0] << 8 | b[1]


def test_mpu6050_reset_values_and_sleep():
    clock = Clock()
    bus = I2CBus()
    dev = bus.attach(MPU6050(clock=clock, signal=constant(0.5, 0, 1)))
    assert reg(bus, 0x68, 0x75) == 0x68
    assert reg(bus, 0x68, 0x6B) == 0x40
    assert all(reg(bus, 0x68, r) == 0 for r in (0x19, 0x1A, 0x1C, 0x23, 0x6A))
    bus.writeto_mem(0x68, 0x23, b"\x08")
    bus.writeto_mem(0x68, 0x6A, b"\x40")
    clock.advance(1.0)
    assert reg(bus, 0x68, 0x3B, 6) == bytes(6)   # asleep: nothing sampled
    assert fifo_count(bus) == 0
    assert dev.samples_made == 0
    bus.writeto_mem(0x68, 0x6B, b"\x00")
    clock.advance(0.0105)
    reg(bus, 0x68, 0x3A)
    # Reset CONFIG (DLPF_CFG 0) and SMPLRT_DIV 0 mean the 8 kHz gyro rate: 84 samples in 10.5 ms.
    assert dev.samples_made == 84


def test_mpu6050_device_reset_restores_defaults():
    bus, _, clock = mpu()
    clock.advance(0.1)
    bus.writeto_mem(0x68, 0x6B, b"\x80")
    assert reg(bus, 0x68, 0x6B) == 0x40
    assert reg(bus, 0x68, 0x1A) == 0
    assert fifo_count(bus) == 0


@pytest.mark.parametrize("afs, lsb", [(0, 16384), (1, 8192), (2, 4096), (3, 2048)])
def test_mpu6050_accel_scaling_and_big_endian(afs, lsb):
    bus, _, clock = mpu(afs=afs)
    clock.advance(0.0015)
    data = reg(bus, 0x68, 0x3B, 6)
    assert (s16be(data, 0), s16be(data, 2)) == (lsb // 2, -lsb // 4)
    assert s16be(data, 4) == min(lsb, 32767)


def test_mpu6050_temperature_formula():
    bus, _, clock = mpu(temperature=lambda t: 47.25)
    clock.advance(0.002)
    raw = s16be(reg(bus, 0x68, 0x41, 2), 0)
    assert raw / 340 + 36.53 == pytest.approx(47.25, abs=1 / 340)
    bus2, _, clock2 = mpu()
    clock2.advance(0.002)
    assert s16be(reg(bus2, 0x68, 0x41, 2), 0) / 340 + 36.53 == pytest.approx(35.0, abs=1 / 340)


@pytest.mark.parametrize("dlpf, div, hz", [(1, 0, 1000), (1, 9, 100), (3, 4, 200), (0, 0, 8000), (0, 7, 1000)])
def test_mpu6050_sample_rate(dlpf, div, hz):
    bus, dev, clock = mpu(dlpf=dlpf, div=div)
    clock.advance(0.1)
    n = fifo_count(bus) // 6
    assert abs(dev.samples_made - 0.1 * hz) <= 1
    assert n == min(dev.samples_made, 1024 // 6)


def test_mpu6050_accelerometer_repeats_above_1khz():
    bus, _, clock = mpu(signal=ramp, dlpf=0, div=0)   # 8 kHz samples of a 1 kHz accelerometer
    clock.advance(0.01)
    n = fifo_count(bus) // 6
    data = reg(bus, 0x68, 0x74, n * 6)
    xs = [s16be(data, 6 * i) for i in range(n)]
    distinct = len(set(xs))
    assert n >= 70 and 9 <= distinct <= 11


def test_mpu6050_fifo_frames_pop_and_reset():
    bus, _, clock = mpu(signal=ramp, div=0)
    clock.advance(0.0505)                         # 50 samples at 1 kHz
    assert fifo_count(bus) == 300
    first = reg(bus, 0x68, 0x74, 12)
    assert 16 <= s16be(first, 6) - s16be(first, 0) <= 17     # 1 ms apart (16.4 counts)
    assert s16be(first, 4) == 16384               # z = 1 g in the third word of a frame
    assert fifo_count(bus) == 288
    bus.writeto_mem(0x68, 0x6A, b"\x04")          # FIFO_RESET (self-clearing)
    assert fifo_count(bus) == 0
    assert reg(bus, 0x68, 0x6A) == 0


def test_mpu6050_fifo_overflow_drops_oldest_and_flags():
    bus, _, clock = mpu(div=0)
    reg(bus, 0x68, 0x3A)                          # clear DATA_RDY
    clock.advance(0.1705)                         # 170 frames = 1020 bytes: no overflow yet
    assert fifo_count(bus) == 1020
    assert not reg(bus, 0x68, 0x3A) & 0x10
    clock.advance(0.002)
    assert fifo_count(bus) == 1024
    status = reg(bus, 0x68, 0x3A)
    assert status & 0x10 and status & 0x01
    assert reg(bus, 0x68, 0x3A) == 0              # reading INT_STATUS cleared it
    # 1024 is not a multiple of 6: after the overflow the FIFO no longer starts on a frame.
    head = reg(bus, 0x68, 0x74, 6)
    assert s16be(head, 0) != 8192


def test_mpu6050_empty_fifo_repeats_last_byte():
    bus, _, clock = mpu()
    clock.advance(0.0015)
    data = reg(bus, 0x68, 0x74, 6)
    assert fifo_count(bus) == 0
    assert reg(bus, 0x68, 0x74, 3) == bytes([data[-1]] * 3)


# ---------------------------------------------------------------- 1-Wire and DS18B20

def test_crc8_reference_vectors():
    assert crc8(bytes.fromhex("021CB801000000")) == 0xA2
    assert crc8(bytes.fromhex("50054B467FFF0C10")) == 0x1C
    assert crc8(bytes.fromhex("50054B467FFF0C101C")) == 0
    assert crc8(bytes(9)) == 0
    assert crc8(b"\xFF" * 9) != 0


def test_make_rom_is_a_valid_ds18b20_rom():
    rom = make_rom(0x1234567890AB)
    assert len(rom) == 8 and rom[0] == 0x28 and crc8(rom) == 0
    assert rom[1:7] == bytes.fromhex("AB9078563412")
    assert make_rom(1) != make_rom(2)
    with pytest.raises(ValueError):
        DS18B20(rom[:7] + bytes([rom[7] ^ 1]))
    with pytest.raises(ValueError):
        DS18B20(make_rom(5, family=0x10))


def probe_bus(temps, clock=None):
    clock = clock or Clock()
    bus = OneWireBus()
    probes = [bus.attach(DS18B20(make_rom(0x100 + i), clock=clock, temperature=(lambda t, v=v: v)))
              for i, v in enumerate(temps)]
    return bus, probes, clock


def select(bus, rom):
    assert bus.reset()
    bus.write_byte(0x55)
    for b in rom:
        bus.write_byte(b)


def read_scratchpad(bus, rom):
    select(bus, rom)
    bus.write_byte(0xBE)
    return bytes(bus.read_byte() for _ in range(9))


def test_presence_and_read_rom():
    bus = OneWireBus()
    assert not bus.reset()
    assert bus.read_byte() == 0xFF                # pull-up, nobody drives
    bus, (p,), _ = probe_bus([20.0])
    assert bus.reset()
    bus.write_byte(0x33)
    assert bytes(bus.read_byte() for _ in range(8)) == p.rom
    p.present = False
    assert not bus.reset()


def test_power_on_scratchpad_is_85_and_valid():
    bus, (p,), _ = probe_bus([20.0])
    pad = read_scratchpad(bus, p.rom)
    assert pad[:8] == bytes.fromhex("50054B467FFF0C10")
    assert pad[8] == 0x1C and crc8(pad) == 0


@pytest.mark.parametrize("cfg, seconds, step", [(0x7F, 0.75, 1 / 16), (0x5F, 0.375, 1 / 8),
                                                (0x3F, 0.1875, 1 / 4), (0x1F, 0.09375, 1 / 2)])
def test_conversion_time_and_resolution(cfg, seconds, step):
    bus, (p,), clock = probe_bus([23.3])
    select(bus, p.rom)
    bus.write_byte(0x4E)
    for b in (0x50, 0x0A, cfg):
        bus.write_byte(b)
    assert bus.reset()
    bus.write_byte(0xCC)
    bus.write_byte(0x44)
    assert bus.read_bit() == 0                    # converting
    clock.advance(seconds * 0.98)
    assert bus.read_bit() == 0
    clock.advance(seconds * 0.03)
    assert bus.read_bit() == 1                    # done
    pad = read_scratchpad(bus, p.rom)
    raw = pad[0] | pad[1] << 8
    assert pad[2:5] == bytes((0x50, 0x0A, cfg))
    assert raw / 16 == pytest.approx(23.3, abs=step)
    assert (raw / 16 / step) == int(raw / 16 / step)    # undefined low bits read as 0
    assert crc8(pad) == 0


def test_reading_before_conversion_finishes_still_shows_power_on_value():
    bus, (p,), clock = probe_bus([30.0])
    assert bus.reset()
    bus.write_byte(0xCC)
    bus.write_byte(0x44)
    clock.advance(0.5)
    pad = read_scratchpad(bus, p.rom)
    assert pad[:2] == b"\x50\x05"
    clock.advance(0.3)
    pad = read_scratchpad(bus, p.rom)
    assert (pad[0] | pad[1] << 8) == 30 * 16


def test_negative_temperature_is_twos_complement():
    bus, (p,), clock = probe_bus([-10.125])
    assert bus.reset()
    bus.write_byte(0xCC)
    bus.write_byte(0x44)
    clock.advance(0.8)
    pad = read_scratchpad(bus, p.rom)
    assert pad[:2] == bytes.fromhex("5EFF")      # datasheet example: -10.125 C = 0xFF5E


def test_match_rom_selects_one_probe_and_skip_rom_collides():
    bus, probes, clock = probe_bus([20.0, 40.0])
    assert bus.reset()
    bus.write_byte(0xCC)
    bus.write_byte(0x44)                          # both convert
    clock.advance(0.8)
    pads = [read_scratchpad(bus, p.rom) for p in probes]
    assert [(x[0] | x[1] << 8) / 16 for x in pads] == [20.0, 40.0]
    assert bus.reset()
    bus.write_byte(0xCC)
    bus.write_byte(0xBE)                          # both answer at once: the wire ANDs them
    mixed = bytes(bus.read_byte() for _ in range(9))
    assert mixed == bytes(a & b for a, b in zip(*pads))


def test_copy_recall_and_power_supply():
    bus, (p,), clock = probe_bus([20.0])
    select(bus, p.rom)
    bus.write_byte(0x4E)
    for b in (0x11, 0x22, 0x1F):
        bus.write_byte(b)
    select(bus, p.rom)
    bus.write_byte(0x48)                          # copy to EEPROM
    assert bus.read_bit() == 0
    clock.advance(0.011)
    assert bus.read_bit() == 1
    select(bus, p.rom)
    bus.write_byte(0x4E)
    for b in (0x4B, 0x46, 0x7F):
        bus.write_byte(b)
    select(bus, p.rom)
    bus.write_byte(0xB8)                          # recall
    assert bus.read_bit() == 1
    assert read_scratchpad(bus, p.rom)[2:5] == bytes((0x11, 0x22, 0x1F))
    p.power_cycle()
    assert read_scratchpad(bus, p.rom)[:5] == bytes((0x50, 0x05, 0x11, 0x22, 0x1F))
    select(bus, p.rom)
    bus.write_byte(0xB4)
    assert bus.read_bit() == 1                    # externally powered
    parasite = DS18B20(make_rom(9), clock=clock, parasite=True)
    bus2 = OneWireBus()
    bus2.attach(parasite)
    select(bus2, parasite.rom)
    bus2.write_byte(0xB4)
    assert bus2.read_bit() == 0


def test_fault_knobs():
    bus, (p,), clock = probe_bus([21.5])
    assert bus.reset()
    bus.write_byte(0xCC)
    bus.write_byte(0x44)
    clock.advance(0.8)
    p.corrupt_next_scratchpad = True
    assert crc8(read_scratchpad(bus, p.rom)) != 0
    good = read_scratchpad(bus, p.rom)
    assert crc8(good) == 0 and (good[0] | good[1] << 8) == 21.5 * 16
    p.zero_scratchpad = True
    assert read_scratchpad(bus, p.rom) == bytes(9)
    p.zero_scratchpad = False
    p.power_cycle()
    assert read_scratchpad(bus, p.rom)[:2] == b"\x50\x05"
    bus.reset()
    bus.write_byte(0xCC)
    bus.write_byte(0x44)
    clock.advance(0.8)
    p.present = False
    assert not bus.reset()
    p.present = True                              # plugged back in: a fresh power-up
    assert read_scratchpad(bus, p.rom)[:2] == b"\x50\x05"


def test_alarm_search_only_answers_out_of_limits():
    bus, (cool, hot), clock = probe_bus([20.0, 80.0])
    assert bus.reset()
    bus.write_byte(0xCC)
    bus.write_byte(0x4E)
    for b in (75, 0xF6, 0x7F):                    # TH 75 C, TL -10 C on both probes
        bus.write_byte(b)
    assert bus.reset()
    bus.write_byte(0xCC)
    bus.write_byte(0x44)
    clock.advance(0.8)
    assert bus.reset()
    bus.write_byte(0xEC)
    rom = 0
    for i in range(64):
        b, cb = bus.read_bit(), bus.read_bit()
        assert b != cb                            # only one probe takes part: no conflicts
        bus.write_bit(b)
        rom |= b << i
    assert rom.to_bytes(8, "little") == hot.rom


# ---------------------------------------------------------------- fake onewire / ds18x20 modules

class StubBoard:
    """Just what the fake modules need from a board."""

    def __init__(self):
        self.buses = {}
        self.checkpoints = 0

    def onewire_bus(self, pin):
        return self.buses.setdefault(pin, OneWireBus())

    def checkpoint(self):
        self.checkpoints += 1


class Pin:
    def __init__(self, n):
        self._number = n


def fake_modules():
    board = StubBoard()
    ow_mod = fake_onewire.module(board)
    return board, ow_mod, fake_ds18x20.module(board)


def test_rom_search_finds_every_probe():
    board, ow_mod, _ = fake_modules()
    clock = Clock()
    serials = [0x3, 0x5, 0x6, 0xABCDEF, 0xABCDEE, 0x800000000000, 0x7FFFFFFFFFFF]
    roms = {make_rom(s) for s in serials[:3]}
    for rom in roms:
        board.onewire_bus(4).attach(DS18B20(rom, clock=clock))
    ow = ow_mod.OneWire(Pin(4))
    found = ow.scan()
    assert len(found) == 3 and {bytes(r) for r in found} == roms
    assert all(isinstance(r, bytearray) for r in found)
    for rom in (make_rom(s) for s in serials[3:]):
        board.onewire_bus(4).attach(DS18B20(rom, clock=clock))
    assert {bytes(r) for r in ow.scan()} == {make_rom(s) for s in serials}
    assert ow_mod.OneWire(Pin(5)).scan() == []
    assert board.checkpoints > 0


def test_fake_onewire_reset_required_and_constants():
    board, ow_mod, _ = fake_modules()
    ow = ow_mod.OneWire(Pin(4))
    assert ow.reset() is False
    with pytest.raises(ow_mod.OneWireError):
        ow.reset(required=True)
    assert (ow.SEARCH_ROM, ow.MATCH_ROM, ow.SKIP_ROM) == (0xF0, 0x55, 0xCC)
    assert ow_mod.SKIP_ROM == 0xCC
    assert ow.crc8(bytes.fromhex("021CB801000000")) == 0xA2


def test_fake_ds18x20_reads_and_reports_crc_errors():
    board, ow_mod, ds_mod = fake_modules()
    clock = Clock()
    a = board.onewire_bus(4).attach(DS18B20(make_rom(1), clock=clock, temperature=lambda t: 25.0625))
    b = board.onewire_bus(4).attach(DS18B20(make_rom(2), clock=clock, temperature=lambda t: -3.5))
    ds = ds_mod.DS18X20(ow_mod.OneWire(Pin(4)))
    assert {bytes(r) for r in ds.scan()} == {a.rom, b.rom}
    assert ds.read_temp(a.rom) == 85.0
    ds.convert_temp()
    clock.advance(0.75)
    assert ds.read_temp(a.rom) == 25.0625
    assert ds.read_temp(b.rom) == -3.5
    ds.write_scratch(a.rom, b"\x10\x20\x1F")
    assert bytes(ds.read_scratch(a.rom)[2:5]) == b"\x10\x20\x1F"
    a.corrupt_next_scratchpad = True
    with pytest.raises(Exception, match="CRC error"):
        ds.read_scratch(a.rom)
    with pytest.raises(Exception, match="CRC error"):
        ds.read_scratch(make_rom(99))             # nobody answers: all ones
    assert bytes(ds.buf) == b"\xFF" * 9
    a.present = b.present = False
    with pytest.raises(ow_mod.OneWireError):
        ds.convert_temp()


def test_fake_ds18x20_scan_filters_families():
    board, ow_mod, ds_mod = fake_modules()
    clock = Clock()
    probe = board.onewire_bus(4).attach(DS18B20(make_rom(7), clock=clock))

    class OtherChip(DS18B20):
        def __init__(self, rom):
            super().__init__(make_rom(8), clock=clock)
            self.rom = rom
    board.onewire_bus(4).attach(OtherChip(make_rom(8, family=0x2D)))   # a DS2431 EEPROM
    ow = ow_mod.OneWire(Pin(4))
    assert len(ow.scan()) == 2
    assert [bytes(r) for r in ds_mod.DS18X20(ow).scan()] == [probe.rom]
