"""How host tools reach the broker (floorwatch.security.access): URLs, passwords kept out of sight,
and, against a real secured mosquitto, TLS checked and refused logins as one line."""

import json

import click
import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from floorwatch.broker import Mosquitto
from floorwatch.observer import Observer
from floorwatch.security.access import PASSWORD_ENV, AccessError, BrokerAccess, broker_access_options
from floorwatch.security.brokerdir import BrokerDir

SECRET = "s3cret-Passw0rd-xyz"


@pytest.mark.parametrize("url, host, port, tls, user", [
    ("mqtt://10.0.0.5", "10.0.0.5", 1883, False, None),
    ("mqtt://broker.plant-a:1884", "broker.plant-a", 1884, False, None),
    ("mqtts://broker.plant-a", "broker.plant-a", 8883, True, None),
    ("mqtts://operator@localhost:18883", "localhost", 18883, True, "operator"),
    ("mqtt://[::1]:1883", "::1", 1883, False, None),
])
def test_urls(url, host, port, tls, user):
    access = BrokerAccess.from_url(url, env={PASSWORD_ENV: SECRET})
    assert (access.host, access.port, access.tls, access.user) == (host, port, tls, user)
    assert access.password == (SECRET if user else None)


@pytest.mark.parametrize("url", ["http://x", "mqtt://", "mqtt://h:0", "mqtt://h:99999", "mqtt://h/path",
                                 "mqtts://@h", "h:1883", "mqtt://h:x"])
def test_bad_urls_are_one_line_naming_the_forms(url):
    with pytest.raises(AccessError) as error:
        BrokerAccess.from_url(url)
    assert "mqtts://" in str(error.value) and "\n" not in str(error.value) and error.value.option == "--broker"


def test_a_password_in_the_url_is_refused_without_echoing_it():
    with pytest.raises(AccessError) as error:
        BrokerAccess.from_url("mqtts://monitor:%s@localhost" % SECRET)
    assert SECRET not in str(error.value) and "--password-file" in str(error.value)


def test_password_from_the_file_then_the_environment(tmp_path):
    secret_file = tmp_path / "monitor.password"
    secret_file.write_text(SECRET + "\n")
    by_file = BrokerAccess.from_url("mqtts://localhost", user="monitor", password_file=secret_file,
                                    env={PASSWORD_ENV: "not-this-one-at-all"})
    assert by_file.password == SECRET
    by_env = BrokerAccess.from_url("mqtts://monitor@localhost", env={PASSWORD_ENV: SECRET})
    assert by_env.password == SECRET
    anonymous = BrokerAccess.from_url("mqtt://localhost", env={PASSWORD_ENV: SECRET})
    assert anonymous.user is None and anonymous.password is None  # the variable alone logs nobody in


@pytest.mark.parametrize("setup, kwargs, words", [
    (None, {"password_file": "missing.password", "user": "monitor"}, "missing.password: cannot read it"),
    ("", {"password_file": "empty.password", "user": "monitor"}, "is empty"),
    ("a\nb\n", {"password_file": "two.password", "user": "monitor"}, "first and only line"),
    (SECRET, {"password_file": "fine.password"}, "needs a user"),
    (None, {"user": "monitor"}, "needs a password"),
    (None, {"ca": "nowhere.crt"}, "--ca is for TLS"),
])
def test_bad_credentials_are_one_line(tmp_path, monkeypatch, setup, kwargs, words):
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        (tmp_path / kwargs["password_file"]).write_text(setup)
    with pytest.raises(AccessError) as error:
        BrokerAccess.from_url("mqtt://localhost", env={}, **kwargs)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_repr_and_str_never_show_the_password():
    access = BrokerAccess("localhost", 8883, tls=True, ca="/x/ca.crt", user="monitor", password=SECRET)
    for text in (repr(access), str(access), access.url, access.where):
        assert SECRET not in text
    assert repr(access) == "BrokerAccess('mqtts://monitor@localhost:8883', ca='/x/ca.crt', password=<hidden>)"
    assert str(access) == "mqtts://monitor@localhost:8883"


@click.command()
@broker_access_options(required=False)
def show(broker):
    click.echo(repr(broker))


