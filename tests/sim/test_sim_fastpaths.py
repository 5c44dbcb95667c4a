"""The simulator's fast paths serve what the slow, sample-by-sample models serve.

- ADXL345: samples made ahead in blocks and encoded with numpy, each queued as its six data-register
  bytes, give the bytes the sample-by-sample encoder gives (datasheet rules: offsets, range,
  FULL_RES, JUSTIFY, the zero LSB at 1600/3200 Hz, clipping, round half to even), and a drain
  through the firmware's driver reads the same bytes with read-ahead as with one signal call per
  burst (the old way), for a tabulated signal and for Machine physics.
- machine.I2C's shortcut for the ADXL345's 6-byte DATAX0 burst (past I2CBus.readfrom_mem_into and
  ADXL345.read) returns the bytes and leaves the chip and the bus (transactions, register pointer)
  as the bus path does; an armed fault, an unplugged chip, a power cut at that checkpoint still hit.
- Machine.acceleration_block: numpy over the window equals a per-sample evaluation of the model.
- 1-Wire: skipping quiet probes and taking a byte's slots in one loop leave every slot's line level
  as a bus that asks every probe in every slot; the table CRC is the bitwise one.
"""

import errno
import math
import random
from array import array

import numpy as np
import pytest

from floorwatch.sim import physics
from floorwatch.sim.board import Board, PowerOff
from floorwatch.sim.devices import onewire
from floorwatch.sim.devices.adxl345 import ADXL345
from floorwatch.sim.devices.i2cbus import I2CBus
from floorwatch.sim.devices.onewire import DS18B20, OneWireBus, crc8, make_rom
from floorwatch.sim.physics import ONSET_S, Machine

SCL, SDA = 22, 21


class Clock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t

    def now(self):
        return self.t

    def wait(self, seconds, event=None, watch=None):
        self.t += max(0.0, seconds)
        return []


# ---------------------------------------------------------------- ADXL345: encoding

def reference_encoder(regs):
    """The model's sample-by-sample encoder as it was (one sample, one axis at a time)."""
    fmt = regs[0x31]
    rng = fmt & 0x03
    if fmt & 0x08:
        lsb_per_g, bits = 256.0, 10 + rng
    else:
        lsb_per_g, bits = 256.0 / (1 << rng), 10
    hi = (1 << (bits - 1)) - 1
    lo = -(1 << (bits - 1))
    drop_lsb = (regs[0x2C] & 0x0F) >= 0x0E and (fmt & 0x08 or rng == 0)
    shift = 16 - bits if fmt & 0x04 else 0
    ofs = [((regs[0x1E + i] - 256) if regs[0x1E + i] & 0x80 else regs[0x1E + i]) * 0.0156 for i in range(3)]

    def enc(g, axis):
        c = int(round((g + ofs[axis]) * lsb_per_g))
        c = hi if c > hi else lo if c < lo else c
        if drop_lsb:
            c &= ~1
        return (c << shift) & 0xFFFF
    return enc


def tabulated(values):
    """A signal that is a pure function of the sample number: sample k (t = (k + 1) / rate from a
    start at t = 0) reads values[k % len] on each axis (offset per axis)."""
    size = len(values)

    def signal(t0, n, rate):
        k0 = int(round(t0 * rate)) - 1
        return tuple([values[(k0 + i + 7 * axis) % size] for i in range(n)] for axis in range(3))
    return signal


def awkward_values(seed=3):
    """Accelerations on and around rounding ties at every scale, beyond every range, and random."""
    rnd = random.Random(seed)
    vals = []
    for lsb in (256.0, 128.0, 64.0, 32.0):
        for c in range(-40, 41):
            vals += [(c + 0.5) / lsb, c / lsb, (c + 0.5) / lsb + 1e-12, (c + 0.5) / lsb - 1e-12]
    vals += [17.0, -17.0, 8.5, -8.5, 3.999, -4.001, 1e-9, -1e-9]
    vals += [rnd.gauss(0.0, 2.0) for _ in range(400)]
    return vals


