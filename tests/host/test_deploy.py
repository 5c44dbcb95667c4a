"""floorwatch.deploy: firmware and config onto a board over the raw REPL, confirmed by the boot line.

The boards are virtual (floorwatch.vboard: MicroPython's raw REPL over a TCP port, the node firmware
running in the simulator), except a plain TCP server that never answers, which is what a port
without MicroPython looks like. pytest-mock stands in only for what cannot happen here: a USB port
vanishing as the board resets, or the link dying in the middle of a write.
"""

import hashlib
import json
import re
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from floorwatch import boards, deploy as deploy_module, esp_image
from floorwatch.build import MANIFEST_PATH, build
from floorwatch.deploy import DeployError, check_config, config_sha256, deploy, installed
from floorwatch.vboard import FLASH_SIZES, VBoard
from floorwatch.vboard.spiflash import SpiFlash

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
VERSION = re.search(r'VERSION = "([^"]+)"', (FIRMWARE / "node" / "__init__.py").read_text())[1]
BOARD = "esp32-devkitc"


def node_config(device_id="press-7"):
    return {"device_id": device_id, "site": "plant-a",
            "wifi": {"ssid": "floorwatch-sim", "password": "sim-password"},
            "broker": {"host": "127.0.0.1", "port": 1883, "user": device_id, "password": "Vq3-ds8Lk2mZ-wT7e"},
            "sensors": boards.load(BOARD)["default_sensors"]}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "press-7.json"
    path.write_text(json.dumps(node_config(), indent=1))
    return path


@pytest.fixture
def silent_port():
    """A TCP port that accepts connections and never says a word: no MicroPython behind it."""
    server = socket.create_server(("127.0.0.1", 0))
    seen = {"connections": 0, "received": bytearray()}

    def drain(conn):
        with conn:
            while data := conn.recv(4096):
                seen["received"] += data

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            seen["connections"] += 1
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield "socket://127.0.0.1:%d" % server.getsockname()[1], seen
    server.close()


# --- before the board is touched -----------------------------------------------------------------
def test_a_bad_config_is_one_line_and_the_port_is_never_opened(silent_port, config_file):
    url, seen = silent_port
    bad = node_config()
    bad["broker"]["port"] = 0
    config_file.write_text(json.dumps(bad))
    with pytest.raises(DeployError) as caught:
        deploy(url, config_file, timeout=2)
    assert str(caught.value) == f"{config_file}: broker.port: 0 is out of range 1..65535"
    assert seen["connections"] == 0


def test_a_config_file_that_is_not_json_or_not_there(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"device_id": "a", "device_id": "b"}')
    with pytest.raises(DeployError, match=r"^.*broken\.json: .*duplicate key \"device_id\"$"):
        check_config(broken)
    with pytest.raises(DeployError, match=r"missing\.json: cannot read it: No such file"):
        check_config(tmp_path / "missing.json")


def test_the_firmware_rules_apply_too():
    cfg = node_config()
    cfg["thresholds"] = {"bearing": {}}
    with pytest.raises(DeployError, match=r"^config: thresholds\.bearing: needs warn or alarm"):
        check_config(cfg)


def test_an_unknown_board_is_refused_before_the_port_is_opened(silent_port, config_file):
    url, seen = silent_port
    with pytest.raises(DeployError, match=r"^unknown board 'esp99'"):
        deploy(url, config_file, board="esp99")
    assert seen["connections"] == 0


def test_config_sha256_is_the_hash_of_what_deploy_writes(config_file):
    cfg = node_config()
    shuffled = dict(reversed(list(cfg.items())))
    assert config_sha256(cfg) == config_sha256(shuffled)
    assert config_sha256(cfg) == hashlib.sha256(check_config(cfg)[1]).hexdigest()
    assert config_sha256(config_file) == hashlib.sha256(config_file.read_bytes()).hexdigest()
    assert json.loads(check_config(cfg)[1]) == cfg


