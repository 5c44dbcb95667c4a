"""Store: records kept once per (device, boot, seq), events and device states kept, batched commits."""

import sqlite3

import pytest

from floorwatch import contract
from floorwatch.fleet.store import Store, StoreError


def telemetry(seq, n=2, boot=7, t0=1767225000000):
    body = {"boot": boot, "seq": seq, "n": n, "cols": {"t": ["chip"], "v": []},
            "r": [[1000 * (seq + i), [38.0 + i]] for i in range(n)]}
    if t0 is not None:
        body["t0"] = t0
    return contract.validate("telemetry", body)


def test_a_record_is_stored_once_however_often_it_arrives(tmp_path):
    with Store(tmp_path / "f.db") as store:
        assert store.add_telemetry("plant-a", "press-7", telemetry(0)) == 2
        assert store.add_telemetry("plant-a", "press-7", telemetry(0)) == 0
        assert store.add_telemetry("plant-a", "press-7", telemetry(1)) == 1  # seq 1 again, seq 2 new
        assert store.add_telemetry("plant-a", "press-7", telemetry(0, boot=8, t0=None)) == 2
        store.commit()
        got = [(d, b, s, up, t_ms) for d, _site, b, s, up, t_ms, _rec in store.records()]
        stored = [rec for *_, rec in store.records(device="press-7")]
    # The record is kept in the host's view (contract.records), not as the node's positional array.
    assert stored[:2] == [{"up": 0, "t": {"chip": 38.0}}, {"up": 1000, "t": {"chip": 39.0}}]
    assert got == [("press-7", 7, 0, 0, 1767225000000), ("press-7", 7, 1, 1000, 1767225001000),
                   ("press-7", 7, 2, 2000, 1767225002000), ("press-7", 8, 0, 0, None), ("press-7", 8, 1, 1000, None)]


def test_records_filter_by_device_and_time_and_page_through_chunks(tmp_path):
    with Store(tmp_path / "f.db") as store:
        for seq in range(0, 20, 2):
            store.add_telemetry("plant-a", "a", telemetry(seq))
            store.add_telemetry("plant-a", "b", telemetry(seq))
        store.add_telemetry("plant-a", "c", telemetry(0, t0=None))
        assert [r[3] for r in store.records(device="b", chunk=3)] == list(range(20))
        assert {r[0] for r in store.records(chunk=7)} == {"a", "b", "c"}
        assert len(list(store.records(chunk=7))) == 42
        since = [(r[0], r[3]) for r in store.records(since_ms=1767225018000, chunk=1)]
        assert since == [("a", 18), ("a", 19), ("b", 18), ("b", 19)]  # c has no wall time


def test_writes_wait_for_a_commit_and_maybe_commit_batches(tmp_path):
    path = tmp_path / "f.db"
    store = Store(path)

    def visible():
        return sqlite3.connect(path).execute("SELECT COUNT(*) FROM records").fetchone()[0]

    store.add_telemetry("plant-a", "press-7", telemetry(0))
    assert store.maybe_commit(100.0, every=3, seconds=5) is False and visible() == 0
    store.add_telemetry("plant-a", "press-7", telemetry(2))
    assert store.maybe_commit(100.5, every=3, seconds=5) is True and visible() == 4
    store.add_telemetry("plant-a", "press-7", telemetry(4, n=1))
    assert store.maybe_commit(104.0, every=3, seconds=5) is False
    assert store.maybe_commit(105.5, every=3, seconds=5) is True and visible() == 5
    assert store.maybe_commit(200.0, every=3, seconds=5) is False  # nothing waiting
    store.close()


def test_events_and_device_states_are_kept(tmp_path):
    alert = {"time": 10.0, "device": "press-7", "site": "plant-a", "kind": "offline",
             "text": "press-7 offline (last will)", "detail": {}}
    with Store(tmp_path / "f.db") as store:
        store.add_event(alert)
        store.add_event(dict(alert, time=20.0, device="press-8", kind="online"))
        store.save_device({"device_id": "press-7", "site": "plant-a", "state": "online"})
        store.save_device({"device_id": "press-7", "site": "plant-a", "state": "offline"})
    with Store(tmp_path / "f.db", readonly=True) as store:
        assert store.events() == [alert, dict(alert, time=20.0, device="press-8", kind="online")]
        assert [e["time"] for e in store.events(since=15)] == [20.0]
        assert [e["device"] for e in store.events(device="press-7")] == ["press-7"]
        assert store.devices() == [{"device_id": "press-7", "site": "plant-a", "state": "offline"}]


def test_a_file_that_is_no_store_is_a_one_line_error(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_text("not a database at all\n" * 100)
    with pytest.raises(StoreError, match=r"junk\.db: not a usable fleet store") as exc:
        Store(junk, readonly=True)
    assert "\n" not in str(exc.value)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(StoreError, match="no such table"):
        Store(empty, readonly=True)
