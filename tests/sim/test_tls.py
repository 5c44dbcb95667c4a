"""The node's TLS: node.link on a simulated board against a real mosquitto with a TLS listener
(floorwatch.broker.Mosquitto(secure=BrokerDir)), the broker certificate made by
floorwatch.security.pki and checked against the CA in the node's broker entry.

Also the simulator's `ssl` itself (floorwatch.sim.mpy.ssl), where it must answer as MicroPython's
ssl on the ESP32 does: the errors a node would print are the ones a real node prints.

The ESP32 port checks certificate dates against the board's clock, so boards here have their RTC
set to the true time first (as NTP would), except where the unset clock is the point.
"""

import time
import uuid

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from floorwatch.broker import Mosquitto
from floorwatch.security import pki
from floorwatch.security.brokerdir import BrokerDir
from test_link import Listener, Node, broker_entry, wait_for

pytestmark = pytest.mark.broker

SITE = "linktest"


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """(running mosquitto with TLS, its BrokerDir, {device id: password}) for a few devices."""
    ids = ["tls-" + uuid.uuid4().hex[:6] for _ in range(4)]
    passwords = {device_id: "pw-" + uuid.uuid4().hex for device_id in ids}
    bdir = BrokerDir.init(tmp_path_factory.mktemp("brokerdir") / "broker",
                          devices=[(SITE, device_id, passwords[device_id]) for device_id in ids])
    with Mosquitto(secure=bdir) as broker:
        yield broker, bdir, passwords


def tls_entry(broker, device_id, password, ca, host="localhost"):
    return dict(broker_entry(broker, device_id, password), host=host, port=broker.tls_port, tls=True, ca=ca)


# The board's boot.py sets its RTC to the true time of the simulated world at boot (board time 0),
# as a clock NTP had set would read.
SET_CLOCK = """
import machine, time
machine.RTC().datetime(%r)
"""


def tls_node(tmp_path, secure, index, ca=None, host="localhost", clock_set=True):
    broker, bdir, passwords = secure
    device_id = sorted(passwords)[index]
    ca = bdir.ca_path.read_text() if ca is None else ca
    node = Node(tmp_path, [], entries=[tls_entry(broker, device_id, passwords[device_id], ca, host)],
                device_id=device_id)
    if clock_set:
        (node.board.flash_dir / "boot.py").write_text(SET_CLOCK % (true_time(node.board),))
    return node


def true_time(board, seconds=0.0):
    """The RTC tuple of the simulated world's true time at board time `seconds`."""
    t = time.gmtime(board.true_epoch + seconds)
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_wday, t.tm_hour, t.tm_min, t.tm_sec, 0)


def failures(log):
    return [line for line in log if line.startswith("mqtt connect to")]


def test_a_board_connects_over_tls_with_the_right_ca_and_host_name(tmp_path, secure):
    broker, bdir, _ = secure
    node = tls_node(tmp_path, secure, 0)
    # The monitor role, over the plain listener (password- and ACL-checked too).
    watcher = role_listener(broker, bdir, "monitor", node.topics["status"])
    try:
        with node:
            node.wait_connected()
            node.wait_sent(2)  # QoS 1 publishes over TLS, each acknowledged
            assert watcher.next() == b"online"  # the broker took the node's status: it logged in as itself
            assert node.link.mqtt_reconnects == 0 and not failures(node.board.log)
            assert node.board.runtime.modules["ssl"] is node.board.runtime.modules["sys"].modules["ussl"]
    finally:
        watcher.close()


def test_commands_arrive_over_tls_and_one_too_large_arrives_as_its_size(tmp_path, secure):
    broker, bdir, _ = secure
    node = tls_node(tmp_path, secure, 0)
    operator = role_listener(broker, bdir, "operator", "floorwatch/linktest/unused")
    try:
        with node:
            node.wait_connected()
            node.wait_sent(1)  # subscribed by now
            huge = b'{"id": "big", "cmd": "ping", "pad": "' + b"x" * 3000 + b'"}'
            operator.publish(node.topics["cmd"], huge)
            operator.publish(node.topics["cmd"], b'{"id": "c1", "cmd": "ping"}')
            assert wait_for(lambda: len(node.probe.commands) >= 2), node.board.log[-5:]
            assert node.probe.commands == [len(huge), b'{"id": "c1", "cmd": "ping"}']
            node.wait_sent(2)
            assert node.link.mqtt_reconnects == 0
    finally:
        operator.close()


def test_the_wrong_ca_never_connects_and_says_why(tmp_path, secure):
    broker, _, _ = secure
    _, other = pki.make_ca("someone else's CA")
    with tls_node(tmp_path, secure, 1, ca=other.public_bytes(Encoding.PEM).decode()) as node:
        assert wait_for(lambda: len(failures(node.board.log)) >= 2)
        assert not node.connected() and not any(up for _, up in node.probe.events)
        line = failures(node.board.log)[0]
        assert line.startswith("mqtt connect to localhost:%d failed: ValueError(" % broker.tls_port), line
        assert "The certificate is not correctly signed by the trusted CA" in line


