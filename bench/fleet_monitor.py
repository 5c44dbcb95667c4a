"""How fast the fleet monitor stores telemetry, beside a bare paho-mqtt subscriber, from one stream.

Issue 6's target: the monitor stores at least half as many records per second as a bare
subscriber drains. Both sessions are persistent and subscribed before a burst of telemetry is
published (200 devices, 8 records a message, as nodes send after an outage), so the broker holds
the same stream queued for each; each then connects and is timed from its first message to its
last. The bare subscriber only counts messages; the monitor validates each against the contract,
updates the fleet state and stores every record in SQLite (de-duplicated, batched commits).

    .venv/bin/python bench/fleet_monitor.py [--messages 20000]

Prints the figures and writes bench/results/fleet-monitor.json.
"""

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from floorwatch.broker import Mosquitto
from floorwatch.fleet.monitor import Monitor

RESULTS = Path(__file__).resolve().parent / "results" / "fleet-monitor.json"
DEVICES = 200
PER_MESSAGE = 8


COLS = {"t": ["bearing", "winding", "chip"], "v": ["motor"]}
# rms x,y,z, pk x,y,z (mg), kurt x,y,z, vel x,y,z (mm/s), zone: a feature set as docs/contract.md lays it out
FEATURES = [12.0, 11.0, 31.0, 41.0, 39.0, 101.0, 3.05, 2.98, 3.21, 0.81, 0.77, 1.12, "A"]


def telemetry(seq):
    """A telemetry v2 message (docs/contract.md) of PER_MESSAGE records with temperatures and vibration."""
    records = [[1000 * (seq + i), [41.25, 55.0, 38.0], [FEATURES]] for i in range(PER_MESSAGE)]
    return json.dumps({"boot": 1, "seq": seq, "n": PER_MESSAGE, "t0": 1767225600000, "cols": COLS, "r": records},
                      separators=(",", ":"))


def client(client_id, on_message=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                    protocol=mqtt.MQTTv311)
    if on_message:
        c.on_message = on_message
    return c


def prime(broker, ids):
    """Create each persistent session with its subscription, then leave."""
    for client_id in ids:
        c = client(client_id)
        c.connect(broker.host, broker.port)
        c.loop_start()
        c.subscribe("floorwatch/+/+/+", qos=1)
        time.sleep(0.3)  # the SUBACK
        c.disconnect()
        c.loop_stop()


def publish(broker, messages):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher", protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.connect(broker.host, broker.port)
    c.loop_start()
    last = None
    for n in range(messages):
        device = n % DEVICES
        last = c.publish("floorwatch/bench/dev-%03d/telemetry" % device, telemetry((n // DEVICES) * PER_MESSAGE), qos=1)
    last.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()


def drain_bare(broker, messages):
    done, times = threading.Event(), []

    def on_message(c, userdata, message):
        times.append(time.monotonic())
        if len(times) == messages:
            done.set()
    c = client("bench-bare", on_message)
    c.connect(broker.host, broker.port)
    c.loop_start()
    done.wait(300)
    c.disconnect()
    c.loop_stop()
    return len(times) * PER_MESSAGE, times[-1] - times[0]


def drain_monitor(broker, messages, db):
    monitor = Monitor(broker.host, broker.port, db=db, session="bench-monitor")
    monitor.start()
    while not monitor.stats["messages"]:
        time.sleep(0.001)
    started = time.monotonic()
    while monitor.stats["messages"] < messages:
        time.sleep(0.02)  # coarse: a busy poll here would take the interpreter lock from the monitor
    finished = time.monotonic()
    monitor.stop()
    return monitor.stats["records"], finished - started, monitor.stats["violations"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(persistent=True) as broker:
        prime(broker, ["bench-bare", "bench-monitor"])
        publish(broker, args.messages)
        bare_records, bare_s = drain_bare(broker, args.messages)
        records, monitor_s, violations = drain_monitor(broker, args.messages, Path(tmp) / "fleet.db")
    bare_rate, rate = bare_records / bare_s, records / monitor_s
    report = {"messages": args.messages, "records_per_message": PER_MESSAGE, "devices": DEVICES,
              "cpus": os.cpu_count(), "bare_records_per_s": round(bare_rate), "monitor_records_per_s": round(rate),
              "monitor_stored": records, "violations": violations, "ratio": round(rate / bare_rate, 3),
              "target_ratio": 0.5, "met": rate >= 0.5 * bare_rate}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print("bare subscriber: %d records/s; monitor (validate, state, SQLite): %d records/s stored = %.2f of it "
          "(target >= 0.5: %s); %d records stored, %d contract violations"
          % (bare_rate, rate, rate / bare_rate, "met" if report["met"] else "NOT met", records, violations))


if __name__ == "__main__":
    main()