def test_the_click_options_make_one_access(tmp_path):
    secret_file = tmp_path / "p"
    secret_file.write_text(SECRET)
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    runner = CliRunner()
    done = runner.invoke(show, ["--broker", "mqtts://localhost:18883", "--ca", str(ca), "--user", "operator",
                                "--password-file", str(secret_file)])
    assert done.exit_code == 0, done.output
    assert done.output.strip() == "BrokerAccess('mqtts://operator@localhost:18883', ca=%r, password=<hidden>)" % str(ca)
    assert runner.invoke(show, []).output.strip() == "None"
    alone = runner.invoke(show, ["--user", "operator"])
    assert alone.exit_code == 2 and "go with --broker" in alone.output
    missing = runner.invoke(show, ["--broker", "mqtts://localhost", "--ca", str(tmp_path / "no.crt")])
    assert missing.exit_code == 2 and "--ca" in missing.output and "cannot read it" in missing.output


# --- against a real, secured mosquitto ------------------------------------------------------------

@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    directory = BrokerDir.init(tmp_path_factory.mktemp("secured") / "broker", devices=[("plant-a", "press-1", None)])
    with Mosquitto(secure=directory) as broker:
        yield directory, broker


def monitor_access(secured, **changes):
    directory, broker = secured
    fields = dict(host="localhost", port=broker.tls_port, tls=True, ca=str(directory.ca_path), user="monitor",
                  password=directory.role_password("monitor"))
    fields.update(changes)
    return BrokerAccess(**fields)


def publish_as_device(secured, body):
    directory, broker = secured
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    device = BrokerAccess("localhost", broker.tls_port, tls=True, ca=str(directory.ca_path), user="press-1",
                          password=directory.device_secrets()["press-1"])
    device.connect(client)
    client.publish("floorwatch/plant-a/press-1/status", json.dumps(body), qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


@pytest.mark.broker
def test_the_monitor_logs_in_over_tls_and_sees_the_fleet(secured):
    publish_as_device(secured, {"state": "offline", "fw": "0.1.0", "boot": 1})
    with Observer(monitor_access(secured), site="plant-a") as observer:
        assert observer.wait_for(lambda o: "press-1" in o.devices and o.devices["press-1"].state == "offline", 5)
        assert observer.violations == []


@pytest.mark.broker
@pytest.mark.parametrize("changes, words", [
    ({"password": "wrong-password-123"}, "refused user 'monitor': Not authorized (wrong user or password?)"),
    ({"user": "nobody", "password": SECRET}, "refused user 'nobody'"),
    ({"user": None, "password": None}, "refused an anonymous client"),
])
def test_a_refused_login_is_one_line_naming_broker_and_user(secured, changes, words):
    access = monitor_access(secured, **changes)
    with pytest.raises(AccessError) as error:
        Observer(access, site="plant-a").start(timeout=5)
    text = str(error.value)
    assert words in text and "mqtts://localhost:%d" % access.port in text and "\n" not in text
    assert SECRET not in text and "wrong-password-123" not in text


@pytest.mark.broker
def test_a_certificate_from_another_ca_or_for_another_host_is_not_trusted(secured, tmp_path):
    other = BrokerDir.init(tmp_path / "other", hosts=["elsewhere.example"])
    with pytest.raises(AccessError) as error:
        Observer(monitor_access(secured, ca=str(other.ca_path)), site="plant-a").start(timeout=5)
    assert "not trusted" in str(error.value) and "\n" not in str(error.value)
    # The right CA, but a certificate that names another host: the host name check refuses it.
    with Mosquitto(secure=other) as elsewhere:
        access = BrokerAccess("localhost", elsewhere.tls_port, tls=True, ca=str(other.ca_path), user="monitor",
                              password=other.role_password("monitor"))
        with pytest.raises(AccessError) as error:
            Observer(access, site="plant-a").start(timeout=5)
    assert "not trusted" in str(error.value) and "localhost" in str(error.value)


@pytest.mark.broker
def test_the_password_is_nowhere_in_the_broker_log(secured):
    with Observer(monitor_access(secured), site="plant-a"):
        pass
    directory, broker = secured
    log = broker.log_text()
    assert "monitor" in log  # the login is logged, by user name
    assert directory.role_password("monitor") not in log and directory.device_secrets()["press-1"] not in log


def test_an_unreachable_broker_is_the_socket_error():
    """Left as the OSError it is: each tool names the broker in its own line (sim, chaos, fleet cmd)."""
    with pytest.raises(ConnectionRefusedError):
        Observer(BrokerAccess("127.0.0.1", 1), site="x").start(timeout=2)
