"""The fleet dashboard, from DeviceState.as_dict()-style dicts, rendered to text as a terminal would."""

import io
import threading

import pytest
from rich.console import Console

from floorwatch.fleet import dashboard

NOW = 1714557600.0


def device(device_id, **fields):
    d = {"device_id": device_id, "site": "plant-a", "state": "online", "online": True, "last_seen": NOW - 5,
         "fw": "0.1.0", "board": "esp32-devkitc", "ip": "10.0.0.10", "rssi": -60, "heap_free": 90000,
         "health": "ok", "alarms": {}, "queued": 0, "dropped": 0, "boot": 3, "reset": "power_on"}
    d.update(fields)
    return d


FLEET = [
    device("node-03", site="plant-b", ip="10.0.0.9", rssi=-81, heap_free=15000, health="degraded", queued=12),
    device("node-01", alarms={"bearing": "warning", "temp": "ok"}),
    device("node-02", state="offline", online=False, last_seen=NOW - 4000, ip="10.0.0.100", rssi=None,
           dropped=7),
    device("pump-11", site="plant-b", state="safe_mode", last_seen=None, fw=None, ip=None,
           alarms={"temp": "alarm"}, health="fault"),
]
SUMMARY = {"total": 4, "online": 3, "offline": 1, "alarming": 2}


def text_of(renderable):
    out = io.StringIO()
    Console(file=out, width=250, color_system=None).print(renderable)
    return out.getvalue()


def rows(text):
    """The device ids in the table's rows, top to bottom."""
    return [line.split("│")[1].strip() for line in text.splitlines()
            if line.startswith("│") and line.split("│")[1].strip() not in ("", "device")]


def shown(sort="device", filter=None, devices=FLEET):
    return rows(text_of(dashboard.render(devices, SUMMARY, sort, filter, now=NOW)))


def test_table_has_every_column_and_the_summary_line():
    text = text_of(dashboard.render(FLEET, SUMMARY, now=NOW))
    assert text.splitlines()[0] == "4 devices: 3 online, 1 offline, 2 alarming"
    header = next(line for line in text.splitlines() if line.startswith("┃"))
    cells = [cell.strip() for cell in header.split("┃")[1:-1]]
    assert cells == ["device", "site", "state", "last seen", "fw", "board", "ip", "rssi", "heap", "health",
                     "alarms", "queued", "dropped"]
    line = {row.split("│")[1].strip(): [c.strip() for c in row.split("│")[1:-1]]
            for row in text.splitlines() if row.startswith("│")}
    assert line["node-01"] == ["node-01", "plant-a", "online", "5s ago", "0.1.0", "esp32-devkitc", "10.0.0.10",
                               "-60", "90000", "ok", "bearing:warning", "0", "0"]
    assert line["node-02"][2:4] == ["offline", "1h06m ago"] and line["node-02"][7] == "-"
    assert line["node-02"][10] == "-"  # no alarm above ok
    assert line["pump-11"][3:5] == ["never", "-"] and line["pump-11"][10] == "temp:alarm"


def test_device_state_objects_are_read_through_as_dict():
    class State:
        def __init__(self, d):
            self.d = d

        def as_dict(self):
            return self.d

    assert shown(devices=[State(d) for d in FLEET]) == ["node-01", "node-02", "node-03", "pump-11"]


@pytest.mark.parametrize("sort, order", [
    ("device", ["node-01", "node-02", "node-03", "pump-11"]),
    ("-device", ["pump-11", "node-03", "node-02", "node-01"]),
    ("site", ["node-01", "node-02", "node-03", "pump-11"]),  # ties keep device order
    ("rssi", ["node-03", "node-01", "pump-11", "node-02"]),  # unknown last
    ("-rssi", ["node-01", "pump-11", "node-03", "node-02"]),  # unknown last, descending too
    ("ip", ["node-03", "node-01", "node-02", "pump-11"]),  # as addresses: .9 < .10 < .100
    ("last seen", ["node-01", "node-03", "node-02", "pump-11"]),  # freshest first, never seen last
    ("Heap-Free", ["node-03", "node-01", "node-02", "pump-11"]),
    ("-alarms", ["node-01", "pump-11", "node-02", "node-03"]),
    ("-queued", ["node-03", "node-01", "node-02", "pump-11"]),
])
def test_sort_by_any_column(sort, order):
    assert shown(sort=sort) == order


@pytest.mark.parametrize("expr, ids", [
    ("state=offline", ["node-02"]),
    ("offline", ["node-02"]),
    ("site=plant-b", ["node-03", "pump-11"]),
    ("site = PLANT-*", ["node-01", "node-02", "node-03", "pump-11"]),
    ("health!=ok", ["node-03", "pump-11"]),
    ("alarming", ["node-01", "pump-11"]),
    ("pump", ["pump-11"]),
    ("rssi<-70", ["node-03"]),
    ("rssi!=-60", ["node-02", "node-03"]),  # unknown rssi is not -60
    ("last_seen>300", ["node-02"]),
    ("fw=", ["pump-11"]),
    ("site=plant-b,alarming", ["pump-11"]),
    ("site=plant-a node", ["node-01", "node-02"]),
    ("dropped>0 heap>=20000", ["node-02"]),
    ("", ["node-01", "node-02", "node-03", "pump-11"]),
])
def test_filter(expr, ids):
    assert shown(filter=expr) == ids


def test_a_filter_says_how_many_it_shows():
    text = text_of(dashboard.render(FLEET, SUMMARY, filter="alarming", now=NOW))
    assert text.splitlines()[0] == "4 devices: 3 online, 1 offline, 2 alarming (showing 2)"


@pytest.mark.parametrize("sort, expr, why", [
    ("colour", None, "unknown column 'colour'"),
    ("-", None, "unknown column ''"),
    ("device", "colour=red", "unknown column 'colour'"),
    ("device", "rssi<strong", "rssi takes a number"),
    ("device", "site>plant", "site is text"),
    ("device", "rssi<", "needs a value"),
])
def test_bad_sort_or_filter_is_a_one_line_value_error(sort, expr, why):
    with pytest.raises(ValueError) as error:
        dashboard.render(FLEET, SUMMARY, sort, expr)
    assert why in str(error.value) and "\n" not in str(error.value)


def test_cells_are_text_not_markup():
    text = text_of(dashboard.render([device("[red]x[/red]", fw="[/]")], SUMMARY, now=NOW))
    assert "[red]x[/red]" in text and "[/]" in text


def test_run_dashboard_redraws_until_stopped():
    stop, calls = threading.Event(), []

    def get_snapshot():
        calls.append(1)
        if len(calls) == 3:
            stop.set()
        devices = [device("node-%02d" % n, last_seen=None) for n in range(len(calls))]
        return devices, dict(SUMMARY, total=len(devices))

    out = io.StringIO()
    dashboard.run_dashboard(get_snapshot, "-device", None, refresh_s=0.01, stop_event=stop,
                            console=Console(file=out, width=250, color_system=None))
    assert len(calls) == 4  # the first frame, two redraws, the last frame after the stop
    assert rows(out.getvalue())[-4:] == ["node-03", "node-02", "node-01", "node-00"]


def test_run_dashboard_rejects_a_bad_filter_before_drawing():
    out = io.StringIO()
    with pytest.raises(ValueError, match="unknown column"):
        dashboard.run_dashboard(lambda: ([], SUMMARY), "device", "colour=red", stop_event=threading.Event(),
                                console=Console(file=out))
    assert out.getvalue() == ""
