"""Secrets stay secret: simulated nodes on a secured broker, searched for every password they hold.

Two boards run the real firmware over TLS: one healthy (answering ping, diag and a rejected set),
one whose broker password is not even a string, so its config is rejected and the error is printed
and kept. Everything that could carry a secret out is collected: every message on floorwatch/#
(status with its config errors, telemetry, diag, acks) and every line each board printed. None of
the boards' broker or WiFi passwords, nor the accounts' passwords, nor the CA key may appear in any
of it. (The broker's log is searched in tests/security/test_access.py, the provisioning inventory
and output in tests/integration/test_provision.py.)
"""

import json
import queue
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from floorwatch.fleet import cmd
from floorwatch.security.access import BrokerAccess
from floorwatch.security.brokerdir import BrokerDir
from floorwatch.sim import live
from floorwatch.sim.fleet import Fleet, device_id, new_password

pytestmark = pytest.mark.broker
SITE = "vault"
FAST = {"temp_s": 2, "vib_s": 4, "diag_s": 10}


def collect_everything(access):
    """A client logged in as `access` that keeps every message under floorwatch/."""
    seen = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.on_message = lambda c, u, msg: seen.put((msg.topic, msg.payload))
    access.connect(client)  # and starts its network loop
    client.subscribe("floorwatch/#", qos=1)
    return client, seen


def wait_for(seen, got, predicate, timeout=40):
    """Move messages from the queue into `got` until predicate(got) or the timeout."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate(got):
        remaining = deadline - time.monotonic()
        assert remaining > 0, "timed out; topics seen: %s" % sorted({t for t, _ in got})
        try:
            got.append(seen.get(timeout=min(remaining, 0.5)))
        except queue.Empty:
            pass


def test_no_password_or_key_leaves_a_node(tmp_path):
    passwords = {device_id(index): new_password() for index in range(2)}
    with live.private_broker(SITE, passwords) as monitor:
        directory = BrokerDir(Path(monitor.ca).parent)
        operator = BrokerAccess(monitor.host, monitor.port, tls=True, ca=monitor.ca, user="operator",
                                password=directory.role_password("operator"))
        fleet = Fleet(2, monitor.host, monitor.port, site=SITE, workdir=tmp_path, intervals=FAST,
                      passwords=passwords, ca=Path(monitor.ca).read_text())
        broken = fleet.boards[1]
        config_path = broken.flash_dir / "config.json"
        config = json.loads(config_path.read_text())
        config["broker"]["password"] = [passwords[broken.device_id]]  # not a string: the config is refused
        config_path.write_text(json.dumps(config))
        for board in fleet.boards:
            board.log_lines = 100000  # keep every line the board prints
        client, seen = collect_everything(monitor)
        got = []
        try:
            fleet.start()
            healthy = "floorwatch/%s/%s/" % (SITE, device_id(0))
            wait_for(seen, got, lambda g: {healthy + kind for kind in ("status", "telemetry", "diag")}
                     <= {t for t, _ in g})
            for command, args in (("ping", None), ("diag", None), ("set", {"thresholds": {"ghost.rms": {"warn": 1, "alarm": 2}}})):
                [answer] = cmd.send(operator, None, "%s/%s" % (SITE, device_id(0)), command, args, timeout=15)
                assert answer["ack"] is not None, answer
            wait_for(seen, got, lambda g: sum(t == healthy + "ack" for t, _ in g) >= 3)
            assert any("broker.password" in line for line in broken.log), broken.log[-5:]
        finally:
            fleet.close()
            client.loop_stop()
            client.disconnect()
        logs = {board.device_id: "\n".join(board.log) for board in fleet.boards}
        secrets = dict(("broker password of %s" % i, p) for i, p in passwords.items())
        secrets.update(("wifi password of %s" % b.device_id, b.ap.password) for b in fleet.boards)
        secrets.update(("password of account %s" % a, directory.role_password(a)) for a in directory.accounts())
        ca_key = (directory.path / "ca.key").read_text().splitlines()
        secrets["the CA key"] = max(ca_key, key=len)  # its longest line of base64
        places = {"message on %s" % topic: payload.decode("utf-8", "replace") for topic, payload in got}
        places.update(("console of %s" % i, text) for i, text in logs.items())
        leaks = ["%s in %s" % (what, where) for what, secret in secrets.items()
                 for where, text in places.items() if secret in text]
        assert leaks == []
        # The search itself can find what it looks for: the broken board did print its error.
        assert "<hidden>" in logs[broken.device_id]
        assert len(got) > 10
