"""The firmware's sensor drivers, run unchanged inside a simulated board against the device models."""

import errno
import math
from array import array

import pytest

from floorwatch.sim.board import Board
from floorwatch.sim.devices.adxl345 import ADXL345
from floorwatch.sim.devices.mpu6050 import MPU6050
from floorwatch.sim.devices.onewire import DS18B20, make_rom
from floorwatch.sim.physics import Machine

SCL, SDA = 22, 21


class VirtualClock:
    """Board time that jumps ahead on every wait, plus an optional cost per look at the clock.

    `tick` models slow I2C traffic: every clock read (each bus access reads it) moves time on.
    """

    def __init__(self, tick=0.0):
        self.t = 0.0
        self.tick = tick

    def now(self):
        self.t += self.tick
        return self.t

    def wait(self, seconds, event):
        self.t += max(0.0, seconds)


def sine(freq, amp, y=0.25, z=1.0):
    def signal(t0, n, rate):
        xs = [amp * math.sin(2 * math.pi * freq * (t0 + k / rate)) for k in range(n)]
        return xs, [y] * n, [z] * n
    return signal


def make_board(tmp_path, tick=0.0):
    clock = VirtualClock(tick)
    board = Board("t1", seed=1, flash_dir=tmp_path, clock=clock)
    return board, clock


def i2c(board):
    machine = board.runtime.import_module("machine")
    return machine.I2C(0, scl=machine.Pin(SCL), sda=machine.Pin(SDA))


def axes(buf, n):
    return [list(buf[a:3 * n:3]) for a in range(3)]


def stats(counts, scale):
    g = [c * scale for c in counts]
    mean = sum(g) / len(g)
    rms = math.sqrt(sum((v - mean) ** 2 for v in g) / len(g))
    return mean, rms


def assert_uniform_sine(xs, scale, freq, rate, lsb_tol):
    """Consecutive samples of one sine obey x[k+1] + x[k-1] = 2 cos(wT) x[k]: no gaps, no repeats."""
    c = 2 * math.cos(2 * math.pi * freq / rate)
    worst = max(abs(xs[k + 1] + xs[k - 1] - c * xs[k]) for k in range(1, len(xs) - 1))
    assert worst <= lsb_tol


# ---------------------------------------------------------------- ADXL345

def test_adxl345_window_matches_the_signal(tmp_path):
    board, clock = make_board(tmp_path)
    board.i2c_bus(scl=SCL, sda=SDA).attach(ADXL345(clock=clock.now, signal=sine(80.0, 0.5)))
    mod = board.runtime.import_module("node.adxl345")
    acc = mod.ADXL345(i2c(board), range_g=4, odr_hz=1600)
    assert acc.scale_g == 1 / 256
    n = 512
    buf = array("h", bytes(2 * 3 * n))
    t_start = clock.t
    overruns = acc.read_window(buf, n)
    assert overruns == 0
    x, y, z = axes(buf, n)
    mean_x, rms_x = stats(x, acc.scale_g)
    assert abs(mean_x) < 0.01
    assert rms_x == pytest.approx(0.5 / math.sqrt(2), rel=0.02)
    assert stats(y, acc.scale_g) == (pytest.approx(0.25, abs=0.005), pytest.approx(0.0, abs=0.003))
    assert stats(z, acc.scale_g)[0] == pytest.approx(1.0, abs=0.005)
    assert_uniform_sine(x, 1, 80.0, 1600, lsb_tol=4)
    # The window took about its own duration of board time, not much more.
    assert 0.3 < clock.t - t_start < 0.45


def test_adxl345_configures_the_chip_as_documented(tmp_path):
    board, clock = make_board(tmp_path)
    dev = board.i2c_bus(scl=SCL, sda=SDA).attach(ADXL345(clock=clock.now))
    mod = board.runtime.import_module("node.adxl345")
    mod.ADXL345(i2c(board), range_g=8, odr_hz=3200)
    assert dev.regs[0x31] == 0x08 | 0x02          # FULL_RES, +-8 g
    assert dev.regs[0x2C] & 0x0F == 0x0F          # 3200 Hz
    assert dev.regs[0x38] >> 6 == 2               # stream mode
    assert dev.regs[0x2D] == 0x08                 # measuring
    with pytest.raises(ValueError):
        mod.ADXL345(i2c(board), odr_hz=1000)


