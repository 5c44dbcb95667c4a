"""The broker directory's passwords and ACL on a real mosquitto (secure mode), with paho clients.

Each negative check comes after a positive one that proves the path delivers: a client that should
get nothing is sent a marker it may get, and messages from one publisher arrive in order, so
anything it must not get would have come before the marker.
"""

import queue
import socket
import ssl
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from floorwatch.broker import Mosquitto
from floorwatch.security.brokerdir import BrokerDir

pytestmark = pytest.mark.broker
WAIT_S = 5.0
SITE = "plant-a"
PASSWORDS = {"press-a": "Qk3vT8-a-7fVb9xZ2wLm", "press-b": "Hn5rJ2-b-4sPd8cY6eKq"}
NOT_AUTHORISED = 5  # MQTT 3.1.1 CONNACK return code


def topic(device, kind):
    return "floorwatch/%s/%s/%s" % (SITE, device, kind)


@pytest.fixture(scope="module")
def broker_dir(tmp_path_factory):
    return BrokerDir.init(tmp_path_factory.mktemp("broker") / "dir",
                          devices=[(SITE, device, pw) for device, pw in PASSWORDS.items()])


@pytest.fixture(scope="module")
def server(broker_dir):
    with Mosquitto(secure=broker_dir) as running:
        yield running


class Client:
    """A paho client (MQTT 3.1.1) logged in as `user`; received messages land in a queue."""

    def __init__(self, server, user, password, client_id=None, tls=False):
        self.messages, self._connacks, self.disconnects, self._subacks = (queue.Queue() for _ in range(4))
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                                client_id=client_id or "t-%s" % uuid.uuid4().hex[:8])
        if user is not None:
            self.mqtt.username_pw_set(user, password)
        if tls:
            self.mqtt.tls_set(ca_certs=str(server.secure.ca_path))  # hostname checked by default
        self.mqtt.on_connect = lambda c, u, flags, rc, props: self._connacks.put(rc)
        self.mqtt.on_disconnect = lambda c, u, flags, rc, props: self.disconnects.put(rc)
        self.mqtt.on_message = lambda c, u, msg: self.messages.put(msg)
        self.mqtt.on_subscribe = lambda c, u, mid, codes, props: self._subacks.put(codes)
        self.mqtt.connect("localhost" if tls else server.host, server.tls_port if tls else server.port, 30)
        self.mqtt.loop_start()
        self.connack = self._connacks.get(timeout=WAIT_S)

    def subscribe(self, pattern):
        self.mqtt.subscribe(pattern, qos=1)
        return self._subacks.get(timeout=WAIT_S)

    def publish(self, where, payload, retain=False):
        self.mqtt.publish(where, payload, qos=1, retain=retain).wait_for_publish(timeout=WAIT_S)

    def next_message(self):
        return self.messages.get(timeout=WAIT_S)

    def next_live_message(self):
        """The next message that is not a retained one handed over on subscribing."""
        while True:
            msg = self.next_message()
            if not msg.retain:
                return msg

    def close(self):
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def login(server):
    made = []

    def make(user, password=None, **options):
        if password is None and user is not None:
            password = PASSWORDS.get(user) or server.secure.role_password(user)
        made.append(Client(server, user, password, **options))
        assert made[-1].connack == 0, "%s refused: %s" % (user, made[-1].connack)
        return made[-1]

    yield make
    for client in made:
        client.close()


def connack_code(server, user, password, port=None, tls_host=None):
    """The CONNACK return code a bare MQTT 3.1.1 CONNECT gets (over TLS when tls_host is set)."""
    sock, code = raw_connect(server, "raw-%s" % uuid.uuid4().hex[:6], user, password, port=port, tls_host=tls_host)
    sock.close()
    return code


