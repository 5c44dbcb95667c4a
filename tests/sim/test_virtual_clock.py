"""Virtual time (--speed max): one board timeline that jumps ahead whenever every participant waits.

Also the fake `select` module and the "broker unreachable" fault of the fake socket, whose waits
run on board time. Assertions are on board time; the only wall-clock bounds are hang guards and
gaps of a factor of ten or more (a 600 s board-time timeout against a few wall seconds).
"""

import errno
import json
import math
import socket
import threading
import time
from array import array

import pytest

from floorwatch import contract
from floorwatch.observer import Observer
from floorwatch.sim.board import SPIN_CHARGE_S, Board, ClockHandle, RealClock, ScaledClock, VirtualClock
from floorwatch.sim.devices.adxl345 import ADXL345
from floorwatch.sim.fleet import Fleet, make_clocks

HANG_S = 30  # a wall-clock guard against a simulation that never moves on, not a speed requirement
# A stand-in node for the fleet test: WiFi, umqtt.simple, a record every 5 s, commands via select.poll
# (each command received adds 1 to the temperature it reports).
TINY_NODE = """
import json, network, select, time
from umqtt.simple import MQTTClient

cfg = json.load(open("config.json"))
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect(cfg["wifi"]["ssid"], cfg["wifi"]["password"])
while not wlan.isconnected():
    time.sleep_ms(100)
base = "floorwatch/%s/%s/" % (cfg["site"], cfg["device_id"])
commands = []
client = MQTTClient(cfg["device_id"], cfg["broker"]["host"], cfg["broker"]["port"], keepalive=0)
client.set_callback(lambda topic, msg: commands.append(msg))
client.connect()
client.subscribe(base + "cmd", 1)
poller = select.poll()
poller.register(client.sock, select.POLLIN)
seq = 0
due = time.ticks_ms()
while True:
    if time.ticks_diff(time.ticks_ms(), due) >= 0:
        client.sock.settimeout(10)
        record = [time.ticks_ms(), [40.0 + len(commands)]]  # telemetry v2: [up, temps]
        client.publish(base + "telemetry", json.dumps({"boot": 1, "seq": seq, "n": 1, "cols": {"t": ["bearing"], "v": []},
                                                       "r": [record]}), False, 1)
        seq += 1
        due = time.ticks_add(due, 5000)
    if poller.poll(max(0, time.ticks_diff(due, time.ticks_ms()))):
        client.sock.settimeout(10)
        client.check_msg()
"""


def in_thread(fn, *args):
    """Run fn in a thread; returns (thread, result dict with "value" or "error")."""
    result = {}

    def run():
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # noqa: B036 - ResetBoard and PowerOff too
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def finish(thread, result):
    thread.join(HANG_S)
    assert not thread.is_alive(), "the simulation hung"
    if "error" in result:
        raise result["error"]
    return result.get("value")


def board_with(tmp_path, name, vclock, main):
    """A board on `vclock` whose flash holds this main.py (the firmware's own files are not used)."""
    board = Board(name, seed=len(name), flash_dir=tmp_path / name, clock=vclock)
    (board.flash_dir / "main.py").write_text(main)
    return board


def log_values(board, tag):
    """Numbers the board printed after `tag` (lines "tag value")."""
    return [float(line.split()[1]) for line in list(board.log) if line.startswith(tag + " ")]


