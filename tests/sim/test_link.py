"""The real node.link on a simulated board against real mosquittos: restarts, a half-open broker,
a backup broker, a WiFi outage, commands.

The board runs a small main.py (written to its flash below) that drives a Link the way the node
does: service(), a publish every `every_ms`, wait(). It keeps its Link and what happened in a
`probe` module on the board's flash, which the test reads through the board's runtime. Bounds are
asserted in board time only.
"""

import json
import queue
import secrets
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from floorwatch.broker import Mosquitto
from floorwatch.sim.board import Board, ScaledClock

pytestmark = pytest.mark.broker

KEEPALIVE_S = 5
IO_TIMEOUT_S = 5  # link.py's _IO_TIMEOUT_MS
WALL_S = 40.0  # generous wall-clock limit for any one wait; bounds are asserted in board time

PROBE = """
link = None
events = []    # (board ms, connected) at every change
sent = []      # numbers whose publish was acknowledged
commands = []  # payloads taken from link.inbox (bytes, or the size of one too large to read)
passes = 0     # times round the loop
"""

MAIN = """
import json
import time
import probe
from node.link import Link

with open("link.json") as f:
    cfg = json.load(f)
link = Link(cfg["device_id"], cfg["wifi"], cfg["brokers"], cfg["will_topic"], "offline", cfg["cmd_topic"])
probe.link = link


def note():
    if not probe.events or probe.events[-1][1] != link.connected:
        probe.events.append((time.ticks_ms(), link.connected))


link.start()
n = 0
due = time.ticks_ms()
while True:
    if link.service():
        link.publish(cfg["will_topic"], "online", True)
    note()
    while link.inbox:
        probe.commands.append(link.inbox.pop(0))
    if link.connected and time.ticks_diff(time.ticks_ms(), due) >= 0:
        if link.publish(cfg["data_topic"], str(n)):
            probe.sent.append(n)
            n += 1
        due = time.ticks_add(time.ticks_ms(), cfg["every_ms"])
        note()
    link.wait(cfg["wait_ms"])
    probe.passes += 1
"""


def broker_entry(server, user, password=None):
    """A plain broker entry as config.brokers() gives it, logging in as `user` with a password of
    its own (the link refuses to connect without one)."""
    return {"host": server.host, "port": server.port, "user": user, "password": password or secrets.token_urlsafe(18),
            "tls": False, "ca": None, "keepalive_s": KEEPALIVE_S}


def wait_for(predicate, timeout=WALL_S):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class Node:
    """A board running MAIN with a Link to `servers` (primary first)."""

    def __init__(self, tmp_path, servers, speed=10, every_ms=1000, wait_ms=200, entries=None, device_id=None):
        """`entries` (broker dicts) replace the plain ones made for `servers`."""
        self.device_id = device_id or "link-" + uuid.uuid4().hex[:6]
        self.topics = {kind: "floorwatch/linktest/%s/%s" % (self.device_id, kind)
                       for kind in ("status", "cmd", "data")}
        self.board = Board(self.device_id, seed=3, flash_dir=tmp_path / self.device_id,
                           clock=ScaledClock(speed))
        brokers = entries or [broker_entry(s, self.device_id) for s in servers]
        cfg = {"device_id": self.device_id, "brokers": brokers,
               "wifi": {"ssid": self.board.ap.ssid, "password": self.board.ap.password},
               "will_topic": self.topics["status"], "cmd_topic": self.topics["cmd"],
               "data_topic": self.topics["data"], "every_ms": every_ms, "wait_ms": wait_ms}
        flash = self.board.flash_dir
        (flash / "link.json").write_text(json.dumps(cfg))
        (flash / "probe.py").write_text(PROBE)
        (flash / "main.py").write_text(MAIN)

    @property
    def probe(self):
        return self.board.runtime.modules.get("probe")

    @property
    def link(self):
        # None until main.py has made the link: the probe module is importable a moment before.
        return getattr(self.probe, "link", None)

    def now(self):
        return self.board.clock.now()

    def connected(self):
        return self.link is not None and self.link.connected

    def wait_connected(self, value=True, timeout=WALL_S):
        ok = wait_for(lambda: self.connected() == value or self.board.crashed, timeout)
        assert self.board.crashed is None, self.board.crashed
        assert ok, "link never became connected=%s; log:\n%s" % (value, "\n".join(self.board.log[-30:]))

    def wait_sent(self, count, timeout=WALL_S):
        start = len(self.probe.sent)
        assert wait_for(lambda: len(self.probe.sent) >= start + count, timeout), self.board.log[-30:]

    def events_after(self, t):
        return [(ms / 1000, up) for ms, up in list(self.probe.events) if ms / 1000 >= t]

    def __enter__(self):
        self.board.power_on()
        return self

    def __exit__(self, *exc):
        self.board.power_off()


