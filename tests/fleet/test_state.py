"""FleetState: what each message kind changes, and which transitions alert (docs/contract.md)."""

import threading

from floorwatch import contract
from floorwatch.fleet.state import FleetState

SITE, DEV = "plant-a", "press-7"


def status(state="online", boot=7, ip="10.0.0.23", health="ok", **extra):
    if state == "offline":
        return contract.validate("status", {"state": "offline", "fw": "0.1.0", "boot": boot})
    body = {"state": state, "fw": "0.1.0", "boot": boot, "reset": "power_on", "ip": ip, "health": health,
            "config_error": None, **extra}
    if state == "safe_mode":
        body.setdefault("safe", "3 failed boots in a row")
    return contract.validate("status", body)


def diag(health="ok", boot=7, problems=(), queue=None, rssi=-61, heap_free=61234):
    body = {"up": 612000, "fw": "0.1.0", "boot": boot, "reset": "power_on", "health": health,
            "problems": list(problems) or ([] if health == "ok" else ["chip: failing"]), "heap_free": heap_free, "rssi": rssi, "mqtt_reconnects": 0,
            "wifi_reconnects": 0, "config_error": None, "synced": True, "failed_boots": 0, "sensors": {}}
    if queue:
        body["queue"] = queue
    return contract.validate("diag", body)


def alarm(active, event="state", **event_part):
    body = {"event": event, "up": 612000, "boot": 7, **event_part,
            "active": {m: {"level": lvl, "acked": False} for m, lvl in active.items()}}
    return contract.validate("alarm", body)


TELEMETRY = contract.validate("telemetry", {"boot": 7, "seq": 0, "n": 1, "cols": {"t": ["chip"], "v": []},
                                            "r": [[10, [38.0]]]})


def kinds(alerts):
    return [a["kind"] for a in alerts]


def online_fleet(now=1000.0):
    fleet = FleetState(heartbeat_s=90)
    assert fleet.update(SITE, DEV, "status", status(), now) == []  # first sight of an online device: quiet
    return fleet


def test_first_sight_online_is_quiet_and_fills_the_state():
    fleet = online_fleet()
    (dev,) = fleet.devices()
    assert (dev.device_id, dev.site, dev.state, dev.online, dev.ip, dev.boot, dev.fw, dev.health, dev.reset) == \
        (DEV, SITE, "online", True, "10.0.0.23", 7, "0.1.0", "ok", "power_on")
    assert dev.last_seen == 1000.0
    assert fleet.summary() == {"total": 1, "online": 1, "offline": 0, "alarming": 0}


def test_last_will_then_heartbeat_gives_one_offline_alert_and_return_is_online():
    fleet = online_fleet()
    alerts = fleet.update(SITE, DEV, "status", status("offline"), 1010.0)
    assert kinds(alerts) == ["offline"]
    assert alerts[0]["text"] == "press-7 offline (last will)"
    assert {k: alerts[0][k] for k in ("time", "device", "site")} == {"time": 1010.0, "device": DEV, "site": SITE}
    assert fleet.tick(1200.0) == []  # the same outage: no second alert
    assert fleet.summary()["offline"] == 1
    alerts = fleet.update(SITE, DEV, "status", status(boot=8), 1300.0)
    assert kinds(alerts) == ["online"]
    assert fleet.devices()[0].boot == 8


def test_heartbeat_marks_a_silent_device_offline_once_and_any_message_brings_it_back():
    fleet = online_fleet()
    assert fleet.tick(1090.0) == []  # exactly heartbeat_s: not yet
    alerts = fleet.tick(1095.0)
    assert kinds(alerts) == ["offline"] and alerts[0]["text"] == "press-7 offline (silent 95 s)"
    assert fleet.tick(1500.0) == []
    assert fleet.update(SITE, DEV, "status", status("offline"), 1600.0) == []  # Will after heartbeat: same outage
    alerts = fleet.update(SITE, DEV, "telemetry", TELEMETRY, 1700.0)
    assert kinds(alerts) == ["online"]
    (dev,) = fleet.devices()
    assert (dev.state, dev.online, dev.last_seen) == ("online", True, 1700.0)  # its last status state


def test_first_sight_of_a_last_will_alerts():
    fleet = FleetState()
    assert kinds(fleet.update(SITE, DEV, "status", status("offline"), 5.0)) == ["offline"]
    assert fleet.summary() == {"total": 1, "online": 0, "offline": 1, "alarming": 0}


def test_a_late_will_from_an_earlier_boot_changes_nothing():
    fleet = online_fleet()
    fleet.update(SITE, DEV, "status", status(boot=8), 1001.0)
    assert fleet.update(SITE, DEV, "status", status("offline", boot=7), 1002.0) == []
    (dev,) = fleet.devices()
    assert (dev.state, dev.boot, dev.last_seen) == ("online", 8, 1002.0)


