"""floorwatch.security.passwd: mosquitto's own password format, checked against mosquitto_passwd
and real broker logins (tests/security/test_broker_acl.py logs in with our entries too)."""

import base64
import os
import shutil
import socket
import stat
import subprocess

import pytest

from floorwatch.broker import Mosquitto
from floorwatch.security.brokerdir import BrokerDir
from floorwatch.security.passwd import (hash_password, read_passwd, verify_password, write_passwd,
                                        write_private)

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
needs_mosquitto_passwd = pytest.mark.skipif(not os.access(MOSQUITTO_PASSWD, os.X_OK),
                                            reason="mosquitto_passwd is not installed")


def mosquitto_entry(tmp_path, user, password):
    path = tmp_path / "mosquitto-made"
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(path), user, password], check=True, capture_output=True)
    line = path.read_text().strip()
    assert line.startswith(user + ":")
    return line.split(":", 1)[1]


def test_entry_has_mosquittos_layout():
    entry = hash_password("correct horse battery")
    empty, kind, iterations, salt, digest = entry.split("$")
    assert (empty, kind, iterations) == ("", "7", "101")
    assert len(base64.b64decode(salt, validate=True)) == 12
    assert len(base64.b64decode(digest, validate=True)) == 64
    assert hash_password("correct horse battery") != entry  # a new salt every time


@needs_mosquitto_passwd
def test_same_salt_gives_mosquitto_passwds_own_hash(tmp_path):
    theirs = mosquitto_entry(tmp_path, "press-1", "s3cret-Passw0rd-x")
    _, _, iterations, salt, _ = theirs.split("$")
    ours = hash_password("s3cret-Passw0rd-x", salt=base64.b64decode(salt), iterations=int(iterations))
    assert ours == theirs
    assert verify_password("s3cret-Passw0rd-x", theirs)
    assert not verify_password("s3cret-Passw0rd-y", theirs)


@pytest.mark.parametrize("entry", ["", "plain", "$6$abc$def", "$7$x$AAAA$AAAA", "$7$101$!!$AAAA"])
def test_malformed_entries_verify_nothing(entry):
    assert verify_password("anything", entry) is False


def test_other_iteration_counts_verify():
    entry = hash_password("pw-with-1000-iterations", iterations=1000)
    assert entry.startswith("$7$1000$")
    assert verify_password("pw-with-1000-iterations", entry)
    assert not verify_password("pw-with-1000-iterationz", entry)


def test_password_file_is_atomic_owner_only_and_round_trips(tmp_path):
    path = tmp_path / "passwd"
    path.write_text("old:entry\n")
    os.chmod(path, 0o644)
    entries = {"press-2": hash_password("b" * 16), "press-1": hash_password("a" * 16)}
    write_passwd(path, entries)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_passwd(path) == entries
    assert path.read_text().splitlines()[0].startswith("press-1:")  # sorted, one per line
    assert [p.name for p in tmp_path.iterdir()] == ["passwd"]  # no temporary file left behind


@pytest.mark.parametrize("user", ["", "a:b", "a b", "a\nb"])
def test_user_names_that_would_break_the_file_are_refused(tmp_path, user):
    with pytest.raises(ValueError) as info:
        write_passwd(tmp_path / "passwd", {user: hash_password("x" * 12)})
    assert repr(user) in str(info.value)
    assert not (tmp_path / "passwd").exists()


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "passwd"
    write_private(path, "kept\n")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_private(path, "new\n")
    assert path.read_text() == "kept\n"
    assert [p.name for p in tmp_path.iterdir()] == ["passwd"]


@pytest.mark.broker
def test_mosquitto_logs_in_with_our_entries_at_any_iteration_count(tmp_path):
    made = BrokerDir.init(tmp_path / "broker")
    passwords = {"press-101": "Vq2-101-xT9mB4nLr7Ks", "press-999": "Jd5-999-wE3pZ8cHv1Qa"}
    entries = read_passwd(tmp_path / "broker" / "passwd")
    entries["press-101"] = hash_password(passwords["press-101"])
    entries["press-999"] = hash_password(passwords["press-999"], iterations=999)
    write_passwd(tmp_path / "broker" / "passwd", entries)
    with Mosquitto(secure=made) as server:
        for user, password in passwords.items():
            assert connack(server.port, user, password) == 0, user
            assert connack(server.port, user, password[:-1] + "x") == 5, user


def connack(port, user, password):
    """The CONNACK return code for a login (client id = user) on the plain listener."""
    def field(text):
        return len(text).to_bytes(2, "big") + text.encode()
    body = b"\x00\x04MQTT\x04\xc2\x00\x3c" + field(user) + field(user) + field(password)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(bytes([0x10, len(body)]) + body)
        return sock.recv(4)[3]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give a file away")
def test_a_rewrite_as_root_keeps_the_owner_the_broker_reads_it_as(tmp_path):
    path = tmp_path / "passwd"
    write_private(path, "old\n")
    os.chown(path, 12345, 12345)  # as `chown -R mosquitto: DIR` leaves it
    write_private(path, "new\n")
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 12345, 0o600)
    assert path.read_text() == "new\n"