def raw_connect(server, client_id, user, password, will=None, port=None, tls_host=None):
    """(socket, CONNACK return code) of a hand-made CONNECT; `will` = (topic, payload, retain)."""
    def field(data):
        data = data.encode() if isinstance(data, str) else data
        return len(data).to_bytes(2, "big") + data
    flags, payload = 0x02, field(client_id)
    if will:
        flags |= 0x04 | 0x08 | (0x20 if will[2] else 0)  # will, QoS 1, retain
        payload += field(will[0]) + field(will[1])
    if user is not None:
        flags |= 0x80
        payload += field(user)
    if password is not None:
        flags |= 0x40
        payload += field(password)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x3c" + payload
    sock = socket.create_connection((server.host, port or server.port), timeout=WAIT_S)
    if tls_host:
        context = ssl.create_default_context(cafile=str(server.secure.ca_path))
        sock = context.wrap_socket(sock, server_hostname=tls_host)
    sock.sendall(bytes([0x10, len(body)]) + body)  # bodies here stay under 128 bytes
    reply = sock.recv(4)
    assert reply[:2] == b"\x20\x02", reply
    return sock, reply[3]


# --- logging in ----------------------------------------------------------------------------------

def test_conf_opens_only_the_two_listeners_we_asked_for(server, broker_dir):
    opened = {int(line.rsplit(" ", 1)[1].rstrip(".")) for line in server.log_text().splitlines()
              if "listen socket on port" in line}
    assert opened == {server.port, server.tls_port}  # no default listener on 1883
    assert server.url == "mqtt://127.0.0.1:%d" % server.port
    assert server.tls_url == "mqtts://localhost:%d" % server.tls_port
    assert broker_dir.running_pid() == server._proc.pid


@pytest.mark.parametrize("listener", ["plain", "tls"])
def test_only_known_users_with_their_password_get_in(server, listener):
    port, tls_host = (server.port, None) if listener == "plain" else (server.tls_port, "localhost")
    assert connack_code(server, "press-a", PASSWORDS["press-a"], port, tls_host) == 0  # a hash we made
    assert connack_code(server, "monitor", server.secure.role_password("monitor"), port, tls_host) == 0
    assert connack_code(server, "press-a", PASSWORDS["press-b"], port, tls_host) == NOT_AUTHORISED
    assert connack_code(server, "press-a", "", port, tls_host) == NOT_AUTHORISED
    assert connack_code(server, "press-z", PASSWORDS["press-a"], port, tls_host) == NOT_AUTHORISED
    assert connack_code(server, None, None, port, tls_host) == NOT_AUTHORISED  # anonymous


def test_paho_over_tls_checks_the_ca_and_delivers(login):
    monitor = login("monitor", tls=True)
    monitor.subscribe("floorwatch/#")
    login("press-a", tls=True).publish(topic("press-a", "telemetry"), b"over tls")
    assert monitor.next_live_message().payload == b"over tls"


def test_a_host_name_the_certificate_does_not_name_fails(server):
    assert connack_code(server, "press-a", PASSWORDS["press-a"], server.tls_port, "localhost") == 0
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        connack_code(server, "press-a", PASSWORDS["press-a"], server.tls_port, "broker.elsewhere.example")
    assert "hostname mismatch" in str(info.value) or "match" in str(info.value)


def test_a_certificate_from_another_ca_is_not_trusted(server, tmp_path):
    other = BrokerDir.init(tmp_path / "other")
    sock = socket.create_connection((server.host, server.tls_port), timeout=WAIT_S)
    context = ssl.create_default_context(cafile=str(other.ca_path))
    with pytest.raises(ssl.SSLCertVerificationError):
        context.wrap_socket(sock, server_hostname="localhost")
    sock.close()


# --- what a device may do ----------------------------------------------------------------------------

def test_a_device_cannot_publish_into_another_devices_topics(login):
    monitor = login("monitor")
    monitor.subscribe("floorwatch/#")
    a = login("press-a")
    a.publish(topic("press-a", "telemetry"), b"own")  # the positive path
    assert monitor.next_live_message().topic == topic("press-a", "telemetry")
    for kind in ("telemetry", "status", "alarm", "diag", "ack", "cmd"):
        a.publish(topic("press-b", kind), b"forged " + kind.encode())
    a.publish(topic("press-a", "cmd"), b"to itself")  # a device never writes a cmd, not even its own
    a.publish("floorwatch/plant-b/press-a/telemetry", b"other site")
    a.publish("elsewhere/x", b"outside floorwatch")
    a.publish(topic("press-a", "diag"), b"marker")
    first = monitor.next_live_message()
    assert (first.topic, first.payload) == (topic("press-a", "diag"), b"marker")