def test_alarm_raise_and_clear_alert_once_each_with_value_and_limit():
    fleet = online_fleet()
    assert fleet.update(SITE, DEV, "alarm", alarm({}), 1001.0) == []
    raise_ = alarm({"bearing": "warning"}, "raise", metric="bearing", level="warning", prev="ok",
                   value=81.5, limit=80.0, acked=False)
    alerts = fleet.update(SITE, DEV, "alarm", raise_, 1002.0)
    assert kinds(alerts) == ["alarm"]
    assert alerts[0]["text"] == "press-7 bearing warning (value 81.5, limit 80.0)"
    assert alerts[0]["detail"] == {"metric": "bearing", "level": "warning", "prev": "ok", "value": 81.5, "limit": 80.0}
    assert fleet.update(SITE, DEV, "alarm", raise_, 1003.0) == []  # the retained copy again
    assert fleet.summary()["alarming"] == 1 and fleet.devices()[0].alarms == {"bearing": "warning"}
    clear = alarm({}, "clear", metric="bearing", level="ok", prev="warning", value=77.0, limit=80.0, acked=False)
    alerts = fleet.update(SITE, DEV, "alarm", clear, 1004.0)
    assert kinds(alerts) == ["alarm_clear"] and alerts[0]["detail"]["prev"] == "warning"
    assert fleet.summary()["alarming"] == 0


def test_a_standing_alarm_in_the_first_picture_alerts():
    fleet = online_fleet()
    alerts = fleet.update(SITE, DEV, "alarm", alarm({"motor.vel": "alarm"}), 1001.0)
    assert kinds(alerts) == ["alarm"] and alerts[0]["detail"]["metric"] == "motor.vel"


def test_health_alerts_on_change_and_on_recovery():
    fleet = online_fleet()
    alerts = fleet.update(SITE, DEV, "diag", diag("degraded", problems=["winding: not present"]), 1001.0)
    assert kinds(alerts) == ["health"]
    assert alerts[0]["text"] == "press-7 health degraded (winding: not present)"
    assert fleet.update(SITE, DEV, "diag", diag("degraded"), 1002.0) == []
    assert [a["detail"]["health"] for a in fleet.update(SITE, DEV, "diag", diag("fault"), 1003.0)] == ["fault"]
    assert [a["detail"]["health"] for a in fleet.update(SITE, DEV, "status", status(), 1004.0)] == ["ok"]


def test_diag_fills_radio_memory_and_queue():
    fleet = online_fleet()
    fleet.update(SITE, DEV, "diag", diag(queue={"ram": 3, "flash": 40, "dropped": 2}, rssi=-70, heap_free=50000), 1001.0)
    dev = fleet.devices()[0]
    assert (dev.rssi, dev.heap_free, dev.queued, dev.dropped) == (-70, 50000, 43, 2)


def test_changes_of_ip_site_board_and_a_boot_going_back():
    fleet = FleetState()
    fleet.update(SITE, DEV, "status", status(hw="esp32-devkitc"), 1.0)
    alerts = fleet.update(SITE, DEV, "status", status(ip="10.0.0.24", hw="esp32-devkitc"), 2.0)
    assert [a["detail"]["field"] for a in alerts] == ["ip"]
    assert alerts[0]["text"] == "press-7 IP changed 10.0.0.23 -> 10.0.0.24"
    alerts = fleet.update(SITE, DEV, "status", status(ip="10.0.0.24", hw="esp32-s3"), 3.0)
    assert [(a["kind"], a["detail"]["field"]) for a in alerts] == [("changed", "board")]
    alerts = fleet.update("plant-b", DEV, "diag", diag(boot=3), 4.0)
    assert [a["detail"]["field"] for a in alerts] == ["site", "boot"]
    dev = fleet.devices()[0]
    assert (dev.site, dev.boot, dev.board) == ("plant-b", 3, "esp32-s3")


def test_telemetry_and_ack_only_mark_last_seen():
    fleet = online_fleet()
    before = fleet.devices()[0].as_dict()
    ack = contract.validate("ack", {"id": "c-1", "cmd": "ping", "ok": True, "result": {"up": 1, "fw": "0.1.0", "boot": 7}})
    assert fleet.update(SITE, DEV, "ack", ack, 1005.0) == []
    assert fleet.update(SITE, DEV, "telemetry", TELEMETRY, 1006.0) == []
    after = fleet.devices()[0].as_dict()
    assert after.pop("last_seen") == 1006.0 and before.pop("last_seen") == 1000.0
    assert after == before


def test_devices_are_copies_and_updates_from_another_thread_are_safe():
    fleet = online_fleet()
    fleet.devices()[0].alarms["x"] = "alarm"
    assert fleet.summary()["alarming"] == 0

    def writer(site):
        for i in range(100):
            fleet.update(site, f"dev-{i}", "status", status(), 1000.0)
            fleet.update(site, f"dev-{i}", "alarm", alarm({"chip": "warning"}), 1000.0)

    threads = [threading.Thread(target=writer, args=(s,)) for s in ("a", "b")]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        fleet.devices(), fleet.summary(), fleet.tick(1001.0)
    for t in threads:
        t.join()
    assert fleet.summary()["total"] == 101


def test_a_retained_alarm_picture_does_not_bring_an_offline_device_back():
    # On subscribing, the broker hands over the Last Will and then the alarm picture it kept:
    # old news, not a sign of life.
    state = FleetState(heartbeat_s=90)
    state.update("s", "d", "status", {"state": "offline", "fw": "0.1.0", "boot": 3}, 100.0, retained=True)
    alerts = state.update("s", "d", "alarm", {"active": {}}, 100.1, retained=True)
    assert alerts == []
    assert state.devices()[0].state == "offline" and state.summary()["offline"] == 1
    back = state.update("s", "d", "telemetry", {"boot": 4, "seq": 0, "n": 1, "cols": {"t": ["chip"], "v": []},
                                                "r": [[5, [38.0]]]}, 120.0)
    assert [a["kind"] for a in back] == ["online"]  # a live message does
