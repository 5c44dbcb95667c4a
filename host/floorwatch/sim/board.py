"""One simulated ESP32 board: its power, clock, flash, NVS, buses, WiFi surroundings and faults.

A Board runs the unmodified firmware in its own thread. Every boot gets a fresh `Runtime` (its own
module namespace), while flash, NVS and the attached sensors persist across resets, as on a real
board. The fake MicroPython modules reach the hardware only through this object, and call
`checkpoint()` from every blocking operation so that a power cut, a reset or a watchdog bite takes
effect promptly wherever the firmware is.

Everything the firmware can time — ticks, sleeps, the RTC, the watchdog, WiFi association, sensor
conversions and FIFOs — runs on the board's clock (`now()`, `wait(seconds, event, watch)`): RealClock,
ScaledClock(speed) to run the board's idle time faster than real time, or a handle on a VirtualClock
shared by a fleet, whose time jumps ahead whenever every board waits (`--speed max`).
"""

import calendar
import errno
import functools
import heapq
import itertools
import json
import math
import os
import random
import select
import socket
import threading
import time
import traceback
from pathlib import Path

from .devices.i2cbus import I2CBus
from .devices.onewire import OneWireBus
from .mpy.time import RTC_EPOCH_START
from .runtime import Runtime

# machine.reset_cause() values of the ESP32 port.
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5

CHIPS = ("esp32", "esp32s3", "esp32c3")


class PowerOff(BaseException):
    """Raised inside the board's thread when its power is cut (not catchable by `except Exception`)."""


class ResetBoard(BaseException):
    """Raised inside the board's thread to reboot it with the given reset cause."""

    def __init__(self, cause):
        super().__init__(cause)
        self.cause = cause


class Wake(threading.Event):
    """A threading.Event that a poll() can also wait on, and that rings bells when set.

    It lets a thread sleep until the first of several things happens — its time comes, a power cut
    or a reset, data on a host socket — without polling in slices: `fileno()` is readable while the
    Wake is set, and `ring_also(bell)` makes every set() call `bell()` too.
    """

    def __init__(self):
        super().__init__()
        self._bells = []
        self._fd = None  # (read end, write end), made on the first fileno()
        self._poked = False  # the fd may be readable: set() wrote to it since the last clear()

    def set(self):
        super().set()
        if self._fd is not None:
            self._poke()
        for bell in list(self._bells):
            bell()

    def clear(self):
        if self.is_set():  # clearing a clear Event takes its lock for nothing (a board clears before every sleep)
            super().clear()
        # A board clears its alert before every sleep, so only a poked fd is read: an empty one
        # would cost a system call and an exception each time (BlockingIOError).
        if self._poked:
            self._poked = False
            try:
                os.read(self._fd[0], 64)  # an eventfd reads back its whole count at once
            except BlockingIOError:
                pass

    def ring_also(self, bell):
        self._bells.append(bell)
        if self.is_set():
            bell()

    def stop_ringing(self, bell):
        try:
            self._bells.remove(bell)
        except ValueError:
            pass

    def fileno(self):
        if self._fd is None:
            if hasattr(os, "eventfd"):
                fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                self._fd = (fd, fd)
            else:
                read_end, write_end = os.pipe()
                os.set_blocking(read_end, False)
                os.set_blocking(write_end, False)
                self._fd = (read_end, write_end)
            if self.is_set():
                self._poke()
        return self._fd[0]

    def _poke(self):
        try:
            os.write(self._fd[1], (1).to_bytes(8, "little"))  # 8 bytes: what an eventfd wants
        except BlockingIOError:
            pass  # already readable
        self._poked = True  # after the write, so a clear() that sees it has something to read

    def __del__(self):
        for fd in set(self._fd or ()):
            try:
                os.close(fd)
            except (OSError, TypeError):  # TypeError: os already torn down at interpreter exit
                pass


_UNHOOKED_POLL_S = 0.05  # how often a wait looks at an Event that cannot ring a Wake
_NEVER = Wake()  # for waits on nothing but time and fds: never set


