"""Cases for node.supervisor; plain functions in the MicroPython subset (run on CPython and in the VM).

The boot record lives in files under DATA (a writable directory the runner provides); each case
uses its own file names and clears them first, so the cases do not depend on their order.
"""
import json
import os

from caselib import exists, fresh_path, read_text
from node import supervisor
from node.supervisor import BootRecord, Watchdog

DATA = None  # set by the runner: a directory holding FILES
FILES = {"keep.txt": "x"}


def _path(name):
    return fresh_path(DATA, name)


def _write(p, data):
    with open(p, "wb" if type(data) is bytes else "w") as f:
        f.write(data)


def _stored(p):
    return json.loads(read_text(p))


def _boot(p, max_failed=3):
    """One boot: a fresh BootRecord on p, begun."""
    r = BootRecord(p, max_failed)
    r.begin()
    return r


# ---- write_atomic ----

def test_write_atomic_creates_and_replaces_leaving_no_tmp():
    p = _path("atomic.txt")
    supervisor.write_atomic(p, "one")
    assert read_text(p) == "one"
    supervisor.write_atomic(p, "two, longer than one")
    assert read_text(p) == "two, longer than one"
    supervisor.write_atomic(p, "3")
    assert read_text(p) == "3"  # no tail of the longer text left behind
    assert not exists(p + ".tmp")


def test_write_atomic_failure_raises_and_keeps_the_old_file():
    p = _path("atomic_fail.txt")
    supervisor.write_atomic(p, "old")
    os.mkdir(p + ".tmp")  # the temporary file cannot be created
    try:
        supervisor.write_atomic(p, "new")
        raise AssertionError("no OSError")
    except OSError:
        pass
    finally:
        os.rmdir(p + ".tmp")
    assert read_text(p) == "old"


def test_write_atomic_overwrites_a_torn_tmp():
    p = _path("atomic_torn.txt")
    supervisor.write_atomic(p, "good")
    _write(p + ".tmp", "half a wri")  # what a power cut during the last write leaves
    assert read_text(p) == "good"
    supervisor.write_atomic(p, "next")
    assert read_text(p) == "next" and not exists(p + ".tmp")


# ---- Watchdog ----

def test_watchdog_counts_from_construction():
    w = Watchdog({"sample": 100}, 5000)
    assert w.late(5000) is None
    assert w.late(5100) is None  # exactly at the deadline: not late yet
    assert w.late(5101) == "sample"


def test_watchdog_checkin_restarts_the_count():
    w = Watchdog({"sample": 100}, 0)
    w.checkin("sample", 90)
    assert w.late(150) is None
    assert w.late(190) is None
    assert w.late(191) == "sample"
    w.checkin("sample", 200)
    assert w.late(250) is None


def test_watchdog_deadlines_are_per_part():
    w = Watchdog({"link": 1000, "sample": 100}, 0)
    assert w.late(101) == "sample"
    w.checkin("sample", 101)
    assert w.late(150) is None
    w.checkin("sample", 950)
    assert w.late(1001) == "link"
    w.checkin("link", 1001)
    assert w.late(1001) is None


def test_watchdog_names_the_first_late_part_by_name():
    deadlines = {}
    for name in ("sample", "link", "flush", "zeta", "alpha"):
        deadlines[name] = 10
    w = Watchdog(deadlines, 0)
    assert w.late(11) == "alpha"  # all late: the same answer whatever the dict order
    w.checkin("alpha", 11)
    assert w.late(11) == "flush"
    w.checkin("flush", 11)
    w.checkin("link", 11)
    assert w.late(11) == "sample"
    w.checkin("sample", 11)
    w.checkin("zeta", 11)
    assert w.late(11) is None
    assert w.late(22) == "alpha"


def test_watchdog_keeps_its_own_deadlines():
    deadlines = {"sample": 100}
    w = Watchdog(deadlines, 0)
    deadlines["sample"] = 1
    deadlines["other"] = 1
    assert w.late(50) is None