def test_a_host_name_the_certificate_does_not_name_never_connects(tmp_path, secure):
    broker, _, _ = secure
    with tls_node(tmp_path, secure, 2, host="broker.plant.example") as node:
        node.board.lan_broker = (broker.host, broker.tls_port)  # the LAN's DNS sends that name to our broker
        assert wait_for(lambda: len(failures(node.board.log)) >= 2)
        assert not node.connected() and not any(up for _, up in node.probe.events)
        line = failures(node.board.log)[0]
        assert "The certificate Common Name (CN) does not match with the expected CN" in line, line


def test_an_unset_clock_fails_the_certificate_dates(tmp_path, secure):
    # An ESP32 RTC starts at 2000-01-01: before any certificate made today. The node must set its
    # clock (NTP) before it can connect over TLS.
    with tls_node(tmp_path, secure, 3, clock_set=False) as node:
        assert wait_for(lambda: failures(node.board.log))
        assert "The certificate validity starts in the future" in failures(node.board.log)[0]
        assert not node.connected()
        node.board.set_wall_time(true_time(node.board, node.now()))  # what a successful NTP sync does
        node.wait_connected()


def role_listener(broker, bdir, role, topic):
    """A Listener logged in as one of the broker directory's roles, on the plain listener."""
    return Listener(broker, topic, role, bdir.role_password(role))


# --- the simulator's ssl, call by call ------------------------------------------------------------

@pytest.fixture
def board_modules(tmp_path):
    from floorwatch.sim.board import Board

    board = Board("ssl-" + uuid.uuid4().hex[:6], flash_dir=tmp_path / "flash")
    board.set_wall_time(true_time(board, board.clock.now()))
    return board.runtime.import_module("ssl"), board.runtime.import_module("socket")


def _connected(socket, broker):
    sock = socket.socket()
    sock.settimeout(5)
    sock.connect(socket.getaddrinfo("localhost", broker.tls_port)[0][-1])
    return sock


def test_sim_ssl_cert_required_without_a_ca_fails_as_mbedtls_does(board_modules, secure):
    ssl, socket = board_modules
    with pytest.raises(OSError) as caught:
        ssl.wrap_socket(_connected(socket, secure[0]), cert_reqs=ssl.CERT_REQUIRED, server_hostname="localhost")
    assert caught.value.args == (-0x7680, "MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED")


def test_sim_ssl_takes_der_or_pem_cadata_and_refuses_junk(board_modules, secure):
    ssl, socket = board_modules
    pem = secure[1].ca_path.read_text()
    der = pki.load_cert(secure[1].ca_path).public_bytes(Encoding.DER)
    for cadata in (der, pem, pem.encode()):
        tls = ssl.wrap_socket(_connected(socket, secure[0]), cert_reqs=ssl.CERT_REQUIRED, cadata=cadata,
                              server_hostname="localhost")
        tls.close()
    for junk in (der + b"\0", b"not a certificate", der[:100]):
        with pytest.raises(ValueError, match="^invalid cert$"):
            ssl.wrap_socket(_connected(socket, secure[0]), cert_reqs=ssl.CERT_REQUIRED, cadata=junk,
                            server_hostname="localhost")


def test_sim_ssl_checks_the_host_name_only_when_given(board_modules, secure):
    ssl, socket = board_modules
    der = pki.load_cert(secure[1].ca_path).public_bytes(Encoding.DER)
    with pytest.raises(ValueError, match="Common Name"):
        ssl.wrap_socket(_connected(socket, secure[0]), cert_reqs=ssl.CERT_REQUIRED, cadata=der,
                        server_hostname="elsewhere.example")
    ssl.wrap_socket(_connected(socket, secure[0]), cert_reqs=ssl.CERT_REQUIRED, cadata=der).close()
    # CERT_NONE (ssl's default) checks nothing at all: why the node always asks for CERT_REQUIRED.
    ssl.wrap_socket(_connected(socket, secure[0]), server_hostname="elsewhere.example").close()


def test_sim_ssl_checks_dates_with_the_boards_clock(tmp_path, secure):
    from floorwatch.sim.board import Board

    board = Board("ssl-" + uuid.uuid4().hex[:6], flash_dir=tmp_path / "flash")
    ssl, socket = board.runtime.import_module("ssl"), board.runtime.import_module("socket")
    der = pki.load_cert(secure[1].ca_path).public_bytes(Encoding.DER)
    for offset_s, words in ((3 * 365 * 86400, "The certificate validity has expired"),  # past the broker cert's 2 years
                            (-2 * 86400, "The certificate validity starts in the future"),  # before the backdated day
                            (None, "The certificate validity starts in the future")):  # an unset RTC: 2000-01-01
        board.wall_offset = None if offset_s is None else board.true_epoch + offset_s
        with pytest.raises(ValueError) as caught:
            ssl.wrap_socket(_connected(socket, secure[0]), cert_reqs=ssl.CERT_REQUIRED, cadata=der,
                            server_hostname="localhost")
        assert str(caught.value) == "\n%s\n" % words