def test_the_board_must_load_what_mpy_cross_made(tmp_path):
    built = build("xtensawin", build_dir=tmp_path)
    esp32 = boards.load("esp32-devkitc")
    deploy_module._check_mpy("P", esp32, "1.24.1", 6 | 3 << 8 | 10 << 10, built)  # a real ESP32's value
    deploy_module._check_mpy("P", esp32, "1.24.1", 6 | 3 << 8, built)  # no arch given
    deploy_module._check_mpy("P", esp32, "1.12", 0, built)  # too old to tell
    with pytest.raises(DeployError, match=r"^the board on P runs MicroPython 1.18, which loads "
                                          r"\.mpy version 5; mpy-cross made version 6$"):
        deploy_module._check_mpy("P", esp32, "1.18", 5 | 10 << 10, built)
    with pytest.raises(DeployError, match=r"^the board on P is a rv32imc chip, not xtensawin as "
                                          r"board esp32-devkitc is: pass the right --board$"):
        deploy_module._check_mpy("P", esp32, "1.24.1", 6 | 3 << 8 | 11 << 10, built)


# --- ports without MicroPython -----------------------------------------------------------------------
def test_a_board_that_never_answers_the_raw_repl(silent_port, config_file):
    url, seen = silent_port
    with pytest.raises(DeployError) as caught:
        deploy(url, config_file, timeout=1.5)
    assert str(caught.value) == f"no MicroPython raw REPL on {url} within 1.5 s (no answer)"
    assert b"\r\x03" in seen["received"] and b"\r\x01" in seen["received"]  # Ctrl-C, then Ctrl-A
    with pytest.raises(DeployError, match="^no MicroPython raw REPL on "):
        installed(url, timeout=1)


def test_what_mpremote_prints_in_one_thread_stays_out_of_the_others(silent_port):
    # Boards are looked at in parallel threads; while one waits for a raw REPL that never comes,
    # the process's stdout must stay the process's (a redirect of sys.stdout would take it).
    stdout = sys.stdout
    looking = threading.Thread(target=lambda: pytest.raises(DeployError, installed, silent_port[0], timeout=1.5))
    looking.start()
    swapped = False
    while looking.is_alive():
        swapped |= sys.stdout is not stdout
        time.sleep(0.005)
    assert not swapped


def test_nothing_listening_on_the_port(config_file):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        url = "socket://127.0.0.1:%d" % probe.getsockname()[1]
    with pytest.raises(DeployError) as caught:
        deploy(url, config_file, timeout=1)
    message = str(caught.value)
    assert message.startswith(f"cannot open {url}: ") and "\n" not in message


# --- virtual boards running MicroPython ---------------------------------------------------------------
@pytest.fixture(scope="session")
def micropython_flash(tmp_path_factory):
    """A flash image holding MicroPython (as `floorwatch flash` would leave it), made once."""
    board = boards.load(BOARD)
    path = tmp_path_factory.mktemp("flash") / "flash.bin"
    with SpiFlash(path, FLASH_SIZES[board["flash_size"]]) as flash:
        flash.write(board["image_offset"], esp_image.build_micropython_image(board["chip"]))
    return path


@pytest.fixture
def board(tmp_path, micropython_flash):
    state = tmp_path / "vboard"
    state.mkdir()
    shutil.copy(micropython_flash, state / "flash.bin")
    with VBoard.start(BOARD, state_dir=state) as vb:
        yield vb


def on_flash(vb, path):
    return (vb.board.flash_dir / path.lstrip("/")).read_bytes()


def deployed_before(vb, config_file):
    """Put on the board's flash what a deploy of this checkout leaves there (the first test shows
    that it does), so a test about a later deploy need not pay for a full one."""
    built = build("xtensawin")
    files = {path: local.read_bytes() for path, local in built.files.items()}
    files.update({"/config.json": config_file.read_bytes(), MANIFEST_PATH: built.manifest_bytes()})
    for path, data in files.items():
        target = vb.board.flash_dir / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return built


def test_deploy_boots_the_node_and_a_rerun_changes_nothing(board, config_file):
    built = build("xtensawin")
    steps = []
    first = deploy(board.url, config_file, progress=lambda *step: steps.append(step))
    assert first["version"] == VERSION and first["app"] == built.app
    assert first["device_id"] == "press-7" and first["micropython"] == "1.24.1"
    assert sorted(first["copied"]) == sorted([*built.files, "/config.json", MANIFEST_PATH])
    assert first["skipped"] == [] and first["removed"] == []
    for path, local in built.files.items():
        assert on_flash(board, path) == local.read_bytes(), path
    assert on_flash(board, "/config.json") == config_file.read_bytes()
    assert json.loads(on_flash(board, MANIFEST_PATH)) == built.manifest()
    assert f"floorwatch {VERSION} device press-7" in board.board.log
    done, total = [s[0] for s in steps], steps[-1][1]
    assert done == sorted(done) and done[-1] == total and {s[1] for s in steps} == {total}

    again = deploy(board.url, config_file)
    assert again["copied"] == [] and again["removed"] == []
    assert sorted(again["skipped"]) == sorted(first["copied"])
    assert installed(board.url) == {"app": built.app, "version": VERSION, "micropython": "1.24.1",
                                    "config_sha256": config_sha256(config_file), "mac": first["mac"]}
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", first["mac"])


