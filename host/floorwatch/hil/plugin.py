"""pytest plugin: hardware-in-the-loop fixtures for a floorwatch node on a real or a virtual board.

Registered through the `pytest11` entry point, so any pytest run in an environment with floorwatch
installed has it. Options:

    --board PORT_OR_URL   a board to test (repeatable): /dev/ttyUSB0, sn:..., socket://..., or
                          `virtual` / `virtual:<board>` for a virtual board this plugin starts
    --board-type NAME     the board definition of real boards (default esp32-devkitc)
    --hil-broker URL      mqtt://HOST:PORT the nodes can reach (default: a mosquitto started on
                          127.0.0.1, which only virtual boards can reach)
    --hil-wifi SSID:PASS  the network real boards join (virtual boards see floorwatch-sim)
    --hil-sensors FILE    JSON list of the sensors wired to the real board (config `sensors` entries;
                          default: the board definition's, which virtual boards have)

Fixtures (tests using them are skipped when no --board is given):
    hil_broker    (host, port) of the broker
    hil_observer  a floorwatch.observer.Observer subscribed to the HIL site
    hil_board     one per --board (tests are parametrized over them): .port, .board_def, .vboard
    hil_node      the node deployed on hil_board and seen online: .device_id, .site, .config, .deployed

A node is deployed once per board per session; tests that reset it leave it online again.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .. import boards
from ..broker import Mosquitto, parse_broker_url
from ..observer import Observer

SITE = "hil"
# Short intervals, so the suite sees telemetry and diagnostics within seconds.
INTERVALS = {"temp_s": 5, "vib_s": 10, "diag_s": 30}
VIRTUAL_WIFI = ("floorwatch-sim", "sim-password")


def pytest_addoption(parser):
    group = parser.getgroup("floorwatch-hil", "floorwatch hardware-in-the-loop")
    group.addoption("--board", action="append", default=[], metavar="PORT_OR_URL",
                    help="board to test (repeatable); 'virtual[:BOARD]' starts a virtual board")
    group.addoption("--board-type", default="esp32-devkitc", help="board definition of the real boards")
    group.addoption("--hil-broker", default=None, metavar="URL", help="mqtt://HOST:PORT the nodes can reach")
    group.addoption("--hil-wifi", default=None, metavar="SSID:PASS", help="WiFi network real boards join")
    group.addoption("--hil-sensors", default=None, metavar="FILE", help="JSON list of the real board's sensors")


def pytest_configure(config):
    config.addinivalue_line("markers", "hil: needs a board (--board); skipped without one")


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


@pytest.fixture(scope="session")
def hil_broker(request):
    url = request.config.getoption("--hil-broker")
    if url:
        yield parse_broker_url(url)
        return
    with Mosquitto() as broker:
        yield broker.host, broker.port


@pytest.fixture(scope="session")
def hil_observer(hil_broker):
    with Observer(*hil_broker, site=SITE) as observer:
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
        host, port = hil_broker
        mac = deploy.installed(hil_board.port)["mac"]
        device_id = "hil-" + mac.replace(":", "")[-6:]
        sensors_file = request.config.getoption("--hil-sensors")
        sensors = (json.loads(Path(sensors_file).read_text()) if sensors_file and hil_board.vboard is None
                   else hil_board.board_def["default_sensors"])
        config = {"device_id": device_id, "site": SITE, "wifi": {"ssid": ssid, "password": password},
                  "broker": {"host": host, "port": port, "keepalive_s": 15},
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