def test_adxl345_slow_bus_counts_overruns_and_still_fills_the_window(tmp_path):
    board, clock = make_board(tmp_path, tick=0.0004)   # every bus access costs 0.4 ms
    dev = board.i2c_bus(scl=SCL, sda=SDA).attach(ADXL345(clock=clock.now, signal=sine(50.0, 0.3)))
    mod = board.runtime.import_module("node.adxl345")
    acc = mod.ADXL345(i2c(board), odr_hz=3200)
    buf = array("h", bytes(2 * 3 * 256))
    overruns = acc.read_window(buf, 256)
    assert overruns > 0
    assert dev.samples_lost > 0
    assert stats(axes(buf, 256)[2], acc.scale_g)[0] == pytest.approx(1.0, abs=0.01)


def test_adxl345_times_out_when_no_samples_come(tmp_path):
    board, clock = make_board(tmp_path)
    dev = board.i2c_bus(scl=SCL, sda=SDA).attach(ADXL345(clock=clock.now))
    mod = board.runtime.import_module("node.adxl345")
    acc = mod.ADXL345(i2c(board), odr_hz=1600)
    dev.write(0x2D, b"\x00")                      # the chip dropped back to standby
    t0 = clock.t
    with pytest.raises(OSError) as e:
        acc.read_window(array("h", bytes(2 * 3 * 512)), 512)
    assert e.value.args[0] == errno.ETIMEDOUT
    assert 2 * 512 / 1600 + 0.2 <= clock.t - t0 < 2 * 512 / 1600 + 0.5


def test_adxl345_wrong_id_and_absent_device(tmp_path):
    board, clock = make_board(tmp_path)
    bus = board.i2c_bus(scl=SCL, sda=SDA)
    mod = board.runtime.import_module("node.adxl345")
    with pytest.raises(OSError) as e:
        mod.ADXL345(i2c(board))
    assert e.value.args[0] == errno.ENODEV
    impostor = bus.attach(ADXL345(clock=clock.now))
    impostor.regs[0] = 0xE6
    with pytest.raises(ValueError, match="wrong device id 0xe6"):
        mod.ADXL345(i2c(board))
    bus.detach(0x53)
    bus.attach(MPU6050(addr=0x53, clock=clock.now))   # some other chip at that address
    with pytest.raises(ValueError, match="wrong device id 0x00"):
        mod.ADXL345(i2c(board))


def test_adxl345_unplugged_mid_window_raises_enodev(tmp_path):
    board, clock = make_board(tmp_path)
    dev = board.i2c_bus(scl=SCL, sda=SDA).attach(ADXL345(clock=clock.now))
    acc = board.runtime.import_module("node.adxl345").ADXL345(i2c(board))
    dev.present = False
    with pytest.raises(OSError) as e:
        acc.read_window(array("h", bytes(2 * 3 * 64)), 64)
    assert e.value.args[0] == errno.ENODEV


def test_adxl345_reads_machine_physics(tmp_path):
    board, clock = make_board(tmp_path)
    machine = Machine(1, mode="imbalance")
    board.i2c_bus(scl=SCL, sda=SDA).attach(ADXL345(clock=clock.now, signal=machine.acceleration))
    acc = board.runtime.import_module("node.adxl345").ADXL345(i2c(board))
    buf = array("h", bytes(2 * 3 * 512))
    acc.read_window(buf, 512)
    t_first = clock.t - 512 / 1600
    ref = machine.acceleration(t_first, 512, 1600)
    x = axes(buf, 512)[0]
    # Same RMS as the physics over (about) the same half second.
    assert stats(x, 1 / 256)[1] == pytest.approx(stats(ref[0], 1)[1], rel=0.05)


# ---------------------------------------------------------------- MPU-6050

