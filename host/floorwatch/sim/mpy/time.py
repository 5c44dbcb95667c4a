"""`time` (utime) for one board: ticks that wrap like the ESP32 port's, sleeps in board time."""

import time as _host_time

from . import new_module

TICKS_PERIOD = 1 << 30  # ESP32: MICROPY_PY_TIME_TICKS_PERIOD with OBJ_REPR_A
TICKS_MAX = TICKS_PERIOD - 1
TICKS_HALF = TICKS_PERIOD // 2
RTC_EPOCH_START = 946684800  # an unset ESP32 RTC starts at 2000-01-01 00:00:00 UTC
# Board seconds are floats: 10.4 s is stored as 10.39999... Ticks count whole milliseconds from a
# nanosecond above, so a sleep of exactly 5000 ms on a virtual clock reads as 5000 ms, not 4999.
_ROUNDING_S = 1e-9


def ticks_diff(new, old):
    return ((new - old + TICKS_HALF) & TICKS_MAX) - TICKS_HALF


def ticks_add(ticks, delta):
    return (ticks + delta) & TICKS_MAX


def module(board):
    clock = board.clock
    busy_read = getattr(clock, "busy_read", None)  # virtual clocks: see board.VirtualClock

    def now():
        """Board seconds, for the firmware: a loop that reads them without ever sleeping is charged
        a little board time now and then, so that under a virtual clock it sees time pass."""
        board.checkpoint()
        if busy_read is not None:
            charge = busy_read()
            if charge:
                board.sleep(charge)
        return clock.now()

    def since_boot():  # ticks restart at every reset but a soft one, as on the ESP32
        return now() - board.ticks_origin + _ROUNDING_S

    def ticks_ms():
        return int(since_boot() * 1000) & TICKS_MAX

    def ticks_us():
        return int(since_boot() * 1_000_000) & TICKS_MAX

    def sleep(seconds):
        board.sleep(seconds)

    def sleep_ms(ms):
        board.sleep(ms / 1000)

    def sleep_us(us):
        board.sleep(us / 1_000_000)

    def time_():
        now()
        return int(board.wall_time())

    def time_ns():
        now()
        return int(board.wall_time() * 1_000_000_000)

    def gmtime(secs=None):
        t = _host_time.gmtime(board.wall_time() if secs is None else secs)
        return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, t.tm_wday, t.tm_yday)

    def mktime(tup):
        return int(_host_time.mktime(tuple(tup[:8]) + (0,)) - _host_time.timezone)

    return new_module(
        "time", __doc__,
        ticks_ms=ticks_ms, ticks_us=ticks_us, ticks_cpu=ticks_us, ticks_diff=ticks_diff,
        ticks_add=ticks_add, sleep=sleep, sleep_ms=sleep_ms, sleep_us=sleep_us, time=time_,
        time_ns=time_ns, gmtime=gmtime, localtime=gmtime, mktime=mktime,
    )