@pytest.fixture
def server():
    """A loopback TCP server that accepts and then stays silent (the test may send on `peer`)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    conns = []

    class Server:
        address = listener.getsockname()

        def accept(self):
            listener.settimeout(HANG_S)
            conn, _ = listener.accept()
            conns.append(conn)
            return conn

        def pending(self):
            """True when a connection waits to be accepted."""
            listener.settimeout(0.0)
            try:
                conns.append(listener.accept()[0])
                return True
            except BlockingIOError:
                return False

    yield Server()
    for conn in conns:
        conn.close()
    listener.close()


# ---------------------------------------------------------------- the timeline

def test_time_jumps_to_the_earliest_wake_up_when_everyone_waits():
    vclock = VirtualClock()
    first, second = vclock.join(), vclock.join()
    waited = in_thread(first.wait, 3600.0)
    second.wait(10.0)                                   # the earlier wake-up comes first
    assert vclock.now() == 10.0
    second.leave()
    finish(*waited)
    assert vclock.now() == 3600.0
    first.leave()


def test_a_running_participant_holds_time_still():
    vclock = VirtualClock()
    computing = vclock.join()                           # joined and not waiting: computing
    sleeper = vclock.join()
    waited = in_thread(sleeper.wait, 5.0)
    time.sleep(0.3)
    assert vclock.now() == 0.0 and waited[0].is_alive()
    assert vclock.holding == 1
    computing.leave()                                   # done (or powered off): time moves on
    finish(*waited)
    assert vclock.now() == 5.0


def test_two_participants_interleave_in_time_order():
    vclock = VirtualClock()
    seen = []

    def tick(handle, name, step, count):
        for _ in range(count):
            handle.wait(step)
            seen.append((handle.now(), name))
        handle.leave()

    a, b = vclock.join(), vclock.join()
    threads = [in_thread(tick, a, "a", 3.0, 10), in_thread(tick, b, "b", 5.0, 6)]
    for thread in threads:
        finish(*thread)
    assert [t for t, _ in seen] == sorted(t for t, _ in seen)
    assert [t for t, name in seen if name == "a"] == [3.0 * k for k in range(1, 11)]
    assert [t for t, name in seen if name == "b"] == [5.0 * k for k in range(1, 7)]


def test_a_thread_that_does_not_take_part_never_holds_time():
    vclock = VirtualClock()
    driver = vclock.join()
    driver.sleep_until(100.0)                           # alone: at once
    assert vclock.now() == 100.0
    watcher = in_thread(vclock.sleep_until, 150.0)      # takes part only while it waits
    driver.wait(60.0)
    finish(*watcher)
    assert vclock.now() == 160.0
    driver.leave()
    vclock.sleep_until(1000.0)                          # nobody else: time jumps there
    assert vclock.now() == 1000.0


def test_a_plain_event_still_ends_a_wait():
    vclock = VirtualClock()
    holder = vclock.join()
    event = threading.Event()
    waited = in_thread(vclock.board_clock().wait, 50.0, event)
    event.set()
    finish(*waited)
    assert vclock.now() == 0.0                          # ended by the event, not by time
    holder.leave()


# ---------------------------------------------------------------- boards on the timeline

SLEEPER = """
import time
while True:
    time.sleep({step})
    print("tick", time.ticks_ms() / 1000)
"""


def test_power_off_of_a_waiting_board_does_not_hold_the_others(tmp_path):
    vclock = VirtualClock()
    a = board_with(tmp_path, "a", vclock, SLEEPER.format(step=1))
    b = board_with(tmp_path, "b", vclock, SLEEPER.format(step=7))
    with vclock.join() as driver:
        a.power_on()
        b.power_on()
        finish(*in_thread(driver.sleep_until, 20.0))
        a.power_off()
        assert not a.running
        finish(*in_thread(driver.sleep_until, 100.0))
        assert log_values(a, "tick")[-1] <= 20.0
        assert log_values(b, "tick")[-1] == pytest.approx(98.0)   # the driver holds time at 100
        assert a.crashed is None and b.crashed is None
    b.power_off()


def test_power_off_of_a_board_that_holds_time_lets_time_run(tmp_path):
    vclock = VirtualClock()
    busy = board_with(tmp_path, "busy", vclock, "import os\nwhile True:\n    os.listdir()\n")
    sleeper = board_with(tmp_path, "sleep", vclock, SLEEPER.format(step=2))
    busy.power_on()                                     # computing for ever: board time stands still
    sleeper.power_on()
    waited = in_thread(vclock.sleep_until, 30.0)
    time.sleep(0.3)
    assert vclock.now() == 0.0 and waited[0].is_alive()
    busy.power_off()
    finish(*waited)
    assert not busy.running
    assert vclock.now() >= 30.0
    sleeper.power_off()


def test_a_busy_wait_on_the_clock_sees_time_pass(tmp_path):
    vclock = VirtualClock()
    board = board_with(tmp_path, "spin", vclock, """
import time
t0 = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t0) < 5000:
    pass
print("waited", time.ticks_diff(time.ticks_ms(), t0))
while True:
    time.sleep(3600)