class Listener:
    """A paho subscriber collecting payloads on one topic (logged in as `user` when given)."""

    def __init__(self, server, topic, user=None, password=None):
        self.payloads = queue.Queue()
        self._subscribed = queue.Queue()
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user or "l-" + uuid.uuid4().hex[:8])
        if user is not None:
            self.mqtt.username_pw_set(user, password)
        self.mqtt.on_message = lambda c, u, msg: self.payloads.put(msg.payload)
        self.mqtt.on_subscribe = lambda *args: self._subscribed.put(True)
        self.mqtt.connect(server.host, server.port, keepalive=30)
        self.mqtt.loop_start()
        self.mqtt.subscribe(topic, qos=1)
        self._subscribed.get(timeout=10)

    def next(self, timeout=WALL_S):
        return self.payloads.get(timeout=timeout)

    def publish(self, topic, payload):
        self.mqtt.publish(topic, payload, qos=1).wait_for_publish(timeout=10)

    def close(self):
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def listeners():
    made = []

    def make(server, topic):
        made.append(Listener(server, topic))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


def test_reconnects_after_a_broker_restart_and_keeps_publishing(fresh_broker, tmp_path, listeners):
    with Node(tmp_path, [fresh_broker]) as node:
        node.wait_connected()
        node.wait_sent(2)
        assert node.link.mqtt_reconnects == 0
        fresh_broker.restart()
        before = len(node.probe.sent)
        listener = listeners(fresh_broker, node.topics["data"])
        node.wait_sent(3)
        assert node.link.mqtt_reconnects >= 1 and node.link.broker_index == 0
        got = int(listener.next())
        assert got >= before - 1  # a number sent after the restart (or the one in flight)
        assert any("lost" in line for line in node.board.log)


def test_a_half_open_broker_is_given_up_within_keepalive_quarter_plus_timeout(fresh_broker, tmp_path):
    # Publishing rarely, so it is the idle keepalive ping that finds the broker gone.
    with Node(tmp_path, [fresh_broker], every_ms=600_000) as node:
        node.wait_connected()
        time.sleep(0.3)  # a few keepalive rounds at speed 10
        assert node.connected()
        paused_at = node.now()
        fresh_broker.pause()
        try:
            node.wait_connected(False)
            dropped_at = [t for t, up in node.events_after(paused_at) if not up][0]
            took = dropped_at - paused_at
            assert 0 <= took <= KEEPALIVE_S / 4 + IO_TIMEOUT_S + 2.0, took
            assert any("lost" in line and "OSError" in line for line in node.board.log)
            node.wait_connected(False)
            time.sleep(1.0)  # an attempt or two against the frozen broker: TCP opens, no CONNACK
            assert not node.connected()
        finally:
            fresh_broker.resume()
        node.wait_connected()
        back_at = node.now()
        time.sleep(1.0)  # about 10 s of board time: several keepalive pings, all answered
        assert node.events_after(back_at) == [] and node.connected()
        assert node.link.mqtt_reconnects >= 1


