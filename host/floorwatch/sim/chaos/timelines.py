"""How a chaos campaign waits for board time, and the guard that keeps a virtual clock moving.

The campaign plays each fault at a board time, so it needs a clock of its own that follows the
fleet's: `ScaledTimeline` for ScaledClock fleets (a nominal `speed` times wall time) and
`VirtualTimeline` for Fleet(speed="max") (it joins the fleet's VirtualClock). `StallGuard` watches
a virtual clock for firmware that never waits, which would otherwise freeze the whole fleet.
"""

import sys
import threading
import time
import traceback


class ScaledTimeline:
    """Board time for ScaledClock fleets: `speed` times the wall seconds since start.

    Each board's own clock runs at about that speed while its node idles; a board that is powered
    off (or a host that is saturated) falls behind, so the campaign keeps its own nominal time
    rather than follow any one board. The report states how far the boards really got.
    """

    kind = "scaled"

    def __init__(self, speed):
        self.speed = float(speed)
        self._start = time.monotonic()
        self.step = min(0.05 * self.speed, 5.0)  # board seconds between the campaign's looks

    def now(self):
        return (time.monotonic() - self._start) * self.speed

    def sleep_until(self, t):
        left = t - self.now()
        if left > 0:
            time.sleep(left / self.speed)

    def close(self):
        pass


class VirtualTimeline:
    """Board time for Fleet(speed="max"): the fleet's one VirtualClock, which the campaign joins.

    A participant holds board time still while it is not waiting, so each fault lands at exactly
    its board time, and the campaign's own work (a broker restart, the books) costs no board time.
    """

    kind = "virtual"
    step = 5.0

    def __init__(self, vclock):
        self.vclock = vclock
        self._me = vclock.join()

    def now(self):
        return self.vclock.now()

    def sleep_until(self, t):
        self._me.sleep_until(t)

    def close(self):
        self._me.leave()


def timeline_for(fleet, speed):
    """The VirtualClock the fleet's boards share (Fleet(speed="max")), else scaled time."""
    if fleet.vclock is not None:
        return VirtualTimeline(fleet.vclock)
    return ScaledTimeline(speed)


class StallGuard:
    """Virtual clock only: find boards that hold board time still by never waiting, and reset them.

    Board time moves on only when every participant waits, so firmware that loops without a real
    sleep (a busy loop on ticks, a sleep_ms(0) spin) freezes the whole fleet, where a real board
    would merely burn CPU. After `wall_s` wall seconds without progress, each board still running
    is reset, and the stall is recorded with the firmware line it was spinning at: a finding, not a
    way to pass.
    """

    def __init__(self, fleet, wall_s=30.0):
        self.fleet, self.wall_s = fleet, wall_s
        self.stalls = []  # {"device", "board_s", "where"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="chaos-stall-guard", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _watch(self):
        vclock = self.fleet.vclock
        last, since = vclock.now(), time.monotonic()
        while not self._stop.wait(1.0):
            now = vclock.now()
            if now != last or not vclock.holding:
                last, since = now, time.monotonic()
                continue
            if time.monotonic() - since < self.wall_s:
                continue
            for board in self.fleet.boards:
                if board.clock.busy and board.running:
                    self.stalls.append({"device": board.device_id, "board_s": round(now, 3),
                                        "where": _firmware_line(board)})
                    board.reset()
            since = time.monotonic()


def _firmware_line(board):
    """'node/app.py:391 _idle_ms': the innermost firmware frame the board's thread is in, or None."""
    frame = sys._current_frames().get(board.thread.ident)  # None: the thread has just ended
    for entry in reversed(traceback.extract_stack(frame) if frame is not None else []):
        parts = entry.filename.replace("\\", "/").split("/firmware/")
        if len(parts) > 1:
            return "%s:%d %s" % (parts[-1], entry.lineno, entry.name)
    return None
