"""The fleet monitor: one MQTT subscriber that keeps the fleet's state, stores it, and raises alerts.

    with Monitor("127.0.0.1", 1883, db="fleet.db", on_alert=print) as monitor:
        ...  # monitor.state.devices(), monitor.state.summary()
    Monitor(access, db=...)   # a security.access.BrokerAccess: TLS, user and password

On a broker with logins, two monitors logging in as the same user are one client to it (the
secured broker uses the user name as the client id): give each process a user of its own.

Every message on `floorwatch/<site>/<device>/<kind>` is checked against the contract, then goes to
the FleetState (state.py: per-device view and alerts on transitions) and, with a database, to the
Store (store.py: telemetry de-duplicated by (device, boot, seq); alerts, alarm events and status
changes as events). A ticker thread runs the heartbeat (devices silent too long count offline) and
commits the store in batches, so storing costs no commit per message.

`share=GROUP` subscribes through an MQTT shared subscription (`$share/GROUP/...`): the broker hands
each message to one of the group's monitors, so several processes split one fleet's traffic. Each
then sees only part of it, so run the dashboard on an unshared monitor (or `fleet status`).
"""

import threading
import time
import uuid

import paho.mqtt.client as mqtt

from .. import contract
from ..security.access import BrokerAccess
from .state import FleetState
from .store import Store

KINDS = ("status", "telemetry", "alarm", "diag", "ack")
TICK_S = 1.0  # heartbeat resolution and the longest a stored message waits for its commit


class Monitor:
    def __init__(self, host, port=None, db=None, share=None, heartbeat_s=90, on_alert=None, site="+", session=None,
                 kinds=("+",)):
        self.access = BrokerAccess.of(host, port)
        self.host, self.port = self.access.host, self.access.port
        self.state = FleetState(heartbeat_s=heartbeat_s)
        self.store = Store(db) if db else None
        self.on_alert = on_alert or (lambda alert: None)
        topics = ["floorwatch/%s/+/%s" % (site, kind) for kind in kinds]
        self.topics = ["$share/%s/%s" % (share, t) for t in topics] if share else topics
        self.stats = {"messages": 0, "records": 0, "violations": 0}
        self.violations = []  # (topic, reason), the latest 100
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="fleet-monitor-tick", daemon=True)
        # session=NAME: a persistent session under that client id, so the broker queues what arrives
        # while the monitor is away and hands it over when it is back.
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                                  client_id=session or "fleet-monitor-" + uuid.uuid4().hex[:8],
                                  clean_session=session is None)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def start(self, timeout=10):
        """Connect and subscribe; AccessError (one line) when the broker refuses or does not answer."""
        self.access.connect(self.client, keepalive=30, timeout=timeout)
        self._ticker.start()
        return self

    def stop(self):
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()
        if self._ticker.is_alive():
            self._ticker.join(5)
        if self.store is not None:
            self.store.commit()
            self.store.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- paho callbacks (its network thread) ----------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe([(topic, 1) for topic in self.topics])

    def _on_message(self, client, userdata, message):
        parts = message.topic.split("/")
        if len(parts) != 4 or parts[3] not in KINDS:
            return  # commands, and anything else on the tree
        _, site, device, kind = parts
        self.stats["messages"] += 1
        try:
            body = contract.validate(kind, message.payload)
        except contract.ContractError as exc:
            self.stats["violations"] += 1
            self.violations = (self.violations + [(message.topic, str(exc))])[-100:]
            return
        now = time.time()
        alerts = self.state.update(site, device, kind, body, now, retained=message.retain)
        if self.store is not None:
            if kind == "telemetry":
                self.stats["records"] += self.store.add_telemetry(site, device, body)
            elif kind == "alarm":
                self.store.add_event({"time": now, "device": device, "site": site, "kind": "alarm_event",
                                      "text": "alarm picture", "detail": body})
        self._raise(alerts)
        if self.store is not None:
            self.store.maybe_commit(now)

    # --- heartbeat and batched commits ------------------------------------------------------------
    def _tick_loop(self):
        while not self._stop.wait(TICK_S):
            self._raise(self.state.tick(time.time()))
            if self.store is not None:
                for device in self.state.devices():
                    self.store.save_device(device.as_dict())
                self.store.commit()

    def _raise(self, alerts):
        for alert in alerts:
            if self.store is not None:
                self.store.add_event(alert)
            self.on_alert(alert)


def snapshot(host, port=None, settle_s=0.5, limit_s=3.0):
    """The fleet as its retained messages describe it (no database): a FleetState after the broker
    has handed over the retained statuses and alarm pictures (no new one for settle_s; only
    those kinds are subscribed to, so a busy fleet's telemetry does not keep it from settling)."""
    with Monitor(host, port, heartbeat_s=None, kinds=("status", "alarm")) as monitor:
        deadline = time.monotonic() + limit_s
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            count = monitor.stats["messages"]
            if count != seen:
                seen, quiet_since = count, time.monotonic()
            elif time.monotonic() - quiet_since >= settle_s:
                break
            time.sleep(0.05)
    return monitor.state

