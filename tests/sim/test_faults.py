"""Fault injection where the firmware meets the simulated hardware: power cuts (torn writes),
brownouts, watchdog hangs, RTC jumps, NTP, full flash, I2C errors, and the on_boot_end hooks.

Most tests drive the fake MicroPython modules directly from the test thread, on a hand-driven
clock, so every step is exact. Tests of resets run tiny scripts from the board's flash in the
board's own thread; they wait for states, never for a length of time.
"""

import calendar
import errno
import time

import pytest

from floorwatch.sim.board import (HARD_RESET, PWRON_RESET, SOFT_RESET, WDT_RESET, Board, PowerOff,
                                  ResetBoard, ScaledClock)
from floorwatch.sim.devices.adxl345 import ADXL345
from floorwatch.sim.devices.mpu6050 import MPU6050
from floorwatch.sim.mpy.time import RTC_EPOCH_START
from simlib import HandClock

SCL, SDA = 22, 21
RECORD = b"0123456789abcdef"


def hand_board(tmp_path, seed=1):
    return Board("f%d" % seed, seed=seed, flash_dir=tmp_path, clock=HandClock())


def flash(board, name):
    path = board.flash_dir / name
    return path.read_bytes() if path.exists() else None


# ---------------------------------------------------------------- power cuts and torn writes

def test_a_cut_landing_on_a_write_tears_it_and_the_board_stays_off(tmp_path):
    data = bytes(range(200))
    torn = set()
    for seed in range(8):
        board = hand_board(tmp_path / str(seed), seed)
        uos = board.runtime.import_module("os")
        utime = board.runtime.import_module("time")
        f = uos.open_file("log", "wb")
        assert f.write(b"head") == 4
        board.cut_power_after(1)
        with pytest.raises(PowerOff):
            f.write(data)
        content = flash(board, "log")
        assert content[:4] == b"head" and data.startswith(content[4:])
        torn.add(len(content) - 4)
        assert not board.powered and not board.link_up()
        # Off until power_on(): every operation dies, and nothing more reaches the flash.
        for operation in (lambda: f.write(b"more"), f.close, lambda: uos.listdir(),
                          utime.ticks_ms, lambda: uos.open_file("other", "w")):
            with pytest.raises(PowerOff):
                operation()
        assert flash(board, "log") == content and flash(board, "other") is None
    # The tear is a random prefix (seeded by the board): different lengths, mostly partial.
    assert len(torn) >= 4 and any(0 < n < len(data) for n in torn)


def save(uos, data, steps):
    """What an atomic save does: a temporary file written in two parts, closed, renamed over."""
    f = uos.open_file("mark.tmp", "wb")
    steps.append("open")
    f.write(data[:10])
    steps.append("write 1")
    f.write(data[10:])
    steps.append("write 2")
    f.close()
    steps.append("close")
    uos.rename("mark.tmp", "mark")
    steps.append("rename")


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_cut_power_after_lands_on_the_nth_operation_of_a_save(tmp_path, n):
    board = hand_board(tmp_path, seed=n)
    (board.flash_dir / "mark").write_bytes(b"old")
    uos = board.runtime.import_module("os")
    data = b"new mark: " + bytes(range(40))
    steps = []
    board.cut_power_after(n)
    if n <= 5:
        with pytest.raises(PowerOff):
            save(uos, data, steps)
        assert len(steps) == n - 1               # the n-th operation never completed
        assert flash(board, "mark") == b"old"    # the old file survives every cut
        tmp = flash(board, "mark.tmp")
        if n == 1:
            assert tmp is None                   # cut at open: no file was made
        elif n == 2:
            assert data[:10].startswith(tmp)     # the first write torn
        elif n == 3:
            assert tmp[:10] == data[:10] and data.startswith(tmp)
        else:
            assert tmp == data                   # written, never renamed
        assert not board.powered
    else:
        save(uos, data, steps)
        assert flash(board, "mark") == data and flash(board, "mark.tmp") is None
        with pytest.raises(PowerOff):            # the sixth operation from the arming
            uos.stat("mark")


