"""pytest plugin: hardware-in-the-loop fixtures for a floorwatch node on a real or a virtual board.

Registered through the `pytest11` entry point, so any pytest run in an environment with floorwatch
installed has it. Options:

    --board PORT_OR_URL   a board to test (repeatable): /dev/ttyUSB0, sn:..., socket://..., or
                          `virtual` / `virtual:<board>` for a virtual board this plugin starts
    --board-type NAME     the board definition of real boards (default esp32-devkitc)
    --hil-broker URL      mqtt[s]://[USER@]HOST[:PORT] the nodes can reach (default: a secured
                          mosquitto started on localhost, which only virtual boards can reach: TLS
                          with a CA made for the session, a login per node, the ACL)
    --hil-ca FILE         with mqtts://: the CA certificate (PEM) the broker's is signed by; it goes
                          into the node's config too
    --hil-user NAME       the tests' login (default none); it sends commands, so the operator role
    --hil-password-file FILE  its password (else env FLOORWATCH_MQTT_PASSWORD)
    --hil-broker-dir DIR  the external broker's directory (`floorwatch broker init`) on this machine:
                          the node's login is registered there (and a mosquitto running on it
                          reloaded); without it the broker must already accept the node
    --hil-wifi SSID:PASS  the network real boards join (virtual boards see floorwatch-sim)
    --hil-sensors FILE    JSON list of the sensors wired to the real board (config `sensors` entries;
                          default: the board definition's, which virtual boards have)

Fixtures (tests using them are skipped when no --board is given):
    hil_broker    the broker: .access (the tests' BrokerAccess), .host/.port/.tls/.ca_pem (what
                  the nodes connect to), .directory (the BrokerDir nodes are registered in, or None)
    hil_observer  a floorwatch.observer.Observer subscribed to the HIL site (it sends the commands)
    hil_board     one per --board (tests are parametrized over them): .port, .board_def, .vboard
    hil_node      the node deployed on hil_board and seen online: .device_id, .site, .config, .deployed

A node is deployed once per board per session, with a password of its own made for the session;
tests that reset it leave it online again.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .. import boards
from ..broker import Mosquitto
from ..observer import Observer
from ..security.access import AccessError, BrokerAccess
from ..security.passwd import new_password

SITE = "hil"
# Short intervals, so the suite sees telemetry and diagnostics within seconds.
INTERVALS = {"temp_s": 5, "vib_s": 10, "diag_s": 30, "send_s": 0}
VIRTUAL_WIFI = ("floorwatch-sim", "sim-password")


def pytest_addoption(parser):
    group = parser.getgroup("floorwatch-hil", "floorwatch hardware-in-the-loop")
    group.addoption("--board", action="append", default=[], metavar="PORT_OR_URL",
                    help="board to test (repeatable); 'virtual[:BOARD]' starts a virtual board")
    group.addoption("--board-type", default="esp32-devkitc", help="board definition of the real boards")
    group.addoption("--hil-broker", default=None, metavar="URL",
                    help="mqtt[s]://[USER@]HOST[:PORT] the nodes can reach (default: a secured private mosquitto)")
    group.addoption("--hil-ca", default=None, metavar="FILE", help="CA certificate (PEM) of an mqtts:// --hil-broker")
    group.addoption("--hil-user", default=None, metavar="NAME", help="the tests' broker login (operator role)")
    group.addoption("--hil-password-file", default=None, metavar="FILE", help="its password")
    group.addoption("--hil-broker-dir", default=None, metavar="DIR",
                    help="the --hil-broker's directory, to register the node's login in")
    group.addoption("--hil-wifi", default=None, metavar="SSID:PASS", help="WiFi network real boards join")
    group.addoption("--hil-sensors", default=None, metavar="FILE", help="JSON list of the real board's sensors")


EXTERNAL_BROKER = pytest.StashKey()  # the HilBroker of --hil-broker, checked when pytest starts


def pytest_configure(config):
    config.addinivalue_line("markers", "hil: needs a board (--board); skipped without one")
    url = config.getoption("--hil-broker")
    if url:
        from ..security.brokerdir import BrokerDir, BrokerDirError  # late: cryptography is only needed here
        option = config.getoption
        try:
            access = BrokerAccess.from_url(url, option("--hil-ca"), option("--hil-user"), option("--hil-password-file"))
            directory = BrokerDir(option("--hil-broker-dir")) if option("--hil-broker-dir") else None
        except (AccessError, BrokerDirError) as exc:
            raise pytest.UsageError("--hil-broker: %s" % exc) from None
        if access.tls and access.ca is None:
            raise pytest.UsageError("--hil-broker mqtts://...: give --hil-ca, the CA the node checks the broker with")
        config.stash[EXTERNAL_BROKER] = HilBroker(access, directory)
    elif any(config.getoption(name) for name in ("--hil-ca", "--hil-user", "--hil-password-file", "--hil-broker-dir")):
        raise pytest.UsageError("--hil-ca, --hil-user, --hil-password-file and --hil-broker-dir go with --hil-broker")


def pytest_generate_tests(metafunc):
    if "hil_board" in metafunc.fixturenames:
        specs = metafunc.config.getoption("--board") or [None]
        metafunc.parametrize("hil_board", specs, indirect=True, scope="session",
                             ids=[spec or "no-board" for spec in specs])


@dataclass
class BoardUnderTest:
    port: str
    board_def: dict
    vboard: object = None  # the VBoard when the plugin started a virtual board
    node: object = field(default=None, repr=False)


@dataclass
class Node:
    device_id: str
    site: str
    config: dict
    deployed: dict  # what deploy.deploy() returned


@dataclass
class HilBroker:
    access: BrokerAccess  # how the tests log in
    directory: object = None  # the BrokerDir nodes are registered in, or None

    @property
    def host(self):
        return self.access.host

    @property
    def port(self):
        return self.access.port

    @property
    def tls(self):
        return self.access.tls

    @property
    def ca_pem(self):
        return Path(self.access.ca).read_text() if self.access.ca else None

    def node_broker(self, device_id):
        """A node's config `broker` entry: this broker, the node's own login (registered in the
        directory when there is one)."""
        password = new_password()
        if self.directory is not None:
            self.directory.add_device(SITE, device_id, password)
            self.directory.reload()
        entry = {"host": self.host, "port": self.port, "tls": self.tls, "user": device_id, "password": password,
                 "keepalive_s": 15}
        if self.tls:
            entry["ca"] = self.ca_pem
        return entry


@pytest.fixture(scope="session")
def hil_broker(request, tmp_path_factory):
    if EXTERNAL_BROKER in request.config.stash:
        yield request.config.stash[EXTERNAL_BROKER]
        return
    from ..security.brokerdir import BrokerDir  # late: cryptography is only needed here
    directory = BrokerDir.init(tmp_path_factory.mktemp("hil-broker") / "broker")
    with Mosquitto(secure=directory) as broker:
        # The tests send commands: the operator role (reads floorwatch/#, writes commands).
        yield HilBroker(BrokerAccess("localhost", broker.tls_port, tls=True, ca=str(directory.ca_path),
                                     user="operator", password=directory.role_password("operator")), directory)


@pytest.fixture(scope="session")
def hil_observer(hil_broker):
    with Observer(hil_broker.access, site=SITE) as observer:
        yield observer


@pytest.fixture(scope="session")
def hil_board(request, tmp_path_factory):
    spec = request.param
    if spec is None:
        pytest.skip("no board to test: give --board PORT_OR_URL (or --board virtual)")
    if spec == "virtual" or spec.startswith("virtual:"):
        from .. import esp_image
        from ..vboard import VBoard
        name = spec.partition(":")[2] or "esp32-devkitc"
        vboard = VBoard(name, state_dir=tmp_path_factory.mktemp("vboard"), wifi=VIRTUAL_WIFI)
        # A board as it comes from a tray already flashed with MicroPython (flashing has its own tests).
        vboard.preload(esp_image.build_micropython_image(vboard.board_def["chip"], size=64 * 1024))
        vboard.open()
        yield BoardUnderTest(vboard.url, vboard.board_def, vboard)
        vboard.close()
        return
    from .. import ports
    yield BoardUnderTest(ports.resolve(spec), boards.load(request.config.getoption("--board-type")))


@pytest.fixture(scope="session")
def hil_node(hil_board, hil_broker, hil_observer, request):
    """The node deployed on the board, its status seen `online` on the broker."""
    if hil_board.node is None:
        from .. import deploy
        wifi = request.config.getoption("--hil-wifi")
        ssid, password = wifi.split(":", 1) if wifi else VIRTUAL_WIFI
        mac = deploy.installed(hil_board.port)["mac"]
        device_id = "hil-" + mac.replace(":", "")[-6:]
        sensors_file = request.config.getoption("--hil-sensors")
        sensors = (json.loads(Path(sensors_file).read_text()) if sensors_file and hil_board.vboard is None
                   else hil_board.board_def["default_sensors"])
        config = {"device_id": device_id, "site": SITE, "wifi": {"ssid": ssid, "password": password},
                  "broker": hil_broker.node_broker(device_id),
                  "sensors": sensors, "intervals": dict(INTERVALS), "led": boards.status_led(hil_board.board_def)}
        deployed = deploy.deploy(hil_board.port, config, board=hil_board.board_def["id"], force=True)
        hil_board.node = Node(device_id, SITE, config, deployed)
        wait_status(hil_observer, device_id, lambda s: s["state"] == "online", "online after the deploy")
    return hil_board.node


def wait_status(observer, device_id, predicate, what, timeout=60):
    """The node's latest status once `predicate(status)` holds; fails the test after `timeout` s."""
    def check(obs):
        view = obs.devices.get(device_id)
        return view is not None and view.status is not None and predicate(view.status) and view.status
    status = observer.wait_for(check, timeout)
    if not status:
        view = observer.devices.get(device_id)
        pytest.fail("%s: no status %s within %d s (last: %r)" % (device_id, what, timeout, view and view.status))
    return status
