"""ESP firmware images: what the host tools and the virtual board need to know about them.

    chip_of(data)                          # "esp32" | "esp32s3" | "esp32c3", from the header
    app_info(flash, image_offset)          # the app descriptor of what the flash would boot, or None
    build_micropython_image("esp32")       # a merged .bin shaped as MicroPython ships it

A merged MicroPython .bin is written at the board's image offset (0x1000 on the ESP32, 0 on the
S3/C3) and holds the second-stage bootloader there, the partition table at 0x8000 and the app at
0x10000; the app's first segment starts with ESP-IDF's esp_app_desc_t (project, version, ...).

esptool's image classes build the bootloader and app images (segments, alignment, checksum,
appended SHA-256, the extended header's chip id), so esptool accepts what is built here. Written
here: the partition table (esptool has no generator for it; ESP-IDF's gen_esp32part.py is not a
package), the two descriptor structs, and the merge (esptool's merge_bin prints to the console).
"""

import hashlib
import random
import struct

from esptool.bin_image import ESP32C3FirmwareImage, ESP32FirmwareImage, ESP32S3FirmwareImage, ELFSection

IMAGE_CLASSES = {"esp32": ESP32FirmwareImage, "esp32s3": ESP32S3FirmwareImage,
                 "esp32c3": ESP32C3FirmwareImage}
CHIP_IDS = {cls.ROM_LOADER.IMAGE_CHIP_ID: chip for chip, cls in IMAGE_CLASSES.items()}  # 0, 9, 5
HEADER_LEN = 24  # common header (8 bytes) + extended header (16)
PARTITION_TABLE_OFFSET = 0x8000
APP_OFFSET = 0x10000  # MicroPython's factory app partition
VFS_OFFSET = 0x200000  # MicroPython's filesystem partition, to the end of the flash

# esp_app_desc_t: magic, secure_version, reserved[2], version, project_name, time, date, idf_ver,
# app_elf_sha256, min/max eFuse block revision, MMU page size (log2), reserved.
APP_DESC = struct.Struct("<II8s32s32s16s16s32s32sHHB3s72s")
APP_DESC_MAGIC = 0xABCD5432
# esp_bootloader_desc_t: magic byte, reserved, version, idf_ver, date_time, reserved.
BOOTLOADER_DESC = struct.Struct("<B3sI32s24s16s")
PARTITION = struct.Struct("<2sBBII16sI")  # magic 0xAA50, type, subtype, offset, size, label, flags

IDF_VERSION = b"v5.2.2"  # what MicroPython 1.24 is built with
BUILT = (b"Nov 29 2024", b"12:00:00")
# Load addresses in each chip's memory map, and the newest chip revision the build accepts.
LAYOUT = {
    "esp32": {"boot": (0x3FFF0030, 0x40078000, 0x40080400), "boot_entry": 0x40080604,
              "drom": 0x3F400020, "dram": 0x3FFBDB60, "iram": 0x40080000, "irom": 0x400D0020,
              "entry": 0x40081C74, "max_rev_full": 399},
    "esp32s3": {"boot": (0x3FCE3808, 0x403C9700, 0x403CC700), "boot_entry": 0x403C9908,
                "drom": 0x3C000020, "dram": 0x3FC92000, "iram": 0x40374000, "irom": 0x42000020,
                "entry": 0x40375A2C, "max_rev_full": 99},
    "esp32c3": {"boot": (0x3FCD5820, 0x403CC710, 0x403CE710), "boot_entry": 0x403CC71A,
                "drom": 0x3C000020, "dram": 0x3FC8B400, "iram": 0x40380000, "irom": 0x42000020,
                "entry": 0x40380080, "max_rev_full": 199},
}
RAM_SEGMENTS = (0x5000, 0x14000)  # app DRAM and IRAM: enough to pad the IROM segment to its page


class ImageError(ValueError):
    """Bytes that are not a usable ESP firmware image; str() is one line."""


def chip_of(data):
    """The chip an image (or a merged .bin, whose first image is the bootloader) is built for."""
    if not data:
        raise ImageError("not an ESP firmware image: it is empty")
    if data[0] != 0xE9:
        raise ImageError(f"not an ESP firmware image: first byte {data[0]:#04x} is not 0xE9")
    if len(data) < HEADER_LEN:
        raise ImageError(f"not an ESP firmware image: {len(data)} bytes, shorter than its header")
    chip_id = int.from_bytes(data[12:14], "little")
    if chip_id not in CHIP_IDS:
        known = ", ".join(f"{chip} ({cid})" for cid, chip in CHIP_IDS.items())
        raise ImageError(f"ESP firmware image for chip id {chip_id}, not one of {known}")
    return CHIP_IDS[chip_id]


def app_info(flash, image_offset=0):
    """The app descriptor of the app at flash 0x10000, as a dict, or None if the flash would not
    boot one: no bootloader image at `image_offset` (where the chip's ROM looks for it), no app
    image at 0x10000, an app for another chip, or no esp_app_desc_t at its start.

    `flash` is the flash contents from address 0 (bytes or anything sliced like them, e.g. an
    mmap), at least through the descriptor (0x10000 + 288 bytes). For a merged .bin meant for
    `image_offset`, pass `bytes(image_offset) + merged`. Only the headers and the descriptor are
    read: the image's checksum and SHA-256 are not checked here (esptool's image-info does).
    """
    app = flash[APP_OFFSET:APP_OFFSET + HEADER_LEN + 8 + APP_DESC.size]
    try:
        chip = chip_of(app)
        if chip_of(flash[image_offset:image_offset + HEADER_LEN]) != chip:
            return None
    except ImageError:
        return None
    first_segment_len = int.from_bytes(app[HEADER_LEN + 4:HEADER_LEN + 8], "little")
    if app[1] == 0 or len(app) < HEADER_LEN + 8 + APP_DESC.size or first_segment_len < APP_DESC.size:
        return None
    (magic, secure_version, _, version, project, time, date, idf, elf_sha256,
     *_) = APP_DESC.unpack_from(app, HEADER_LEN + 8)
    if magic != APP_DESC_MAGIC:
        return None
    return {"project": _text(project), "version": _text(version), "idf": _text(idf),
            "date": _text(date), "time": _text(time), "secure_version": secure_version,
            "elf_sha256": elf_sha256.hex(), "chip": chip}


