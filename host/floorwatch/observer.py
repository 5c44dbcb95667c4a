"""Watches a floorwatch fleet from the broker, as an independent subscriber.

It keeps, per device, what the nodes have said on their topics, and checks every message against
the contract. The simulator's live table and the tests read it; neither peeks inside the boards.

    Observer(host, port, site="plant-a")       # a plain, anonymous broker (the tests' own)
    Observer(access, site="plant-a")           # a security.access.BrokerAccess: TLS, user, password
"""

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from . import contract
from .security.access import BrokerAccess


class DeviceView:
    def __init__(self, device_id):
        self.device_id = device_id
        self.status = None  # last status payload
        self.status_at = None  # time.time() it arrived
        self.temps = {}
        self.vib = {}  # accelerometer -> its latest features as contract.records has them (rms in g, cf, vel, zone, ...)
        self.trends = {}  # temperature sensor -> its latest trend (rate, rise, eta)
        self.alarms = {}  # metric -> level, for levels above ok (the node's own "active" picture)
        self.alarm_events = []  # every alarm payload, in arrival order
        self.health = None
        self.records = []  # (boot, seq) of every telemetry record received, in arrival order
        self.messages = 0
        self.last_seen = None

    @property
    def state(self):
        return self.status["state"] if self.status else "unknown"


class Observer:
    def __init__(self, host, port=None, site="+"):
        self.access = BrokerAccess.of(host, port)
        self.host, self.port = self.access.host, self.access.port
        self.devices = {}
        self.violations = []  # (topic, reason) for messages that break the contract
        self.acks = {}  # command id -> ack payload
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="observer-" + uuid.uuid4().hex[:8])
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._filter = "floorwatch/%s/+/+" % site

    def start(self, timeout=10):
        """Connect and subscribe; AccessError (one line) when the broker refuses or does not answer."""
        self.access.connect(self.client, keepalive=30, timeout=timeout)
        return self

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def publish_command(self, site, device_id, cmd, cmd_id=None, **args):
        cmd_id = cmd_id or uuid.uuid4().hex[:12]
        body = {"id": cmd_id, "cmd": cmd}
        body.update(args)  # arguments sit beside id and cmd (docs/contract.md)
        self.client.publish("floorwatch/%s/%s/cmd" % (site, device_id), json.dumps(body), qos=1)
        return cmd_id

    def wait_for(self, predicate, timeout):
        """Poll `predicate(self)` until it is true; returns its last value."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                result = predicate(self)
            if result or time.monotonic() >= deadline:
                return result
            time.sleep(0.05)

    def snapshot(self):
        with self._lock:
            return sorted(self.devices.values(), key=lambda d: d.device_id)

    # --- paho callbacks ----------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe(self._filter, qos=1)

    def _on_message(self, client, userdata, message):
        parts = message.topic.split("/")
        if len(parts) != 4:
            return
        _, _site, device_id, kind = parts
        if kind == "cmd":
            return
        try:
            body = contract.validate(kind, message.payload)
        except contract.ContractError as exc:
            with self._lock:
                self.violations.append((message.topic, str(exc)))
            return
        with self._lock:
            view = self.devices.get(device_id) or self.devices.setdefault(device_id, DeviceView(device_id))
            view.messages += 1
            view.last_seen = time.time()
            getattr(self, "_on_" + kind)(view, body)

    def _on_status(self, view, body):
        view.status = body
        view.status_at = time.time()
        if body.get("health"):
            view.health = body["health"]

    def _on_telemetry(self, view, body):
        for offset, record in enumerate(contract.records(body)):
            view.records.append((body["boot"], body["seq"] + offset))
            view.temps.update({k: v for k, v in record.get("t", {}).items() if v is not None})
            view.trends.update(record.get("dt", {}))
            for name, feats in record.get("v", {}).items():
                view.vib[name] = feats

    def _on_alarm(self, view, body):
        view.alarm_events.append(body)
        view.alarms = {metric: a["level"] for metric, a in body["active"].items()}

    def _on_diag(self, view, body):
        view.health = body["health"]

    def _on_ack(self, view, body):
        self.acks[body.get("id")] = body