def test_stale_app_files_go_and_the_nodes_own_files_stay(board, config_file):
    deployed_before(board, config_file)
    flash = board.board.flash_dir
    # The node's own files (config.good.json, its queue in q/, ...) live outside /node and /lib;
    # these two stand for them, as files the node does not rewrite when it boots.
    planted = {"node/retired.mpy": b"old", "lib/oldpkg/x.mpy": b"old", "notes.txt": b"keep",
               "data/seg0": b"records"}
    for name, data in planted.items():
        (flash / name).parent.mkdir(parents=True, exist_ok=True)
        (flash / name).write_bytes(data)
    result = deploy(board.url, config_file)
    assert sorted(result["removed"]) == ["/lib/oldpkg", "/lib/oldpkg/x.mpy", "/node/retired.mpy"]
    assert result["copied"] == [MANIFEST_PATH]  # the app changed (files went), so its manifest did
    assert not (flash / "node" / "retired.mpy").exists() and not (flash / "lib" / "oldpkg").exists()
    for name in ("notes.txt", "data/seg0"):
        assert (flash / name).read_bytes() == planted[name]


def test_only_what_differs_is_written_and_force_writes_all(board, config_file):
    built = deployed_before(board, config_file)
    (board.board.flash_dir / "node" / "trend.mpy").write_bytes(b"tampered")
    other = node_config()
    other["site"] = "plant-b"
    config_file.write_text(json.dumps(other))
    again = deploy(board.url, config_file)
    assert again["copied"] == ["/node/trend.mpy", "/config.json", MANIFEST_PATH]
    assert on_flash(board, "/node/trend.mpy") == built.files["/node/trend.mpy"].read_bytes()
    forced = deploy(board.url, config_file, force=True)
    assert sorted(forced["copied"]) == sorted([*built.files, "/config.json", MANIFEST_PATH])
    assert forced["skipped"] == []


def test_a_deploy_cut_short_leaves_no_manifest(board, config_file, mocker):
    deployed_before(board, config_file)
    (board.board.flash_dir / "node" / "trend.mpy").write_bytes(b"tampered")
    real_write = deploy_module.SerialTransport.fs_writefile

    def link_dies(self, path, data, **kwargs):
        if path == "/node/trend.mpy":
            self.serial.close()  # the cable is pulled in the middle of the copy
        return real_write(self, path, data, **kwargs)

    mocker.patch.object(deploy_module.SerialTransport, "fs_writefile", link_dies)
    lost = rf"^lost the board on {re.escape(board.url)} while writing /node/trend\.mpy: "
    with pytest.raises(DeployError, match=lost):
        deploy(board.url, config_file)
    assert not (board.board.flash_dir / MANIFEST_PATH.lstrip("/")).exists()
    assert installed(board.url)["app"] is None


def firmware_copy(tmp_path, **scripts):
    """A copy of the firmware with boot.py or main.py replaced; the node modules stay byte for byte
    (so the virtual board knows their .mpy)."""
    copy = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in scripts.items():
        (copy / f"{name}.py").write_text(text)
    return copy


def test_the_port_vanishing_on_reset_and_coming_back(board, config_file, tmp_path, mocker):
    # A native-USB board: the port goes as the chip resets and is back before the node has booted
    # (boot.py takes a while here, as a real boot does); the virtual board loses what it prints
    # with nobody on the port, as a USB CDC port does.
    slow_boot = (FIRMWARE / "boot.py").read_text() + "import time\ntime.sleep(2)\n"
    firmware = firmware_copy(tmp_path, boot=slow_boot)
    deployed_before(board, config_file)
    real_exec = deploy_module.SerialTransport.exec_raw_no_follow
    real_open = deploy_module._open
    state = {"reset": False, "refused": 0}

    def reset_drops_the_port(self, command):
        real_exec(self, command)
        if command == deploy_module.RESET_CODE:
            state["reset"] = True
            self.serial.close()

    def reopen(port):
        if state["reset"] and state["refused"] < 3:  # not enumerated again yet
            state["refused"] += 1
            raise DeployError(f"cannot open {port}: no such device")
        return real_open(port)

    mocker.patch.object(deploy_module.SerialTransport, "exec_raw_no_follow", reset_drops_the_port)
    mocker.patch.object(deploy_module, "_open", side_effect=reopen)
    result = deploy(board.url, config_file, firmware_dir=firmware)
    assert state["refused"] == 3
    assert result["device_id"] == "press-7" and result["copied"] == ["/boot.py", MANIFEST_PATH]