@pytest.mark.parametrize("fmt", [0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0A, 0x0B, 0x04, 0x07, 0x0C, 0x0F])
@pytest.mark.parametrize("rate_code", [0x0A, 0x0E, 0x0F])
def test_adxl_block_encoding_matches_the_sample_by_sample_encoder(fmt, rate_code):
    values = awkward_values()
    clock = Clock()
    bus = I2CBus()
    dev = bus.attach(ADXL345(clock=clock, signal=tabulated(values)))
    bus.writeto_mem(0x53, 0x1E, bytes([0x00, 0xFB, 0x80]))  # offsets 0 (x keeps exact ties), -5, -128 (x 15.6 mg)
    bus.writeto_mem(0x53, 0x31, bytes([fmt]))
    bus.writeto_mem(0x53, 0x2C, bytes([rate_code]))
    bus.writeto_mem(0x53, 0x38, b"\x80")                  # stream
    bus.writeto_mem(0x53, 0x2D, b"\x08")                  # measure from t = 0: sample k at (k + 1) / rate
    enc = reference_encoder(dev.regs)
    rate = dev.rate_hz
    xs, ys, zs = tabulated(values)(1 / rate, len(values), rate)
    got = bytearray()
    buf = bytearray(6)
    k = 0
    while k < len(values):
        clock.t = (k + 16) / rate + 1e-7                  # 16 more samples made
        while bus.readfrom_mem(0x53, 0x39, 1)[0] or bus.readfrom_mem(0x53, 0x30, 1)[0] & 0x80:
            bus.readfrom_mem_into(0x53, 0x32, buf)
            got += buf
            k += 1
            if not bus.readfrom_mem(0x53, 0x39, 1)[0]:
                break
    assert dev.samples_lost == 0
    want = bytearray()
    for i in range(len(values)):
        for axis, g in enumerate((xs[i], ys[i], zs[i])):
            want += enc(g, axis).to_bytes(2, "little")
    assert bytes(got[:len(want)]) == bytes(want)


def test_adxl_slow_register_reads_agree_with_the_burst_and_pop_as_before():
    values = [i / 256.0 for i in range(200)]
    clock = Clock()
    bus = I2CBus()
    dev = bus.attach(ADXL345(clock=clock, signal=tabulated(values)))
    bus.writeto_mem(0x53, 0x31, b"\x08")
    bus.writeto_mem(0x53, 0x2C, b"\x0A")                  # 100 Hz
    bus.writeto_mem(0x53, 0x38, b"\x80")
    bus.writeto_mem(0x53, 0x2D, b"\x08")
    enc = reference_encoder(dev.regs)

    def sample(k):
        return b"".join(enc(values[(k + 7 * a) % 200], a).to_bytes(2, "little") for a in range(3))

    clock.t = 0.105                                       # samples 0..9
    assert bus.readfrom_mem(0x53, 0x39, 1)[0] == 9
    assert bus.readfrom_mem(0x53, 0x30, 1)[0] & 0x80
    seven = bus.readfrom_mem(0x53, 0x31, 7)               # DATA_FORMAT, then sample 0: pops one
    assert seven == b"\x08" + sample(0)
    assert bus.readfrom_mem(0x53, 0x32, 6) == sample(1)   # the burst (fast path)
    assert bus.readfrom_mem(0x53, 0x33, 1) == sample(2)[1:2]  # one data byte pops a level too
    assert bus.readfrom_mem(0x53, 0x32, 6) == sample(3)
    assert bus.readfrom_mem(0x53, 0x39, 1)[0] == 5
    assert bus.readfrom_mem(0x53, 0x00, 1) == b"\xE5"     # a plain register (fast one-byte path)
    for k in range(4, 10):
        assert bus.readfrom_mem(0x53, 0x32, 6) == sample(k)
    assert not bus.readfrom_mem(0x53, 0x30, 1)[0] & 0x80  # empty: the output register repeats
    assert bus.readfrom_mem(0x53, 0x32, 6) == sample(9)
    clock.t = 0.115
    assert bus.readfrom_mem(0x53, 0x32, 6) == sample(10)
    # A register write at the same clock reading is seen at once (nothing cached across it).
    clock.t = 0.125
    bus.writeto_mem(0x53, 0x2D, b"\x00")                  # standby: sample 11 was made before it
    clock.t = 1.0
    assert bus.readfrom_mem(0x53, 0x39, 1)[0] == 0
    assert dev.samples_made == 12


