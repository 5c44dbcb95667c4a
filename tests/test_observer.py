"""Observer: telemetry v2 messages become the per-device view (through contract.records), without a broker.

The paho callback is fed directly; the broker-backed behaviour is covered by tests/integration.
"""

import json
from types import SimpleNamespace

from floorwatch.observer import Observer

COLS = {"t": ["bearing", "winding"], "v": ["motor"]}
FEATURES = [12.0, 11.0, 31.0, 41.0, 39.0, 101.0, 3.05, 2.98, 3.21, 0.81, 0.77, 1.12, "A"]


def deliver(obs, kind, body, device="press-7"):
    message = SimpleNamespace(topic="floorwatch/plant-a/%s/%s" % (device, kind), payload=json.dumps(body).encode())
    obs._on_message(obs.client, None, message)


def test_telemetry_records_fill_the_device_view_in_the_host_units():
    obs = Observer("127.0.0.1", 1, site="plant-a")  # never connected
    deliver(obs, "telemetry", {"boot": 3, "seq": 40, "n": 2, "cols": COLS, "r": [
        [1000, [41.25, 55.0], None, [[0.021, 1.25, 36000]]],
        [2000, [None, 55.5], [FEATURES + [1.04, 0.99, 1.02]]],
    ]})
    assert obs.violations == []
    view = obs.devices["press-7"]
    assert view.records == [(3, 40), (3, 41)] and view.messages == 1
    assert view.temps == {"bearing": 41.25, "winding": 55.5}  # a failed read keeps the last good value
    assert view.trends == {"bearing": {"rate": 0.021, "rise": 1.25, "eta": 36000}}
    assert view.vib["motor"] == {"rms": [0.012, 0.011, 0.031], "pk": [0.041, 0.039, 0.101], "cf": [3.42, 3.55, 3.26],
                                 "kurt": [3.05, 2.98, 3.21], "vel": [0.81, 0.77, 1.12], "zone": "A",
                                 "rel": {"vel": 1.04, "cf": 0.99, "kurt": 1.02}}


def test_a_v1_telemetry_message_is_a_contract_violation_not_a_crash():
    obs = Observer("127.0.0.1", 1, site="plant-a")
    deliver(obs, "telemetry", {"boot": 3, "seq": 0, "n": 1, "r": [{"up": 1000, "t": {"bearing": 41.25}}]})
    assert obs.violations == [("floorwatch/plant-a/press-7/telemetry", "cols: missing (required)")]
    assert "press-7" not in obs.devices
