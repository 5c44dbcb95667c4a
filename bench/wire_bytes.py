"""Bytes on the wire per sample: what a node publishes, beside the same data sent Tasmota-style.

One simulated board runs the real firmware on the virtual clock for `--hours` of board time against
a real mosquitto; a subscriber keeps every PUBLISH it sends. The board has one DS18B20 and one
ADXL345, and takes both every 30 s (the node's default vibration interval), so each sample (each
telemetry record) carries one temperature reading and one vibration feature set. Its other
settings are the node's defaults: records batched for up to intervals.send_s = 300 s (at most 16
per message), diag every 60 s, status and alarms as they come. Only records that arrived count
(a batch still waiting when the run ends is left out of both sides).

Bytes are counted as MQTT 3.1.1 PUBLISH packets, topic included: fixed header (1 byte + the
remaining length's 1-4 bytes), topic length (2) and topic, packet id (2, QoS 1: the node publishes
everything at QoS 1) and payload. TCP/IP and TLS overhead come on top on both sides and are not
counted.

Tasmota-style is built from the very records the node sent (read with floorwatch.contract.records,
without the crest factor the node no longer sends), one JSON SENSOR message per reading, as
Tasmota publishes its sensors (tele/<topic>/SENSOR, QoS 0, `Time` in ISO form, one object per sensor
with a named key per value, `TempUnit`): per sample one DS18B20 message and one message holding the
same vibration values, each axis under its own key named as Tasmota's MPU6050 driver names its
axes (`AccelXAxis`: here `RMSXAxis`, `VelocityZAxis`, ...), and the temperature trend beside its
probe's reading (`Rate`, `Rise`, `Eta`). Numbers keep the node's resolution (rms and peak in g with
4 decimals, as Tasmota sends g), so only the framing differs. Tasmota's periodic STATE message (317 bytes in a real 2024 log, every TelePeriod of
300 s) stands beside the node's diag and status.

    .venv/bin/python bench/wire_bytes.py [--hours 1] [--out bench/results/wire_bytes.json]
"""

import argparse
import json
import platform
import queue
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt

from floorwatch.broker import Mosquitto
from floorwatch.contract import records as read_records
from floorwatch.sim.fleet import Fleet

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.25  # issue 8: at most a quarter of Tasmota-style
SAMPLE_S = 30  # the node's default vib_s; temp_s set to match, so each record holds both
TASMOTA_TOPIC = "tele/tasmota_ABCDEF/SENSOR"  # Tasmota's default topic pattern tasmota_%06X
TASMOTA_STATE_BYTES = 317  # one STATE PUBLISH (docs: real 2024 log), every TelePeriod
TASMOTA_TELEPERIOD_S = 300
AXES = "XYZ"
# Our feature keys and the names a Tasmota driver would give them.
FEATURE_NAMES = {"rms": "RMS", "pk": "Peak", "kurt": "Kurtosis", "vel": "Velocity"}
REL_NAMES = {"vel": "Velocity", "cf": "Crest", "kurt": "Kurtosis"}
TREND_NAMES = {"rate": "Rate", "rise": "Rise", "eta": "Eta"}


