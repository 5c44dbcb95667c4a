"""floorwatch.broker: a real mosquitto that tests and `floorwatch sim` can start, restart and stop."""

import os
import queue
import socket
import uuid

import paho.mqtt.client as mqtt
import pytest

from floorwatch import broker as broker_mod
from floorwatch.broker import BrokerError, Mosquitto, parse_broker_url

pytestmark = pytest.mark.broker
WAIT_S = 5.0


class Client:
    """A paho 2.x client whose received messages land in a queue."""

    def __init__(self, server):
        self.messages = queue.Queue()
        self._subscribed = queue.Queue()
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                client_id=f"test-{uuid.uuid4().hex[:8]}")
        self.mqtt.on_message = lambda c, u, msg: self.messages.put(msg)
        self.mqtt.on_subscribe = lambda c, u, mid, codes, props: self._subscribed.put(codes)
        self.mqtt.connect(server.host, server.port, keepalive=30)
        self.mqtt.loop_start()

    def subscribe(self, topic):
        self.mqtt.subscribe(topic, qos=1)
        codes = self._subscribed.get(timeout=WAIT_S)
        assert not codes[0].is_failure, codes

    def publish(self, topic, payload, retain=False):
        self.mqtt.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=WAIT_S)

    def next_message(self):
        return self.messages.get(timeout=WAIT_S)

    def close(self):
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def clients():
    made = []

    def make(server):
        made.append(Client(server))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_broker_serves_publish_and_subscribe(broker, clients):
    assert broker.running
    assert broker.host == "127.0.0.1"
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    sub, pub = clients(broker), clients(broker)
    sub.subscribe("floorwatch/plant-a/+/telemetry")
    pub.publish("floorwatch/plant-a/press-07/telemetry", b'{"seq": 1}')
    msg = sub.next_message()
    assert msg.topic == "floorwatch/plant-a/press-07/telemetry"
    assert msg.payload == b'{"seq": 1}'
    assert "running" in broker.log_text()


def test_retained_message_reaches_a_later_subscriber(broker, clients):
    topic = f"floorwatch/plant-a/{uuid.uuid4().hex[:8]}/status"
    clients(broker).publish(topic, b'{"state": "online"}', retain=True)
    late = clients(broker)
    late.subscribe(topic)
    msg = late.next_message()
    assert msg.payload == b'{"state": "online"}'
    assert msg.retain


def test_restart_keeps_the_port_and_forgets_retained(fresh_broker, clients):
    port = fresh_broker.port
    clients(fresh_broker).publish("floorwatch/s/d/status", b"online", retain=True)
    fresh_broker.restart()
    assert fresh_broker.running and fresh_broker.port == port
    sub = clients(fresh_broker)
    sub.subscribe("floorwatch/s/d/status")
    with pytest.raises(queue.Empty):  # persistence is off: a restart starts empty
        sub.messages.get(timeout=0.5)
    clients(fresh_broker).publish("floorwatch/s/d/status", b"again")
    assert sub.next_message().payload == b"again"
    assert fresh_broker.log_text().count(" running") == 2


def test_stop_ends_the_process_and_removes_the_temp_dir(fresh_broker):
    workdir = fresh_broker._dir
    assert os.path.isdir(workdir)
    fresh_broker.stop()
    assert not fresh_broker.running
    assert not os.path.exists(workdir)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", fresh_broker.port), timeout=0.5).close()
    assert "terminating" in fresh_broker.log_text()  # kept after the dir is gone
    fresh_broker.start()  # and it can come back on the same port
    socket.create_connection(("127.0.0.1", fresh_broker.port), timeout=1).close()


def test_missing_binary_gives_the_install_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(broker_mod, "SEARCH_PATHS", (str(tmp_path / "nope" / "mosquitto"),))
    with pytest.raises(BrokerError) as info:
        Mosquitto().start()
    assert str(info.value) == ("mosquitto not found; install it with: "
                               "sudo apt-get install mosquitto")


def test_port_in_use_fails_with_the_log_tail():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(BrokerError) as info:
            Mosquitto(port=port).start()
    text = str(info.value)
    assert "\n" not in text
    assert f"127.0.0.1:{port}" in text and "Address already in use" in text


@pytest.mark.parametrize("url, expected", [
    ("mqtt://127.0.0.1:1884", ("127.0.0.1", 1884)),
    ("mqtt://broker.local", ("broker.local", 1883)),
    ("mqtt://10.0.0.2:1883", ("10.0.0.2", 1883)),
    ("mqtt://[::1]:8883", ("::1", 8883)),
])
def test_parse_broker_url_accepts(url, expected):
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize("url", [
    "127.0.0.1:1883", "tcp://127.0.0.1:1883", "mqtts://host:8883", "mqtt://", "mqtt://:1883",
    "mqtt://host:0", "mqtt://host:65536", "mqtt://host:abc", "mqtt://host:", "mqtt://host/x",
    "mqtt://user:pw@host", "mqtt://host?x=1", "mqtt://ho st", "",
])
def test_parse_broker_url_rejects(url):
    with pytest.raises(ValueError) as info:
        parse_broker_url(url)
    assert repr(url) in str(info.value) and "\n" not in str(info.value)