""")
    with vclock.join() as driver:
        board.power_on()
        finish(*in_thread(driver.sleep_until, 10.0))
        assert 5000 <= log_values(board, "waited")[0] <= 5000 + 1000 * SPIN_CHARGE_S
        assert board.clock.spins == pytest.approx(5 / SPIN_CHARGE_S, abs=1)
    board.power_off()


def test_the_accelerometer_fifo_never_overruns_on_virtual_time(tmp_path):
    """Draining the FIFO takes no board time, however slow the host: no sample is ever lost."""
    board = Board("acc", seed=1, flash_dir=tmp_path, clock=VirtualClock())

    def sine(t0, n, rate):
        return [1.5 * math.sin(2 * math.pi * 80.0 * (t0 + k / rate)) for k in range(n)], [0.0] * n, [1.0] * n

    device = board.i2c_bus(scl=22, sda=21).attach(ADXL345(clock=board.clock.now, signal=sine))
    machine = board.runtime.import_module("machine")
    i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
    acc = board.runtime.import_module("node.adxl345").ADXL345(i2c, range_g=4, odr_hz=3200)
    buf = array("h", bytes(6 * 1024))
    for _ in range(3):
        assert acc.read_window(buf, 1024) == 0
        time.sleep(0.05)                                # the host is busy: no board time passes
    assert device.samples_lost == 0


BOOT_LOG = """
import machine, time
print("boot", time.time() - 946684800)  # the RTC runs on through a hard reset; ticks restart
print("cause", machine.reset_cause())
while True:
    time.sleep(3600)
"""


def test_a_reset_reaches_a_sleeping_board_at_the_board_time_it_was_pressed(tmp_path):
    vclock = VirtualClock()
    board = board_with(tmp_path, "r", vclock, BOOT_LOG)
    with vclock.join() as driver:
        board.power_on()
        finish(*in_thread(driver.sleep_until, 10.0))
        board.reset()                                   # the board sleeps until 3600
        finish(*in_thread(driver.sleep_until, 11.0))
        assert log_values(board, "boot") == [0, 10]
        assert log_values(board, "cause") == [1, 2]     # PWRON_RESET, then HARD_RESET
    board.power_off()


def test_a_reset_wakes_a_board_sleeping_on_the_wall_clock(tmp_path):
    board = Board("w", seed=1, flash_dir=tmp_path, clock=RealClock())
    (board.flash_dir / "main.py").write_text(BOOT_LOG)
    board.power_on()
    try:
        deadline = time.monotonic() + HANG_S            # against a one-hour sleep
        while len(log_values(board, "boot")) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        board.reset()
        while len(log_values(board, "boot")) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log_values(board, "cause") == [1, 2]
        assert log_values(board, "boot")[1] < 60
    finally:
        board.power_off()


def test_the_watchdog_bites_at_its_board_time(tmp_path):
    vclock = VirtualClock()
    board = board_with(tmp_path, "wdt", vclock, """
import machine, time
print("boot", time.time() - 946684800)  # the RTC runs on through a hard reset; ticks restart
print("cause", machine.reset_cause())
if machine.reset_cause() == machine.PWRON_RESET:
    time.sleep(2)
    wdt = machine.WDT(timeout=5000)
    time.sleep(100)                                     # never fed: bites 5 s after it started
while True:
    time.sleep(3600)