def _block(wake, watch, timeout):
    """Block until `wake` is set, a watched host fd is ready or `timeout` wall seconds pass.

    watch: None or {fd: host poll mask}; timeout None: no limit. Returns [(fd, revents)] of the
    watched fds that are ready. A plain Event (not a Wake) cannot wake a poll(): it is looked at
    every 50 ms instead.
    """
    if not watch:
        wake.wait(timeout)
        return []
    poller = select.poll()
    for fd, mask in watch.items():
        poller.register(fd, mask)
    bell = wake.fileno() if isinstance(wake, Wake) and timeout != 0 else None
    if bell is not None:
        poller.register(bell, select.POLLIN)
    end = None if timeout is None else time.monotonic() + timeout
    while not wake.is_set():
        step = None if end is None else max(0.0, end - time.monotonic())
        if bell is None:
            step = _UNHOOKED_POLL_S if step is None else min(step, _UNHOOKED_POLL_S)
        events = poller.poll(None if step is None else math.ceil(step * 1000))
        ready = [(fd, revents) for fd, revents in events if fd != bell]
        if ready or (end is not None and time.monotonic() >= end):
            return ready
    return []


class ScaledClock:
    """Board time in seconds since start, where the board's sleeps pass `speed` times faster.

    While the firmware sleeps (`wait`), board time runs `speed` times faster than the wall clock: a
    10 s sleep at speed 100 takes 0.1 s. While the firmware runs — computing, draining a sensor
    FIFO, waiting on a socket — board time runs at wall-clock speed. So the host's CPU and network
    look as fast to the firmware as they are: an accelerometer FIFO drained at CPython speed does
    not overflow, the broker's replies do not seem to take `speed` times longer (no spurious socket
    timeouts), and a node that idles most of the time (as ours does) runs close to `speed` times
    faster than real time. A busy host lowers the speed achieved; a saturated one makes the firmware
    late (time spent waiting for the interpreter lock counts at wall speed), as it would at speed 1.
    Speed 1 is plain wall-clock time.

    One clock belongs to one board, and only the board's own thread sleeps on it. `join`, `leave`,
    `park` and `unpark` are there for the VirtualClock's sake and do nothing here: every thread
    runs on its own time.
    """

    def __init__(self, speed=1.0):
        speed = float(speed)
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError("speed must be a number above 0, not %r" % speed)
        self.speed = speed
        self._lock = threading.Lock()
        # (wall0, board0, rate, length): from wall0 on, board time runs at `rate` for `length` board
        # seconds, then at wall speed. Re-anchored as each wait starts and ends.
        self._anchor = (time.monotonic(), 0.0, 1.0, math.inf)

    def now(self):
        with self._lock:
            return self._board_at(time.monotonic())

    def _board_at(self, wall):
        wall0, board0, rate, length = self._anchor
        fast = rate * (wall - wall0)
        if fast <= length:
            return board0 + fast
        return board0 + length + (wall - wall0 - length / rate)

    def _anchor_now(self, rate, length):
        with self._lock:
            wall = time.monotonic()
            self._anchor = (wall, self._board_at(wall), rate, length)

    def wait(self, seconds, event=None, watch=None):
        """Sleep up to `seconds` of board time; return early when `event` is set or a watched fd is
        ready (watch: {host fd: poll mask}), returning [(fd, revents)] of the ready ones.

        Only the sleep itself is sped up: when the host wakes the thread late, the delay counts
        at wall speed, as it would on a busy board, not `speed` times over.
        """
        seconds = max(0.0, seconds)
        self._anchor_now(self.speed, seconds)
        try:
            timeout = None if seconds == math.inf else seconds / self.speed
            return _block(event if event is not None else _NEVER, watch, timeout)
        finally:
            self._anchor_now(1.0, math.inf)

    def join(self):
        pass

    def leave(self):
        pass

    def park(self, deadline):
        pass

    def unpark(self):
        pass


class RealClock(ScaledClock):
    """Board time at wall-clock speed."""

    def __init__(self):
        super().__init__(1.0)