def publish_bytes(topic, payload, qos):
    """Size of one MQTT 3.1.1 PUBLISH packet."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + len(payload)
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16384 else 3 if remaining < 2097152 else 4
    return 1 + length_bytes + remaining


def _number(value):
    return json.dumps(value)


def tasmota_messages(record, t0_ms, roms):
    """The Tasmota-style SENSOR payloads for one of our records: one per reading."""
    when = datetime.fromtimestamp((t0_ms + record["up"]) / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    out = []
    temps = record.get("t") or {}
    trends = record.get("dt") or {}
    if temps:
        sensors = {}
        for index, (name, value) in enumerate(sorted(temps.items())):
            key = "DS18B20" if len(temps) == 1 else "DS18B20-%d" % (index + 1)
            sensors[key] = {"Id": roms.get(name, "000000000000"), "Temperature": value}
            sensors[key].update({TREND_NAMES[k]: v for k, v in trends.get(name, {}).items()})
        out.append(json.dumps({"Time": when, **sensors, "TempUnit": "C"}, separators=(",", ":")))
    for name, features in sorted((record.get("v") or {}).items()):
        values = {}
        for key, label in FEATURE_NAMES.items():
            for axis, value in zip(AXES, features[key]):
                values[label + axis + "Axis"] = value
        values["Zone"] = features["zone"]
        for key, value in (features.get("rel") or {}).items():
            values["Rel" + REL_NAMES[key]] = value
        out.append(json.dumps({"Time": when, "ADXL345": values}, separators=(",", ":")))
    return out


def run(hours):
    """Every PUBLISH the board sent in `hours` of board time: [(topic, payload bytes, retain)]."""
    seen = queue.Queue()
    with Mosquitto() as broker:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        client.on_message = lambda c, u, msg: seen.put((msg.topic, msg.payload, msg.retain))
        client.connect(broker.host, broker.port, 30)
        client.subscribe("floorwatch/#", qos=1)
        client.loop_start()
        time.sleep(0.3)
        intervals = {"temp_s": SAMPLE_S, "vib_s": SAMPLE_S, "diag_s": 60}
        fleet = Fleet(1, broker.host, broker.port, site="plant-a", seed=8, speed="max", intervals=intervals)
        board = fleet.boards[0]
        config_path = board.flash_dir / "config.json"
        config = json.loads(config_path.read_text())
        del config["intervals"]["send_s"]  # the simulator sends at once; the node's default batches
        config["sensors"] = [s for s in config["sensors"] if s["name"] in ("bearing", "motor")]
        config["thresholds"] = {k: v for k, v in config["thresholds"].items() if k.split(".")[0] in ("bearing", "motor")}
        config_path.write_text(json.dumps(config))
        roms = {s["name"]: s["rom"][2:14].upper() for s in config["sensors"] if s.get("rom")}
        started = time.monotonic()
        try:
            fleet.start()
            fleet.vclock.sleep_until(hours * 3600)
        finally:
            fleet.close()
        wall = time.monotonic() - started
        time.sleep(0.5)  # the last acks and the Last Will
        client.loop_stop()
        client.disconnect()
    got = []
    while not seen.empty():
        got.append(seen.get())
    return got, roms, wall


def measure(got, roms):
    ours = {"telemetry": 0, "other": 0}
    counts = {"telemetry": 0, "other": 0}
    tasmota = 0
    samples = both = 0
    for topic, payload, retain in got:
        kind = topic.rsplit("/", 1)[-1]
        size = publish_bytes(topic, payload, 1)
        bucket = "telemetry" if kind == "telemetry" else "other"
        ours[bucket] += size
        counts[bucket] += 1
        if kind != "telemetry" or retain:
            continue
        message = json.loads(payload)
        for record in read_records(message):
            samples += 1
            both += bool(record.get("t")) and bool(record.get("v"))
            for text in tasmota_messages(record, message.get("t0", 0), roms):
                tasmota += publish_bytes(TASMOTA_TOPIC, text.encode(), 0)
    return ours, counts, tasmota, samples, both


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=1.0, help="board time to run (default 1 h)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "wire_bytes.json")
    args = parser.parse_args(argv)
    got, roms, wall = run(args.hours)
    ours, counts, tasmota, samples, both = measure(got, roms)
    if not samples:
        sys.exit("no telemetry arrived: nothing to measure")
    board_s = args.hours * 3600
    state = TASMOTA_STATE_BYTES * board_s / TASMOTA_TELEPERIOD_S
    rows = [
        ("telemetry only", ours["telemetry"] / samples, tasmota / samples),
        ("everything published", (ours["telemetry"] + ours["other"]) / samples, (tasmota + state) / samples),
    ]
    print("%d samples (%d with a temperature and a vibration set) in %.1f board h, %.1f s wall; "
          "%d telemetry and %d other messages" % (samples, both, args.hours, wall, counts["telemetry"], counts["other"]))
    print("%-22s %12s %12s %8s" % ("bytes per sample", "floorwatch", "Tasmota-style", "ratio"))
    for label, mine, theirs in rows:  # the target is on telemetry; the rest is shown for the whole cost
        verdict = ("   (target %.2f %s)" % (TARGET, "met" if mine / theirs <= TARGET else "not met")
                   if label == "telemetry only" else "")
        print("%-22s %12.1f %12.1f %8.2f%s" % (label, mine, theirs, mine / theirs, verdict))
    result = {
        "bench": "wire_bytes", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": "%s, %s, Python %s" % (platform.node(), platform.machine(), platform.python_version()),
        "board_hours": args.hours, "wall_s": round(wall, 1), "samples": samples, "samples_with_both": both,
        "messages": counts, "target_ratio": TARGET,
        "per_sample": {label: {"floorwatch": round(mine, 1), "tasmota_style": round(theirs, 1),
                               "ratio": round(mine / theirs, 3),
                               "met": mine / theirs <= TARGET if label == "telemetry only" else None}
                       for label, mine, theirs in rows},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