""")
    board.power_on()
    finish(*in_thread(vclock.sleep_until, 60.0))
    assert log_values(board, "cause") == [1, 3]         # PWRON_RESET, then WDT_RESET
    assert log_values(board, "boot")[1] == pytest.approx(7.0, abs=0.002)
    board.power_off()


def test_a_board_handed_a_virtual_clock_gets_its_own_handle(tmp_path):
    vclock = VirtualClock()
    board = Board("h", seed=1, flash_dir=tmp_path, clock=vclock)
    assert isinstance(board.clock, ClockHandle) and board.clock.vclock is vclock


# ---------------------------------------------------------------- select.poll

def connected(board, server):
    usocket = board.runtime.import_module("socket")
    sock = usocket.socket()
    sock.connect(usocket.getaddrinfo(*server.address)[0][-1])
    return sock, server.accept()


def test_poll_returns_when_data_arrives_at_the_board_time_it_arrives(tmp_path, server):
    vclock = VirtualClock()
    board = Board("p", seed=1, flash_dir=tmp_path, clock=vclock)
    uselect = board.runtime.import_module("select")
    sock, peer = connected(board, server)
    poller = uselect.poll()
    poller.register(sock, uselect.POLLIN)
    assert poller.poll(0) == []
    with vclock.join() as driver:                       # holds time at 0 while the board polls
        polled = in_thread(poller.poll, 60_000)
        time.sleep(0.2)
        peer.sendall(b"hello")
        assert finish(*polled) == [(sock, uselect.POLLIN)]
        assert vclock.now() == 0.0
        assert sock.read(5) == b"hello"
        driver.leave()
    t0 = vclock.now()
    assert poller.poll(90_000) == []                    # nobody else: the 90 s pass at once
    assert vclock.now() - t0 == pytest.approx(90.0)
    poller.modify(sock, uselect.POLLOUT)
    assert poller.poll(1000) == [(sock, uselect.POLLOUT)]
    poller.unregister(sock)
    sock.close()
    poller.register(sock, uselect.POLLIN)
    assert poller.poll(0) == [(sock, 0x20)]             # POLLNVAL: a closed socket
    with pytest.raises(OSError):
        uselect.poll().modify(sock, uselect.POLLIN)


def test_poll_on_a_scaled_clock_ends_early_on_data_and_on_time_in_board_time(tmp_path, server):
    board = Board("s", seed=1, flash_dir=tmp_path, clock=ScaledClock(100))
    uselect = board.runtime.import_module("select")
    sock, peer = connected(board, server)
    poller = uselect.poll()
    poller.register(sock, uselect.POLLIN)
    t0 = board.clock.now()
    assert poller.poll(2000) == []
    assert board.clock.now() - t0 >= 2.0
    polled = in_thread(poller.poll, 3_600_000)          # an hour of board time: 36 s of wall time
    time.sleep(0.1)
    peer.sendall(b"x")
    assert finish(*polled) == [(sock, uselect.POLLIN)]
    rl, wl, xl = uselect.select([sock], [], [], 0)
    assert rl == [sock] and wl == [] and xl == []
    sock.close()


def test_a_reset_interrupts_a_poll(tmp_path, server):
    vclock = VirtualClock()
    board = Board("i", seed=1, flash_dir=tmp_path, clock=vclock)
    uselect = board.runtime.import_module("select")
    sock, _peer = connected(board, server)
    poller = uselect.poll()
    poller.register(sock, uselect.POLLIN)
    with vclock.join():
        polled = in_thread(poller.poll, -1)
        time.sleep(0.1)
        board.reset()
        with pytest.raises(BaseException) as reset:
            finish(*polled)
        assert type(reset.value).__name__ == "ResetBoard"


# ---------------------------------------------------------------- the network on board time

def test_a_silent_peer_times_out_in_board_time(tmp_path, server):
    vclock = VirtualClock()
    board = Board("t", seed=1, flash_dir=tmp_path, clock=vclock)
    sock, _peer = connected(board, server)
    sock.settimeout(600)
    w0, t0 = time.monotonic(), vclock.now()
    with pytest.raises(OSError) as exc:
        sock.read(1)                                    # held for a short grace, then time runs
    assert exc.value.args[0] == errno.ETIMEDOUT
    assert vclock.now() - t0 == pytest.approx(600.0)
    assert time.monotonic() - w0 < 60                   # 600 board seconds, not 600 wall seconds


def test_a_connect_to_an_unreachable_broker_times_out_in_board_time(tmp_path, server):
    vclock = VirtualClock()
    board = Board("u", seed=1, flash_dir=tmp_path, clock=vclock)
    usocket = board.runtime.import_module("socket")
    board.broker_unreachable(True, ("localhost", server.address[1]))
    sock = usocket.socket()
    sock.settimeout(300)
    w0 = time.monotonic()
    with pytest.raises(OSError) as exc:
        sock.connect(usocket.getaddrinfo(*server.address)[0][-1])
    assert exc.value.args[0] == errno.ETIMEDOUT
    assert vclock.now() == pytest.approx(300.0)
    assert time.monotonic() - w0 < 30                   # no wall time in proportion to the timeout
    assert not server.pending()                         # no real connection was made
    board.broker_unreachable(False, ("localhost", server.address[1]))
    sock, _peer = connected(board, server)              # reachable again
    sock.close()


def test_an_open_connection_to_an_unreachable_broker_goes_half_open_for_good(tmp_path, server):
    vclock = VirtualClock()
    board = Board("h", seed=1, flash_dir=tmp_path, clock=vclock)
    uselect = board.runtime.import_module("select")
    sock, peer = connected(board, server)
    sock.write(b"before")
    peer.settimeout(HANG_S)
    assert peer.recv(6) == b"before"
    board.broker_unreachable()                          # every address
    peer.sendall(b"never seen")
    assert sock.write(b"lost") == 4                     # "sent"
    sock.settimeout(20)
    with pytest.raises(OSError) as exc:
        sock.read(1)
    assert exc.value.args[0] == errno.ETIMEDOUT
    assert vclock.now() == pytest.approx(20.0)
    poller = uselect.poll()
    poller.register(sock, uselect.POLLIN)
    assert poller.poll(5000) == []                      # the waiting bytes never reach the board
    sock.settimeout(0)
    assert sock.read(1) is None
    board.broker_unreachable(False)
    sock.settimeout(5)
    with pytest.raises(OSError):                        # still dead: the node must reconnect
        sock.read(1)
    assert sock.write(b"lost too") == 8
    peer.settimeout(0.2)
    with pytest.raises(socket.timeout):
        peer.recv(1)
    sock.close()
    fresh, fresh_peer = connected(board, server)
    fresh.write(b"again")
    fresh_peer.settimeout(HANG_S)
    assert fresh_peer.recv(5) == b"again"
    fresh.close()


# ---------------------------------------------------------------- fleets

def test_make_clocks():
    vclock, clocks = make_clocks("max", 3)
    assert isinstance(vclock, VirtualClock) and all(c.vclock is vclock for c in clocks)
    vclock, clocks = make_clocks("40", 2)
    assert vclock is None and [c.speed for c in clocks] == [40.0, 40.0]
    with pytest.raises(ValueError, match="max"):
        make_clocks("fast", 1)


class UptimeObserver(Observer):
    """Also keeps every telemetry record's `up` and temperature per device."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ups = {}

    def _on_telemetry(self, view, body):
        super()._on_telemetry(view, body)
        for record in contract.records(body):
            self.ups.setdefault(view.device_id, []).append((record["up"], record["t"]["bearing"]))


