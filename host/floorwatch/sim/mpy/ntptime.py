"""`ntptime` for one board: the true time of the simulated world, over the board's WiFi link.

Same surface as MicroPython's ntptime: `host` and `timeout` (seconds) attributes, `time()` giving
seconds since the epoch of `time.time()` (1970 here, as on current ESP32 builds), in whole
seconds as the real module truncates them, and `settime()` setting the RTC to it.
The true time is `board.true_epoch + board.clock.now()`; the board's own RTC may be anywhere else
(unset at 2000-01-01, or moved by `board.jump_clock`).

No query gets through while the station has no link (the access point is down, or the firmware
has not joined it) or while `board.ntp_reachable` is False: the request then times out, after
`timeout` seconds of board time, with OSError(ETIMEDOUT). Any `host` is answered; DNS is not
modelled.
"""

import errno
import time as _host_time

from . import new_module

STAT_GOT_IP = 1010  # network.STAT_GOT_IP on the ESP32 port


def module(board):
    ntptime = new_module("ntptime", __doc__)
    ntptime.host = "pool.ntp.org"
    ntptime.timeout = 1

    def time():
        board.checkpoint()
        online = board.link_up() and board.wlan.get("status") == STAT_GOT_IP
        if not online or not board.ntp_reachable:
            board.sleep(ntptime.timeout)  # the request goes out (or not); no answer comes
            raise OSError(errno.ETIMEDOUT)
        return int(board.true_epoch + board.clock.now())

    def settime():
        t = _host_time.gmtime(time())
        board.set_wall_time((t.tm_year, t.tm_mon, t.tm_mday, t.tm_wday, t.tm_hour, t.tm_min, t.tm_sec, 0))

    ntptime.time = time
    ntptime.settime = settime
    return ntptime
