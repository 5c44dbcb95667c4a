"""floorwatch.flash against virtual boards (floorwatch.vboard: the ROM serial loader on a socket).

What cannot happen to a virtual board is forced at the narrowest point: the socket's write failing
(a USB port vanishing mid-write), esptool's MD5 answer or a block write failing, the chip's baud
change failing. A board that never answers is a real silent TCP server.
"""

import functools
import hashlib
import json
import re
import socket
import threading
import time

import pytest
import serial
from click.testing import CliRunner
from esptool.loader import ESPLoader
from esptool.logger import log as esptool_log
from esptool.targets.esp32 import ESP32ROM
from esptool.util import FatalError
from serial.urlhandler import protocol_socket

from floorwatch import boards, esp_image, flash
from floorwatch.boards import BoardError
from floorwatch.vboard import VBoard

SIZE = 330_000  # about the smallest MicroPython-shaped image: keeps each flash well under 2 s
BOARDS = {"esp32-devkitc": ("esp32", 0x1000), "esp32-s3-devkitc-1": ("esp32s3", 0),
          "esp32-c3-devkitm-1": ("esp32c3", 0)}
NOWHERE = "socket://127.0.0.1:9"  # nothing listens there: touching it would fail differently


def image_file(tmp_path, chip="esp32", size=SIZE, seed=0):
    path = tmp_path / ("%s-%d-%d.bin" % (chip, size, seed))
    path.write_bytes(esp_image.build_micropython_image(chip, size=size, seed=seed))
    return path


@pytest.fixture
def vboard(tmp_path):
    with VBoard.start(board="esp32-devkitc", state_dir=tmp_path / "vb") as vb:
        yield vb


def written(vb, offset, length):
    return vb.flash.read(offset, length)


# --- before the port ---------------------------------------------------------------------------