def test_cut_power_after_rejects_nonsense(tmp_path):
    board = hand_board(tmp_path)
    for bad in (0, -1, 2.5, None, True):
        with pytest.raises(ValueError):
            board.cut_power_after(bad)


def test_flash_full_fails_writes_on_an_open_file_and_writes_nothing(tmp_path):
    board = hand_board(tmp_path)
    uos = board.runtime.import_module("os")
    f = uos.open_file("seg", "wb")
    assert f.write(b"abc") == 3
    board.flash_full = True
    with pytest.raises(OSError) as full:
        f.write(b"defg")
    assert full.value.args[0] == errno.ENOSPC == 28
    with pytest.raises(OSError) as full:
        uos.open_file("other", "w")
    assert full.value.args[0] == errno.ENOSPC
    assert flash(board, "seg") == b"abc" and flash(board, "other") is None
    board.flash_full = False
    assert f.write(b"defg") == 4
    f.close()
    assert flash(board, "seg") == b"abcdefg"


def test_files_behave_as_micropython_files(tmp_path):
    board = hand_board(tmp_path)
    uos = board.runtime.import_module("os")
    with uos.open_file("cfg.txt", "w") as f:
        assert f.write("one\ntwo\n") == 8
        assert f.write("three") == 5
    with uos.open_file("cfg.txt") as f:
        assert f.readline() == "one\n"
        assert f.tell() == 4
        assert list(f) == ["two\n", "three"]
        f.seek(0)
        assert f.read(3) == "one" and f.read() == "\ntwo\nthree"
    with uos.open_file("cfg.txt", "rb") as f:
        buf = bytearray(8)
        assert f.readinto(buf) == 8 and buf == b"one\ntwo\n"
        assert f.readlines() == [b"three"]
    f.close()                                    # closing twice is fine
    with pytest.raises(OSError) as missing:
        uos.open_file("absent.txt")
    assert missing.value.args[0] == errno.ENOENT


# ---------------------------------------------------------------- RTC, ticks, hangs, NTP

def test_jump_clock_moves_the_rtc_but_not_ticks(tmp_path):
    board = hand_board(tmp_path)
    utime = board.runtime.import_module("time")
    rtc = board.runtime.import_module("machine").RTC()
    board.clock.t = 12.5
    t0, k0 = utime.time(), utime.ticks_ms()
    assert t0 == RTC_EPOCH_START + 12               # an unset RTC: 2000-01-01 at power-on
    board.jump_clock(86400)
    assert utime.time() == t0 + 86400 and utime.ticks_ms() == k0
    y, mo, d, _wd, h, mi, s, _sub = rtc.datetime()
    assert calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) == t0 + 86400
    board.jump_clock(-90000)                        # backwards, past where it started
    assert utime.time() == t0 - 3600 and utime.ticks_ms() == k0
    utime.sleep(2)
    assert utime.time() == t0 - 3598 and utime.ticks_diff(utime.ticks_ms(), k0) == 2000


def test_a_hang_blocks_the_next_checkpoint_and_the_watchdog_bites(tmp_path):
    board = hand_board(tmp_path)
    utime = board.runtime.import_module("time")
    machine = board.runtime.import_module("machine")
    board.hang(30)                                  # no watchdog yet: stuck for the whole 30 s
    assert utime.ticks_ms() == 30000
    wdt = machine.WDT(timeout=5000)
    utime.sleep(1)
    wdt.feed()
    t0 = board.clock.t
    board.hang(600)
    with pytest.raises(ResetBoard) as bite:
        utime.ticks_ms()
    assert bite.value.cause == WDT_RESET
    assert 5.0 < board.clock.t - t0 < 5.01          # bitten when due, not at the hang's end


