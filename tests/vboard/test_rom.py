"""The ROM loader emulator: its framing and commands byte by byte, then the real esptool on it."""

import hashlib
import struct
import warnings
import zlib

import pytest
from esptool.targets import CHIP_DEFS
from romlib import MAC, RomServer, answers, block_request, request

from floorwatch import esp_image
from floorwatch.vboard.rom import CMD, SYNC_PAYLOAD, RomLoader, SlipReader, find_sync, slip_encode
from floorwatch.vboard.spiflash import FlashRangeError, SpiFlash

CHIPS = ("esp32", "esp32s3", "esp32c3")
SYNC = request(CMD["SYNC"], SYNC_PAYLOAD)

with warnings.catch_warnings():  # espefuse imports a click API that click 8.2 deprecates
    warnings.simplefilter("ignore", DeprecationWarning)
    from espefuse.efuse.esp32.fields import EfuseMacField


@pytest.fixture
def flash(tmp_path):
    with SpiFlash(tmp_path / "flash.bin", 4 << 20) as chip:
        yield chip


def loader_for(flash, chip="esp32"):
    return RomLoader(chip, MAC, flash)


def read_reg(loader, address):
    [(op, value, _, status)] = answers(loader.feed(request(CMD["READ_REG"], struct.pack("<I", address))))
    assert (op, status) == (CMD["READ_REG"], (0, 0))
    return value


def one_answer(loader, stream):
    [answer] = answers(loader.feed(stream))
    return answer


# --- SLIP framing ---------------------------------------------------------------------------

def test_slip_reader_gets_the_same_packets_however_the_stream_is_cut():
    packets = [b"\x00\x08abc", b"\xc0\xdb\xc0\xdb" * 3, b"\x01" * 40]
    stream = b"noise" + b"".join(slip_encode(p) for p in packets) + b"\xc0"
    for cut in range(len(stream) + 1):
        reader = SlipReader()
        assert reader.feed(stream[:cut]) + reader.feed(stream[cut:]) == packets
    reader = SlipReader()
    assert [p for byte in stream for p in reader.feed(bytes([byte]))] == packets


def test_a_request_split_anywhere_gets_the_same_answer(flash):
    whole = loader_for(flash).feed(SYNC + request(CMD["READ_REG"], struct.pack("<I", 0x40001000)))
    for cut in range(1, len(SYNC) + 14):
        loader = loader_for(flash)
        stream = SYNC + request(CMD["READ_REG"], struct.pack("<I", 0x40001000))
        assert loader.feed(stream[:cut]) + loader.feed(stream[cut:]) == whole
    replies = answers(whole)
    assert [op for op, *_ in replies] == [CMD["SYNC"]] * 8 + [CMD["READ_REG"]]
    assert replies[0][1] != 0  # a ROM, not a stub, answers SYNC
    assert replies[-1][1] == 0x00F01D83


def test_find_sync_finds_esptools_sync_among_repl_chatter():
    stream = b">>> print('hi')\r\nhi\r\n" + SYNC + SYNC
    assert find_sync(stream) == stream.index(b"\xc0")
    assert find_sync(stream[:30]) == -1
    assert find_sync(SYNC[:-1]) == -1
    assert find_sync(request(CMD["READ_REG"], bytes(4))) == -1


def test_banner_is_the_download_mode_boot_text(flash):
    assert loader_for(flash).banner().endswith(
        b"rst:0x1 (POWERON_RESET),boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\n"
        b"waiting for download\r\n")
    for chip in ("esp32s3", "esp32c3"):
        text = loader_for(flash, chip).banner().decode()
        assert text.startswith("ESP-ROM:" + chip) and "DOWNLOAD(USB/UART0" in text


# --- registers ------------------------------------------------------------------------------

@pytest.mark.parametrize("chip", CHIPS)
def test_efuse_mac_reads_back_as_esptool_decodes_it(flash, chip):
    loader = loader_for(flash, chip)
    target = CHIP_DEFS[chip]
    if chip == "esp32":
        word1, word2 = (read_reg(loader, target.EFUSE_RD_REG_BASE + 4 * n) for n in (1, 2))
        mac = struct.pack(">II", word2, word1)[2:8]
        assert word2 >> 16 & 0xFF == EfuseMacField.calc_crc(mac)  # espefuse's check of MAC_CRC
    else:
        mac0, mac1 = (read_reg(loader, target.MAC_EFUSE_REG + n) for n in (0, 4))
        mac = struct.pack(">II", mac1, mac0)[2:]
    assert mac.hex(":") == MAC


