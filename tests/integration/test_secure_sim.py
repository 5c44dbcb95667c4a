"""The simulator on a secured broker: TLS, a login of its own per board, the ACL, as a real site runs.

`floorwatch sim` starts one by default; the boards run the real firmware's TLS and login paths
against a real mosquitto, and the table's observer logs in as the monitor role.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from floorwatch.broker import Mosquitto
from floorwatch.fleet import cmd
from floorwatch.observer import Observer
from floorwatch.security.access import BrokerAccess
from floorwatch.security.brokerdir import BrokerDir
from floorwatch.sim import live
from floorwatch.sim.fleet import Fleet, device_id, new_password

pytestmark = pytest.mark.broker

FLOORWATCH = str(Path(sys.executable).with_name("floorwatch"))
FAST = {"temp_s": 2, "vib_s": 4, "diag_s": 30}


def floorwatch(*args, timeout=90):
    return subprocess.run([FLOORWATCH, *args], capture_output=True, text=True, timeout=timeout)


def test_sim_runs_on_a_private_secured_broker_by_default():
    result = floorwatch("sim", "--boards", "3", "--duration", "14", "--site", "sec", "--seed", "4")
    assert result.returncode == 0, result.stderr
    assert "(TLS, a login per board)" in result.stdout
    assert "3 of 3 boards published telemetry" in result.stdout


def test_plain_keeps_the_anonymous_private_broker():
    result = floorwatch("sim", "--boards", "1", "--duration", "8", "--plain")
    assert result.returncode == 0, result.stderr
    assert "(plain, anonymous)" in result.stdout and "1 of 1 boards published telemetry" in result.stdout


def test_only_boards_with_their_own_password_get_in(tmp_path):
    passwords = {device_id(index): new_password() for index in range(3)}
    with live.private_broker("gate", passwords) as access:
        assert access.tls and access.user == "monitor" and access.port != 1883
        wrong = dict(passwords, **{"sim-002": new_password()})  # registered with another password
        ca = Path(access.ca).read_text()
        with Observer(access, site="gate") as observer, \
                Fleet(3, access.host, access.port, site="gate", workdir=tmp_path, intervals=FAST,
                      passwords=wrong, ca=ca) as fleet:
            assert observer.wait_for(lambda o: {"sim-001", "sim-003"} <= {
                d.device_id for d in o.devices.values() if d.records}, 30), fleet.boards[0].log[-5:]
            assert "sim-002" not in observer.devices  # refused: not one message from it
            assert observer.violations == []
            # It reached the broker (TLS and all, as its neighbours did) and was turned away there.
            refusals = [line for line in fleet.boards[1].log if "localhost:%d" % access.port in line and "failed" in line]
            assert refusals, fleet.boards[1].log[-5:]


def test_sim_logs_in_to_an_external_broker_with_the_access_options(tmp_path):
    directory = BrokerDir.init(tmp_path / "broker")
    with Mosquitto(secure=directory) as broker:
        url = "mqtts://monitor@localhost:%d" % broker.tls_port
        wrong = tmp_path / "wrong.password"
        wrong.write_text("not-the-monitor-password\n")
        refused = floorwatch("sim", "--broker", url, "--ca", str(directory.ca_path), "--password-file", str(wrong),
                             "--duration", "1")
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [
            "floorwatch: error: broker mqtts://localhost:%d refused user 'monitor': Not authorized "
            "(wrong user or password?)" % broker.tls_port]
        no_ca = floorwatch("sim", "--broker", url, "--password-file", str(wrong), "--duration", "1")
        assert no_ca.returncode == 2 and "give --ca FILE" in no_ca.stderr
        in_url = floorwatch("sim", "--broker", "mqtts://monitor:hunter2hunter2@localhost", "--duration", "1")
        assert in_url.returncode == 2 and "hunter2" not in in_url.stderr + in_url.stdout


def test_commands_need_the_operator_role(tmp_path):
    """`fleet cmd` as the operator reaches a board over TLS; the monitor role may only watch: the
    broker drops its command, so the board never answers."""
    passwords = {device_id(0): new_password()}
    with live.private_broker("ops", passwords) as monitor:
        with Observer(monitor, site="ops") as observer, \
                Fleet(1, monitor.host, monitor.port, site="ops", workdir=tmp_path, intervals=FAST,
                      passwords=passwords, ca=Path(monitor.ca).read_text()):
            assert observer.wait_for(lambda o: o.devices.get("sim-001") and o.devices["sim-001"].state == "online", 30)
            directory = BrokerDir(Path(monitor.ca).parent)
            operator = BrokerAccess(monitor.host, monitor.port, tls=True, ca=monitor.ca, user="operator",
                                    password=directory.role_password("operator"))
            [answered] = cmd.send(operator, None, "ops/sim-001", "ping", timeout=15)
            assert answered["outcome"] == "ok", answered
            [ignored] = cmd.send(monitor, None, "ops/sim-001", "ping", timeout=3)
            assert ignored["outcome"] == "timeout" and ignored["state"] == "online"