def _not_an_image(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, not firmware\n" * 100)
    return path, [str(path), "not an ESP firmware image"]


def _other_chip(tmp_path):
    path = image_file(tmp_path, "esp32s3")
    return path, [str(path), "is an image for esp32s3", "esp32-devkitc has an esp32"]


def _too_big(tmp_path):
    path = image_file(tmp_path, size=4 << 20)
    return path, ["does not fit", "4MB flash at 0x1000"]


def _missing(tmp_path):
    return tmp_path / "nope.bin", ["nope.bin: cannot read it: No such file or directory"]


def _directory(tmp_path):
    return tmp_path, [str(tmp_path), "cannot read it"]


@pytest.mark.parametrize("case", [_missing, _directory, _not_an_image, _other_chip, _too_big])
def test_bad_file_is_refused_before_the_port_is_opened(tmp_path, mocker, case):
    path, words = case(tmp_path)
    opened = mocker.spy(serial, "serial_for_url")
    with pytest.raises(flash.FlashError) as caught:
        flash.flash(NOWHERE, "esp32-devkitc", str(path))
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    opened.assert_not_called()


def test_unknown_board(tmp_path):
    with pytest.raises(BoardError, match="unknown board 'esp32-nope'"):
        flash.flash(NOWHERE, "esp32-nope", str(image_file(tmp_path)))


# --- flashing a virtual board --------------------------------------------------------------------

@pytest.mark.parametrize("board", sorted(BOARDS))
def test_flashes_through_the_rom_loader_and_boots_the_image(tmp_path, board):
    chip, offset = BOARDS[board]
    path = image_file(tmp_path, chip)
    data = path.read_bytes()
    seen, lines = [], []
    with VBoard.start(board=board, state_dir=tmp_path / "vb", seed=7) as vb:
        result = flash.flash(vb.url, board, str(path), progress=lambda *a: seen.append(a),
                             log=lines.append)
        assert written(vb, offset, len(data)) == data
        assert written(vb, offset + len(data), 4096) == b"\xff" * 4096
        mac = ":".join("%02x" % b for b in vb.mac)
        assert vb.mode == "run" and vb.app["project"] == "micropython"

    assert result["chip"] == chip and result["offset"] == offset and result["board"] == board
    assert result["mac"] == mac
    assert re.fullmatch(r"v\d+\.\d+", result["revision"])
    assert result["md5"] == hashlib.md5(data).hexdigest() and result["bytes"] == len(data)
    assert result["flash_size"] == boards.load(board)["flash_size"]
    assert result["stub"] is False  # a virtual board cannot run esptool's flasher stub
    assert any("refused the flasher stub" in note for note in result["notes"])
    assert any("refused the flasher stub" in line for line in lines)
    assert result["baud"] == flash.DEFAULT_BAUD

    stages = [stage for _, _, stage in seen]
    assert stages[0] == "connect" and stages[-1] == "reset"
    assert stages.index("write") < stages.index("reset") and "erase" not in stages
    writes = [(done, total) for done, total, stage in seen if stage == "write"]
    assert all(total == len(data) for _, total in writes)
    assert [done for done, _ in writes] == sorted(done for done, _ in writes)
    assert writes[-1] == (len(data), len(data)) and len(writes) > 10


def test_erase_clears_the_whole_flash_without_the_stub(tmp_path, vboard):
    path = image_file(tmp_path)
    elsewhere = 0x300000
    vboard.flash.write(elsewhere, b"\x00" * 4096)  # e.g. an old filesystem

    flash.flash(vboard.url, "esp32-devkitc", str(path))
    assert written(vboard, elsewhere, 4096) == b"\x00" * 4096  # a plain write leaves it

    seen = []
    result = flash.flash(vboard.url, "esp32-devkitc", str(path), erase=True,
                         progress=lambda *a: seen.append(a))
    assert written(vboard, elsewhere, 4096) == b"\xff" * 4096
    assert written(vboard, 0x1000, path.stat().st_size) == path.read_bytes()
    assert result["erased"] is True and result["stub"] is False
    assert ("erase" in [s for _, _, s in seen]) and (4 << 20, 4 << 20, "erase") in seen


@pytest.fixture
def stub_board(tmp_path, mocker):
    """A virtual board that plays esptool's flasher stub (its ROM accepts the RAM download)."""
    import floorwatch.vboard as vboard_module

    mocker.patch.object(vboard_module, "RomLoader",
                        functools.partial(vboard_module.RomLoader, refuse_stub=False))
    with VBoard.start(board="esp32-devkitc", state_dir=tmp_path / "vb") as vb:
        yield vb


def test_flashes_and_erases_through_the_stub_when_the_board_takes_it(tmp_path, stub_board):
    path = image_file(tmp_path)
    stub_board.flash.write(0x300000, b"\x00" * 4096)
    result = flash.flash(stub_board.url, "esp32-devkitc", str(path), erase=True)
    assert result["stub"] is True and result["notes"] == [] and result["erased"] is True
    assert written(stub_board, 0x300000, 4096) == b"\xff" * 4096
    assert written(stub_board, 0x1000, path.stat().st_size) == path.read_bytes()
    assert result["md5"] == hashlib.md5(path.read_bytes()).hexdigest()


def test_stub_that_never_starts_is_not_waited_for_forever(tmp_path, stub_board, mocker):
    """A chip that takes the stub and then stays silent (no "OHAI"): esptool alone would wait
    for ever, as it reads that greeting with the port's timeout, none by default. The silence is
    made on the wire: once MEM_END is answered, nothing more arrives on that port (a read blocks
    for the port's timeout, as pyserial's does, or until the test ends)."""
    silent, test_over = set(), threading.Event()
    real_mem_finish = ESPLoader.mem_finish
    real_read, real_waiting = protocol_socket.Serial.read, protocol_socket.Serial.in_waiting

    def mem_finish(esp, entrypoint=0):
        result = real_mem_finish(esp, entrypoint)
        silent.add(esp._port)
        return result

    def read(port, size=1):
        if port not in silent:
            return real_read(port, size)
        if port.timeout is None:
            test_over.wait()
        else:
            time.sleep(port.timeout)
        return b""

    mocker.patch.object(ESPLoader, "mem_finish", autospec=True, side_effect=mem_finish)
    mocker.patch.object(protocol_socket.Serial, "read", autospec=True, side_effect=read)
    mocker.patch.object(protocol_socket.Serial, "in_waiting", property(
        lambda port: 0 if port in silent else real_waiting.fget(port)))
    mocker.patch.object(flash, "REPLY_TIMEOUT", 0.5)
    outcome = []
    path = image_file(tmp_path)
    worker = threading.Thread(target=lambda: outcome.append(
        flash.flash(stub_board.url, "esp32-devkitc", str(path))), daemon=True)
    worker.start()
    worker.join(20)
    test_over.set()
    assert outcome, "flash() still waiting for the stub"
    assert written(stub_board, 0x1000, path.stat().st_size) == path.read_bytes()
    assert outcome[0]["stub"] is False
    assert "Failed to start stub flasher" in outcome[0]["notes"][0]


def test_fast_baud_failing_falls_back_to_115200(tmp_path, vboard, mocker):
    change = mocker.patch.object(ESP32ROM, "change_baud", autospec=True,
                                 side_effect=FatalError("No serial data received."))
    path = image_file(tmp_path)
    result = flash.flash(vboard.url, "esp32-devkitc", str(path), baud=921600)
    assert change.call_count == 1 and change.call_args.args[1] == 921600
    assert result["baud"] == 115200
    assert "921600 baud failed (No serial data received.): going on at 115200" in result["notes"]
    assert written(vboard, 0x1000, path.stat().st_size) == path.read_bytes()


def test_no_baud_change_asked_for(tmp_path, vboard, mocker):
    change = mocker.spy(ESP32ROM, "change_baud")
    result = flash.flash(vboard.url, "esp32-devkitc", str(image_file(tmp_path)), baud=115200)
    assert result["baud"] == 115200 and change.call_count == 0


def test_port_vanishing_mid_write(tmp_path, vboard, mocker):
    """The USB device goes away: writes to the port fail from then on."""
    real_write = protocol_socket.Serial.write
    sent = {"bytes": 0}

    def write(port, data):
        sent["bytes"] += len(data)
        if sent["bytes"] > 150_000:  # connecting costs a few KB; the image is 330 KB
            raise serial.SerialException("write failed: [Errno 5] Input/output error")
        return real_write(port, data)

    mocker.patch.object(protocol_socket.Serial, "write", autospec=True, side_effect=write)
    mocker.patch.object(ESPLoader, "WRITE_FLASH_ATTEMPTS", 1)  # esptool's reconnect wait: 7 s
    with pytest.raises(flash.FlashError) as caught:
        flash.flash(vboard.url, "esp32-devkitc", str(image_file(tmp_path)))
    message = str(caught.value)
    found = re.fullmatch(r"port (\S+) disappeared during write at (0x[0-9a-f]+): "
                         r"write failed: \[Errno 5\] Input/output error", message)
    assert found, message
    assert found.group(1) == vboard.url
    assert 0x1000 < int(found.group(2), 16) < 0x1000 + SIZE


def test_md5_mismatch_is_a_one_line_error(tmp_path, vboard, mocker):
    mocker.patch.object(ESPLoader, "flash_md5sum", return_value="0" * 32)
    with pytest.raises(flash.FlashError) as caught:
        flash.flash(vboard.url, "esp32-devkitc", str(image_file(tmp_path)))
    assert str(caught.value) == (
        "verification failed on %s: the flash at 0x1000 does not hold the image "
        "(MD5 of file does not match data in flash!)" % vboard.url)


def test_esptool_fatal_error_names_port_and_address(tmp_path, vboard, mocker):
    real_block = ESPLoader.flash_defl_block

    def block(esp, data, seq, timeout=3):
        if seq == 20:
            raise FatalError.WithResult("Failed to write compressed data to flash after seq 20",
                                        b"\x01\x08")  # as esptool words it
        return real_block(esp, data, seq, timeout=timeout)

    mocker.patch.object(ESPLoader, "flash_defl_block", autospec=True, side_effect=block)
    with pytest.raises(flash.FlashError) as caught:
        flash.flash(vboard.url, "esp32-devkitc", str(image_file(tmp_path)))
    message = str(caught.value)
    assert re.fullmatch(r"write failed on %s at 0x[0-9a-f]+: Failed to write compressed data to "
                        r"flash after seq 20 \(result was 0108: Flash write error\)" % re.escape(vboard.url),
                        message), message


@pytest.fixture
def silent_board():
    """A TCP port where something accepts the connection and never says a word."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
    yield "socket://127.0.0.1:%d" % server.getsockname()[1]
    for conn, _ in held:
        conn.close()
    server.close()


def test_board_that_never_answers(tmp_path, silent_board, mocker):
    mocker.patch.object(flash, "CONNECT_ATTEMPTS", 1)
    with pytest.raises(flash.FlashError) as caught:
        flash.flash(silent_board, "esp32-devkitc", str(image_file(tmp_path)))
    assert str(caught.value) == ("no answer from the ROM loader on %s (is the board in download "
                                 "mode?)" % silent_board)


def test_nothing_on_the_port(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as server:
        url = "socket://127.0.0.1:%d" % server.getsockname()[1]
    with pytest.raises(flash.FlashError) as caught:
        flash.flash(url, "esp32-devkitc", str(image_file(tmp_path)))
    assert re.fullmatch(r"cannot open %s: .*Connection refused.*" % re.escape(url),
                        str(caught.value)), str(caught.value)


def test_chip_must_match_the_board(tmp_path):
    # An ESP32-S3 answers where the user said esp32-devkitc: caught once connected.
    with VBoard.start(board="esp32-s3-devkitc-1", state_dir=tmp_path / "vb") as vb:
        with pytest.raises(flash.FlashError) as caught:
            flash.flash(vb.url, "esp32-devkitc", str(image_file(tmp_path)))
        assert written(vb, 0, 0x20000) == b"\xff" * 0x20000
    assert str(caught.value) == ("the chip on %s is an ESP32-S3, but board esp32-devkitc has an "
                                 "esp32" % vb.url)


# --- esptool's output, per thread ----------------------------------------------------------------

def test_parallel_flashes_keep_progress_and_messages_apart(tmp_path):
    jobs = {"esp32-devkitc": 330_000, "esp32-s3-devkitc-1": 400_000}
    seen = {board: [] for board in jobs}
    lines = {board: [] for board in jobs}
    results, errors = {}, []

    def run(board, vb, path):
        me = threading.current_thread()
        try:
            results[board] = flash.flash(
                vb.url, board, str(path),
                progress=lambda done, total, stage: seen[board].append((me, done, total, stage)),
                log=lines[board].append)
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)

    boards = [VBoard.start(board=b, state_dir=tmp_path / b, seed=i) for i, b in enumerate(jobs)]
    try:
        paths = {b: image_file(tmp_path, BOARDS[b][0], size) for b, size in jobs.items()}
        threads = [threading.Thread(target=run, args=(b, vb, paths[b])) for vb, b in zip(boards, jobs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for vb in boards:
            vb.close()
    assert not errors
    for thread, board in zip(threads, jobs):
        size = paths[board].stat().st_size
        assert results[board]["bytes"] == size
        assert {who for who, *_ in seen[board]} == {thread}
        writes = [(done, total) for _, done, total, stage in seen[board] if stage == "write"]
        assert {total for _, total in writes} == {size} and writes[-1][0] == size
    chips = {board: [l for l in lines[board] if l.startswith("Detecting chip type...")]
             for board in jobs}
    assert chips == {"esp32-devkitc": ["Detecting chip type... ESP32"] * 2,
                     "esp32-s3-devkitc-1": ["Detecting chip type... ESP32-S3"] * 2}


def test_esptool_output_outside_a_flash_is_printed(capsys):
    flash._install_router()
    esptool_log.print("hello from esptool")
    esptool_log.warning("careful")
    out, err = capsys.readouterr()
    assert out == "hello from esptool\n" and err == "Warning: careful\n"


# --- the command ---------------------------------------------------------------------------------

def test_command_json(tmp_path, vboard):
    path = image_file(tmp_path)
    result = CliRunner().invoke(flash.command, ["--port", vboard.url, "--board", "esp32-devkitc",
                                                "--firmware", str(path), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["md5"] == hashlib.md5(path.read_bytes()).hexdigest() and facts["chip"] == "esp32"


def test_command_error_is_a_flash_error(tmp_path):
    result = CliRunner().invoke(flash.command, ["--port", NOWHERE, "--board", "esp32-devkitc",
                                                "--firmware", str(tmp_path / "nope.bin")])
    assert result.exit_code != 0
    assert isinstance(result.exception, flash.FlashError)


def test_flash_in_its_own_process_gives_the_same_result_progress_and_errors(tmp_path, vboard):
    path = image_file(tmp_path)
    seen = []
    result = flash.flash_in_process(vboard.url, "esp32-devkitc", str(path), progress=lambda *p: seen.append(p))
    assert result["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
    data = path.read_bytes()
    assert written(vboard, 0x1000, len(data)) == data
    writes = [done for done, total, stage in seen if stage == "write"]
    assert writes[-1] == len(data) and writes == sorted(writes)
    with pytest.raises(flash.FlashError, match=r"^cannot open socket://127\.0\.0\.1:9: "):
        flash.flash_in_process(NOWHERE, "esp32-devkitc", str(path))