def drain_windows(signal, read_ahead, windows=6, n=512, odr=1600, gap_s=7.3, tmp_path=None):
    """What the firmware's driver reads in a few windows, gap_s apart, and the device."""
    clock = Clock()
    board = Board("fp", seed=1, flash_dir=tmp_path, clock=clock)
    dev = ADXL345(clock=clock.now, signal=signal)
    dev.read_ahead = read_ahead
    board.i2c_bus(SCL, SDA).attach(dev)
    machine = board.runtime.import_module("machine")
    i2c = machine.I2C(0, scl=machine.Pin(SCL), sda=machine.Pin(SDA))
    acc = board.runtime.import_module("node.adxl345").ADXL345(i2c, range_g=4, odr_hz=odr)
    out = []
    for _ in range(windows):
        buf = array("h", bytes(6 * n))
        acc.read_window(buf, n)
        out.append(bytes(buf))
        clock.t += gap_s
    return out, dev



def burst_board(tmp_path, name):
    """A board with an ADXL345 streaming at 1600 Hz, its machine.I2C, and the bus behind it."""
    clock = Clock()
    board = Board(name, seed=1, flash_dir=tmp_path / name, clock=clock)
    bus = board.i2c_bus(SCL, SDA)
    dev = bus.attach(ADXL345(clock=clock.now, signal=tabulated(awkward_values(7))))
    machine = board.runtime.import_module("machine")
    i2c = machine.I2C(0, scl=machine.Pin(SCL), sda=machine.Pin(SDA))
    for reg, v in ((0x31, 0x09), (0x2C, 0x0E), (0x38, 0x90), (0x2D, 0x08)):
        i2c.writeto_mem(0x53, reg, bytes([v]))
    return board, clock, bus, dev, i2c


def test_i2c_burst_shortcut_reads_what_the_bus_path_reads(tmp_path):
    # One board drains through machine.I2C (the shortcut), the other through the bus itself (the
    # path every other transfer takes): same bytes, and the same chip and bus afterwards.
    _, clock_a, bus_a, dev_a, i2c = burst_board(tmp_path, "a")
    _, clock_b, bus_b, dev_b, _ = burst_board(tmp_path, "b")
    got_a, got_b = bytearray(), bytearray()
    buf_a, buf_b = bytearray(6), bytearray(6)
    for step in range(40):
        clock_a.t = clock_b.t = step * 0.013                   # ~21 samples a step: overruns too
        for _ in range(step % 37):                             # more bursts than samples at times
            i2c.readfrom_mem_into(0x53, 0x32, buf_a)
            bus_b.readfrom_mem_into(0x53, 0x32, buf_b)
            got_a += buf_a
            got_b += buf_b
        assert i2c.readfrom_mem(0x53, 0x39, 1) == bus_b.readfrom_mem(0x53, 0x39, 1)
        assert i2c.readfrom_mem(0x53, 0x30, 1) == bus_b.readfrom_mem(0x53, 0x30, 1)
        assert bus_a._pointers == bus_b._pointers
        i2c.readfrom_mem_into(0x53, 0x32, buf_a)
        bus_b.readfrom_mem_into(0x53, 0x32, buf_b)
        assert buf_a == buf_b and bus_a._pointers == bus_b._pointers
    assert got_a == got_b and len(set(bytes(got_a[i:i + 6]) for i in range(0, len(got_a), 6))) > 100
    assert bus_a.transactions == bus_b.transactions > 700
    assert (dev_a.samples_made, dev_a.samples_lost) == (dev_b.samples_made, dev_b.samples_lost) != (0, 0)
    assert list(dev_a._q) == list(dev_b._q) and dev_a._last == dev_b._last
    # Not the burst (another length, another register): the bus path, the same bytes.
    assert i2c.readfrom_mem(0x53, 0x32, 7) == bus_b.readfrom_mem(0x53, 0x32, 7)
    buf_a, buf_b = bytearray(2), bytearray(2)
    i2c.readfrom_mem_into(0x53, 0x34, buf_a)
    bus_b.readfrom_mem_into(0x53, 0x34, buf_b)
    assert buf_a == buf_b


