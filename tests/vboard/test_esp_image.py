"""ESP image facts and the stand-in MicroPython image, checked with esptool's own reader and CLI."""

import hashlib
import re
import struct
import subprocess
import zlib

import pytest
from esptool.bin_image import LoadFirmwareImage
from romlib import ESPTOOL

from floorwatch import esp_image
from floorwatch.esp_image import ImageError, app_info, build_micropython_image, chip_of

OFFSETS = {"esp32": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0}
SMALL = 0x60000


def flash_with(image, offset, size=4 << 20):
    """The flash contents after `image` was written at `offset` on an erased chip."""
    return b"\xff" * offset + image + b"\xff" * (size - offset - len(image))


@pytest.mark.parametrize("chip", OFFSETS)
def test_built_image_says_its_chip_and_app(chip):
    image = build_micropython_image(chip, version="1.23.0", size=SMALL)
    assert chip_of(image) == chip
    info = app_info(flash_with(image, OFFSETS[chip]), OFFSETS[chip])
    assert info["project"] == "micropython" and info["version"] == "v1.23.0"
    assert info["idf"].startswith("v5.") and info["chip"] == chip


@pytest.mark.parametrize("size", [0x10000, SMALL])
@pytest.mark.parametrize("chip", OFFSETS)
def test_both_images_pass_esptools_checksum_and_hash(chip, size):
    image = build_micropython_image(chip, size=size)
    assert app_info(flash_with(image, OFFSETS[chip]), OFFSETS[chip])["project"] == "micropython"
    for at in (0, esp_image.APP_OFFSET - OFFSETS[chip]):  # the bootloader, the app
        loaded = LoadFirmwareImage(chip, image[at:])
        assert loaded.checksum == loaded.calculate_checksum()
        assert loaded.append_digest and loaded.stored_digest == loaded.calc_digest
        assert loaded.chip_id == {"esp32": 0, "esp32s3": 9, "esp32c3": 5}[chip]


def test_image_is_the_asked_size_seeded_and_incompressible():
    image = build_micropython_image("esp32")
    assert abs(len(image) - 1_500_000) < 1_500_000 * 0.01
    assert len(zlib.compress(image, 9)) > 0.97 * len(image)  # as costly to send as a real image
    seed0 = build_micropython_image("esp32", size=SMALL)
    assert build_micropython_image("esp32", size=SMALL) == seed0
    assert build_micropython_image("esp32", size=SMALL, seed=1) != seed0
    smallest = build_micropython_image("esp32s3", size=0)  # the bootloader, the table, a 4 KB app
    assert 0x10000 < len(smallest) <= 0x11000 and app_info(smallest, 0)["project"] == "micropython"
    with pytest.raises(ImageError):
        build_micropython_image("esp8266")
    with pytest.raises(ImageError):
        build_micropython_image("esp32", flash_size="2MB")


def test_partition_table_is_micropythons_4mb_layout():
    table = build_micropython_image("esp32s3", size=SMALL)[0x8000:0x8C00]
    rows = [struct.unpack_from("<2sBBII16sI", table, at) for at in range(0, 4 * 32, 32)]
    fields = [(kind, sub, offset, size, name.rstrip(b"\0")) for _, kind, sub, offset, size, name, _ in rows]
    assert fields == [
        (1, 0x02, 0x9000, 0x6000, b"nvs"), (1, 0x01, 0xF000, 0x1000, b"phy_init"),
        (0, 0x00, 0x10000, 0x1F0000, b"factory"), (1, 0x81, 0x200000, 0x200000, b"vfs")]
    assert all(magic == b"\xaa\x50" for magic, *_ in rows)
    assert table[128:130] == b"\xeb\xeb" and table[144:160] == hashlib.md5(table[:128]).digest()
    assert table[160:] == b"\xff" * (0xC00 - 160)
    assert struct.unpack_from("<II", esp_image.partition_table("8MB"), 3 * 32 + 4) == (0x200000, 0x600000)


@pytest.mark.parametrize("data, message", [
    (b"", "not an ESP firmware image: it is empty"),
    (b"PK\x03\x04" + bytes(40), "not an ESP firmware image: first byte 0x50 is not 0xE9"),
    (b"\xe9\x03", "not an ESP firmware image: 2 bytes, shorter than its header"),
    (b"\xe9\x03\x02\x20" + bytes(8) + b"\x0c\x00" + bytes(10),
     "ESP firmware image for chip id 12, not one of esp32 (0), esp32s3 (9), esp32c3 (5)"),
])
def test_chip_of_refuses_what_is_no_image_in_one_line(data, message):
    with pytest.raises(ImageError) as error:
        chip_of(data)
    assert str(error.value) == message


def test_app_info_is_none_when_the_flash_would_not_boot_micropython():
    image = build_micropython_image("esp32", size=SMALL)
    flash = flash_with(image, 0x1000)
    assert app_info(flash, 0x1000)["project"] == "micropython"
    assert app_info(b"\xff" * (4 << 20), 0x1000) is None  # blank
    assert app_info(flash, 0x0) is None  # no bootloader where an S3/C3 ROM looks for it
    assert app_info(flash[:0x10000], 0x1000) is None  # no app
    no_bootloader = bytearray(flash)
    no_bootloader[0x1000:0x2000] = b"\xff" * 0x1000
    assert app_info(no_bootloader, 0x1000) is None
    no_descriptor = bytearray(flash)
    no_descriptor[0x10000 + 32] ^= 0xFF  # the esp_app_desc_t magic
    assert app_info(no_descriptor, 0x1000) is None
    other_chip = flash_with(image[:0xF000] + build_micropython_image("esp32c3", size=SMALL)[0x10000:], 0x1000)
    assert app_info(other_chip, 0x1000) is None


def test_esptool_image_info_accepts_the_merged_image_and_its_app(tmp_path):
    image = build_micropython_image("esp32")
    (tmp_path / "merged.bin").write_bytes(image)
    (tmp_path / "app.bin").write_bytes(image[esp_image.APP_OFFSET - 0x1000:])
    for name, expected in (("merged.bin", "Bootloader Information"),
                           ("app.bin", "Project name: micropython")):
        run = subprocess.run([ESPTOOL, "--chip", "esp32", "image-info", str(tmp_path / name)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Chip ID: 0 (ESP32)" in run.stdout
        assert re.search(r"^Checksum: 0x[0-9a-f]{2} \(valid\)$", run.stdout, re.M)
        assert re.search(r"^Validation hash: [0-9a-f]{64} \(valid\)$", run.stdout, re.M)
        assert expected in run.stdout
    assert "App version: v1.24.1" in run.stdout