def test_watchdog_rejects_an_unknown_part():
    w = Watchdog({"sample": 100}, 0)
    try:
        w.checkin("sampel", 10)
        raise AssertionError("accepted")
    except ValueError as e:
        assert "sampel" in str(e)
    assert w.late(101) == "sample"  # the typo did not count as a check-in


def test_watchdog_with_no_parts_is_never_late():
    assert Watchdog({}, 0).late(10 ** 9) is None


# ---- BootRecord ----

def test_first_boot_is_a_fresh_start():
    p = _path("boot_first.json")
    r = BootRecord(p)
    assert (r.failed, r.reason, r.safe_mode) == (0, None, False)  # before begin()
    r.begin()
    assert (r.failed, r.reason, r.safe_mode) == (1, None, False)
    # Counted as failed on flash at once: a crash right now must count.
    assert _stored(p) == {"failed": 1, "reason": None}
    assert not exists(p + ".tmp")


def test_three_failed_boots_then_safe_mode():
    p = _path("boot_three.json")
    for n in (1, 2, 3):
        r = _boot(p)
        assert r.failed == n and not r.safe_mode, n
    r = _boot(p)  # three failed boots before this one
    assert r.failed == 4 and r.safe_mode
    assert _stored(p) == {"failed": 4, "reason": None}
    r = _boot(p)  # still safe: only leave_safe_mode() ends it
    assert r.failed == 5 and r.safe_mode


def test_max_failed_sets_the_streak():
    p = _path("boot_max.json")
    assert not _boot(p, 1).safe_mode
    assert _boot(p, 1).safe_mode
    p = _path("boot_max5.json")
    for n in range(5):
        assert not _boot(p, 5).safe_mode, n
    assert _boot(p, 5).safe_mode


def test_stable_ends_the_streak():
    p = _path("boot_stable.json")
    _boot(p)
    _boot(p)
    r = _boot(p)
    assert r.failed == 3
    r.stable()
    assert r.failed == 0 and not r.safe_mode
    assert _stored(p) == {"failed": 0, "reason": None}
    r.stable()  # a second call changes nothing
    assert _stored(p) == {"failed": 0, "reason": None}
    r = _boot(p)
    assert r.failed == 1 and not r.safe_mode


def test_boots_stopped_at_the_console_are_not_failures():
    p = _path("boot_console.json")
    for _ in range(5):  # five deploys in a row, each stopping the node soon after it booted
        r = _boot(p)
        r.interrupted()
    r = _boot(p)
    assert r.failed == 1 and not r.safe_mode and r.reason == "stopped at the console"
    _boot(p)  # a crash, then a boot stopped at the console: the crash still counts
    r = _boot(p)
    r.interrupted()
    assert _stored(p) == {"failed": 2, "reason": "stopped at the console"}


def test_stable_in_safe_mode_changes_nothing():
    p = _path("boot_safe_stable.json")
    for _ in range(3):
        _boot(p)
    r = _boot(p)
    assert r.safe_mode
    r.stable()
    assert r.failed == 4 and r.safe_mode
    assert _stored(p) == {"failed": 4, "reason": None}
    assert _boot(p).safe_mode


def test_ending_reason_reaches_the_next_boot_only():
    p = _path("boot_reason.json")
    r = _boot(p)
    r.stable()
    r.ending("watchdog: sample")
    assert r.reason is None  # reason is about the previous run
    assert _stored(p) == {"failed": 0, "reason": "watchdog: sample"}
    r = _boot(p)
    assert r.reason == "watchdog: sample" and r.failed == 1
    # Cleared on flash at once: a power cut now must not repeat the old reason.
    assert _stored(p) == {"failed": 1, "reason": None}
    r = _boot(p)
    assert r.reason is None and r.failed == 2