class VirtualClock:
    """One board timeline shared by many boards, driven by their wake-ups instead of the wall clock.

    Each board gets its own handle (`board_clock()`, the same interface as ScaledClock). Board time
    stands still while any participant runs — computing, draining a FIFO, talking to the broker —
    and when every participant waits, it jumps to the earliest wake-up among them. So a fleet lives
    through its idle time as fast as the host can compute (`--speed max`), and whatever the firmware
    does between two sleeps takes no board time at all: no FIFO overruns, no spurious timeouts,
    however loaded the host.

    Participants are the powered boards (a board joins at power-on and leaves when its thread ends
    or its power is cut) and any thread that holds a handle from `join()`, e.g. a scenario driver
    acting at a board time (`driver.sleep_until(t)`, then act: time waits for it until its next
    wait). Every other thread (the test, the MQTT observer) only reads `now()`; its `sleep_until(t)`
    takes part just for the length of that wait.

    The one place wall time leaks in is real network I/O (fake socket): a board waiting on a host
    socket holds time still for a short wall-clock grace, then lets time run up to its board-time
    deadline (`park`), so a silent peer times out in board time while a loopback broker's answer
    (far quicker than the grace) costs no board time. A wait that polls host sockets (fake select)
    lets time run from the start: data that arrives wakes the board at whatever board time it is.

    A loop that reads the clock without ever waiting (a busy-wait) would stop the world, since time
    stands still while it runs: after SPIN_READS clock reads in a row the time module makes it sleep
    SPIN_CHARGE_S of board time (`ClockHandle.busy_read`), about what that many loop passes would
    take on the chip, so such a loop sees time pass and ends. A handle's `spins` counts the charges.

    Known limits: the broker's keepalive timer runs on wall time; a computation that never reads
    the clock nor waits holds time for as long as it runs.
    """

    def __init__(self, start=0.0):
        self._lock = threading.Lock()
        self._now = float(start)
        self._busy = 0  # participants holding time
        self._heap = []  # (deadline, token, handle); an entry is live while handle._token == token
        self._tokens = itertools.count()

    def now(self):
        return self._now

    def board_clock(self):
        """A new handle on this timeline, not yet taking part (a board joins when powered on)."""
        return ClockHandle(self)

    def join(self):
        """A new handle that takes part from now on, holding time until it waits; leaves on `with` exit."""
        handle = ClockHandle(self)
        handle.join()
        return handle

    def sleep_until(self, t):
        """Wait, in wall time, until board time reaches `t` (from a thread that does not take part)."""
        self.board_clock().wait(t - self._now)

    @property
    def holding(self):
        """How many participants hold time right now (running, not waiting)."""
        return self._busy

    def _advance(self):
        """With the lock held: if nobody runs, move time to the earliest wake-up and wake its sleepers."""
        if self._busy:
            return
        heap = self._heap
        while heap and heap[0][2]._token != heap[0][1]:
            heapq.heappop(heap)
        if not heap or heap[0][0] == math.inf:
            return
        self._now = max(self._now, heap[0][0])
        while heap and heap[0][0] <= self._now:
            _, token, handle = heapq.heappop(heap)
            if handle._token == token:
                handle._to_busy()
                handle._due.set()


_OUT, _BUSY, _IDLE = "out", "busy", "idle"
SPIN_READS = 1000  # clock reads without a wait that make a busy-wait
SPIN_CHARGE_S = 0.1  # board time a busy-wait is charged per SPIN_READS reads


