"""`floorwatch vboard` end to end: the real esptool and mpremote command lines against it.

A blank virtual board waits in download mode; esptool writes MicroPython into its flash; closing the
port boots it; mpremote then works on its filesystem; esptool again (while MicroPython runs) takes
it back to download mode. Also: the pty endpoint, the filesystem wiped when the flash's vfs region
is written, machine.bootloader(), and the port being exclusive.
"""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from floorwatch import esp_image
from floorwatch.vboard import VBoard, VBoardError

BIN = Path(sys.executable).parent


def run(tool, *args, timeout=120):
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=timeout)


def esptool(url, *args):
    return run("esptool", "--port", url, "--before", "no-reset", *args)


def mpremote(url, *args):
    return run("mpremote", "connect", url, *args)


def wait_mode(vboard, mode, timeout=10):
    deadline = time.monotonic() + timeout
    while vboard.mode != mode or (mode == "run" and not vboard.board.running):
        assert time.monotonic() < deadline, "still in %s mode" % vboard.mode
        time.sleep(0.02)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("image") / "ESP32_GENERIC-v1.24.1.bin"
    path.write_bytes(esp_image.build_micropython_image("esp32", size=400_000))
    return path


@pytest.fixture(scope="module")
def cli_board(tmp_path_factory, image):
    """`floorwatch vboard` as a technician starts it, blank, in its own process."""
    state = tmp_path_factory.mktemp("vboards")
    proc = subprocess.Popen([str(BIN / "floorwatch"), "vboard", "--listen", "socket://127.0.0.1:0", "--dir", str(state)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    url = re.match(r"(socket://\S+)", line)
    assert url, line
    assert "blank flash" in line
    yield url.group(1), state / "esp32-devkitc-1"
    proc.terminate()
    assert proc.wait(10) == 0


def test_esptool_writes_micropython_and_mpremote_works_on_the_booted_board(cli_board, image, tmp_path):
    url, state = cli_board
    ident = esptool(url, "--no-stub", "read-mac")
    assert ident.returncode == 0, ident.stdout + ident.stderr
    assert "Chip type:          ESP32" in ident.stdout and "MAC:                24:0a:c4:00:00:01" in ident.stdout

    stub = esptool(url, "write-flash", "0x1000", str(image))  # esptool uploads its stub by default
    assert stub.returncode != 0
    assert "not supported in the current download mode" in stub.stdout + stub.stderr

    flashed = esptool(url, "--no-stub", "write-flash", "0x1000", str(image))
    assert flashed.returncode == 0, flashed.stdout + flashed.stderr
    assert "Hash of data verified." in flashed.stdout
    assert (state / "flash.bin").read_bytes()[0x1000:0x1000 + image.stat().st_size] == image.read_bytes()

    # Closing the port was the hard reset: MicroPython runs, and mpremote talks to it.
    local = tmp_path / "hello.txt"
    local.write_text("hello from the host\n")
    steps = [
        (("fs", "mkdir", "data"), None),
        (("fs", "cp", str(local), ":data/hello.txt"), None),
        (("fs", "ls", "data"), "hello.txt"),
        (("fs", "cat", "data/hello.txt"), "hello from the host"),
        (("fs", "cp", ":data/hello.txt", ":hello.txt"), None),  # on the board, both ends
        (("fs", "cp", ":hello.txt", str(tmp_path / "back.txt")), None),
        (("exec", "import os; print(sorted(os.listdir('/')))"), "['data', 'hello.txt']"),
        (("eval", "1 + 2 * 20"), "41"),
        (("fs", "rm", "hello.txt"), None),
        (("soft-reset",), None),
        (("eval", "'hello.txt' in __import__('os').listdir('/')"), "False"),
    ]
    for args, expected in steps:
        done = mpremote(url, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        if expected is not None:
            assert expected in done.stdout, (args, done.stdout)
    assert (tmp_path / "back.txt").read_text() == "hello from the host\n"
    assert (state / "flash" / "data" / "hello.txt").read_text() == "hello from the host\n"
    missing = mpremote(url, "fs", "cat", "nothing-here.txt")
    assert missing.returncode != 0 and "No such file" in missing.stdout + missing.stderr

    # A main.py that counts the boots that run it: hard ones (mpremote's own soft resets skip it).
    counter = tmp_path / "main.py"
    counter.write_text("open('boots.txt', 'a').write('boot\\n')\n")
    assert mpremote(url, "fs", "cp", str(counter), ":main.py").returncode == 0
    reset = mpremote(url, "reset")
    assert reset.returncode == 0, reset.stderr
    assert mpremote(url, "fs", "cat", "boots.txt").stdout == "boot\n"

    # esptool again while MicroPython runs: its SYNC takes the board into download mode, and the
    # end of the session boots it again, files kept.
    again = esptool(url, "--no-stub", "chip-id")
    assert again.returncode == 0, again.stdout + again.stderr
    assert mpremote(url, "fs", "cat", "boots.txt").stdout == "boot\nboot\n"


def test_a_pty_board_serves_both_tools(tmp_path, image):
    with VBoard.start("esp32-c3-devkitm-1", state_dir=tmp_path, listen="pty") as vboard:
        assert vboard.url.startswith("/dev/pts/")
        ident = run("esptool", "--port", vboard.url, "--before", "no-reset", "--after", "no-reset", "--no-stub", "chip-id")
        assert ident.returncode == 0 and "ESP32-C3" in ident.stdout, ident.stdout + ident.stderr
        c3 = tmp_path / "c3.bin"
        c3.write_bytes(esp_image.build_micropython_image("esp32c3", size=400_000))
        flashed = run("esptool", "--port", vboard.url, "--before", "no-reset", "--after", "no-reset", "--no-stub",
                      "write-flash", "0x0", str(c3))
        assert flashed.returncode == 0, flashed.stdout + flashed.stderr
        wait_mode(vboard, "run")
        listing = mpremote(vboard.url, "exec", "import sys; print(sys.implementation.name, sys.platform)")
        assert listing.returncode == 0 and "micropython esp32" in listing.stdout, listing.stdout + listing.stderr


def test_writing_the_vfs_region_wipes_the_filesystem(tmp_path, image):
    vboard = VBoard("esp32-devkitc", state_dir=tmp_path)
    vboard.preload(image.read_bytes())
    (vboard.board.flash_dir / "config.json").write_text("{}")
    vboard.open()
    try:
        wait_mode(vboard, "run")
        blank = tmp_path / "blank.bin"
        blank.write_bytes(b"\xff" * 4096)
        done = esptool(vboard.url, "--no-stub", "write-flash", "0x200000", str(blank))
        assert done.returncode == 0, done.stdout + done.stderr
        wait_mode(vboard, "run")
        assert list(vboard.board.flash_dir.iterdir()) == []
    finally:
        vboard.close()


def test_machine_bootloader_leaves_micropython_for_the_rom(tmp_path, image):
    vboard = VBoard("esp32-devkitc", state_dir=tmp_path)
    vboard.preload(image.read_bytes())
    vboard.open()
    try:
        wait_mode(vboard, "run")
        with serial.serial_for_url(vboard.url, timeout=2) as port:
            port.write(b"\r\x03import machine; machine.bootloader()\r")
            seen = port.read_until(b"waiting for download\r\n")
        assert b"DOWNLOAD_BOOT" in seen, seen
        assert vboard.mode == "download" and not vboard.board.running
    finally:
        vboard.close()


def test_the_port_is_exclusive_like_a_serial_port(tmp_path):
    with VBoard.start("esp32-devkitc", state_dir=tmp_path) as vboard:
        with serial.serial_for_url(vboard.url, timeout=1):
            second = serial.serial_for_url(vboard.url, timeout=1)
            with pytest.raises(serial.SerialException, match="disconnected"):  # turned away at once
                second.read(1)
            second.close()
        assert vboard.mode == "download"


def test_two_boards_cannot_share_a_state_directory(tmp_path):
    state = tmp_path / "esp32-devkitc-1"  # where `floorwatch vboard --dir tmp_path` keeps its first board
    with VBoard.start("esp32-devkitc", state_dir=state):
        with pytest.raises(VBoardError, match="is in use by another virtual board"):
            VBoard("esp32-devkitc", state_dir=state)
        taken = run("floorwatch", "vboard", "--dir", str(tmp_path), timeout=30)
    assert taken.returncode == 1
    assert taken.stderr.strip() == "floorwatch: error: %s is in use by another virtual board" % state


def test_vboard_command_errors_are_one_line(tmp_path):
    bad = run("floorwatch", "vboard", "--listen", "tcp://127.0.0.1:1", "--dir", str(tmp_path), timeout=30)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "floorwatch: error: cannot listen on 'tcp://127.0.0.1:1': use socket://HOST:PORT or pty"


def test_preloading_checks_the_chip_and_replaces_what_was_there(tmp_path, image):
    vboard = VBoard("esp32-devkitc", state_dir=tmp_path)
    try:
        with pytest.raises(VBoardError, match="the image is for esp32c3, but esp32-devkitc has an esp32"):
            vboard.preload(esp_image.build_micropython_image("esp32c3", size=330_000))
        vboard.preload(esp_image.build_micropython_image("esp32", version="1.23.0", size=330_000))
        vboard.preload(image.read_bytes())  # over an older release: erased first, so the bytes are the image's
        assert vboard.flash.read(0x1000, image.stat().st_size) == image.read_bytes()
        assert vboard.app["version"] == "v1.24.1"
    finally:
        vboard.close()


@pytest.mark.broker
def test_a_board_on_a_lan_with_one_broker_reaches_it_under_the_plants_name(tmp_path, image, broker):
    from floorwatch.deploy import deploy
    from floorwatch.observer import Observer

    config = {"device_id": "press-lan", "site": "lan", "wifi": {"ssid": "floorwatch-sim", "password": "sim-password"},
              "broker": {"host": "mqtt.plant.invalid", "port": 1883, "user": "press-lan",
                         "password": "Vq3-ds8Lk2mZ-wT7e"}, "sensors": []}
    with VBoard("esp32-devkitc", state_dir=tmp_path, broker=(broker.host, broker.port)) as vboard:
        vboard.preload(image.read_bytes())
        vboard.open()
        with Observer(broker.host, broker.port, site="lan") as observer:
            deploy(vboard.url, config)
            online = observer.wait_for(lambda o: (d := o.devices.get("press-lan")) and d.status
                                       and d.status["state"] == "online", 30)
        assert online, vboard.board.log[-20:]