def online(board):
    network = board.runtime.import_module("network")
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wlan.connect(board.ap.ssid, board.ap.password)
    board.clock.t += board.ap.connect_s
    assert wlan.isconnected()
    return wlan


def test_ntptime_sets_the_rtc_to_the_true_time_when_online(tmp_path):
    board = hand_board(tmp_path)
    ntptime = board.runtime.import_module("ntptime")
    utime = board.runtime.import_module("time")
    assert (ntptime.host, ntptime.timeout) == ("pool.ntp.org", 1)
    assert board.true_epoch == 1767225600 and board.ntp_reachable
    online(board)
    board.clock.t = 100.75
    assert ntptime.time() == 1767225700             # whole seconds, as MicroPython's
    assert utime.time() == RTC_EPOCH_START + 100    # the RTC knows nothing of it yet
    ntptime.settime()
    assert utime.time() == 1767225700
    assert utime.gmtime()[:3] == (2026, 1, 1)
    board.jump_clock(-5000)
    ntptime.settime()                                # a later sync pulls a jumped clock back
    assert utime.time() == 1767225700


@pytest.mark.parametrize("fault", ["wifi down", "ntp unreachable", "never joined"])
def test_ntptime_times_out_without_a_way_to_the_server(tmp_path, fault):
    board = hand_board(tmp_path)
    ntptime = board.runtime.import_module("ntptime")
    utime = board.runtime.import_module("time")
    if fault != "never joined":
        online(board)
    if fault == "wifi down":
        board.wifi_down()
    elif fault == "ntp unreachable":
        board.ntp_reachable = False
    rtc_before, t0 = utime.time(), board.clock.t
    with pytest.raises(OSError) as e:
        ntptime.settime()
    assert e.value.args[0] == errno.ETIMEDOUT
    assert board.clock.t - t0 == pytest.approx(1.0)  # it waited its timeout for an answer
    assert utime.time() == rtc_before + 1           # the RTC went on untouched
    ntptime.timeout = 3
    with pytest.raises(OSError):
        ntptime.time()
    assert board.clock.t - t0 == pytest.approx(4.0)


# ---------------------------------------------------------------- I2C errors and the real drivers

CHIPS = {
    "adxl345": (ADXL345, {"name": "motor", "type": "adxl345", "addr": 0x53, "range_g": 4,
                          "odr_hz": 1600, "window": 256}),
    "mpu6050": (MPU6050, {"name": "motor", "type": "mpu6050", "addr": 0x68, "range_g": 4,
                          "odr_hz": 1000, "window": 256}),
}
REASONS = {errno.ENODEV: "not present (ENODEV)", errno.ETIMEDOUT: "bus timeout (ETIMEDOUT)"}


def accelerometer(board, chip):
    model, spec = CHIPS[chip]
    bus = board.i2c_bus(SCL, SDA)
    bus.attach(model(clock=board.clock.now))
    sensors = board.runtime.import_module("node.sensors")
    machine = board.runtime.import_module("machine")
    i2c = machine.I2C(0, scl=machine.Pin(SCL), sda=machine.Pin(SDA))
    return bus, sensors.Accelerometer(dict(spec), i2c)


@pytest.mark.parametrize("chip", sorted(CHIPS))
@pytest.mark.parametrize("code", [errno.ENODEV, errno.ETIMEDOUT])
def test_i2c_errors_reach_the_drivers_as_failed_reads_until_healed(tmp_path, chip, code):
    board = hand_board(tmp_path)
    bus, acc = accelerometer(board, chip)
    addr = CHIPS[chip][1]["addr"]
    assert acc.read() and acc.health.reads == 1
    bus.fail(addr, code)                            # mid-run: the driver is up and streaming
    for attempt in (1, 2, 3):
        assert acc.read() is False                  # counted, never raised
        assert acc.health.errors == attempt and acc.health.failing
        assert acc.health.last_error == REASONS[code]
        assert acc.driver is None                   # re-initialised at the next read
    # A NACK means nobody answered: not present. A stuck bus says nothing about the device.
    assert acc.health.present is (code != errno.ENODEV)
    assert acc.health.problem()
    bus.heal(addr)
    assert acc.read() is True
    assert acc.health.reads == 2 and acc.health.errors == 3
    assert acc.health.present and not acc.health.failing and acc.health.problem() is None