def test_i2c_burst_shortcut_still_sees_faults_and_checkpoints(tmp_path):
    board, clock, bus, dev, i2c = burst_board(tmp_path, "f")
    buf = bytearray(6)
    clock.t = 0.1
    i2c.readfrom_mem_into(0x53, 0x32, buf)
    bus.fail(0x53, errno.ETIMEDOUT, count=2)                  # a bus held low, two transfers
    for _ in range(2):
        with pytest.raises(OSError) as e:
            i2c.readfrom_mem_into(0x53, 0x32, buf)
        assert e.value.args[0] == errno.ETIMEDOUT
    made = dev.samples_made
    i2c.readfrom_mem_into(0x53, 0x32, buf)
    bus.inject_error(errno.EIO)                                 # whatever the next transfer is
    with pytest.raises(OSError) as e:
        i2c.readfrom_mem_into(0x53, 0x32, buf)
    assert e.value.args[0] == errno.EIO
    dev.present = False                                         # unplugged: NACK, ENODEV
    with pytest.raises(OSError) as e:
        i2c.readfrom_mem_into(0x53, 0x32, buf)
    assert e.value.args[0] == errno.ENODEV
    dev.present = True
    bus.fail(0x53, errno.ENODEV)                                # until healed
    with pytest.raises(OSError):
        i2c.readfrom_mem_into(0x53, 0x32, buf)
    bus.heal(0x53)
    left = len(dev._q)
    i2c.readfrom_mem_into(0x53, 0x32, buf)
    assert len(dev._q) == left - 1 and dev.samples_made == made
    # Every burst is a checkpoint: a power cut armed for the third operation lands on the third burst.
    board.cut_power_after(3)
    i2c.readfrom_mem_into(0x53, 0x32, buf)
    i2c.readfrom_mem_into(0x53, 0x32, buf)
    with pytest.raises(PowerOff):
        i2c.readfrom_mem_into(0x53, 0x32, buf)
    assert len(dev._q) == left - 3                              # the cut came before the chip saw it



@pytest.mark.parametrize("source", ["tabulated", "normal", "imbalance", "bearing"])
def test_adxl_read_ahead_reads_what_one_signal_call_per_burst_reads(source, tmp_path):
    def signal():
        if source == "tabulated":
            return tabulated(awkward_values(5))
        # Faults that start a few seconds in, so the windows see them grow.
        return Machine.for_scenario(11, source, onset_s=3.0).acceleration
    fast, dev_fast = drain_windows(signal(), True, tmp_path=tmp_path / "fast")
    slow, dev_slow = drain_windows(signal(), False, tmp_path=tmp_path / "slow")
    assert dev_fast.samples_made == dev_slow.samples_made and dev_fast.samples_lost == dev_slow.samples_lost
    assert fast == slow                                    # byte for byte, every window
    assert dev_fast.signal_calls < dev_slow.signal_calls / 4
    assert len(set(fast)) == len(fast)