def test_a_bad_mac_or_chip_is_refused_in_one_line(flash):
    for chip, mac in (("esp32", "24:0a:c4"), ("esp32", "zz:0a:c4:12:34:56"), ("esp8266", MAC)):
        with pytest.raises(ValueError) as error:
            RomLoader(chip, mac, flash)
        assert "\n" not in str(error.value)


def spi_command(loader, command, read_bits, address=None):
    """Run a flash command through the SPI user registers, as esptool's run_spiflash_command."""
    target = CHIP_DEFS[loader.chip]
    base = target.SPI_REG_BASE
    pokes = [(base + target.SPI_MISO_DLEN_OFFS, read_bits - 1),
             (base + target.SPI_USR_OFFS, 1 << 31 | 1 << 28 | (1 << 30 if address is not None else 0)),
             (base + target.SPI_USR2_OFFS, 7 << 28 | command), (base + target.SPI_W0_OFFS, 0)]
    if address is not None:
        pokes += [(base + target.SPI_USR1_OFFS, 23 << 26),
                  (base + 4, address << 8 if target.SPI_ADDR_REG_MSB else address)]
    pokes.append((base, 1 << 18))
    payload = b"".join(struct.pack("<IIII", address_, value, 0xFFFFFFFF, 0) for address_, value in pokes)
    assert one_answer(loader, request(CMD["WRITE_REG"], payload))[3] == (0, 0)
    assert read_reg(loader, base) & 1 << 18 == 0  # done
    return read_reg(loader, base + target.SPI_W0_OFFS)


@pytest.mark.parametrize("chip", CHIPS)
def test_flash_id_and_sfdp_follow_the_flash(tmp_path, chip):
    for size, size_id in ((4 << 20, 0x16), (8 << 20, 0x17)):
        with SpiFlash(tmp_path / f"{size}.bin", size) as flash:
            loader = loader_for(flash, chip)
            assert spi_command(loader, 0x9F, 24) == size_id << 16 | 0x40EF
            assert spi_command(loader, 0x5A, 32, address=0) == 0x50444653  # "SFDP"
            assert spi_command(loader, 0x5A, 32, address=0x84) == size * 8 - 1  # density in bits


# --- flash commands -------------------------------------------------------------------------

def begin(loader, op, size, blocks, block_size, offset):
    words = (size, blocks, block_size, offset) + (() if loader.chip == "esp32" else (0,))
    return one_answer(loader, request(op, struct.pack(f"<{len(words)}I", *words)))


def md5_request(address, size):
    return request(CMD["SPI_FLASH_MD5"], struct.pack("<IIII", address, size, 0, 0))


def md5(loader, address, size):
    _, _, digest, status = one_answer(loader, md5_request(address, size))
    assert status == (0, 0)
    return digest.decode()


@pytest.mark.parametrize("chip", CHIPS)
def test_flash_blocks_land_in_flash_and_md5_answers_in_hex(flash, chip):
    loader = loader_for(flash, chip)
    flash.write(0x20000, b"\x00" * 0x2000)  # old contents: the erase must clear them
    data = bytes(range(256)) * 8 + b"\xc0\xdb" * 512  # SLIP-escaped bytes in the data too
    assert begin(loader, CMD["FLASH_BEGIN"], len(data), 3, 0x400, 0x20000)[3] == (0, 0)
    assert flash.read(0x20000, 0x1000) == b"\xff" * 0x1000  # erased up front, whole sectors
    assert flash.read(0x21000, 0x1000) == bytes(0x1000)  # and no more
    for seq in range(3):
        block = data[seq * 0x400:(seq + 1) * 0x400]
        assert one_answer(loader, block_request(CMD["FLASH_DATA"], block, seq))[3] == (0, 0)
    assert flash.read(0x20000, len(data)) == data
    assert md5(loader, 0x20000, len(data)) == hashlib.md5(data).hexdigest()
    assert loader.written == [(0x20000, 0x1000)]  # the erased sector, written within
    assert not loader.run_requested