class ClockHandle:
    """One participant's view of a VirtualClock: now(), wait() like ScaledClock, plus taking part.

    States: out (not taking part), busy (holds time), idle (waits for a board time). One thread
    uses a handle at a time.
    """

    def __init__(self, vclock):
        self.vclock = vclock
        self._state = _OUT
        self._token = None
        self._parked_joined = False
        self._reads = 0  # firmware clock reads since the last wait
        self.spins = 0  # busy-waits charged (busy_read)
        self._due = Wake()  # rung when the wait's time comes, or by the event it waits on

    def now(self):
        return self.vclock._now

    @property
    def busy(self):
        """True while this participant holds time: it takes part and is running, not waiting."""
        return self._state == _BUSY

    def join(self):
        """Take part: board time now waits for this handle whenever it is not waiting."""
        with self.vclock._lock:
            if self._state == _OUT:
                self._to_busy()

    def leave(self):
        """Stop taking part (safe from any thread, and when already out)."""
        with self.vclock._lock:
            self._to_out()
            self.vclock._advance()

    def park(self, deadline):
        """The thread is blocked outside the simulation (a host socket) until board time `deadline`
        (None: no limit): let time run meanwhile. When time reaches `deadline` the handle is busy
        again; the caller sees it as now() >= deadline. A thread that does not take part takes
        part until unpark(), as in wait()."""
        with self.vclock._lock:
            if self._state == _IDLE:
                return
            self._parked_joined = self._state == _BUSY
            self._to_idle(math.inf if deadline is None else deadline)
            self.vclock._advance()

    def unpark(self):
        with self.vclock._lock:
            if self._state == _OUT:  # made to leave meanwhile (power cut)
                return
            if self._parked_joined:
                self._to_busy()
            else:
                self._to_out()
                self.vclock._advance()

    def wait(self, seconds, event=None, watch=None):
        """Sleep `seconds` of board time; return early when `event` is set or a watched host fd is
        ready (watch: {fd: poll mask}), returning [(fd, revents)] of the ready ones.

        Board time moves on only once every participant waits. A thread that does not take part
        takes part for the length of the wait.
        """
        vclock = self.vclock
        if seconds <= 0 or (event is not None and event.is_set()):
            return _block(_NEVER, watch, 0.0) if watch else []
        if not watch and self._state == _BUSY and vclock._busy == 1:
            # The only participant running, nothing to watch, and nobody due before this wait ends:
            # time jumps to its end at once, as the long way below would do (the FIFO drain sleeps
            # like this 60 times a window). A wait on sockets takes the long way: data may arrive.
            with vclock._lock:
                if vclock._busy == 1 and self._state == _BUSY and (event is None or not event.is_set()):
                    deadline = vclock._now + seconds
                    heap = vclock._heap
                    while heap and heap[0][2]._token != heap[0][1]:
                        heapq.heappop(heap)
                    if not heap or heap[0][0] > deadline:
                        vclock._now = deadline
                        self._reads = 0
                        return []
        hooked = isinstance(event, Wake)
        with vclock._lock:
            joined = self._state != _OUT
            self._to_idle(vclock._now + seconds)
            bell = functools.partial(self._interrupt, self._token)
            vclock._advance()
        if hooked:
            event.ring_also(bell)
        try:
            while True:
                self._due.clear()
                if self._state != _IDLE or (event is not None and event.is_set()):
                    return []
                ready = _block(self._due, watch, None if hooked or event is None else _UNHOOKED_POLL_S)
                if ready:
                    return ready
        finally:
            if hooked:
                event.stop_ringing(bell)
            with vclock._lock:
                if not joined:
                    self._to_out()
                elif self._state == _IDLE:  # left early (event, data); not if someone made it leave
                    self._to_busy()
                vclock._advance()

    def sleep_until(self, t):
        self.wait(t - self.now())

    def busy_read(self):
        """Count one clock read by the firmware; board seconds it should sleep when the reads since
        its last wait make a busy-wait (see VirtualClock), else 0."""
        if self._state != _BUSY:
            return 0.0
        self._reads += 1
        if self._reads < SPIN_READS:
            return 0.0
        self.spins += 1
        return SPIN_CHARGE_S

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.leave()

    def _interrupt(self, token):
        """The event of the wait `token` was set: hold time from this instant (a reset at board time
        t is taken at t), and wake the thread."""
        with self.vclock._lock:
            if self._token == token and self._state == _IDLE:
                self._to_busy()
        self._due.set()

    # --- state changes, with the clock's lock held --------------------------------------------
    def _to_busy(self):
        if self._state != _BUSY:
            self.vclock._busy += 1
        self._state, self._token = _BUSY, None

    def _to_idle(self, deadline):
        if self._state == _BUSY:
            self.vclock._busy -= 1
        self._state, self._token = _IDLE, next(self.vclock._tokens)
        self._reads = 0
        heapq.heappush(self.vclock._heap, (deadline, self._token, self))

    def _to_out(self):
        if self._state == _BUSY:
            self.vclock._busy -= 1
        self._state, self._token = _OUT, None


