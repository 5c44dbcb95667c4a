"""The fleet monitor against 50 simulated boards on a real mosquitto: offline and online within the
promised time with one alert each, every telemetry record stored exactly once, and two monitors
splitting the fleet through a shared subscription.
"""

import sqlite3
import time

import pytest

from floorwatch.fleet.monitor import Monitor
from floorwatch.observer import Observer
from floorwatch.sim.fleet import Fleet

pytestmark = pytest.mark.broker

KEEPALIVE_S = 15  # the simulated fleet's broker.keepalive_s
DEADLINE_S = 1.5 * KEEPALIVE_S + 5  # issue 6: offline within 1.5 x keepalive + 5 s
INTERVALS = {"temp_s": 5, "vib_s": 10, "diag_s": 30}
# Every node publishes at least every temp_s (2.5 s of wall time at speed 2). mosquitto alone
# gives up on a silent client 1.5 x keepalive after its last packet, checking only every 5 s (the
# promise's + 5 s), so it can land within a hair of the bound; the monitor's heartbeat catches the
# silent node well before.
HEARTBEAT_S = 15


def stored(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT device, boot, seq FROM records").fetchall()


def wait(predicate, timeout, step=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.fixture
def fleet(fresh_broker, tmp_path):
    fleet = Fleet(50, fresh_broker.host, fresh_broker.port, site="big", workdir=tmp_path / "boards",
                  intervals=INTERVALS, speed=2)
    yield fleet
    fleet.close()


def test_fifty_boards_three_stop_and_come_back(fleet, fresh_broker, tmp_path):
    alerts = []
    db = tmp_path / "fleet.db"
    with Observer(fresh_broker.host, fresh_broker.port, site="big") as witness, \
            Monitor(fresh_broker.host, fresh_broker.port, db=db, on_alert=alerts.append, heartbeat_s=HEARTBEAT_S) as monitor:
        fleet.start()
        assert wait(lambda: monitor.state.summary()["online"] == 50, 90), monitor.state.summary()
        assert not [a for a in alerts if a["kind"] in ("offline", "online")]  # first sight is no alert

        # Two lose power (their connections close), one goes silent: its traffic vanishes and only
        # the broker's keepalive can tell (the Last Will after 1.5 x keepalive).
        cut, silent = fleet.boards[:2], fleet.boards[2]
        stopped_at = time.monotonic()
        for board in cut:
            board.power_off()
        silent.broker_unreachable(True)
        ids = {board.device_id for board in (*cut, silent)}
        offline = lambda: {d.device_id for d in monitor.state.devices() if not d.online}
        alerted = lambda: sorted(a["device"] for a in alerts if a["kind"] == "offline")
        assert wait(lambda: alerted() == sorted(ids), DEADLINE_S + 2), alerted()  # one alert each
        took = time.monotonic() - stopped_at
        assert took <= DEADLINE_S, took
        assert offline() == ids
        went = [a for a in alerts if a["kind"] == "offline"]
        assert all("last will" in a["text"] for a in went if a["device"] != silent.device_id)
        time.sleep(DEADLINE_S - took + 1)  # the silent node's Last Will comes too: still one alert
        assert len([a for a in alerts if a["kind"] == "offline"]) == 3
        assert monitor.state.summary()["online"] == 47

        for board in cut:
            board.power_on()
        silent.broker_unreachable(False)
        back = lambda: sorted(a["device"] for a in alerts if a["kind"] == "online")
        assert wait(lambda: back() == sorted(ids), 60), back()
        assert wait(lambda: monitor.state.summary()["online"] == 50, 5), offline()
        time.sleep(1.5)  # the last records' commit
        seen = {(device, boot, seq) for device, view in witness.devices.items() for boot, seq in view.records}
    rows = stored(db)
    assert len(rows) == len(set(rows))  # each record once, however often it arrived
    assert set(rows) == seen


def test_two_monitors_share_the_fleet_and_store_every_record_once(fresh_broker, tmp_path):
    fleet = Fleet(6, fresh_broker.host, fresh_broker.port, site="shared", workdir=tmp_path / "boards",
                  intervals={"temp_s": 1, "vib_s": 2, "diag_s": 10}, speed=2)
    dbs = [tmp_path / "a.db", tmp_path / "b.db"]
    try:
        with Observer(fresh_broker.host, fresh_broker.port, site="shared") as witness, \
                Monitor(fresh_broker.host, fresh_broker.port, db=dbs[0], share="floor") as first, \
                Monitor(fresh_broker.host, fresh_broker.port, db=dbs[1], share="floor") as second:
            fleet.start()
            assert wait(lambda: sum(len(v.records) for v in witness.devices.values()) >= 120, 60)
            fleet.stop()
            time.sleep(1.5)  # in flight, then the last commit
            seen = {(device, boot, seq) for device, view in witness.devices.items() for boot, seq in view.records}
    finally:
        fleet.close()
    a, b = (set(stored(db)) for db in dbs)
    assert a and b, "one monitor got nothing: the broker did not share"
    assert not a & b  # no record stored by both
    assert a | b == seen