def test_mpu6050_window_matches_the_signal(tmp_path):
    board, clock = make_board(tmp_path)
    dev = board.i2c_bus(scl=SCL, sda=SDA).attach(MPU6050(clock=clock.now, signal=sine(40.0, 0.8)))
    mod = board.runtime.import_module("node.mpu6050")
    acc = mod.MPU6050(i2c(board), range_g=2, odr_hz=1000)
    assert acc.scale_g == 1 / 16384
    assert not dev.regs[0x6B] & 0x40               # awake
    assert dev.sample_rate_hz == 1000
    n = 700
    buf = array("h", bytes(2 * 3 * n))
    assert acc.read_window(buf, n) == 0
    x, y, z = axes(buf, n)
    mean_x, rms_x = stats(x, acc.scale_g)
    assert abs(mean_x) < 0.005
    assert rms_x == pytest.approx(0.8 / math.sqrt(2), rel=0.01)
    assert stats(y, acc.scale_g)[0] == pytest.approx(0.25, abs=0.001)
    assert stats(z, acc.scale_g)[0] == pytest.approx(1.0, abs=0.001)
    assert_uniform_sine(x, 1, 40.0, 1000, lsb_tol=3)


@pytest.mark.parametrize("odr, div", [(500, 1), (200, 4), (100, 9)])
def test_mpu6050_sample_rate_divider(tmp_path, odr, div):
    board, clock = make_board(tmp_path)
    dev = board.i2c_bus(scl=SCL, sda=SDA).attach(MPU6050(clock=clock.now, signal=sine(10.0, 0.5)))
    acc = board.runtime.import_module("node.mpu6050").MPU6050(i2c(board), range_g=4, odr_hz=odr)
    assert dev.regs[0x19] == div and dev.regs[0x1A] & 0x07 not in (0, 7)
    assert dev.regs[0x1C] == 1 << 3
    buf = array("h", bytes(2 * 3 * 200))
    acc.read_window(buf, 200)
    assert_uniform_sine(axes(buf, 200)[0], 1, 10.0, odr, lsb_tol=4)
    with pytest.raises(ValueError):
        board.runtime.import_module("node.mpu6050").MPU6050(i2c(board), odr_hz=300)


def test_mpu6050_overflow_is_counted_and_the_fifo_restarted(tmp_path):
    board, clock = make_board(tmp_path)
    dev = board.i2c_bus(scl=SCL, sda=SDA).attach(MPU6050(clock=clock.now, signal=sine(40.0, 0.5)))
    acc = board.runtime.import_module("node.mpu6050").MPU6050(i2c(board), range_g=2)

    # Stall the reader once, long enough for the 1024-byte FIFO to overflow.
    stalled = []
    read = dev.read

    def slow_read(reg, n):
        if reg == 0x74 and not stalled:
            stalled.append(True)
            clock.t += 0.3
        return read(reg, n)
    dev.read = slow_read
    n = 400
    buf = array("h", bytes(2 * 3 * n))
    assert acc.read_window(buf, n) == 1
    x, _, z = axes(buf, n)
    # Every frame is still aligned (z stays 1 g) after the restart.
    assert all(abs(v * acc.scale_g - 1.0) < 0.002 for v in z)
    assert stats(x, acc.scale_g)[1] == pytest.approx(0.5 / math.sqrt(2), rel=0.05)


def test_mpu6050_wrong_id_absent_and_timeout(tmp_path):
    board, clock = make_board(tmp_path)
    bus = board.i2c_bus(scl=SCL, sda=SDA)
    mod = board.runtime.import_module("node.mpu6050")
    with pytest.raises(OSError) as e:
        mod.MPU6050(i2c(board))
    assert e.value.args[0] == errno.ENODEV
    bus.attach(ADXL345(addr=0x68, clock=clock.now))   # reg 0x75 of an ADXL345 reads 0
    with pytest.raises(ValueError, match="wrong device id 0x00"):
        mod.MPU6050(i2c(board))
    bus.detach(0x68)
    dev = bus.attach(MPU6050(clock=clock.now))
    acc = mod.MPU6050(i2c(board))
    dev.write(0x6B, b"\x40")                          # the chip went back to sleep
    t0 = clock.t
    with pytest.raises(OSError) as e:
        acc.read_window(array("h", bytes(2 * 3 * 100)), 100)
    assert e.value.args[0] == errno.ETIMEDOUT
    assert 0.4 <= clock.t - t0 < 0.7


# ---------------------------------------------------------------- DS18B20

def probes(board, clock, temps, pin=4):
    bus = board.onewire_bus(pin)
    return [bus.attach(DS18B20(make_rom(0xC0FFEE + i), clock=clock.now,
                               temperature=(lambda t, v=v: v)))
            for i, v in enumerate(temps)]


def converted(board, pb):
    pb.convert()
    board.sleep(pb.CONVERT_MS / 1000)