def build_micropython_image(chip, version="1.24.1", size=1_500_000, seed=0, flash_size="4MB"):
    """The merged .bin a user downloads for `chip`, about `size` bytes, to be written at the
    board's image offset: bootloader, MicroPython's partition table and an app whose descriptor
    says project "micropython", version "v<version>". Code and data are seeded pseudo-random
    bytes, so the image compresses no better than a real one and flashing costs the same.
    Below 256 KB of app the app has no flash-mapped code (so no 64 KB page alignment); the
    smallest image holds a 4 KB app."""
    if chip not in IMAGE_CLASSES:
        raise ImageError(f"no image layout for chip {chip!r}; known: {', '.join(IMAGE_CLASSES)}")
    _flash_bytes(flash_size)
    image_offset = IMAGE_CLASSES[chip].ROM_LOADER.BOOTLOADER_FLASH_OFFSET
    rng = random.Random(seed)
    bootloader = _bootloader(chip, rng, flash_size)
    app = _app(chip, rng, flash_size, max(size - (APP_OFFSET - image_offset), 0x1000), "v" + version.lstrip("v"))
    merged = bytearray(b"\xff" * (APP_OFFSET - image_offset + len(app)))
    for offset, part in ((image_offset, bootloader), (PARTITION_TABLE_OFFSET, partition_table(flash_size)),
                         (APP_OFFSET, app)):
        merged[offset - image_offset:offset - image_offset + len(part)] = part
    return bytes(merged)


def partition_table(flash_size="4MB"):
    """MicroPython's partition table (its partitions-4MiB.csv; vfs grows with the flash)."""
    vfs_size = _flash_bytes(flash_size) - VFS_OFFSET
    rows = (("nvs", 1, 0x02, 0x9000, 0x6000), ("phy_init", 1, 0x01, 0xF000, 0x1000),
            ("factory", 0, 0x00, APP_OFFSET, VFS_OFFSET - APP_OFFSET), ("vfs", 1, 0x81, VFS_OFFSET, vfs_size))
    table = b"".join(PARTITION.pack(b"\xaa\x50", kind, subtype, offset, length, name.encode(), 0)
                     for name, kind, subtype, offset, length in rows)
    table += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(table).digest()  # ESP-IDF's MD5 entry
    return table + b"\xff" * (0xC00 - len(table))


def _bootloader(chip, rng, flash_size):
    layout = LAYOUT[chip]
    dram, iram_loader, iram = layout["boot"]
    desc = BOOTLOADER_DESC.pack(0x50, b"", 1, IDF_VERSION, b" ".join(BUILT), b"")
    segments = [(".dram0.bootdesc", dram, desc + rng.randbytes(0x1800 - len(desc))),
                (".iram_loader.text", iram_loader, rng.randbytes(0x3400)),
                (".iram.text", iram, rng.randbytes(0x1600))]
    return _image(chip, flash_size, layout["boot_entry"], segments)


def _app(chip, rng, flash_size, app_size, version):
    layout = LAYOUT[chip]
    desc = APP_DESC.pack(APP_DESC_MAGIC, 0, b"", version.encode(), b"micropython", BUILT[1], BUILT[0],
                         IDF_VERSION, rng.randbytes(32), 0, 99, 16, b"", b"")
    overhead = 0x100  # image and segment headers, checksum, SHA-256
    if app_size >= 0x40000:  # a real app's shape: code run from flash, on its own 64 KB page
        dram, iram = RAM_SEGMENTS
        drom = app_size // 4 & ~3
        irom = (app_size - drom - dram - iram - overhead) & ~3
    else:
        dram = iram = app_size // 8 & ~3
        drom, irom = (app_size - dram - iram - overhead) & ~3, 0
    segments = [(".flash.appdesc", layout["drom"], desc + rng.randbytes(drom - len(desc))),
                (".dram0.data", layout["dram"], rng.randbytes(dram)),
                (".iram0.text", layout["iram"], rng.randbytes(iram)),
                (".flash.text", layout["irom"], rng.randbytes(irom))]
    return _image(chip, flash_size, layout["entry"], [segment for segment in segments if segment[2]])


def _image(chip, flash_size, entry, segments):
    image = IMAGE_CLASSES[chip]()
    image.flash_mode = 2  # DIO, as MicroPython's images are flashed
    image.flash_size_freq = image.ROM_LOADER.FLASH_SIZES[flash_size]  # | 0: 40 MHz
    image.entrypoint = entry
    image.max_rev_full = LAYOUT[chip]["max_rev_full"]
    image.segments = [ELFSection(name.encode(), addr, data, flags=0) for name, addr, data in segments]
    return image.save(None)


def _flash_bytes(flash_size):
    megabytes = flash_size[:-2] if flash_size.endswith("MB") else ""
    if flash_size not in ESP32FirmwareImage.ROM_LOADER.FLASH_SIZES or int(megabytes) < 4:
        raise ImageError(f"flash size {flash_size!r}: MicroPython's layout needs 4MB, 8MB, 16MB, ...")
    return int(megabytes) << 20


def _text(field):
    return field.split(b"\0", 1)[0].decode("ascii", "replace")