def test_a_device_cannot_replace_anothers_retained_status(login):
    b = login("press-b")
    b.publish(topic("press-b", "status"), b'{"state": "online", "real": true}', retain=True)
    monitor = login("monitor")
    monitor.subscribe(topic("press-b", "status"))
    assert monitor.next_message().payload == b'{"state": "online", "real": true}'  # B's own, retained
    a = login("press-a")
    a.publish(topic("press-b", "status"), b'{"state": "offline"}', retain=True)
    a.publish(topic("press-b", "status"), b"", retain=True)  # nor clear it
    monitor.subscribe(topic("press-a", "status"))
    a.publish(topic("press-a", "status"), b"marker")
    assert monitor.next_live_message().payload == b"marker"  # A's publishes are through the broker
    late = login("operator")
    late.subscribe(topic("press-b", "status"))
    kept = late.next_message()
    assert kept.retain and kept.payload == b'{"state": "online", "real": true}'


def test_a_device_cannot_leave_a_last_will_on_another_devices_status(server, login):
    monitor = login("monitor")
    monitor.subscribe("floorwatch/+/+/status")
    # The positive path: A's Last Will on its own status is published when A vanishes.
    sock, code = raw_connect(server, "press-a", "press-a", PASSWORDS["press-a"],
                             will=(topic("press-a", "status"), b"a gone", False))
    assert code == 0
    sock.close()  # no DISCONNECT: the will goes out
    assert monitor.next_live_message().payload == b"a gone"
    sock, code = raw_connect(server, "press-a", "press-a", PASSWORDS["press-a"],
                             will=(topic("press-b", "status"), b"b gone (forged)", False))
    sock.close()
    a = login("press-a")
    a.publish(topic("press-a", "status"), b"marker")
    assert monitor.next_live_message().payload == b"marker"


def test_a_device_reads_its_own_commands_only(login):
    a, b = login("press-a"), login("press-b")
    a.subscribe(topic("press-b", "cmd"))
    a.subscribe("floorwatch/#")
    a.subscribe(topic("press-a", "cmd"))
    b.subscribe(topic("press-b", "cmd"))
    operator = login("operator")
    operator.publish(topic("press-b", "cmd"), b'{"cmd": "ping", "id": "for-b"}')
    assert b.next_message().payload == b'{"cmd": "ping", "id": "for-b"}'
    b.publish(topic("press-b", "telemetry"), b"b's data")  # nor B's other topics
    operator.publish(topic("press-a", "cmd"), b'{"cmd": "ping", "id": "for-a"}')
    first = a.next_message()
    assert (first.topic, first.payload) == (topic("press-a", "cmd"), b'{"cmd": "ping", "id": "for-a"}')


def test_a_device_cannot_take_over_anothers_client_id(server, login):
    b = login("press-b", client_id="press-b")
    b.subscribe(topic("press-b", "cmd"))
    intruder = login("press-a", client_id="press-b")  # its client id becomes its user name
    operator = login("operator")
    operator.publish(topic("press-b", "cmd"), b"still there?")
    assert b.next_message().payload == b"still there?"
    assert b.disconnects.empty()
    assert "as press-a " in server.log_text()
    intruder.close()
    # The check can fail: a second login as B itself does replace the first (one session per user).
    login("press-b")
    assert b.disconnects.get(timeout=WAIT_S) is not None


# --- the roles -----------------------------------------------------------------------------------------

def test_monitor_reads_everything_but_cannot_command(login):
    b = login("press-b")
    b.subscribe(topic("press-b", "cmd"))
    monitor = login("monitor")
    monitor.subscribe("floorwatch/#")
    login("press-a").publish(topic("press-a", "alarm"), b"a alarm")
    b.publish(topic("press-b", "telemetry"), b"b data")
    got = {monitor.next_live_message().payload for _ in range(2)}
    assert got == {b"a alarm", b"b data"}
    monitor.publish(topic("press-b", "cmd"), b"from the monitor")
    monitor.publish(topic("press-b", "status"), b"monitor forging")
    login("operator").publish(topic("press-b", "cmd"), b"from the operator")
    assert b.next_message().payload == b"from the operator"
    b.publish(topic("press-b", "diag"), b"marker")
    while True:  # the monitor's own status forgery must not be among what it reads back
        msg = monitor.next_live_message()
        assert msg.payload != b"monitor forging"
        if msg.payload == b"marker":
            break