def test_adxl_block_follows_a_mode_change_made_while_it_is_ahead(tmp_path):
    """A block made ahead is dropped when the Machine's mode history changes (set_mode at run time)."""
    clock = Clock()
    machine = Machine(4, clock=clock)
    dev = ADXL345(clock=clock, signal=machine.acceleration)
    bus = I2CBus()
    bus.attach(dev)
    bus.writeto_mem(0x53, 0x31, b"\x08")
    bus.writeto_mem(0x53, 0x2C, b"\x0E")
    bus.writeto_mem(0x53, 0x38, b"\x80")
    bus.writeto_mem(0x53, 0x2D, b"\x08")
    for _ in range(50):                                   # a long drain: blocks read ahead
        clock.t += 0.005
        while bus.readfrom_mem(0x53, 0x39, 1)[0]:
            bus.readfrom_mem(0x53, 0x32, 6)
    calls = dev.signal_calls
    machine.set_mode("bearing", t=clock.t)
    clock.t += 0.005
    bus.readfrom_mem(0x53, 0x39, 1)
    assert dev.signal_calls == calls + 1                  # a new block, made under the new mode


# ---------------------------------------------------------------- physics

def reference_acceleration(m, t0, n, rate):
    """Machine's model evaluated sample by sample, in plain floats."""
    dt = 1.0 / rate
    w = physics.TWO_PI * m.f1
    th0 = math.fmod(w * t0, physics.TWO_PI)
    k0 = int(round(t0 * rate))
    ix0 = physics._mix(m._salt, int(rate * 1000.0)) + k0 * 40503
    out = np.zeros((3, n))
    for k in range(n):
        t = t0 + k * dt
        imb = m._imb_gain * level(m, "imbalance", t)
        brg = level(m, "bearing", t)
        th = th0 + (w * dt) * k
        for ax in range(3):
            v = 0.0
            for h in range(3):
                a = m._h_amp[h] * m._axis_gain[ax][h] * (1.0 + imb if h == 0 else 1.0)
                v += a * math.sin((h + 1) * th + m._phase[ax][h])
            v += m._noise_g * physics._NOISE[(ix0 + k * 40503 + (0, 21845, 43690)[ax]) & physics._TABLE_MASK]
            shrink = math.sqrt(max(0.0, 1.0 - (physics._IMPACT_AXIS[ax] * m._impact_g * brg) ** 2
                                   * m._impact_ms / m._healthy_ms[ax]))
            out[ax, k] = v * shrink + (m._tilt[0], m._tilt[1], 1.0)[ax]
    # Impacts, each sized by the fault's level at its own instant.
    period = 1.0 / (physics._BPFO_ORDER * m.f1)
    mm = int(math.floor(t0 / period)) - 1
    salt = m._salt + 17
    while True:
        t_imp = (mm + 0.08 * physics._NOISE[physics._mix(salt, mm)]) * period
        if t_imp > t0 + n * dt:
            break
        size = m._impact_g * level(m, "bearing", t_imp) * (
            1.0 + physics._IMPACT_SIZE_SD * physics._NOISE[physics._mix(salt + 1, mm)])
        k = max(0, int(math.ceil((t_imp - t0) / dt)))
        while size and k < n:
            age = t0 + k * dt - t_imp
            if age > 10 * physics._IMPACT_TAU_S:
                break
            v = size * math.exp(-age / physics._IMPACT_TAU_S) * math.cos(physics.TWO_PI * physics._RING_HZ * age)
            for ax in range(3):
                out[ax, k] += physics._IMPACT_AXIS[ax] * v
            k += 1
        mm += 1
    return out


def level(m, mode, t):
    seg = m._segments[max(0, np.searchsorted(m._seg_times, t, side="right") - 1)]
    if seg[1] != mode:
        return 0.0
    if seg[0] == float("-inf"):
        return 1.0
    tau = physics._IMBALANCE_TAU_S if mode == "imbalance" else physics._BEARING_TAU_S
    return 1.0 - math.exp(-(t - seg[0]) / tau)


@pytest.mark.parametrize("mode, t0", [("normal", 12.5), ("normal", 86000.3), ("imbalance", ONSET_S + 1800),
                                      ("bearing", ONSET_S + 0.1), ("bearing", ONSET_S + 4000), ("overheat", 5000.0)])