def test_a_block_with_a_bad_checksum_is_refused_and_not_written(flash):
    loader = loader_for(flash)
    begin(loader, CMD["FLASH_BEGIN"], 0x400, 1, 0x400, 0x1000)
    block = b"\x5a" * 0x400
    op, _, _, status = one_answer(loader, block_request(CMD["FLASH_DATA"], block, 0, checksum=0x00))
    assert (op, status) == (CMD["FLASH_DATA"], (1, 0x07))
    assert flash.read(0x1000, 0x400) == b"\xff" * 0x400
    assert one_answer(loader, block_request(CMD["FLASH_DATA"], block, 0))[3] == (0, 0)  # the retry
    assert flash.read(0x1000, 0x400) == block


def test_malformed_and_unknown_requests_get_invalid_message(flash):
    loader = loader_for(flash)
    block = b"\x11" * 0x400
    cases = [
        block_request(CMD["FLASH_DATA"], block, 0),  # no FLASH_BEGIN yet
        request(CMD["READ_REG"], b"\x00\x00"),  # 2 bytes, not an address
        request(CMD["GET_SECURITY_INFO"]),  # not in the ESP32 ROM
        request(0x42),  # no such command
        slip_encode(struct.pack("<BBHI", 0, CMD["READ_REG"], 8, 0) + bytes(4)),  # size says 8
    ]
    for stream in cases:
        op, _, _, status = one_answer(loader, stream)
        assert status == (1, 0x05), stream
        assert op == stream[2]
    assert flash.read(0, 0x2000) == b"\xff" * 0x2000
    assert loader.feed(slip_encode(b"\x01\x08")) == b""  # not a request at all: ignored


def test_writes_outside_the_chip_fail_as_flash_errors(flash):
    loader = loader_for(flash)
    assert begin(loader, CMD["FLASH_BEGIN"], 0x2000, 2, 0x1000, (4 << 20) - 0x1000)[3] == (1, 0x08)
    assert one_answer(loader, md5_request(4 << 20, 16))[3] == (1, 0x09)