def test_operator_commands_any_device_but_publishes_nothing_else(login):
    a = login("press-a")
    a.subscribe(topic("press-a", "cmd"))
    monitor = login("monitor")
    monitor.subscribe("floorwatch/#")
    operator = login("operator")
    operator.publish(topic("press-a", "telemetry"), b"operator forging")
    operator.publish(topic("press-a", "cmd"), b'{"cmd": "identify"}')
    assert a.next_message().payload == b'{"cmd": "identify"}'
    first = monitor.next_live_message()
    assert (first.topic, first.payload) == (topic("press-a", "cmd"), b'{"cmd": "identify"}')


# --- changing the directory while it runs ------------------------------------------------------------------

def test_an_added_device_logs_in_after_reload(server, broker_dir, login):
    password = "Wm7gF3-c-9tRx2bN5hUz"
    assert connack_code(server, "press-c", password) == NOT_AUTHORISED
    assert broker_dir.add_device("plant-b", "press-c", password) is True
    assert broker_dir.add_device("plant-b", "press-c", password) is False  # already so
    assert broker_dir.reload() is True
    deadline = time.monotonic() + WAIT_S
    while connack_code(server, "press-c", password) != 0:  # SIGHUP is handled between packets
        assert time.monotonic() < deadline, "press-c still refused after reload"
        time.sleep(0.05)
    monitor = login("monitor")
    monitor.subscribe("floorwatch/#")
    c = login("press-c", password)
    c.publish("floorwatch/plant-a/press-c/telemetry", b"wrong site")  # its ACL is plant-b's
    c.publish("floorwatch/plant-b/press-c/telemetry", b"right site")
    first = monitor.next_live_message()
    assert (first.topic, first.payload) == ("floorwatch/plant-b/press-c/telemetry", b"right site")
    assert connack_code(server, "press-a", PASSWORDS["press-a"]) == 0  # the others still get in


def test_a_second_monitor_account_runs_alongside_the_first(server, broker_dir, login):
    first = login("monitor")
    first.subscribe("floorwatch/#")
    # The same account twice is one session: the second login closes the first ...
    login("monitor")
    assert first.disconnects.get(timeout=WAIT_S) is not None
    # ... so a second tool gets its own account, with the role's rights and no more.
    broker_dir.add_account("dashboard", "monitor")
    assert broker_dir.reload() is True
    deadline = time.monotonic() + WAIT_S
    while connack_code(server, "dashboard", broker_dir.role_password("dashboard")) != 0:
        assert time.monotonic() < deadline, "dashboard still refused after reload"
        time.sleep(0.05)
    monitor, dashboard = login("monitor"), login("dashboard")
    for client in (monitor, dashboard):
        client.subscribe("floorwatch/#")
    dashboard.publish(topic("press-a", "cmd"), b"from the dashboard")
    login("press-a").publish(topic("press-a", "telemetry"), b"a data")
    for client in (monitor, dashboard):
        first_seen = client.next_live_message()
        assert (first_seen.topic, first_seen.payload) == (topic("press-a", "telemetry"), b"a data")
    assert monitor.disconnects.empty() and dashboard.disconnects.empty()


def test_a_packet_over_the_size_limit_disconnects_its_sender(login):
    monitor = login("monitor")
    monitor.subscribe("floorwatch/#")
    a = login("press-a")
    a.publish(topic("press-a", "telemetry"), b"x" * 4000)  # bigger than any real node message
    assert monitor.next_live_message().payload == b"x" * 4000
    a.mqtt.publish(topic("press-a", "telemetry"), b"y" * 17000, qos=1)
    assert a.disconnects.get(timeout=WAIT_S) is not None
    login("press-b").publish(topic("press-b", "telemetry"), b"marker")
    assert monitor.next_live_message().payload == b"marker"
