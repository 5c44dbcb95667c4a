"""Keep the node alive and out of boot loops: software watchdog, boot record, safe files.

Watchdog decides whether the hardware watchdog may be fed. Each part of the main loop (sampling,
the link, ...) checks in when it completes a pass; the loop feeds machine.WDT only while no part
is late, so a part that hangs or keeps failing restarts the node even if the loop itself spins
on. Hardware-free: the caller passes the time.

BootRecord counts consecutive failed boots in a small JSON file, so a node that crashes soon
after every start stops trying the failing code path and waits in safe mode for an operator,
and it carries the reason a run ended (recorded just before a planned or unplanned restart)
across the reset into the next boot's status message.
"""
import json
import os

_REASON_MAX = 120  # reasons go into the retained status message: keep them short


def write_atomic(path, text):
    """Replace the file at path with text, all or nothing: a power cut at any moment leaves
    either the old file or the new one, never a torn mix.

    Writes path + ".tmp" and renames it over path (on littlefs, the ESP32's filesystem, and
    POSIX, rename replaces the target in one step). Raises OSError (e.g. ENOSPC) with the old
    file intact; a torn .tmp left by a power cut is never read and is overwritten next time.
    """
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, path)
    except OSError:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


class Watchdog:
    """Which part, if any, has gone too long without checking in.

    deadlines_ms: {part name: longest allowed gap in ms}. now_ms is a time that does not wrap
    (the node's Uptime, ms since boot), so plain subtraction is right. A part that has not
    checked in yet counts from the moment the Watchdog was made.
    """

    def __init__(self, deadlines_ms, now_ms):
        self._deadline = dict(deadlines_ms)
        self._names = sorted(self._deadline)  # fixed order: the same part is named every time
        self._last = {}
        for name in self._names:
            self._last[name] = now_ms

    def checkin(self, part, now_ms):
        if part not in self._deadline:
            raise ValueError("unknown watchdog part: " + repr(part))
        self._last[part] = now_ms

    def deadline(self, part, ms):
        """Change one part's longest allowed gap (e.g. after the sampling intervals changed)."""
        if part not in self._deadline:
            raise ValueError("unknown watchdog part: " + repr(part))
        self._deadline[part] = ms

    def late(self, now_ms):
        """The first part (by name) whose last check-in is older than its deadline, or None."""
        for name in self._names:
            if now_ms - self._last[name] > self._deadline[name]:
                return name
        return None


def _one_line(reason):
    """reason as status carries it: one line, not empty, at most _REASON_MAX characters."""
    s = str(reason).replace("\r", " ").replace("\n", " ") or "unknown"
    return s if len(s) <= _REASON_MAX else s[:_REASON_MAX - 3] + "..."


class BootRecord:
    """Consecutive failed boots and the reason the last run ended, kept in a JSON file.

    The file holds {"failed": n, "reason": str or null}. A missing, unreadable or corrupt file
    reads as a fresh start (0 failed, no reason): the record must never stop a node booting.
    A write that fails (flash full, flash fault) is ignored for the same reason; the record
    then simply does not advance.

    Safe-mode rule: a boot is "failed" unless it calls stable() (it ran long enough). After
    max_failed failed boots in a row, the next boot starts in safe mode: safe_mode is True
    when the number of consecutive failed boots *before* this one is >= max_failed, i.e. when
    `failed` (which includes this boot) is > max_failed. With the default 3: boots 1-3 fail,
    boot 4 is in safe mode. Safe mode lasts until the caller calls leave_safe_mode() (the
    "resume" command, or its own time limit): stable() in safe mode changes nothing, since
    running the safe loop proves nothing about the normal one.
    """

    def __init__(self, path="boot.json", max_failed=3):
        self.path = path
        self.max_failed = max_failed
        self.failed = 0  # consecutive failed boots, including this one once begin() ran
        self.reason = None  # why the previous run ended, as ending() recorded it, or None
        self.safe_mode = False

    def _load(self):
        try:
            with open(self.path) as f:
                data = json.load(f)
            failed, reason = data["failed"], data["reason"]
        except Exception:  # whatever is wrong with the file, a fresh start is the safe reading
            return 0, None
        if type(failed) is not int or failed < 0 or not (reason is None or type(reason) is str):
            return 0, None
        return failed, None if reason is None else _one_line(reason)

    def _save(self, reason):
        try:
            write_atomic(self.path, json.dumps({"failed": self.failed, "reason": reason}))
        except OSError:
            pass

    def begin(self):
        """At boot, before anything that could crash: count this boot as failed until stable().

        The recorded reason moves to self.reason and is cleared on flash, so a later power cut
        (which records nothing) is not reported with a stale reason.
        """
        before, self.reason = self._load()
        self.failed = before + 1
        self.safe_mode = before >= self.max_failed
        self._save(None)

    def stable(self):
        """The boot proved itself (ran long enough): the failure streak ends. Persists once."""
        if self.safe_mode or self.failed == 0:
            return
        self.failed = 0
        self._save(None)

    def ending(self, reason):
        """Record why the node is about to restart (e.g. "crash: OSError(5)"); one line, short."""
        self._save(_one_line(reason))

    def interrupted(self):
        """Someone stopped the node at the console (Ctrl-C: a deploy, mpremote): this boot did not
        fail, so it leaves the streak, and the next status says so."""
        self.failed = max(0, self.failed - 1)
        self._save("stopped at the console")

    def leave_safe_mode(self):
        """Clear the failure streak and record "resume"; the caller then resets the node."""
        self.failed = 0
        self.safe_mode = False
        self._save("resume")