@pytest.mark.parametrize("chip", sorted(CHIPS))
def test_a_counted_i2c_fault_passes_by_itself(tmp_path, chip):
    board = hand_board(tmp_path)
    bus, acc = accelerometer(board, chip)
    bus.fail(CHIPS[chip][1]["addr"], errno.ETIMEDOUT, count=2)   # at boot: the driver's first reads
    assert acc.read() is False and acc.read() is False
    assert acc.read() is True
    assert (acc.health.reads, acc.health.errors) == (1, 2)


def test_bus_faults_hit_one_address_and_count_down(tmp_path):
    board = hand_board(tmp_path)
    bus = board.i2c_bus(SCL, SDA)
    adxl = bus.attach(ADXL345(clock=board.clock.now))
    bus.attach(MPU6050(clock=board.clock.now))
    buf = bytearray(1)
    bus.fail(0x53, errno.ENODEV, count=2)
    assert bus.scan() == [0x68]                     # a NACKing device does not answer a scan
    bus.readfrom_mem_into(0x68, 0x75, buf)          # the other device on the bus is fine
    assert buf[0] == 0x68
    for _ in range(2):
        with pytest.raises(OSError) as e:
            bus.writeto_mem(0x53, 0x2D, b"\x08")
        assert e.value.args[0] == errno.ENODEV
    assert adxl.regs[0x2D] == 0                     # the failed writes never reached the chip
    bus.readfrom_mem_into(0x53, 0x00, buf)          # two transactions later it answers again
    assert buf[0] == 0xE5 and bus.scan() == [0x53, 0x68]
    bus.fail(0x53, errno.ETIMEDOUT)
    assert bus.scan() == [0x53, 0x68]
    for _ in range(5):
        with pytest.raises(OSError) as e:
            bus.readfrom_mem_into(0x53, 0x00, buf)
        assert e.value.args[0] == errno.ETIMEDOUT
    bus.heal(0x53)
    bus.readfrom_mem_into(0x53, 0x00, buf)
    with pytest.raises(ValueError):
        bus.fail(0x53, errno.EIO, count=0)


# ---------------------------------------------------------------- running boards: resets and hooks

WORK = '''
import machine
import network
import time

cause = machine.reset_cause()
rtc = machine.RTC()
memory = rtc.memory()
wall = time.time()
wlan_active = network.WLAN(network.STA_IF).active()
ready = False
writes = 0


def idle(wdt_ms):
    global ready
    rtc.memory(memory + b"+")
    network.WLAN(network.STA_IF).active(True)
    wdt = machine.WDT(timeout=wdt_ms)
    ready = True
    while True:
        wdt.feed()
        time.sleep_ms(20)


def log_forever():
    global ready, writes
    with open("log", "ab") as f:
        ready = True
        while True:
            f.write(RECORD)
            writes += 1
            time.sleep_ms(5)


def crash():
    global ready
    ready = True
    raise ValueError("boom")
'''.replace("RECORD", repr(RECORD))


@pytest.fixture
def script_board(tmp_path):
    """A board at speed 100 that runs `import work; work.<main>` from its flash."""
    boards = []

    def make(main):
        board = Board("s1", seed=5, flash_dir=tmp_path, clock=ScaledClock(100))
        (board.flash_dir / "work.py").write_text(WORK)
        (board.flash_dir / "main.py").write_text("import work\nwork.%s\n" % main)
        boards.append(board)
        return board

    yield make
    for board in boards:
        board.power_off()


def work(board):
    return board.runtime.modules.get("work")


