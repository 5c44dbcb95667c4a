"""Board time at speed: ScaledClock, and the fake MicroPython modules all reading the board's clock.

No assertion here bounds how long something takes on the wall clock from above, except where the
gap is a factor of ten or more (a sleep at speed 100 against the same sleep in real time).
"""

import calendar
import errno
import math
import socket
import threading
import time
from array import array

import pytest

from floorwatch import contract
from floorwatch.observer import Observer
from floorwatch.sim.board import Board, RealClock, ScaledClock
from floorwatch.sim.devices.adxl345 import ADXL345
from floorwatch.sim.fleet import Fleet

SCL, SDA = 22, 21


class LateEvent:
    """An Event whose wait() wakes `late` seconds after it was asked to, like a busy host."""

    def __init__(self, late):
        self.late = late

    def wait(self, timeout):
        time.sleep(timeout + self.late)
        return False


def test_speed_must_be_positive():
    for bad in (0, -2, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="speed"):
            ScaledClock(bad)
    assert RealClock().speed == 1.0


def test_a_sleep_passes_speed_times_faster():
    clock = ScaledClock(100)
    t0, w0 = clock.now(), time.monotonic()
    clock.wait(10.0, threading.Event())
    assert clock.now() - t0 >= 10.0
    assert time.monotonic() - w0 < 2.0          # 0.1 s asked; nowhere near the 10 s of real time


def test_outside_sleeps_board_time_runs_at_wall_speed():
    clock = ScaledClock(100)
    w0a, t0, w0b = time.monotonic(), clock.now(), time.monotonic()
    while time.monotonic() - w0b < 0.02:        # the firmware computing
        pass
    w1a, t1, w1b = time.monotonic(), clock.now(), time.monotonic()
    # Each clock reading lies between the wall readings around it: at rate 1, so do the spans.
    assert w1a - w0b - 1e-6 <= t1 - t0 <= w1b - w0a + 1e-6


def test_a_late_wake_up_counts_at_wall_speed_not_speed_times_over():
    clock = ScaledClock(100)
    t0 = clock.now()
    clock.wait(1.0, LateEvent(0.05))            # 10 ms asked, 60 ms taken
    advanced = clock.now() - t0
    assert 1.0 <= advanced < 1.5                # 1 s plus the 50 ms at wall speed, not plus 5 s


def test_a_set_event_ends_the_wait_early():
    clock = ScaledClock(100)
    event = threading.Event()
    event.set()
    t0 = clock.now()
    clock.wait(3600.0, event)
    assert clock.now() - t0 < 1.0


def test_the_clock_never_goes_back_for_other_threads():
    clock = ScaledClock(1000)
    stop = threading.Event()
    seen = []

    def watch():
        last = clock.now()
        while not stop.is_set():
            now = clock.now()
            seen.append(now >= last)
            last = now

    watcher = threading.Thread(target=watch)
    watcher.start()
    for _ in range(200):
        clock.wait(0.01, threading.Event())
    stop.set()
    watcher.join()
    assert seen and all(seen)


# ---------------------------------------------------------------- the firmware's view

@pytest.fixture
def fast_board(tmp_path):
    return Board("t1", seed=1, flash_dir=tmp_path, clock=ScaledClock(100))


def test_board_sleep_ticks_and_rtc_follow_board_time(fast_board):
    board = fast_board
    utime = board.runtime.import_module("time")
    rtc = board.runtime.import_module("machine").RTC()
    def rtc_seconds():
        y, mo, d, _wd, h, mi, s, _sub = rtc.datetime()
        return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))

    ticks0, time0, rtc0, w0 = utime.ticks_ms(), utime.time(), rtc_seconds(), time.monotonic()
    utime.sleep(10)
    assert utime.ticks_diff(utime.ticks_ms(), ticks0) >= 10000
    assert utime.time() - time0 >= 10 and rtc_seconds() - rtc0 >= 10
    utime.sleep_ms(5000)
    assert utime.ticks_diff(utime.ticks_ms(), ticks0) >= 15000
    assert time.monotonic() - w0 < 3.0          # 0.15 s asked for 15 s of board time