def test_acceleration_block_is_the_model_sample_by_sample(mode, t0):
    m = Machine.for_scenario(7, mode)
    for rate, n in ((3200, 1100), (1600, 333)):
        got = m.acceleration_block(t0, n, rate)
        want = reference_acceleration(m, t0, n, rate)
        assert np.abs(got - want).max() < 1e-9
        assert m.acceleration(t0, n, rate) == tuple(got.tolist())


def test_acceleration_across_a_mode_change_within_the_window():
    m = Machine(9)
    m.set_mode("imbalance", t=100.0)
    m.set_mode("bearing", t=100.2)
    got = m.acceleration_block(99.9, 1600, 3200)
    assert np.abs(got - reference_acceleration(m, 99.9, 1600, 3200)).max() < 1e-9
    whole = m.acceleration_block(99.9, 1600, 3200)
    parts = np.hstack([m.acceleration_block(99.9 + k * 400 / 3200, 400, 3200) for k in range(4)])
    assert np.abs(whole - parts).max() < 1e-9


# ---------------------------------------------------------------- 1-Wire

class EveryProbeBus(OneWireBus):
    """The bus as it was: every present probe drives and samples every slot, one slot a call."""

    def _slots(self, levels, count):
        seen = 0
        for i in range(count):
            active = [d for d in self._devices if d.present]
            line = (levels >> i) & 1
            for d in active:
                line &= d.drive()
            for d in active:
                d.sample(line)
            seen |= line << i
        return seen


def master_session(bus, roms, clock):
    """A master's traffic: presence, READ ROM collisions, a full ROM search, match/skip ROM,
    scratchpad reads and writes, a conversion polled while busy; every line level seen."""
    seen = []
    seen.append(bus.reset())
    bus.write_byte(0x33)
    seen += [bus.read_byte() for _ in range(8)]          # several probes answer at once: wired-AND
    # ROM search, bit by bit (first branch only), with the complement slots.
    bus.reset()
    bus.write_byte(0xF0)
    for _ in range(64):
        b, c = bus.read_bit(), bus.read_bit()
        seen += [b, c]
        bus.write_bit(0 if b == c else b)
    for rom in roms:
        bus.reset()
        bus.write_byte(0x55)
        for x in rom:
            bus.write_byte(x)
        bus.write_byte(0xBE)
        seen += [bus.read_byte() for _ in range(9)]
    bus.reset()
    bus.write_byte(0x55)
    for x in roms[1]:
        bus.write_byte(x)
    bus.write_byte(0x4E)
    for x in (0x20, 0x10, 0x3F):                         # TH, TL, 10-bit
        bus.write_byte(x)
    bus.reset()
    bus.write_byte(0xCC)
    bus.write_byte(0x44)
    seen += [bus.read_bit() for _ in range(5)]            # busy while converting
    clock.advance(1.0)
    seen += [bus.read_bit() for _ in range(3)]            # done
    bus.reset()
    bus.write_byte(0xEC)                                  # alarm search
    seen += [bus.read_bit() for _ in range(4)]
    for rom in roms:
        bus.reset()
        bus.write_byte(0x55)
        for x in rom:
            bus.write_byte(x)
        bus.write_byte(0xBE)
        seen += [bus.read_byte() for _ in range(9)]
    return seen


class TickClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def advance(self, s):
        self.t += s


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_onewire_skipping_quiet_probes_sees_the_same_line(count):
    lines = []
    for bus_class in (OneWireBus, EveryProbeBus):
        clock = TickClock()
        bus = bus_class()
        roms = [make_rom(0x1000 + 37 * i) for i in range(count)] + [make_rom(0x99)]  # one absent
        for i, rom in enumerate(roms[:-1]):
            bus.attach(DS18B20(rom, clock=clock, temperature=lambda t, i=i: 20.0 + 13.3 * i))
        lines.append(master_session(bus, roms, clock))
    assert lines[0] == lines[1]


def test_crc8_table_is_the_bitwise_crc():
    rnd = random.Random(2)
    for _ in range(3000):
        data = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 12)))
        assert crc8(data) == onewire._crc8_bitwise(data)
    rom = make_rom(0xABCDEF)
    assert crc8(rom) == 0