def wait_for(predicate, what, limit_s=20.0):
    """Wait for a state of the board's thread (the limit only stops a broken test from hanging)."""
    end = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("never happened: " + what)
        time.sleep(0.002)


def wait_boot(board, n):
    # getattr: the module is listed while it is still being executed, as in Python
    wait_for(lambda: board.boots == n and getattr(work(board), "ready", False), "boot %d ready" % n)
    return work(board)


def test_rtc_memory_survives_resets_but_not_a_brownout(script_board):
    board = script_board("idle(10000)")
    ended = []
    board.on_boot_end.append(lambda b: ended.append((b.boots, work(b).cause, work(b).memory)))
    board.power_on()
    boot = wait_boot(board, 1)
    assert (boot.cause, boot.memory, boot.wlan_active) == (PWRON_RESET, b"", False)
    board.reset(SOFT_RESET)
    boot = wait_boot(board, 2)
    assert (boot.cause, boot.memory, boot.wlan_active) == (SOFT_RESET, b"+", True)
    board.hang(600)                                  # the firmware stops feeding its 10 s watchdog
    boot = wait_boot(board, 3)
    assert (boot.cause, boot.memory, boot.wlan_active) == (WDT_RESET, b"++", False)
    board.reset(HARD_RESET)
    boot = wait_boot(board, 4)
    assert (boot.cause, boot.memory) == (HARD_RESET, b"+++")
    board.jump_clock(10 ** 9)                        # the RTC is somewhere in 2031 now
    board.brownout()
    boot = wait_boot(board, 5)
    assert (boot.cause, boot.memory, boot.wlan_active) == (PWRON_RESET, b"", False)
    assert boot.wall < RTC_EPOCH_START + 86400        # the RTC restarted at 2000-01-01
    assert board.running and board.reset_cause == PWRON_RESET
    # Each boot's end was seen with that boot's own modules.
    assert ended == [(1, PWRON_RESET, b""), (2, SOFT_RESET, b"+"), (3, WDT_RESET, b"++"),
                     (4, HARD_RESET, b"+++")]


def test_a_cut_from_another_thread_leaves_every_completed_write_on_flash(script_board):
    board = script_board("log_forever()")
    ended = []
    board.on_boot_end.append(lambda b: ended.append((b.boots, work(b).writes)))
    board.power_on()
    wait_boot(board, 1)
    wait_for(lambda: work(board).writes >= 20, "20 writes")
    board.cut_power_after(25)                        # somewhere in the next few writes and sleeps
    wait_for(lambda: not board.running, "the power cut")
    assert not board.powered
    ((boot, writes),) = ended
    log = flash(board, "log")
    # Every write that returned is there, and at most a prefix of the one the cut landed on.
    assert boot == 1 and writes >= 20
    assert writes * len(RECORD) <= len(log) <= (writes + 1) * len(RECORD)
    assert log == (RECORD * (writes + 1))[: len(log)]
    board.power_on()
    again = wait_boot(board, 2)
    assert again.cause == PWRON_RESET and board.powered


def test_on_boot_end_runs_once_per_boot_and_survives_a_failing_hook(script_board):
    board = script_board("crash()")
    seen = []

    def broken(b):
        raise RuntimeError("harness bug")

    board.on_boot_end.append(broken)
    board.on_boot_end.append(lambda b: seen.append((b.boots, work(b).ready, bool(b.crashed))))
    board.power_on()
    wait_for(lambda: seen, "the crash ends the boot")
    assert seen == [(1, True, True)]                 # at the crash, with the crashed boot's modules
    assert "boom" in board.crashed
    assert any("on_boot_end hook" in line and "harness bug" in line for line in board.log)
    board.reset()                                    # from the REPL: that boot already ended
    wait_for(lambda: len(seen) == 2, "the second crash")
    assert seen == [(1, True, True), (2, True, True)]
    board.power_off()
    assert seen == [(1, True, True), (2, True, True)]
    assert not board.running
