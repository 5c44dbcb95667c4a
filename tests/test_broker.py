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


# --- a half-open broker, and persistent sessions --------------------------------------------

def raw_mqtt_session(server, client_id=b"raw-1"):
    """A bare TCP socket that has done MQTT CONNECT/CONNACK (keepalive 60 s)."""
    sock = socket.create_connection((server.host, server.port), timeout=WAIT_S)
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
    sock.sendall(bytes([0x10, len(body)]) + body)
    assert sock.recv(4) == b"\x20\x02\x00\x00"
    return sock


def test_pause_keeps_connections_open_but_answers_nothing(fresh_broker):
    sock = raw_mqtt_session(fresh_broker)
    try:
        sock.sendall(b"\xc0\x00")                            # PINGREQ
        assert sock.recv(2) == b"\xd0\x00"                   # PINGRESP
        fresh_broker.pause()
        assert fresh_broker.paused and fresh_broker.running
        sock.sendall(b"\xc0\x00")                            # the connection still takes data...
        sock.settimeout(1.0)
        with pytest.raises(socket.timeout):                  # ...but nothing comes back
            sock.recv(2)
        late = socket.create_connection((fresh_broker.host, fresh_broker.port), timeout=1.0)
        late.sendall(b"\xc0\x00")                            # TCP accepted by the kernel's backlog
        late.settimeout(0.5)
        with pytest.raises(socket.timeout):
            late.recv(2)
        late.close()
        fresh_broker.resume()
        assert not fresh_broker.paused
        sock.settimeout(WAIT_S)
        assert sock.recv(2) == b"\xd0\x00"                   # answered once it runs again
    finally:
        sock.close()


def test_stop_and_restart_work_while_paused(fresh_broker):
    fresh_broker.pause()
    fresh_broker.restart()
    assert fresh_broker.running and not fresh_broker.paused
    raw_mqtt_session(fresh_broker).close()
    fresh_broker.pause()
    fresh_broker.stop()
    assert not fresh_broker.running


def persistent_client(server, client_id, messages):
    """A paho client with clean_session=False whose messages land in `messages`; connected."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_message = lambda cl, u, msg: messages.put(msg)
    c.connect(server.host, server.port, keepalive=30)
    c.loop_start()
    return c


def test_persistent_broker_keeps_queued_messages_through_a_restart(clients):
    with Mosquitto(persistent=True) as server:
        messages, subscribed = queue.Queue(), queue.Queue()
        client_id = f"keeper-{uuid.uuid4().hex[:8]}"
        sub = persistent_client(server, client_id, messages)
        sub.on_subscribe = lambda *args: subscribed.put(True)
        sub.subscribe("floorwatch/s/d/cmd", qos=1)
        subscribed.get(timeout=WAIT_S)
        sub.disconnect()
        sub.loop_stop()
        clients(server).publish("floorwatch/s/d/cmd", b"while you were away")  # queued for it
        clients(server).publish("floorwatch/s/d/status", b"online", retain=True)
        server.restart()
        sub = persistent_client(server, client_id, messages)
        try:
            msg = messages.get(timeout=WAIT_S)
            assert msg.topic == "floorwatch/s/d/cmd" and msg.payload == b"while you were away"
        finally:
            sub.disconnect()
            sub.loop_stop()
        late = clients(server)
        late.subscribe("floorwatch/s/d/status")
        assert late.next_message().payload == b"online"     # retained messages survive too


# --- secure mode (a floorwatch.security broker directory) ---------------------------------------

def test_secure_mode_needs_a_password_keeps_both_ports_and_tracks_its_pid(tmp_path):
    from floorwatch.security.brokerdir import BrokerDir
    secure = BrokerDir.init(tmp_path / "broker", devices=[("s", "press-1", "Ty6uE1-1-8kMw3qA9zVs")])
    pid_file = tmp_path / "broker" / "mosquitto.pid"
    assert Mosquitto().tls_url is None
    with Mosquitto(secure=secure) as server:
        assert pid_file.read_text().strip() == str(server._proc.pid)
        ports = (server.port, server.tls_port)
        assert server.tls_port != server.port and server.tls_url == f"mqtts://localhost:{server.tls_port}"
        with socket.create_connection((server.host, server.port), timeout=WAIT_S) as anonymous:
            anonymous.sendall(b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03raw")
            assert anonymous.recv(4) == b"\x20\x02\x00\x05"  # CONNACK: not authorised
        server.restart()
        assert (server.port, server.tls_port) == ports
        assert pid_file.read_text().strip() == str(server._proc.pid)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="press-1", protocol=mqtt.MQTTv311)
        c.username_pw_set("press-1", "Ty6uE1-1-8kMw3qA9zVs")
        c.tls_set(ca_certs=str(secure.ca_path))
        assert c.connect("localhost", server.tls_port) == 0
        c.loop_start()
        c.publish("floorwatch/s/press-1/status", b"online", qos=1).wait_for_publish(timeout=WAIT_S)
        c.disconnect()
        c.loop_stop()
        assert "as press-1 (p2" in server.log_text()
    assert not pid_file.exists()
