"""The node refuses a broker it has no proper credentials for, says why once, and keeps working.

A link-level board (the probe loop of test_link.py) shows the refusal itself: never a connection,
one console line per refused broker naming host, port and the reason (never the password), an idle
loop that sleeps what it is asked to. A whole node (the real app via floorwatch.sim.fleet) shows
that refusing the broker costs nothing else: it samples and queues as it would during an outage.
"""

import json
import time
import uuid

import pytest

from floorwatch.broker import Mosquitto
from floorwatch.sim.fleet import Fleet
from test_link import Node, broker_entry, wait_for

pytestmark = pytest.mark.broker

PLACEHOLDER = "changeme"


def new_id():
    return "creds-" + uuid.uuid4().hex[:6]


def refusals(log):
    return [line for line in log if line.startswith("mqtt: refusing to connect to")]


def never_connected(node, broker):
    return (node.probe is not None and not any(up for _, up in node.probe.events)
            and node.device_id not in broker.log_text())


def test_a_placeholder_password_never_connects_and_says_why_once(fresh_broker, tmp_path):
    device_id = new_id()
    entry = broker_entry(fresh_broker, device_id, PLACEHOLDER)
    with Node(tmp_path, [], wait_ms=500, entries=[entry], device_id=device_id) as node:
        assert wait_for(lambda: node.probe is not None and node.probe.passes >= 20)
        started, passes = node.now(), node.probe.passes
        time.sleep(1.0)  # about 10 s of board time at speed 10: many would-be attempts
        board_s, loops = node.now() - started, node.probe.passes - passes
        assert never_connected(node, fresh_broker)
        assert refusals(node.board.log) == [
            "mqtt: refusing to connect to %s:%d: broker.password is a placeholder; provision this node with "
            "its own password" % (fresh_broker.host, fresh_broker.port)]
        assert not any(PLACEHOLDER in line for line in node.board.log)
        assert not any("mqtt connect to" in line for line in node.board.log)  # not even tried
        # Polite: each pass idles the 500 ms asked (no busy loop spinning on a broker it will not use).
        assert board_s >= 5 and loops <= board_s / 0.5 + 2, (board_s, loops)
        assert node.link.wlan.isconnected()  # WiFi is kept up all the same


@pytest.mark.parametrize("user, password, words", [
    (None, "Xk3#pL9!vQ2@-long-enough", "broker.user is not set: the node would connect anonymously"),
    ("self", None, "broker.password is not set"),
    ("self", "short-Pw9", "broker.password is shorter than 12 characters"),
])
def test_each_credentials_problem_is_refused(fresh_broker, tmp_path, user, password, words):
    device_id = new_id()
    entry = dict(broker_entry(fresh_broker, device_id), user=device_id if user == "self" else user,
                 password=password)
    with Node(tmp_path, [], wait_ms=500, entries=[entry], device_id=device_id) as node:
        assert wait_for(lambda: node.probe is not None and node.probe.passes >= 10)
        time.sleep(0.3)
        assert never_connected(node, fresh_broker)
        (line,) = refusals(node.board.log)
        assert words in line, line
        if password:
            assert password not in "\n".join(node.board.log)


def test_a_refused_primary_leaves_the_backup_in_use(fresh_broker, tmp_path):
    with Mosquitto() as backup:
        device_id = new_id()
        primary = broker_entry(fresh_broker, device_id, "<password>")
        with Node(tmp_path, [], entries=[primary, broker_entry(backup, device_id)], device_id=device_id) as node:
            node.wait_connected()
            node.wait_sent(2)
            assert node.link.broker_index == 1
            backup.stop()  # the primary stays refused however long the backup is gone
            node.wait_connected(False)
            time.sleep(1.0)
            assert node.link.broker_index == 1 and node.device_id not in fresh_broker.log_text()
            (line,) = refusals(node.board.log)
            assert line.startswith("mqtt: refusing to connect to %s:%d: broker.password is a placeholder"
                                   % (fresh_broker.host, fresh_broker.port))


def test_a_node_with_a_placeholder_password_keeps_sampling_and_queueing(fresh_broker, tmp_path):
    fleet = Fleet(1, fresh_broker.host, fresh_broker.port, site="creds", workdir=tmp_path, speed=20,
                  intervals={"temp_s": 1, "vib_s": 5, "diag_s": 60})
    board = fleet.boards[0]
    config_path = board.flash_dir / "config.json"
    cfg = json.loads(config_path.read_text())
    cfg["broker"]["password"] = "CHANGE_ME"
    config_path.write_text(json.dumps(cfg))
    with fleet:
        app = lambda: board.runtime.modules.get("node.app")  # noqa: E731
        assert wait_for(lambda: getattr(app(), "node", None) is not None)
        node = app().node
        assert wait_for(lambda: sum(node.store.stats()[k] for k in ("ram", "flash")) >= 20), node.store.stats()
        assert board.crashed is None, board.crashed
        assert not node.link.connected and node.config_error is None  # the config itself is fine
        assert board.device_id not in fresh_broker.log_text()
        lines = refusals(board.log)
        assert lines == ["mqtt: refusing to connect to %s:%d: broker.password is a placeholder; provision this "
                         "node with its own password" % (fresh_broker.host, fresh_broker.port)], lines
        assert not any("CHANGE_ME" in line for line in board.log)