class WifiAccessPoint:
    """The network the board's WLAN can see. Tests switch `up` to make outages."""

    def __init__(self, ssid, password, rssi=-58, connect_s=0.4):
        self.ssid = ssid
        self.password = password
        self.rssi = rssi
        self.connect_s = connect_s
        self.up = True


class Board:
    def __init__(self, device_id, seed=0, flash_dir=None, chip="esp32", mac=None, ap=None,
                 clock=None, firmware_dir=None, echo_log=False, log_lines=200, console=None):
        if chip not in CHIPS:
            raise ValueError("chip %r is not one of %s" % (chip, ", ".join(CHIPS)))
        self.device_id = device_id
        self.seed = seed
        self.chip = chip
        if isinstance(clock, VirtualClock):
            clock = clock.board_clock()
        self.clock = clock or RealClock()
        root = Path(flash_dir) if flash_dir else Path.cwd() / "sim-boards" / device_id
        self.root = root
        self.flash_dir = root / "flash"
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.nvs_path = root / "nvs.json"
        self.firmware_dir = firmware_dir
        self.mac = mac or bytes([0x24, 0x6F, 0x28, (seed >> 16) & 0xFF, (seed >> 8) & 0xFF, seed & 0xFF])
        self.ap = ap or WifiAccessPoint("floorwatch-sim", "sim-password")
        self.ip = "10.77.%d.%d" % ((seed >> 8) & 0xFF, 2 + seed % 250)
        self.console = console  # a serial console (the virtual board's); None: output goes to the log only
        self.micropython = "1.24.1"  # the MicroPython release the board runs (sys.implementation, os.uname)
        self.mpy_source = None  # callable(path of a .mpy on flash) -> the source it was compiled from
        self.rtc_memory = b""
        self.wall_offset = None  # RTC seconds minus board seconds, once the firmware sets the clock
        self.ticks_origin = 0.0  # board time when ticks_ms() last restarted from 0 (every reset but a soft one)
        self.pins = {}
        self.neopixels = {}  # pin -> the colours a WS2812 chain shows (sim/mpy/neopixel.py)
        self.wlan = self._fresh_wlan()
        self.wifi_connects = 0
        self.heap_used = 40000  # what gc reports as allocated; the firmware's heap is not modelled
        self.flash_full = False
        self.rng = random.Random(seed)
        self.i2c_buses = {}
        self.onewire_buses = {}
        self.signals = {}  # name -> callable the fake modules may consult (e.g. "chip" temperature)
        self.log = []
        self.log_lines = log_lines
        self.echo_log = echo_log
        self.boots = 0
        self.reset_cause = PWRON_RESET
        self.wdt = None  # (timeout_s, last_feed) once the firmware starts the watchdog
        self.sockets = set()
        self.orphan_sockets = []  # closed by the firmware while the link was down
        self.blackhole = set()  # (ip, port) whose TCP traffic vanishes; "*" for every address
        self.lan_broker = None  # (ip, port): a LAN whose every name and TCP connection leads to this broker
        self._pending = None  # ResetBoard to raise at the next checkpoint
        self._power = threading.Event()
        self._alert = Wake()  # set by a power cut or a reset: ends the board's current sleep
        self._off = Wake()
        self._off.ring_also(self._alert.set)
        self._thread = None
        self.runtime = Runtime(self, firmware_dir)
        self.crashed = None  # the traceback text when the firmware died to the REPL
        # Faults (see "faults for tests and scenarios"), and what the world around the board knows.
        self.on_boot_end = []  # callables(board), run as each boot ends, before its runtime goes
        self.true_epoch = 1767225600  # the true Unix time at board time 0 (2026-01-01), for ntptime
        self.ntp_reachable = True
        self._cut_after = None  # checkpoints left until the power goes (cut_power_after)
        self._cut_lock = threading.Lock()
        self._hang = None  # seconds the firmware will be stuck at its next checkpoint (hang)
        self._browned_out = False  # the pending reset is a brownout's: it takes the RTC's state too
        self._ended_boot = 0  # the last boot whose on_boot_end hooks ran

    # --- hardware the fake modules use -------------------------------------------------------
    def i2c_bus(self, scl, sda):
        return self.i2c_buses.setdefault((scl, sda), I2CBus())

    def onewire_bus(self, pin):
        return self.onewire_buses.setdefault(pin, OneWireBus())

    def load_nvs(self):
        try:
            return json.loads(self.nvs_path.read_text())
        except (OSError, ValueError):
            return {}

    def save_nvs(self, data):
        tmp = self.nvs_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.nvs_path)

    def chip_temperature(self):
        source = self.signals.get("chip")
        return source(self.clock.now()) if source else 40.0

    def wall_time(self):
        offset = RTC_EPOCH_START if self.wall_offset is None else self.wall_offset
        return offset + self.clock.now()

    def set_wall_time(self, datetime_tuple):
        year, month, day, _weekday, hour, minute, second = datetime_tuple[:7]
        epoch = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
        self.wall_offset = epoch - self.clock.now()

    def check_flash_write(self):
        if self.flash_full:
            raise OSError(errno.ENOSPC)

    @staticmethod
    def _fresh_wlan():
        return {"active": False, "target": None, "status": 1000, "since": 0.0, "config": {}}

    def print(self, *args, sep=" ", end="\n", file=None, flush=False):
        text = sep.join(str(a) for a in args)
        if self.console is not None:
            self.console.output(text + end)
        line = text + ("" if end == "\n" else end)
        self.log.append(line)
        if len(self.log) > self.log_lines:
            del self.log[: len(self.log) - self.log_lines]
        if self.echo_log:
            print("[%s] %s" % (self.device_id, line), flush=True)

    # --- time and interruption ---------------------------------------------------------------
    def checkpoint(self):
        """Called by every fake-module operation: deliver power cuts, resets and watchdog bites."""
        if self._hang is not None:
            self._stay_stuck()
        if self._off.is_set():
            raise PowerOff()
        if self._cut_after is not None and self._count_down():
            raise PowerOff()
        if self.wdt is not None:
            timeout, last = self.wdt
            if self.clock.now() - last > timeout:
                self._pending = ResetBoard(WDT_RESET)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            raise pending

    def sleep(self, seconds, watch=None):
        """Board-time sleep that a power cut, a reset or the watchdog interrupts.

        watch: {host fd: poll mask} to return early, with [(fd, revents)], once one of them is ready
        (the fake select). A power cut or a reset sets _alert, which ends the clock's wait at once:
        no wall-clock polling, so a virtual clock's idle time costs no wall time.
        """
        end = self.clock.now() + seconds
        while True:
            self._alert.clear()
            self.checkpoint()
            left = end - self.clock.now()
            if left <= 0:
                return []
            if self.wdt is not None:  # wake when the watchdog is due, to bite at the right time
                timeout, last = self.wdt
                left = min(left, max(0.0, last + timeout - self.clock.now()) + 0.001)
            if watch is None:
                self.clock.wait(left, self._alert)
            else:
                ready = self.clock.wait(left, self._alert, watch)
                if ready:
                    return ready

    # --- the network beyond the access point ---------------------------------------------------
    def broker_unreachable(self, on=True, address=None):
        """Make TCP to `address` ((host, port); None: every address) vanish, or stop doing so.

        From the node's side: a connect times out after its timeout in board time, and on a
        connection that was open, writes "succeed" and reads time out — a half-open connection. The
        broker sees silence and drops the client by its keepalive timer. Clearing does not revive
        such connections: the node has to reconnect.
        """
        key = "*" if address is None else self._resolve(address)
        if on:
            self.blackhole.add(key)
        else:
            self.blackhole.discard(key)
            if self.link_up():  # FINs held back by the outage may now leave
                while self.orphan_sockets:
                    self.orphan_sockets.pop().close()

    def blackholed(self, address):
        return bool(self.blackhole) and ("*" in self.blackhole or self._resolve(address) in self.blackhole)

    @staticmethod
    def _resolve(address):
        host, port = address[0], address[1]
        try:
            host = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        except (OSError, IndexError):
            pass
        return (host, int(port))

    # --- power -------------------------------------------------------------------------------
    def power_on(self):
        if self._thread and self._thread.is_alive():
            return
        self._off.clear()
        if hasattr(self.clock, "join"):
            self.clock.join()  # a virtual clock now waits for this board whenever it runs
        self.reset_cause = PWRON_RESET
        self.rtc_memory = b""
        self.wall_offset = None
        self.ticks_origin = self.clock.now()
        self.wlan = self._fresh_wlan()
        self._thread = threading.Thread(target=self._live, name="board-" + self.device_id, daemon=True)
        self._thread.start()

    def power_off(self, timeout=5.0):
        """Cut the power: the firmware stops wherever it is and its TCP connections drop."""
        self._off.set()
        if hasattr(self.clock, "leave"):
            self.clock.leave()  # at once: a dying board must not hold a virtual clock still
        for sock in list(self.sockets):
            sock.abort()
        if self._thread:
            self._thread.join(timeout)

    def reset(self, cause=HARD_RESET):
        """Press the reset button (or let the firmware call machine.reset())."""
        self._pending = ResetBoard(cause)
        self._alert.set()  # a sleeping board wakes to take it

    def interrupt(self):
        """Ctrl-C on the console: KeyboardInterrupt at the firmware's next checkpoint."""
        if self._pending is None:
            self._pending = KeyboardInterrupt()
            self._alert.set()

    def cancel_interrupt(self):
        """Drop a Ctrl-C that arrived as the code it was meant for ended (the REPL is idle)."""
        if isinstance(self._pending, KeyboardInterrupt):
            self._pending = None

    def bootloader(self):
        """machine.bootloader(): MicroPython stops and the chip restarts into its ROM's download mode."""
        if self.console is not None:
            self.console.download_mode()
        self.halt()

    def halt(self):
        """The power goes now, from the board's own thread (machine.bootloader(), cut_power_after)."""
        self._off.set()
        if hasattr(self.clock, "leave"):
            self.clock.leave()
        for sock in list(self.sockets):
            sock.abort()
        raise PowerOff()

    @property
    def running(self):
        return bool(self._thread and self._thread.is_alive())

    @property
    def thread(self):
        """The thread that runs the firmware (None before the first power-on), e.g. to see where it is."""
        return self._thread

    def _live(self):
        try:
            self._run()
        finally:
            if hasattr(self.clock, "leave"):
                self.clock.leave()  # however the thread ends, it no longer holds a virtual clock

    def _run(self):
        while not self._off.is_set():
            self.boots += 1
            self.wdt = None
            self.crashed = None
            self.runtime = Runtime(self, self.firmware_dir)
            try:
                try:
                    self.runtime.run_main(main=self.console is None or self.console.runs_main())
                except Exception:  # the firmware died: MicroPython prints it and sits at the REPL
                    self.crashed = traceback.format_exc()
                    self.print(self.crashed)
                except KeyboardInterrupt:  # Ctrl-C on the console: MicroPython drops to the REPL
                    self.print("Traceback (most recent call last):\nKeyboardInterrupt: ")
                self._boot_ended()  # crashed, or main.py returned: this boot's firmware is done
                self._idle_at_repl()
            except ResetBoard as reset:
                self._boot_ended()
                self._after_reset(reset.cause)
                if self._browned_out:
                    self._after_brownout()
            except PowerOff:
                self._boot_ended()
                break
            finally:
                for sock in list(self.sockets):
                    sock.abort()
        self._cut_after = self._hang = None  # faults armed for this power-up end with it
        self._browned_out = False

    def _after_reset(self, cause):
        self.reset_cause = cause
        if cause != SOFT_RESET:  # a soft reset keeps the WiFi driver's state and the ticks; the others do not
            self.wlan = self._fresh_wlan()
            self.pins = {}
            self.neopixels = {}
            self.ticks_origin = self.clock.now()

    def _idle_at_repl(self):
        if self.console is not None:
            self.console.repl(self)  # returns only to soft-reset; a reset or a power cut raises through it
            self.reset(SOFT_RESET)
            self.checkpoint()
        while True:
            self.sleep(3600)

    # --- faults for tests and scenarios ------------------------------------------------------
    def wifi_down(self):
        self.ap.up = False

    def wifi_up(self):
        self.ap.up = True
        while self.orphan_sockets:
            self.orphan_sockets.pop().close()

    def link_up(self):
        return self.ap.up and not self._off.is_set()

    def unplug(self, bus_key, addr_or_rom):
        """Unplug an I2C device (bus_key=(scl, sda), addr) or a 1-Wire probe (bus_key=pin, rom)."""
        self._device(bus_key, addr_or_rom).present = False

    def replug(self, bus_key, addr_or_rom):
        device = self._device(bus_key, addr_or_rom)
        device.present = True  # plugging in powers the device up from its reset state
        if hasattr(device, "power_on"):
            device.power_on()

    def _device(self, bus_key, key):
        if isinstance(bus_key, tuple):
            return self.i2c_buses[bus_key].device(key)
        return self.onewire_buses[bus_key].device(key)

    @property
    def powered(self):
        """False from a power cut (power_off, or cut_power_after landing) until power_on()."""
        return not self._off.is_set()

    def cut_power_after(self, checkpoints):
        """Cut the power at the `checkpoints`-th firmware operation from now (1: the very next).

        Every fake-module call is a checkpoint, file writes included, and a cut that lands on a
        write tears it (mpy/os.py). Safe from any thread while the board runs. The board then stays
        off until power_on(); a countdown still running when the power goes another way is dropped.
        """
        if type(checkpoints) is not int or checkpoints < 1:
            raise ValueError("checkpoints must be a whole number above 0, not %r" % (checkpoints,))
        with self._cut_lock:
            self._cut_after = checkpoints

    def _count_down(self):
        """checkpoint() with a cut armed: True, with the power now off, when this is the one."""
        with self._cut_lock:
            if self._cut_after is None:
                return False
            self._cut_after -= 1
            if self._cut_after > 0:
                return False
            self._cut_after = None
        try:
            self.halt()
        except PowerOff:
            return True

    def brownout(self):
        """The supply dips: the board restarts as from a power cycle (reset_cause PWRON_RESET, RTC
        memory and RTC time lost, WiFi driver fresh), though its thread carries on."""
        self._browned_out = True
        self.reset(PWRON_RESET)

    def _after_brownout(self):
        self._browned_out = False
        self._after_reset(PWRON_RESET)  # whatever reset got delivered, the power did go
        self.rtc_memory = b""
        self.wall_offset = None

    def hang(self, seconds):
        """The firmware gets stuck, busy, at its next checkpoint for `seconds` of board time.

        Nothing runs and nothing feeds the watchdog meanwhile, so a started watchdog bites when it
        is due (a WDT_RESET); a reset or a power cut also ends the hang. Board time passes as in a
        sleep, so a long hang costs little wall time. A sleeping board is woken to get stuck at once.
        """
        self._hang = float(seconds)
        self._alert.set()

    def _stay_stuck(self):
        seconds, self._hang = self._hang, None
        if seconds is None:
            return
        end = self.clock.now() + seconds
        while True:
            self._alert.clear()  # before looking, so that a reset or cut from now on ends the wait
            if self._off.is_set() or self._pending is not None:
                return
            now = self.clock.now()
            left = end - now
            if self.wdt is not None:  # checkpoint() delivers the bite once the watchdog is due
                timeout, last = self.wdt
                if now - last > timeout:
                    return
                left = min(left, last + timeout - now + 0.001)
            if left <= 0:
                return
            self.clock.wait(left, self._alert)

    def jump_clock(self, seconds):
        """The RTC (time.time(), RTC.datetime()) jumps by `seconds`, either way; ticks do not move."""
        offset = RTC_EPOCH_START if self.wall_offset is None else self.wall_offset
        self.wall_offset = offset + seconds

    def _boot_ended(self):
        """Run the on_boot_end hooks, once per boot, while board.runtime is still that boot's."""
        if self._ended_boot == self.boots:
            return
        self._ended_boot = self.boots
        for hook in list(self.on_boot_end):
            try:
                hook(self)
            except (Exception, PowerOff, ResetBoard):  # a harness's bug must not kill the board
                self.print("on_boot_end hook %r failed:\n%s" % (hook, traceback.format_exc()))