def test_ending_keeps_the_failure_count():
    p = _path("boot_ending_count.json")
    _boot(p)
    r = _boot(p)
    r.ending("crash: OSError(5)")  # before stable(): this boot failed too
    assert _stored(p) == {"failed": 2, "reason": "crash: OSError(5)"}
    r = _boot(p)
    assert r.failed == 3 and r.reason == "crash: OSError(5)"
    r.stable()
    r.ending("command: reboot")
    r = _boot(p)
    assert r.failed == 1 and r.reason == "command: reboot"


def test_ending_reason_is_one_short_line():
    p = _path("boot_long.json")
    r = _boot(p)
    r.ending("crash: ValueError('a\nb\r\nc')")
    assert _stored(p)["reason"] == "crash: ValueError('a b  c')"
    r.ending("x" * 500)
    stored = _stored(p)["reason"]
    assert len(stored) == 120 and stored.endswith("...") and stored[:117] == "x" * 117
    r.ending(OSError(28))  # anything is turned into text
    assert type(_stored(p)["reason"]) is str
    r.ending("")  # status needs a non-empty line
    assert _stored(p)["reason"] == "unknown"


def test_a_stored_reason_is_made_one_line():
    p = _path("boot_hand.json")
    _write(p, '{"failed": 0, "reason": "two\\nlines"}')  # written by hand, or by an older version
    assert _boot(p).reason == "two lines"
    _write(p, '{"failed": 0, "reason": ""}')
    assert _boot(p).reason == "unknown"


def test_leave_safe_mode():
    p = _path("boot_resume.json")
    for _ in range(3):
        r = _boot(p)
        r.ending("crash: boom")
    r = _boot(p)
    assert r.safe_mode and r.reason == "crash: boom"
    r.leave_safe_mode()
    assert r.failed == 0 and not r.safe_mode
    assert _stored(p) == {"failed": 0, "reason": "resume"}
    r = _boot(p)
    assert (r.failed, r.reason, r.safe_mode) == (1, "resume", False)


def test_leave_safe_mode_then_a_planned_restart():
    p = _path("boot_resume_restart.json")
    for _ in range(4):
        r = _boot(p)
    r.leave_safe_mode()
    r.ending("safe mode: held 600 s")  # the count stays cleared
    r = _boot(p)
    assert (r.failed, r.reason, r.safe_mode) == (1, "safe mode: held 600 s", False)


def test_bad_files_read_as_a_fresh_start():
    p = _path("boot_bad.json")
    bad = ("", "{", '{"failed": 2, "reason": nul', "null", "[1, 2]", "3", '"x"',
           '{"failed": 2}', '{"reason": "x"}', '{"failed": "2", "reason": null}',
           '{"failed": 2.0, "reason": null}', '{"failed": true, "reason": null}',
           '{"failed": -1, "reason": null}', '{"failed": 2, "reason": 5}',
           '{"failed": 2, "reason": ["x"]}', b"\xff\xfe\x00{", "[" * 5000)
    for text in bad:
        _write(p, text)
        r = _boot(p)
        assert (r.failed, r.reason, r.safe_mode) == (1, None, False), text
        assert _stored(p) == {"failed": 1, "reason": None}, text  # and the file is repaired


def test_extra_keys_are_ignored():
    p = _path("boot_extra.json")
    _write(p, '{"failed": 3, "reason": "x", "later": 1}')
    r = _boot(p)
    assert (r.failed, r.reason, r.safe_mode) == (4, "x", True)


def test_unwritable_record_never_raises():
    p = _path("boot_dir.json")
    os.mkdir(p)  # neither readable as JSON nor replaceable
    try:
        r = _boot(p)
        assert (r.failed, r.reason, r.safe_mode) == (1, None, False)
        r.ending("crash: x")
        r.stable()
        r.leave_safe_mode()
        assert r.failed == 0
    finally:
        os.rmdir(p)