def test_wifi_association_and_watchdog_run_on_board_time(fast_board):
    board = fast_board
    board.ap.connect_s = 30.0                   # a slow access point: 30 s of board time
    network = board.runtime.import_module("network")
    machine = board.runtime.import_module("machine")
    utime = board.runtime.import_module("time")
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wlan.connect(board.ap.ssid, board.ap.password)
    assert not wlan.isconnected()
    utime.sleep(31)
    assert wlan.isconnected()
    machine.WDT(timeout=20000)
    with pytest.raises(BaseException) as bite:
        utime.sleep(25)                         # not fed for 20 s of board time: it bites
    assert type(bite.value).__name__ == "ResetBoard" and bite.value.cause == machine.WDT_RESET


def test_accelerometer_fifo_keeps_up_at_speed(fast_board):
    """Draining the FIFO is computing: at wall speed, so no sample is lost even at speed 100."""
    board = fast_board

    def sine(t0, n, rate):
        xs = [1.5 * math.sin(2 * math.pi * 80.0 * (t0 + k / rate)) for k in range(n)]
        return xs, [0.0] * n, [1.0] * n

    board.i2c_bus(scl=SCL, sda=SDA).attach(ADXL345(clock=board.clock.now, signal=sine))
    machine = board.runtime.import_module("machine")
    i2c = machine.I2C(0, scl=machine.Pin(SCL), sda=machine.Pin(SDA))
    acc = board.runtime.import_module("node.adxl345").ADXL345(i2c, range_g=4, odr_hz=3200)
    n = 1024
    buf = array("h", bytes(6 * n))
    for _ in range(3):
        assert acc.read_window(buf, n) == 0     # no overrun
        xs = list(buf[0:3 * n:3])
        # Consecutive samples of one sine: x[k+1] + x[k-1] = 2 cos(wT) x[k] (no gaps, no repeats).
        c = 2 * math.cos(2 * math.pi * 80.0 / 3200)
        # A lost sample would leave an error of about 60 counts; rounding leaves at most 4.
        assert max(abs(xs[k + 1] + xs[k - 1] - c * xs[k]) for k in range(1, n - 1)) <= 4


def test_socket_timeouts_stay_real_seconds_at_speed(fast_board):
    """Waiting on the network is not sleeping: a firmware timeout of 0.5 s is 0.5 s of wall time."""
    board = fast_board
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        usocket = board.runtime.import_module("socket")
        sock = usocket.socket()
        sock.connect(usocket.getaddrinfo("127.0.0.1", server.getsockname()[1])[0][-1])
        sock.settimeout(0.5)
        t0, w0 = board.clock.now(), time.monotonic()
        with pytest.raises(OSError) as exc:
            sock.read(1)                        # the peer never sends
        assert exc.value.args[0] == errno.ETIMEDOUT
        assert board.clock.now() - t0 >= 0.5
        assert time.monotonic() - w0 >= 0.45    # not 0.5 / 100: no spurious timeouts under load
        sock.close()
    finally:
        server.close()


# ---------------------------------------------------------------- the real firmware, end to end

class UptimeObserver(Observer):
    """Also keeps every telemetry record's `up` (board milliseconds since boot)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ups = []

    def _on_telemetry(self, view, body):
        super()._on_telemetry(view, body)
        self.ups.extend(record["up"] for record in contract.records(body))


@pytest.mark.broker
def test_firmware_at_speed_50_runs_on_board_time(broker, tmp_path):
    with UptimeObserver(broker.host, broker.port, site="clock50") as obs:
        with Fleet(1, broker.host, broker.port, site="clock50", workdir=tmp_path, speed=50) as fleet:
            board = fleet.boards[0]
            w0 = time.monotonic()
            # 300 s of board time (60 temperature readings 5 s apart) within 60 s of wall time.
            assert obs.wait_for(lambda o: o.ups and o.ups[-1] >= 300_000, 60)
            wall_s = time.monotonic() - w0
            ups = list(obs.ups)
            assert ups[-1] <= board.clock.now() * 1000
        assert obs.violations == [] and board.crashed is None
    assert ups == sorted(ups)
    # The node's schedule is kept in board time: a record every 5 s, however little wall time
    # passed between them. (Every other record also holds a vibration window, whose 0.32 s of
    # sampling comes before its `up`: gaps alternate 5.32 s and 4.68 s.)
    gaps = [b - a for a, b in zip(ups, ups[1:])]
    assert all(4500 < gap < 5500 for gap in gaps), gaps
    assert (ups[-1] - ups[0]) / len(gaps) == pytest.approx(5000, abs=20)
    assert ups[-1] / 1000 > 5 * wall_s