def test_switches_to_the_backup_broker_when_the_primary_is_gone(fresh_broker, tmp_path, listeners):
    with Mosquitto() as backup:
        with Node(tmp_path, [fresh_broker, backup]) as node:
            node.wait_connected()
            assert node.link.broker_index == 0
            listener = listeners(backup, node.topics["data"])
            fresh_broker.stop()
            assert wait_for(lambda: node.connected() and node.link.broker_index == 1)
            node.wait_sent(2)
            listener.next()  # the backup carries the node's messages now
            assert node.link.mqtt_reconnects >= 1


def test_the_backup_is_used_when_the_primary_is_down_from_the_start(tmp_path, listeners):
    with Mosquitto() as backup:
        primary = Mosquitto()
        primary.start()
        primary.stop()  # a port where nothing listens
        with Node(tmp_path, [primary, backup]) as node:
            node.wait_connected()
            assert node.link.broker_index == 1 and node.link.mqtt_reconnects == 0
            node.wait_sent(1)
            assert any("mqtt connect to" in line and "failed" in line for line in node.board.log)


def test_wifi_outage_rejoins_and_counts_a_wifi_reconnect(fresh_broker, tmp_path):
    with Node(tmp_path, [fresh_broker], speed=20) as node:
        node.wait_connected()
        assert node.link.wifi_reconnects == 0
        down_at = node.now()
        node.board.wifi_down()
        node.wait_connected(False)
        # Not associated for 20 s of board time: the link re-joins (disconnect + connect).
        assert wait_for(lambda: any("re-joining" in line for line in node.board.log))
        assert node.now() - down_at >= 20
        node.board.wifi_up()
        node.wait_connected()
        node.wait_sent(1)
        assert node.link.wifi_reconnects == 1
        assert node.link.mqtt_reconnects >= 1


def test_a_command_lands_in_the_inbox(fresh_broker, tmp_path, listeners):
    with Node(tmp_path, [fresh_broker]) as node:
        node.wait_connected()
        node.wait_sent(1)  # subscribed by now: the first publish comes after the SUBACK
        sender = listeners(fresh_broker, "floorwatch/linktest/unused")
        sender.publish(node.topics["cmd"], b'{"id": "c1", "cmd": "ping"}')
        assert wait_for(lambda: node.probe.commands)
        assert node.probe.commands == [b'{"id": "c1", "cmd": "ping"}']
        assert node.link.dropped_commands == 0


def test_an_idle_link_connects_soon_after_the_wifi_associates(fresh_broker, tmp_path):
    # The loop idles 5 s a pass; the link must not sleep through the association for that long.
    with Node(tmp_path, [fresh_broker], speed=1, every_ms=60000, wait_ms=5000) as node:
        node.wait_connected()
        # The probe notes the connection after its first publish's round trip, a moment later.
        assert wait_for(lambda: any(up for _, up in node.probe.events))
        first_up = next(ms for ms, up in node.probe.events if up) / 1000
    associate = node.board.ap.connect_s
    assert associate <= first_up < associate + 0.25 + 0.5, first_up  # a poll period, plus connect and CONNACK


def test_a_command_too_large_to_read_arrives_as_its_size_and_the_stream_stays_in_step(fresh_broker, tmp_path,
                                                                                      listeners):
    with Node(tmp_path, [fresh_broker]) as node:
        node.wait_connected()
        node.wait_sent(1)
        sender = listeners(fresh_broker, "floorwatch/linktest/unused")
        huge = b'{"id": "big", "cmd": "ping", "pad": "' + b"x" * 20000 + b'"}'
        sender.publish(node.topics["cmd"], huge)  # QoS 1: returns once the broker has the node's PUBACK path free
        sender.publish(node.topics["cmd"], b'{"id": "c2", "cmd": "ping"}')
        assert wait_for(lambda: len(node.probe.commands) >= 2), node.board.log[-10:]
        assert node.probe.commands == [len(huge), b'{"id": "c2", "cmd": "ping"}']
        node.wait_sent(2)  # publishing goes on: the PUBACKs the node waits for were not lost in the junk
        assert node.link.mqtt_reconnects == 0 and node.connected()
        assert not any("lost" in line for line in node.board.log)