@pytest.mark.broker
def test_a_fleet_at_speed_max_runs_on_one_timeline(broker, tmp_path):
    """Three boards against a real mosquitto for 600 board seconds, woken by a command meanwhile.

    The boards run a small stand-in node (TINY_NODE) rather than the firmware, which is being
    rewritten.
    """
    with UptimeObserver(broker.host, broker.port, site="vclock") as obs:
        fleet = Fleet(3, broker.host, broker.port, site="vclock", workdir=tmp_path, speed="max")
        for board in fleet.boards:
            (board.flash_dir / "main.py").write_text(TINY_NODE)
        assert len({id(board.clock.vclock) for board in fleet.boards}) == 1
        with fleet:
            ids = [board.device_id for board in fleet.boards]
            assert obs.wait_for(lambda o: all(len(o.ups.get(i, ())) >= 20 for i in ids), HANG_S)
            obs.publish_command("vclock", ids[0], "ping")
            assert obs.wait_for(lambda o: any(t == 41.0 for _, t in o.ups[ids[0]]), HANG_S)
            assert obs.wait_for(lambda o: all(len(o.ups.get(i, ())) >= 120 for i in ids), 120)
            assert fleet.board_time() >= 595
            ups = {i: list(obs.ups[i]) for i in ids}
        assert [board.crashed for board in fleet.boards] == [None] * 3
    assert obs.violations == []
    for device in ids:
        times = [up for up, _ in ups[device]]
        # Publishing takes no board time: the 5 s schedule holds to the millisecond.
        assert [b - a for a, b in zip(times, times[1:])] == [5000] * (len(times) - 1)
    temps = [t for _, t in ups[ids[0]]]
    assert temps[0] == 40.0 and temps[-1] == 41.0       # the command woke that board's poll
    assert all(t == 40.0 for i in ids[1:] for _, t in ups[i])


def test_a_fleet_rejects_an_unknown_speed(tmp_path):
    with pytest.raises(ValueError, match="speed"):
        Fleet(1, "127.0.0.1", 1883, workdir=tmp_path, speed="warp")
    fleet = Fleet(2, "127.0.0.1", 1883, workdir=tmp_path / "m", speed="max")
    assert fleet.vclock is not None and fleet.board_time() == 0.0
    json.loads((fleet.boards[0].flash_dir / "config.json").read_text())
