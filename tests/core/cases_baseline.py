"""Cases for node.baseline; MicroPython subset (run on CPython and in the VM)."""
import json

from node.baseline import Baseline


def _close(a, b):
    return a is not None and abs(a - b) < 1e-9


def test_learns_the_mean_of_the_first_samples():
    b = Baseline(4)
    assert not b.learning() and b.value("m") is None
    assert [b.add("m", v) for v in (1, 2, 3)] == [False, False, False]
    assert b.learning() and b.value("m") is None
    assert b.add("m", 6) is True  # this one completed it
    assert _close(b.value("m"), 3.0) and not b.learning()
    assert b.add("m", 1000) is False  # later readings change nothing
    assert _close(b.value("m"), 3.0)


def test_metrics_learn_independently():
    b = Baseline(2)
    b.add("a", 10)
    b.add("b", 1)
    assert b.add("a", 20) is True
    assert _close(b.value("a"), 15) and b.value("b") is None
    assert b.learning()  # b still is
    assert b.add("b", 2) is True and not b.learning()
    assert b.value("never") is None


def test_failed_reads_are_skipped():
    b = Baseline(2)
    for v in (None, float("nan"), float("inf"), -float("inf")):
        assert b.add("m", v) is False
    assert not b.learning() and b.to_dict() == {}
    b.add("m", 4)
    b.add("m", None)
    assert b.add("m", 6) is True and _close(b.value("m"), 5)


def test_running_mean_in_float32_range():
    b = Baseline(1000)
    for k in range(1000):
        b.add("t", 85.0 + (k % 10) / 10)  # 85.0 .. 85.9: mean 85.45
    assert abs(b.value("t") - 85.45) < 1e-6, b.value("t")


def test_one_sample():
    b = Baseline(1)
    assert b.add("m", 2.5) is True and b.value("m") == 2.5


def test_restart_all_or_some():
    b = Baseline(2)
    for m in ("a", "b", "c"):
        b.add(m, 1)
        b.add(m, 3)
    b.restart(["a", "nosuch"])
    assert b.value("a") is None and _close(b.value("b"), 2) and b.learning()
    assert b.to_dict()["a"] == [0, 0.0] and "nosuch" not in b.to_dict()
    b.add("a", 10)
    assert b.add("a", 20) is True and _close(b.value("a"), 15) and not b.learning()
    b.restart("b")  # one name on its own, not its letters
    assert b.value("b") is None and _close(b.value("c"), 2)
    b.restart()
    assert b.learning()
    for m in ("a", "b", "c"):
        assert b.value(m) is None
    b.add("c", 7)
    assert b.add("c", 9) is True and _close(b.value("c"), 8)


def test_round_trip_through_json():
    b = Baseline(3)
    for v in (1.5, 2.5, 3.5):
        b.add("done", v)
    b.add("half", 10)
    d = b.to_dict()
    assert d == {"done": [3, 2.5], "half": [1, 10.0]}
    back = Baseline(3, json.loads(json.dumps(d)))
    assert back.to_dict() == d
    assert _close(back.value("done"), 2.5) and back.value("half") is None and back.learning()
    assert back.add("half", 20) is False and back.add("half", 30) is True
    assert _close(back.value("half"), 20)
    d["done"][0] = 99
    assert back.to_dict()["done"][0] == 3  # to_dict is a copy


def test_restored_with_another_sample_count():
    stored = {"a": [20, 5], "b": [10, 7.5]}  # a mean that JSON gave back as an int
    b = Baseline(15, stored)
    assert b.value("a") == 5.0 and b.value("b") is None and b.learning()
    assert Baseline(10, stored).value("b") == 7.5


def test_bad_input_is_refused():
    for samples in (0, -1, 2.5, True, None):
        try:
            Baseline(samples)
        except ValueError as e:
            assert "samples" in str(e), str(e)
        else:
            raise AssertionError("accepted samples %r" % (samples,))
    for entry in ([1], [1.5, 2.0], [-1, 2.0], [True, 2.0], [1, "x"], [1, None], (1, 2.0), 3,
                  [1, float("nan")]):
        try:
            Baseline(5, {"m": entry})
        except ValueError as e:
            assert "m" in str(e) and "[count, mean]" in str(e), str(e)
        else:
            raise AssertionError("accepted %r" % (entry,))
    assert Baseline(5, None).to_dict() == {} and Baseline(5, {}).to_dict() == {}