def test_compressed_download_is_inflated_into_flash(flash):
    loader = loader_for(flash, "esp32s3")
    data = esp_image.partition_table() * 40
    packed = zlib.compress(data, 9)
    blocks = [packed[i:i + 0x400] for i in range(0, len(packed), 0x400)]
    erase = -(-len(data) // 0x400) * 0x400
    assert begin(loader, CMD["FLASH_DEFL_BEGIN"], erase, len(blocks), 0x400, 0x8000)[3] == (0, 0)
    for seq, block in enumerate(blocks):
        assert one_answer(loader, block_request(CMD["FLASH_DEFL_DATA"], block, seq))[3] == (0, 0)
    assert flash.read(0x8000, len(data)) == data
    assert md5(loader, 0x8000, len(data)) == hashlib.md5(data).hexdigest()


def test_a_broken_deflate_stream_is_a_deflate_error(flash):
    loader = loader_for(flash)
    begin(loader, CMD["FLASH_DEFL_BEGIN"], 0x1000, 1, 0x400, 0x8000)
    assert one_answer(loader, block_request(CMD["FLASH_DEFL_DATA"], b"not zlib" * 8, 0))[3] == (1, 0x0B)


@pytest.mark.parametrize("run", [1, 0])
def test_flash_end_answers_then_the_rom_is_gone(flash, run):
    loader = loader_for(flash)
    assert one_answer(loader, request(CMD["FLASH_END"], struct.pack("<I", run)))[3] == (0, 0)
    assert (loader.run_requested, loader.reboot_requested) == (bool(run), not run)
    assert loader.feed(SYNC) == b""


def test_written_tells_which_regions_changed(flash):
    loader = loader_for(flash)
    begin(loader, CMD["FLASH_BEGIN"], 0x400, 1, 0x400, 0x1000)
    one_answer(loader, block_request(CMD["FLASH_DATA"], b"\x00" * 0x400, 0))
    begin(loader, CMD["FLASH_BEGIN"], 0x1000, 1, 0x400, esp_image.VFS_OFFSET)
    assert loader.written == [(0x1000, 0x1000), (esp_image.VFS_OFFSET, 0x1000)]


def test_the_stub_upload_is_refused_as_an_unoffered_command(flash):
    loader = loader_for(flash)
    mem_begin = request(CMD["MEM_BEGIN"], struct.pack("<IIII", 0x1000, 1, 0x1800, 0x40080000))
    op, _, _, status = one_answer(loader, mem_begin)
    assert op != CMD["MEM_BEGIN"] and status == (1, 0x05)  # so esptool reports it unsupported
    op, _, _, status = one_answer(loader, request(CMD["ERASE_FLASH"]))  # a stub command
    assert (op, status) == (CMD["ERASE_FLASH"], (1, 0x05))


def test_without_refusal_the_stub_starts_and_its_protocol_follows(flash):
    loader = RomLoader("esp32c3", MAC, flash, refuse_stub=False)
    code = b"\x13\x00\x00\x00" * 16
    for stream in (request(CMD["MEM_BEGIN"], struct.pack("<IIII", len(code), 1, 0x1800, 0x40380000)),
                   block_request(CMD["MEM_DATA"], code, 0)):
        assert one_answer(loader, stream)[3] == (0, 0)
    out = loader.feed(request(CMD["MEM_END"], struct.pack("<II", 0, 0x40380004)))
    assert SlipReader().feed(out)[1] == b"OHAI"
    flash.write(0x3000, b"\x00" * 16)
    _, _, digest, status = answers(loader.feed(md5_request(0x3000, 16)), 2)[0]
    assert (digest, status) == (hashlib.md5(bytes(16)).digest(), (0, 0))  # raw, 2 status bytes
    erase = request(CMD["ERASE_REGION"], struct.pack("<II", 0x3000, 0x1000))
    assert answers(loader.feed(erase), 2)[0][3] == (0, 0)
    assert flash.read(0x3000, 16) == b"\xff" * 16
    _, _, _, status = answers(loader.feed(block_request(CMD["FLASH_DATA"], b"x" * 4, 0)), 2)[0]
    assert status == (0xC3, 0)  # the stub's own error code: no FLASH_BEGIN


# --- the flash chip -------------------------------------------------------------------------

def test_spiflash_programs_like_nor_and_persists(tmp_path):
    path = tmp_path / "f.bin"
    with SpiFlash(path, 1 << 20) as flash:
        assert flash.read(0, 16) == b"\xff" * 16
        flash.write(0x1001, b"\xf0\x0f")
        flash.write(0x1001, b"\x3c\x3c")
        assert flash.read(0x1000, 4) == b"\xff\x30\x0c\xff"  # bits only cleared
        assert flash.erase(0x1800, 0x10) == (0x1000, 0x2000)  # the sector it touches
        assert flash.read(0x1000, 4) == b"\xff" * 4
        flash.write(0xFFFFE, b"\x12\x34")
    with SpiFlash(path, 1 << 20) as flash:
        assert flash.read(0xFFFFE, 2) == b"\x12\x34"
        assert flash.md5(0xFFFFE, 2) == hashlib.md5(b"\x12\x34").hexdigest()
        with pytest.raises(FlashRangeError) as error:
            flash.write(0xFFFFF, b"\x00\x00")
        assert "\n" not in str(error.value)
    with pytest.raises(FlashRangeError):
        SpiFlash(path, 2 << 20)  # the file is some other chip's


# --- the real esptool -----------------------------------------------------------------------

@pytest.fixture
def small_image():
    return esp_image.build_micropython_image("esp32", size=0x50000, seed=3)


def test_esptool_reads_chip_id_and_mac(tmp_path):
    with RomServer(tmp_path / "flash.bin") as rom:
        for command in ("chip-id", "read-mac"):
            run = rom.esptool(command)
            assert run.returncode == 0, run.stdout + run.stderr
            assert "MAC:                " + MAC in run.stdout
            assert "ESP32-D0WD-V3 (revision v3.1)" in run.stdout
            assert "Crystal frequency:  40MHz" in run.stdout


@pytest.mark.parametrize("chip, name", [("esp32", "ESP32"), ("esp32s3", "ESP32-S3"), ("esp32c3", "ESP32-C3")])
def test_esptool_detects_the_chip(tmp_path, chip, name):
    with RomServer(tmp_path / "flash.bin", chip=chip, flash_size=8 << 20) as rom:
        run = rom.esptool("flash-id", chip="auto")
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"Detecting chip type... {name}\n" in run.stdout
        assert f"Connected to {name} on" in run.stdout
        assert MAC in run.stdout
        assert "Manufacturer: ef\nDevice: 4017\nDetected flash size: 8MB" in run.stdout


def test_esptool_writes_verifies_and_reads_back_uncompressed(tmp_path, small_image):
    (tmp_path / "fw.bin").write_bytes(small_image)
    with RomServer(tmp_path / "flash.bin") as rom:
        run = rom.esptool("write-flash", "--no-progress", "0x1000", str(tmp_path / "fw.bin"), baud=460800)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Changing baud rate to 460800" in run.stdout and "Changed." in run.stdout
        assert "Hash of data verified." in run.stdout
        assert rom.flash.read(0x1000, len(small_image)) == small_image
        assert esp_image.app_info(rom.flash.read(0, 0x20000), 0x1000)["version"] == "v1.24.1"
        assert not rom.loaders[-1].run_requested  # esptool resets by RTS, which a socket lacks
        run = rom.esptool("read-flash", "--no-progress", "0x8000", "0x100", str(tmp_path / "back.bin"))
        assert run.returncode == 0, run.stdout + run.stderr  # the ROM's READ_FLASH_SLOW, 64 bytes a time
        assert (tmp_path / "back.bin").read_bytes() == small_image[0x7000:0x7100]


def test_esptool_writes_a_full_image_compressed(tmp_path):
    image = esp_image.build_micropython_image("esp32c3")
    (tmp_path / "fw.bin").write_bytes(image)
    with RomServer(tmp_path / "flash.bin", chip="esp32c3") as rom:
        run = rom.esptool("write-flash", "-z", "--no-progress", "0x0", str(tmp_path / "fw.bin"),
                          after="soft-reset")
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"Wrote {len(image)} bytes (" in run.stdout and "compressed" in run.stdout
        assert "Hash of data verified." in run.stdout
        assert rom.flash.read(0, len(image)) == image
        assert rom.loaders[-1].run_requested  # --after soft-reset: FLASH_END, run the app


def test_esptool_gives_up_on_a_block_that_keeps_arriving_corrupted(tmp_path, small_image):
    def corrupt_block_2(packet):
        if packet[1] == CMD["FLASH_DATA"] and struct.unpack_from("<I", packet, 12)[0] == 2:
            packet = packet[:30] + bytes([packet[30] ^ 0x01]) + packet[31:]
        return packet

    (tmp_path / "fw.bin").write_bytes(small_image)
    with RomServer(tmp_path / "flash.bin", tamper=corrupt_block_2) as rom:
        run = rom.esptool("write-flash", "--no-progress", "0x1000", str(tmp_path / "fw.bin"))
        assert run.returncode != 0
        assert ("Failed to write to target flash after seq 2 (result was 0107: Checksum error)"
                in run.stdout + run.stderr)
        assert rom.flash.read(0x1000, 0x800) == small_image[:0x800]  # blocks 0 and 1 went in
        assert rom.flash.read(0x1800, 0x400) == b"\xff" * 0x400  # block 2 never did


def test_esptool_with_its_stub_erases_writes_and_reads_back_when_the_stub_is_played(tmp_path, small_image):
    (tmp_path / "fw.bin").write_bytes(small_image)
    with RomServer(tmp_path / "flash.bin", refuse_stub=False) as rom:
        rom.flash.write(0x300000, b"old data")
        for command in (["erase-flash"], ["write-flash", "--no-progress", "0x1000", str(tmp_path / "fw.bin")],
                        ["read-flash", "--no-progress", "0x1000", "0x10000", str(tmp_path / "back.bin")]):
            run = rom.esptool(*command, stub=True)
            assert run.returncode == 0, run.stdout + run.stderr
            assert "Stub flasher running." in run.stdout
        assert rom.flash.read(0x300000, 8) == b"\xff" * 8
        assert rom.flash.read(0x1000, len(small_image)) == small_image
        assert (tmp_path / "back.bin").read_bytes() == small_image[:0x10000]


def test_esptool_with_the_stub_is_told_ram_download_is_not_offered(tmp_path):
    with RomServer(tmp_path / "flash.bin", chip="esp32s3") as rom:
        run = rom.esptool("chip-id", stub=True)
        assert run.returncode == 2
        assert "Uploading stub flasher..." in run.stdout
        assert "This command (0x5) is not supported in the current download mode" in run.stdout + run.stderr