def test_a_node_that_never_prints_its_boot_line(board, config_file, tmp_path):
    stuck = "import time\nprint('waiting for a sensor')\nwhile True:\n    time.sleep(1)\n"
    firmware = firmware_copy(tmp_path, main=stuck)
    deployed_before(board, config_file)
    with pytest.raises(DeployError) as caught:
        deploy(board.url, config_file, firmware_dir=firmware, timeout=3)
    assert str(caught.value) == (f"node on {board.url} did not report booting within 3 s: "
                                 "last console output: waiting for a sensor")


def test_a_node_that_boots_another_version_or_device(board, config_file, tmp_path):
    firmware = firmware_copy(tmp_path, main="print('floorwatch 0.0.1 device press-7')\n")
    deployed_before(board, config_file)
    with pytest.raises(DeployError) as caught:
        deploy(board.url, config_file, firmware_dir=firmware, timeout=5)
    assert str(caught.value) == (f"node on {board.url} booted floorwatch 0.0.1 device press-7, "
                                 f"expected floorwatch {VERSION} device press-7")


def test_installed_on_a_board_with_only_micropython(board):
    found = installed(board.url)
    assert found["app"] is None and found["version"] is None and found["config_sha256"] is None
    assert found["micropython"] == "1.24.1"


def test_the_command(board, config_file):
    deployed_before(board, config_file)
    (board.board.flash_dir / "node" / "trend.mpy").unlink()
    runner = CliRunner()
    ok = runner.invoke(deploy_module.command, ["--port", board.url, "--config", str(config_file)])
    assert ok.exit_code == 0, ok.output
    assert re.match(rf"^{re.escape(board.url)}: node press-7 runs floorwatch {re.escape(VERSION)} "
                    r"\(app [0-9a-f]{12}\) on MicroPython 1\.24\.1: 2 copied, \d+ unchanged, 0 removed$",
                    ok.stdout.strip())
    again = runner.invoke(deploy_module.command,
                          ["--port", board.url, "--config", str(config_file), "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["copied"] == []
    bad = runner.invoke(deploy_module.command, ["--port", board.url, "--config", str(config_file),
                                                "--board", "esp99"])
    assert bad.exit_code == 1 and bad.output.startswith("Error: unknown board 'esp99'")


def test_repeated_deploys_never_put_the_node_in_safe_mode(board, config_file):
    # Each deploy stops the node at the console seconds after it booted; five in a row would be
    # five failed boots (safe mode after three) if a boot stopped at the console counted as one.
    deployed_before(board, config_file)
    for _ in range(5):
        deploy(board.url, config_file, force=True)
    record = json.loads(on_flash(board, "/boot.json"))
    assert record["failed"] <= 1, record
    assert not board.board.runtime.modules["node.app"].node.safe


@pytest.mark.parametrize("broker, words", [
    ({"user": None}, "broker.user is not set"),
    ({"password": None}, "broker.password is not set"),
    ({"password": "changeme"}, "broker.password is a placeholder"),
    ({"password": "short-pw"}, "broker.password is shorter than 12 characters"),
    ({"backup": {"host": "b2", "user": "press-7", "password": "<password>"}}, "broker.backup.password is a placeholder"),
])
def test_a_config_the_node_could_not_log_in_with_is_refused(silent_port, tmp_path, broker, words):
    cfg = node_config()
    cfg["broker"].update(broker)
    path = tmp_path / "press-7.json"
    path.write_text(json.dumps(cfg))
    url, seen = silent_port
    with pytest.raises(DeployError) as caught:
        deploy(url, path, timeout=2)
    assert str(caught.value).startswith(f"{path}: {words}"), str(caught.value)
    assert not any(secret in str(caught.value) for secret in ("changeme", "short-pw", "<password>"))
    assert seen["connections"] == 0
