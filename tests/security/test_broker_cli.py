"""`floorwatch broker init` and `broker run` as a user runs them, and BrokerDir's own checks."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from cryptography import x509

from floorwatch.security.brokerdir import BrokerDir, BrokerDirError
from floorwatch.security.command import group
from floorwatch.security.passwd import read_passwd, verify_password

FLEET = """
[fleet]
site = "plant-t"
board = "esp32-devkitc"
id_prefix = "press"
secrets = "plant-secrets.json"
[wifi]
ssid = "plant-t-iot"
password = "wifi-password"
[broker]
host = "10.0.0.5"
tls = true
ca = "broker/ca.crt"  # made by the very init that reads this file
dir = "broker"
"""
FLEET_SECRETS = {"aa:bb:cc:00:00:01": {"device_id": "press-000001", "password": "Zr3sPQ9vLkT0aa1bYc2dXe4F"},
                 "aa:bb:cc:00:00:02": {"device_id": "press-7", "password": "Hq8wNn2mRr5tUu6vWw7xYy8z"}}


def invoke(*args):
    result = CliRunner().invoke(group, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def one_line_usage_error(result, *words):
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in error[0], error[0]


def test_init_with_devices_makes_the_whole_directory(tmp_path):
    target = tmp_path / "broker"
    result = invoke("init", target, "--devices", "press-1,press-2", "--devices", "press-3", "--site", "plant-a",
                    "--host", "broker.plant-a.lan", "--host", "10.0.0.5", "--dev-port", 11883)
    assert result.exit_code == 0, result.output
    assert "3 device(s)" in result.output and "device-secrets.json" in result.output
    made = BrokerDir(target)
    assert made.devices() == {"press-1": "plant-a", "press-2": "plant-a", "press-3": "plant-a"}
    secrets = made.device_secrets()
    hashes = read_passwd(target / "passwd")
    assert set(hashes) == {"press-1", "press-2", "press-3", "monitor", "operator"}
    for device, password in secrets.items():
        assert len(password) >= 12 and verify_password(password, hashes[device])
        assert password not in result.output and password not in (target / "devices.json").read_text()
    assert len(set(secrets.values())) == 3
    for role in ("monitor", "operator"):
        assert verify_password(made.role_password(role), hashes[role])
    for private in ("passwd", "acl", "ca.key", "broker.key", "device-secrets.json", "clients/monitor.password",
                    "clients/operator.password"):
        assert mode(target / private) == 0o600, private
    assert mode(target) == 0o700 and mode(target / "ca.crt") == 0o644
    broker_cert = x509.load_pem_x509_certificate((target / "broker.crt").read_bytes())
    names = broker_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["broker.plant-a.lan"]
    conf = (target / "mosquitto.conf").read_text()
    assert "listener 8883\n" in conf and "listener 11883 127.0.0.1\n" in conf
    assert "allow_anonymous false" in conf and str(target.resolve() / "acl") in conf
    assert "user press-2\ntopic write floorwatch/plant-a/press-2/status\n" in (target / "acl").read_text()


def test_init_without_dev_port_has_only_the_tls_listener(tmp_path):
    assert invoke("init", tmp_path / "b").exit_code == 0
    conf = (tmp_path / "b" / "mosquitto.conf").read_text()
    assert [line for line in conf.splitlines() if line.startswith("listener")] == ["listener 8883"]
    assert BrokerDir(tmp_path / "b").devices() == {}


def test_init_with_a_fleet_registers_its_provisioned_identities(tmp_path):
    fleet = tmp_path / "plant.toml"
    fleet.write_text(FLEET)
    (tmp_path / "plant-secrets.json").write_text(json.dumps(FLEET_SECRETS))
    result = invoke("init", tmp_path / "broker", "--fleet", fleet)
    assert result.exit_code == 0, result.output
    assert "2 device(s) from %s, site plant-t" % (tmp_path / "plant-secrets.json") in result.output
    made = BrokerDir(tmp_path / "broker")
    assert made.devices() == {"press-000001": "plant-t", "press-7": "plant-t"}
    assert made.device_secrets() == {}  # their passwords are the fleet's, kept in its secrets file
    hashes = read_passwd(tmp_path / "broker" / "passwd")
    for entry in FLEET_SECRETS.values():
        assert verify_password(entry["password"], hashes[entry["device_id"]])
    assert "clients/monitor.password" in result.output


def test_an_existing_directory_is_kept_unless_forced(tmp_path):
    target = tmp_path / "broker"
    assert invoke("init", target, "--devices", "press-1", "--site", "s").exit_code == 0
    ca_before = (target / "ca.crt").read_bytes()
    one_line_usage_error(invoke("init", target), "exists already", "--force")
    assert (target / "ca.crt").read_bytes() == ca_before
    assert invoke("init", target, "--force").exit_code == 0
    assert (target / "ca.crt").read_bytes() != ca_before
    assert BrokerDir(target).devices() == {}


@pytest.mark.parametrize("args, words", [
    (["--devices", "press/1", "--site", "s"], ["device_id", "'press/1'", "not a valid name"]),
    (["--devices", "press-1", "--site", "s#"], ["site", "'s#'"]),
    (["--devices", "monitor", "--site", "s"], ["'monitor'", "role"]),
    (["--devices", "press-1"], ["--devices needs --site"]),
    (["--site", "s"], ["--site goes with --devices"]),
    (["--devices", "press-1", "--site", "s", "--fleet", "f.toml"], ["--fleet or --devices"]),
    (["--host", "bad host"], ["'bad host'", "neither a host name nor an IP address"]),
    (["--dev-port", "8883"], ["both 8883"]),
    (["--fleet", "missing.toml"], ["missing.toml", "cannot read it"]),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    one_line_usage_error(invoke("init", tmp_path / "broker", *args), *words)
    assert not (tmp_path / "broker").exists()


def test_a_fleet_without_a_secrets_file_yet_is_one_line(tmp_path):
    fleet = tmp_path / "plant.toml"
    fleet.write_text(FLEET)
    one_line_usage_error(invoke("init", tmp_path / "broker", "--fleet", fleet), "no secrets file", "provision")
    (tmp_path / "plant-secrets.json").write_text("{not json")
    one_line_usage_error(invoke("init", tmp_path / "broker", "--fleet", fleet), "plant-secrets.json")


def test_broker_dir_refuses_what_is_not_one(tmp_path):
    with pytest.raises(BrokerDirError) as info:
        BrokerDir(tmp_path)
    assert str(info.value) == ("%s is not a broker directory (no mosquitto.conf): make one with "
                               "`floorwatch broker init %s`" % (tmp_path, tmp_path))
    one_line_usage_error(invoke("run", tmp_path), "not a broker directory")


def test_broker_dir_roles_devices_and_reload_without_a_broker(tmp_path):
    made = BrokerDir.init(tmp_path / "b", devices=[("s", "press-1", None)])
    with pytest.raises(BrokerDirError) as info:
        made.role_password("admin")
    assert str(info.value) == ("unknown account 'admin': the accounts are monitor, operator "
                               "(add one with `floorwatch broker add-account`)")
    with pytest.raises(BrokerDirError) as info:
        made.add_account("admin", "root")
    assert str(info.value) == "unknown role 'root': the roles are monitor, operator"
    with pytest.raises(BrokerDirError) as info:
        made.add_account("press-1", "monitor")
    assert str(info.value) == "account: 'press-1' is a device's name; pick another"
    with pytest.raises(BrokerDirError) as info:
        made.add_device("s", "operator")
    assert "the name of a broker role" in str(info.value)
    with pytest.raises(BrokerDirError) as info:
        made.add_device("s", "press-2", "short")
    assert str(info.value) == ("device press-2: broker.password is shorter than 12 characters; "
                               "provision this node with its own password")
    first = made.device_secrets()["press-1"]
    assert made.add_device("s", "press-1") is False  # known: keeps its password
    assert made.add_device("t", "press-1") is True   # moved to another site
    assert made.devices() == {"press-1": "t"} and made.device_secrets()["press-1"] == first
    assert "floorwatch/t/press-1/status" in (tmp_path / "b" / "acl").read_text()
    assert made.add_device("s", "press-2") is True
    assert verify_password(made.device_secrets()["press-2"], read_passwd(tmp_path / "b" / "passwd")["press-2"])
    assert made.reload() is False  # nothing runs
    dashboard = made.add_account("dashboard", "monitor")
    assert made.add_account("dashboard", "monitor") == dashboard  # there already: kept
    assert dashboard.stat().st_mode & 0o777 == 0o600
    assert made.accounts() == {"monitor": "monitor", "operator": "operator", "dashboard": "monitor"}
    assert verify_password(made.role_password("dashboard"), read_passwd(tmp_path / "b" / "passwd")["dashboard"])
    assert "user dashboard\ntopic read floorwatch/#\n\n" in (tmp_path / "b" / "acl").read_text()
    (tmp_path / "b" / "mosquitto.pid").write_text("%d\n" % os.getpid())  # a pid that is not mosquitto's
    assert made.running_pid() is None and made.reload() is False


# --- broker run ------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runnable_dir(path, **options):
    made = BrokerDir.init(path, tls_port=free_port(), **options)
    if os.geteuid() == 0:
        # As root, mosquitto would switch to user mosquitto, which may not read a test's files.
        with open(path / "mosquitto.conf", "a") as conf:
            conf.write("user root\n")
    return made


def start_run(path):
    return subprocess.Popen([sys.executable, "-c", "from floorwatch.security.command import group; group()",
                             "run", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.broker
def test_run_serves_writes_the_pid_file_and_stops_cleanly_on_ctrl_c(tmp_path):
    dev_port = free_port()
    made = runnable_dir(tmp_path / "b", dev_port=dev_port, devices=[("s", "press-1", None)])
    proc = start_run(made.path)
    try:
        wait_for(lambda: made.running_pid() is not None and "running" in _log(made))
        wait_for(lambda: _connack(dev_port, "press-1", made.device_secrets()["press-1"]) == 0)
        assert _connack(dev_port, "press-1", "not-the-password") == 5
        assert made.reload() is True
        wait_for(lambda: "reloading" in _log(made).lower())
        refused = invoke("init", made.path, "--force")
        one_line_usage_error(refused, "a mosquitto (pid %d) runs on" % made.running_pid(), "stop it first")
        second = invoke("run", made.path)  # one broker per directory
        assert second.exit_code == 1 and "already runs on" in second.output
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "mosquitto stopped" in out
    assert not (made.path / "mosquitto.pid").exists()


@pytest.mark.broker
def test_run_that_cannot_listen_says_why_in_one_line(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        made = runnable_dir(tmp_path / "b", dev_port=holder.getsockname()[1])
        proc = start_run(made.path)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 1
    errors = [line for line in err.splitlines() if line.startswith("Error: mosquitto stopped")]
    assert len(errors) == 1 and "Address already in use" in errors[0] and "Traceback" not in err
    assert not (made.path / "mosquitto.pid").exists()


def _log(made):
    try:
        return (made.path / "mosquitto.log").read_text()
    except FileNotFoundError:
        return ""


def _connack(port, user, password):
    def field(text):
        return len(text).to_bytes(2, "big") + text.encode()
    body = b"\x00\x04MQTT\x04\xc2\x00\x3c" + field("x") + field(user) + field(password)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(bytes([0x10, len(body)]) + body)
            reply = sock.recv(4)
    except OSError:
        return None
    return reply[3] if len(reply) == 4 else None


def test_add_account_gives_a_tool_its_own_login(tmp_path):
    invoke("init", tmp_path / "b")
    result = invoke("add-account", tmp_path / "b", "dashboard", "--role", "monitor")
    assert result.exit_code == 0, result.output
    assert "account dashboard (monitor): password in" in result.output
    assert BrokerDir(tmp_path / "b").accounts()["dashboard"] == "monitor"
    one_line_usage_error(invoke("add-account", tmp_path / "b", "dashboard", "--role", "operator"),
                         "exists already with role monitor")
    one_line_usage_error(invoke("add-account", tmp_path / "nowhere", "x", "--role", "monitor"),
                         "is not a broker directory")