def test_probe_bus_scans_converts_and_reads_three_probes(tmp_path):
    board, clock = make_board(tmp_path)
    ps = probes(board, clock, [21.5, 48.0625, -10.125])
    mod = board.runtime.import_module("node.ds18b20")
    pb = mod.ProbeBus(4)
    roms = pb.scan()
    assert sorted(bytes(r) for r in roms) == sorted(p.rom for p in ps)
    converted(board, pb)
    assert [pb.read(p.rom) for p in ps] == [21.5, 48.0625, -10.125]
    assert all(p.conversions == 1 for p in ps)


def test_probe_bus_rejects_the_power_on_value(tmp_path):
    board, clock = make_board(tmp_path)
    (p,) = probes(board, clock, [30.0])
    ds = board.runtime.import_module("node.ds18b20")
    pb = ds.ProbeBus(4)
    with pytest.raises(ds.SensorError) as e:
        pb.read(p.rom)                            # no conversion since power-up
    assert str(e.value) == "power-on value"
    pb.convert()
    board.sleep(0.3)                              # read too early: still 85.0
    with pytest.raises(ds.SensorError, match="power-on value"):
        pb.read(p.rom)
    board.sleep(0.5)
    assert pb.read(p.rom) == 30.0
    p.power_cycle()                               # a brown-out of the probe
    with pytest.raises(ds.SensorError, match="power-on value"):
        pb.read(p.rom)


def test_probe_bus_rejects_crc_errors_and_zero_scratchpads(tmp_path):
    board, clock = make_board(tmp_path)
    (p,) = probes(board, clock, [25.0])
    ds = board.runtime.import_module("node.ds18b20")
    pb = ds.ProbeBus(4)
    converted(board, pb)
    p.corrupt_next_scratchpad = True
    with pytest.raises(ds.SensorError) as e:
        pb.read(p.rom)
    assert str(e.value) == "crc error"
    assert pb.read(p.rom) == 25.0                 # one bad read only
    p.zero_scratchpad = True
    with pytest.raises(ds.SensorError) as e:
        pb.read(p.rom)
    assert str(e.value) == "all-zero scratchpad"


def test_probe_bus_absent_probe_and_empty_bus(tmp_path):
    board, clock = make_board(tmp_path)
    a, b = probes(board, clock, [20.0, 22.0])
    ds = board.runtime.import_module("node.ds18b20")
    pb = ds.ProbeBus(4)
    converted(board, pb)
    b.present = False
    with pytest.raises(ds.SensorError) as e:
        pb.read(b.rom)
    assert str(e.value) == "no such probe"
    assert pb.read(a.rom) == 20.0
    a.present = False
    with pytest.raises(ds.SensorError) as e:
        pb.convert()
    assert str(e.value) == "not present"
    with pytest.raises(ds.SensorError) as e:
        pb.read(a.rom)
    assert str(e.value) == "not present"
    assert pb.scan() == []


def test_probe_bus_single_probe_without_rom(tmp_path):
    board, clock = make_board(tmp_path)
    ds = board.runtime.import_module("node.ds18b20")
    pb = ds.ProbeBus(4)
    with pytest.raises(ds.SensorError, match="not present"):
        pb.read(None)
    (p,) = probes(board, clock, [33.25])
    converted(board, pb)
    assert pb.read(None) == 33.25
    # Swap the probe for two others: the remembered ROM no longer answers, then there are two.
    p.present = False
    for serial in (0xBEEF, 0xCAFE):
        board.onewire_bus(4).attach(DS18B20(make_rom(serial), clock=clock.now))
    with pytest.raises(ds.SensorError, match="no such probe"):
        pb.read(None)                             # the cached probe left; next read looks again
    with pytest.raises(ds.SensorError, match="several probes"):
        pb.read(None)


def test_rom_hex_round_trip(tmp_path):
    board, _ = make_board(tmp_path)
    ds = board.runtime.import_module("node.ds18b20")
    rom = make_rom(0x1E64FF8116)
    text = ds.rom_to_hex(rom)
    assert text == rom.hex() and len(text) == 16
    assert ds.rom_from_hex(text) == rom
    assert ds.rom_from_hex(text.upper()) == rom
    for bad in ("28ff", "28ff641e8116037a00", "28ff641e8116037g", "+8ff641e8116037a"):
        with pytest.raises(ValueError):
            ds.rom_from_hex(bad)
