"""The serial bootloader in the ROM of an ESP32, ESP32-S3 or ESP32-C3, as esptool sees it.

    loader = RomLoader("esp32", mac, SpiFlash(path, 4 << 20))
    port.write(loader.banner())             # what the chip prints when reset into download mode
    port.write(loader.feed(port.read()))    # bytes from esptool in, the ROM's answers out

Written by hand: esptool, esptool-js and espflash are the host side of this protocol; nothing
packaged plays the chip's side (Espressif's QEMU runs the real ROM, but needs its own build and
the ROM binaries). esptool's own tables give the register addresses it reads, so the two agree.

Modelled, enough for the real esptool (`--no-stub`) to run chip-id, read-mac, flash-id,
write-flash with and without compression, verify, and chip auto-detection:
- SLIP framing: bytes may arrive split anywhere, several packets per chunk; noise between packets
  is dropped. Answers carry the ROM's 4 status bytes (status, error, 0, 0) and its error codes.
- SYNC (answered 8 times, as the ROM does), READ_REG / WRITE_REG over a register file: the eFuse
  words with the MAC (and, on the ESP32, its CRC-8), package and chip revision; the chip-detect
  magic at 0x40001000; APB_CTL_DATE; UART_CLKDIV as a 40 MHz crystal sets it; anything else reads
  as last written, or 0.
- The SPI flash controller's user-command registers, for what esptool runs through them: RDID
  (0x9F; a Winbond ID whose size byte follows the flash), RDSFDP (0x5A; a minimal SFDP table),
  the status registers (0); other commands are accepted and do nothing.
- SPI_ATTACH, SPI_SET_PARAMS and CHANGE_BAUDRATE are accepted (a socket has no baud rate).
- FLASH_BEGIN erases the whole region up front, in 4 KB sectors; FLASH_DATA blocks are
  checksum-checked and written at offset + seq * block size with NOR semantics (SpiFlash);
  FLASH_DEFL_* inflates the zlib stream as it comes; SPI_FLASH_MD5 answers 32 hex digits;
  READ_FLASH_SLOW answers 64-byte blocks; GET_SECURITY_INFO gives the S3/C3 chip id (the ESP32
  ROM does not know the command); FLASH_END (0 reboot, 1 run the app) ends the session.
- What the owner needs: `written` (every (start, length) erased or programmed, to notice the
  filesystem partition being overwritten), `run_requested` / `reboot_requested` (FLASH_END).
  esptool sends FLASH_END only for `--after soft-reset` (and `run`); its default hard reset
  pulls RTS, which a socket or pty does not carry: the owner sees the port closed instead.

Not modelled: timing (erases and writes are instant), Secure Download Mode, flash encryption,
eFuse programming, and running code from RAM.

The flasher stub. Without --no-stub, esptool uploads its stub to RAM (MEM_BEGIN, MEM_DATA),
starts it (MEM_END) and waits for its "OHAI"; this board runs no Xtensa or RISC-V code.
- refuse_stub=True (the default): this download mode offers no RAM download. MEM_BEGIN is
  answered as ROMs in Secure Download Mode answer a command they do not offer (status 1, error
  0x05, in a packet esptool does not take for MEM_BEGIN's own answer), so esptool stops at once,
  exit code 2, right after "Uploading stub flasher...", with "A fatal error occurred: This
  command (0x5) is not supported in the current download mode". The clearest of the ways to
  refuse: a MEM_BEGIN error of its own ("Failed to enter RAM download mode (result was 010F:
  Invalid RAM binary address)") blames an address a real chip accepts, and a stub that never
  says OHAI leaves esptool waiting for ever on a socket (no read timeout there).
- refuse_stub=False: the board plays the stub. MEM_END is answered, then OHAI, and from then on
  the stub's protocol: 2 status bytes and its error codes, MD5 as 16 raw bytes, FLASH_END 1 =
  stay in the stub, 0 = back to the ROM; and its own ERASE_FLASH, ERASE_REGION and READ_FLASH.
  So esptool's defaults (stub, compressed 16 KB blocks) and erase-flash / read-flash work too.
"""

import hashlib
import re
import struct
import zlib
from dataclasses import dataclass

from esptool.loader import ESPLoader
from esptool.targets import CHIP_DEFS

from ..sim.devices.onewire import crc8

CMD = ESPLoader.ESP_CMDS  # opcode by name, as esptool sends them
CHIP_DETECT_MAGIC = ESPLoader.CHIP_DETECT_MAGIC_REG_ADDR
SYNC_PAYLOAD = b"\x07\x07\x12\x20" + b"\x55" * 32
SYNC_FRAME = re.compile(rb"\xc0\x00\x08\x24\x00.{4}" + re.escape(SYNC_PAYLOAD) + rb"\xc0", re.DOTALL)
SYNC_VALUE = 0x20120707  # non-zero: a ROM, not a stub, answers
SYNC_REPLIES = 8
ROM_BAUD = 115200
XTAL_HZ = 40_000_000

# ROM error codes: the second status byte of a failed answer.
INVALID_MESSAGE = 0x05
BAD_CHECKSUM = 0x07
FLASH_WRITE_ERROR = 0x08
FLASH_READ_ERROR = 0x09
DEFLATE_ERROR = 0x0B
# The flasher stub's codes for the same failures: first status byte, the second is 0.
STUB_ERRORS = {INVALID_MESSAGE: 0xC3, BAD_CHECKSUM: 0xC1, FLASH_WRITE_ERROR: 0xC4, FLASH_READ_ERROR: 0xC4,
               DEFLATE_ERROR: 0xC7}

SPI_CMD_USR = 1 << 18  # SPI_CMD_REG: start the user command; the hardware clears it when done
SPI_USR_ADDR = 1 << 30
SPI_USR_MISO = 1 << 28
FLASH_ID = (0xEF, 0x40)  # Winbond W25Q..JV; the third byte is log2(size)

CHIPS = {
    "esp32": {"magic": 0x00F01D83, "banner": (
        b"ets Jun  8 2016 00:22:57\r\n\r\n"
        b"rst:0x1 (POWERON_RESET),boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\n"
        b"waiting for download\r\n")},
    "esp32s3": {"magic": 0x00000009, "banner": (
        b"ESP-ROM:esp32s3-20210327\r\nBuild:Mar 27 2021\r\n"
        b"rst:0x1 (POWERON),boot:0x0 (DOWNLOAD(USB/UART0))\r\nwaiting for download\r\n")},
    "esp32c3": {"magic": 0x1B31506F, "banner": (
        b"ESP-ROM:esp32c3-api1-20210207\r\nBuild:Feb  7 2021\r\n"
        b"rst:0x1 (POWERON),boot:0x5 (DOWNLOAD(USB/UART0/1))\r\nwaiting for download\r\n")},
}


class RomError(Exception):
    """A command the ROM answers with a failure status; `code` is its error byte. `unoffered`:
    a command this download mode does not offer at all, answered as Secure Download Mode ROMs
    answer them, in a packet esptool does not take for the command's own answer."""

    def __init__(self, code, unoffered=False):
        super().__init__(f"ROM error {code:#04x}")
        self.code = code
        self.unoffered = unoffered


def find_sync(buffer):
    """Where the first complete SLIP SYNC request in `buffer` starts, or -1."""
    match = SYNC_FRAME.search(buffer)
    return match.start() if match else -1


def slip_encode(packet):
    return b"\xc0" + packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


class SlipReader:
    """Cuts a byte stream into SLIP packets, whatever the chunks it arrives in."""

    def __init__(self):
        self._packet = None  # None: between packets, where bytes are noise

    def feed(self, data):
        packets = []
        for index, piece in enumerate(bytes(data).split(b"\xc0")):
            if index:  # a 0xC0 came before this piece: it ends a packet or starts one
                if self._packet:
                    packet = bytes(self._packet)
                    packets.append(packet.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb"))
                    self._packet = None
                else:
                    self._packet = bytearray()
            if self._packet is not None:
                self._packet += piece
        return packets


@dataclass
class _Download:
    """A FLASH_BEGIN or FLASH_DEFL_BEGIN session."""
    offset: int
    blocks: int
    block_size: int
    size: int  # bytes erased for it
    inflater: object = None  # zlib decompressor for FLASH_DEFL_DATA
    next_seq: int = 0
    inflated: int = 0


class RomLoader:
    """One chip in download mode, from its reset until it leaves; `feed()` it the host's bytes.

    chip: "esp32" | "esp32s3" | "esp32c3"; mac: 6 bytes or "24:0a:c4:.."; flash: a SpiFlash.
    written: [(start, length)] flash regions erased or programmed (touching ones merged).
    run_requested / reboot_requested: FLASH_END asked to run the app / to reboot; the ROM is
    silent from then on.
    """

    def __init__(self, chip, mac, flash, refuse_stub=True):
        if chip not in CHIPS:
            raise ValueError(f"no ROM loader for chip {chip!r}; known: {', '.join(CHIPS)}")
        self.chip = chip
        self.mac = _mac_bytes(mac)
        self.flash = flash
        self.refuse_stub = refuse_stub
        self.written = []  # (start, length) of the regions erased or programmed, in order
        self.run_requested = False  # FLASH_END asked to run the app
        self.reboot_requested = False  # FLASH_END asked to reboot
        self._target = CHIP_DEFS[chip]
        self._registers = _registers(chip, self.mac)
        self._slip = SlipReader()
        self._download = None
        self._silent = False  # the ROM has jumped away: it answers nothing more
        self._stub = False  # the flasher stub "runs" (refuse_stub=False): its protocol from now on
        self._after = b""  # packets a command sends after its answer (OHAI, flash data)
        self._handlers = {
            CMD["FLASH_BEGIN"]: self._flash_begin, CMD["FLASH_DATA"]: self._flash_data,
            CMD["FLASH_END"]: self._flash_end, CMD["FLASH_DEFL_BEGIN"]: self._flash_defl_begin,
            CMD["FLASH_DEFL_DATA"]: self._flash_defl_data, CMD["FLASH_DEFL_END"]: self._flash_end,
            CMD["MEM_BEGIN"]: self._mem_begin, CMD["MEM_DATA"]: self._mem_data, CMD["MEM_END"]: self._mem_end,
            CMD["READ_REG"]: self._read_reg, CMD["WRITE_REG"]: self._write_reg,
            CMD["SPI_ATTACH"]: self._accept, CMD["SPI_SET_PARAMS"]: self._accept,
            CMD["CHANGE_BAUDRATE"]: self._change_baudrate, CMD["SPI_FLASH_MD5"]: self._flash_md5,
            CMD["READ_FLASH_SLOW"]: self._read_flash_slow, CMD["ERASE_FLASH"]: self._erase_flash,
            CMD["ERASE_REGION"]: self._erase_region, CMD["READ_FLASH"]: self._read_flash,
        }
        if chip != "esp32":
            self._handlers[CMD["GET_SECURITY_INFO"]] = self._security_info

    def banner(self):
        """The text the chip prints on its UART when reset into download mode."""
        return CHIPS[self.chip]["banner"]

    def feed(self, data):
        """Serial bytes from the host in; the ROM's answers, SLIP-encoded, out."""
        return b"".join(self._answer(packet) for packet in self._slip.feed(data))

    # --- packets ----------------------------------------------------------------------------
    def _answer(self, packet):
        if self._silent or len(packet) < 8 or packet[0] != 0:
            return b""  # not a request (or nobody left to answer it): the ROM ignores it
        _, op, size, checksum = struct.unpack_from("<BBHI", packet)
        data = packet[8:]
        if op == CMD["SYNC"] and data == SYNC_PAYLOAD:
            if self._stub:
                return self._reply(op)  # value 0: esptool's sign of a running stub
            return self._reply(op, value=SYNC_VALUE) * SYNC_REPLIES
        try:
            handler = self._handlers.get(op)
            if handler is None or len(data) != size:
                raise RomError(INVALID_MESSAGE)
            value, payload = handler(data, checksum)
        except RomError as error:
            return self._reply(0 if error.unoffered else op, error=error.code)
        after, self._after = self._after, b""
        return self._reply(op, value, payload) + after

    def _reply(self, op, value=0, payload=b"", error=0):
        if self._stub:  # the stub's 2 status bytes
            status = bytes([STUB_ERRORS.get(error, 0xC3), 0]) if error else b"\0\0"
        else:
            status = bytes([1 if error else 0, error, 0, 0])
        return slip_encode(struct.pack("<BBHI", 1, op, len(payload) + len(status), value) + payload + status)

    # --- registers --------------------------------------------------------------------------
    def _read_reg(self, data, _):
        (address,) = _words(data, 1)
        return self._registers.get(address, 0), b""

    def _write_reg(self, data, _):
        if not data or len(data) % 16:
            raise RomError(INVALID_MESSAGE)
        spi_cmd = self._target.SPI_REG_BASE
        for address, value, mask, _delay in struct.iter_unpack("<IIII", data):
            value = self._registers.get(address, 0) & ~mask | value & mask
            if address == spi_cmd and value & SPI_CMD_USR:
                self._spi_command()
                value &= ~SPI_CMD_USR
            self._registers[address] = value
        return 0, b""

    def _spi_command(self):
        """Run the flash command set up in the SPI controller's user registers."""
        target, regs = self._target, self._registers
        base = target.SPI_REG_BASE
        usr = regs.get(base + target.SPI_USR_OFFS, 0)
        if not usr & SPI_USR_MISO:
            return  # nothing to read back (write enable, reset, ...): the command just happens
        command = regs.get(base + target.SPI_USR2_OFFS, 0) & 0xFF
        address = 0
        if usr & SPI_USR_ADDR:
            bits = (regs.get(base + target.SPI_USR1_OFFS, 0) >> 26 & 0x3F) + 1
            raw = regs.get(base + 4, 0)
            address = raw >> (32 - bits) if target.SPI_ADDR_REG_MSB else raw & ((1 << bits) - 1)
        length = (regs.get(base + target.SPI_MISO_DLEN_OFFS, 0) + 8) // 8
        if command == 0x9F:  # RDID
            answer = bytes([*FLASH_ID, self.flash.size.bit_length() - 1])
        elif command == 0x5A:  # RDSFDP
            answer = _sfdp(self.flash.size)[address:address + length]
        elif command in (0x05, 0x35, 0x15):  # status registers 1-3: idle, unprotected
            answer = bytes(length)
        else:
            answer = b""
        answer = answer[:length].ljust(-(-length // 4) * 4, b"\0")
        for index, (word,) in enumerate(struct.iter_unpack("<I", answer)):
            regs[base + target.SPI_W0_OFFS + 4 * index] = word

    def _change_baudrate(self, data, _):
        baud, _old = _words(data, 2)
        if baud:  # the UART's divider follows, as on the chip; the socket has no baud rate
            self._registers[self._target.UART_CLKDIV_REG] = _clkdiv(baud)
        return 0, b""

    def _security_info(self, data, _):
        _words(data, 0)
        # flags, flash_crypt_cnt, 7 key purposes: all clear; chip id; API version
        return 0, struct.pack("<IB7BII", 0, 0, *bytes(7), self._target.IMAGE_CHIP_ID, 0)

    @staticmethod
    def _accept(data, _):
        return 0, b""

    # --- flash ------------------------------------------------------------------------------
    def _flash_begin(self, data, _):
        return self._begin(data, inflater=None)

    def _flash_defl_begin(self, data, _):
        return self._begin(data, inflater=zlib.decompressobj())

    def _begin(self, data, inflater):
        """FLASH_BEGIN and FLASH_DEFL_BEGIN: erase the region now, as the ROM does."""
        if len(data) not in (16, 20):  # the ESP32 ROM takes 4 words, later ROMs a 5th: encrypt
            raise RomError(INVALID_MESSAGE)
        size, blocks, block_size, offset, *encrypt = struct.unpack(f"<{len(data) // 4}I", data)
        if any(encrypt):
            raise RomError(INVALID_MESSAGE)  # no flash encryption on this chip
        if size:
            self._change(*self._checked(self.flash.erase, offset, size))
        self._download = _Download(offset, blocks, block_size, size, inflater)
        return 0, b""

    def _flash_data(self, data, checksum):
        download = self._download
        seq, block = _block(data, checksum)
        if download is None or download.inflater is not None or seq >= download.blocks:
            raise RomError(INVALID_MESSAGE)
        self._program(download.offset + seq * download.block_size, block)
        return 0, b""

    def _flash_defl_data(self, data, checksum):
        download = self._download
        seq, block = _block(data, checksum)
        if download is None or download.inflater is None or seq != download.next_seq:
            raise RomError(INVALID_MESSAGE)
        try:
            out = download.inflater.decompress(block)
        except zlib.error:
            raise RomError(DEFLATE_ERROR) from None
        if download.inflated + len(out) > download.size:
            raise RomError(DEFLATE_ERROR)  # more than FLASH_DEFL_BEGIN erased for
        self._program(download.offset + download.inflated, out)
        download.inflated += len(out)
        download.next_seq += 1
        return 0, b""

    def _flash_end(self, data, _):
        (run,) = _words(data, 1)
        self._download = None
        if self._stub:  # 1: stay in the stub (esptool's "last block is written"); 0: back to the ROM
            self._stub = run == 1
            return 0, b""
        self.run_requested, self.reboot_requested = bool(run), not run
        self._silent = True  # the ROM answers, then jumps to the app or resets
        return 0, b""

    def _flash_md5(self, data, _):
        address, size, _, _ = _words(data, 4)
        digest = self._checked(self.flash.md5, address, size, error=FLASH_READ_ERROR)
        return 0, bytes.fromhex(digest) if self._stub else digest.encode("ascii")  # the ROM: hex digits

    def _read_flash_slow(self, data, _):
        address, length = _words(data, 2)
        if length > 64:
            raise RomError(INVALID_MESSAGE)
        block = self._checked(self.flash.read, address, length, error=FLASH_READ_ERROR)
        return 0, block.ljust(64, b"\xff")  # the ROM always sends its whole 64-byte buffer

    def _program(self, address, data):
        if data:
            self._checked(self.flash.write, address, data)
            self._change(address, address + len(data))

    def _change(self, start, end):
        """Note [start, end) as changed, merged with the last region when they meet."""
        if self.written:
            last_start, last_length = self.written[-1]
            if start <= last_start + last_length and end >= last_start:
                start, end = min(start, last_start), max(end, last_start + last_length)
                self.written.pop()
        self.written.append((start, end - start))

    @staticmethod
    def _checked(action, address, argument, error=FLASH_WRITE_ERROR):
        try:
            return action(address, argument)
        except ValueError:  # outside the chip
            raise RomError(error) from None

    # --- RAM: the stub's way in -------------------------------------------------------------
    def _mem_begin(self, data, _):
        self._ram_download()
        _words(data, 4)
        return 0, b""

    def _mem_data(self, data, checksum):
        self._ram_download()
        _block(data, checksum)
        return 0, b""

    def _mem_end(self, data, _):
        self._ram_download()
        _no_entry, entry = _words(data, 2)
        if entry and not self._stub:  # the stub "starts" and says hello
            self._stub = True
            self._after = slip_encode(b"OHAI")
        return 0, b""

    def _ram_download(self):
        if self.refuse_stub:
            raise RomError(INVALID_MESSAGE, unoffered=True)

    # --- the stub's own commands ------------------------------------------------------------
    def _erase_flash(self, data, _):
        self._stub_only(data, 0)
        self._change(*self.flash.erase(0, self.flash.size))
        return 0, b""

    def _erase_region(self, data, _):
        offset, size = self._stub_only(data, 2)
        if (offset | size) % 0x1000:
            raise RomError(INVALID_MESSAGE)  # the stub erases whole sectors only
        if size:
            self._change(*self._checked(self.flash.erase, offset, size))
        return 0, b""

    def _read_flash(self, data, _):
        """READ_FLASH: the answer, then the data in packets of `block` bytes, then its MD5. The
        host acknowledges each packet; the acks come in as short packets and are ignored."""
        offset, length, block, _in_flight = self._stub_only(data, 4)
        if not block:
            raise RomError(INVALID_MESSAGE)
        content = self._checked(self.flash.read, offset, length, error=FLASH_READ_ERROR)
        packets = [slip_encode(content[at:at + block]) for at in range(0, length, block)]
        self._after = b"".join(packets) + slip_encode(hashlib.md5(content).digest())
        return 0, b""

    def _stub_only(self, data, count):
        if not self._stub:
            raise RomError(INVALID_MESSAGE)  # the ROM does not know the stub's commands
        return _words(data, count)


def _words(data, count):
    if len(data) != 4 * count:
        raise RomError(INVALID_MESSAGE)
    return struct.unpack(f"<{count}I", data)


def _block(data, checksum):
    """The (seq, data) of a FLASH_DATA-style payload: length, seq, 0, 0, then the data."""
    if len(data) < 16:
        raise RomError(INVALID_MESSAGE)
    length, seq, _, _ = struct.unpack_from("<IIII", data)
    block = data[16:]
    if len(block) != length:
        raise RomError(INVALID_MESSAGE)
    if ESPLoader.checksum(block) != checksum:
        raise RomError(BAD_CHECKSUM)
    return seq, block


def _mac_bytes(mac):
    if isinstance(mac, str):
        text = mac.replace(":", "").replace("-", "")
        try:
            mac = bytes.fromhex(text)
        except ValueError:
            mac = b""
    if len(mac) != 6:
        raise ValueError(f"MAC {mac!r} is not 6 bytes (like 24:0a:c4:00:00:01)")
    return bytes(mac)


def _clkdiv(baud):
    """UART_CLKDIV for `baud` from the 40 MHz APB clock: integer part, 4-bit fraction at bit 20."""
    sixteenths = XTAL_HZ * 16 // baud
    return sixteenths % 16 << 20 | sixteenths // 16


def _registers(chip, mac):
    """The registers esptool reads, as a fresh chip of this kind holds them."""
    target = CHIP_DEFS[chip]
    high, low = int.from_bytes(mac[:2], "big"), int.from_bytes(mac[2:], "big")
    regs = {CHIP_DETECT_MAGIC: CHIPS[chip]["magic"], target.UART_CLKDIV_REG: _clkdiv(ROM_BAUD)}
    if chip == "esp32":  # ESP32-D0WD-V3, revision v3.1
        efuse = target.EFUSE_RD_REG_BASE
        regs.update({
            efuse + 4: low,
            efuse + 8: crc8(mac) << 16 | high,  # MAC_CRC at bits 16-23: the ROM's esp_crc8
            efuse + 12: 1 << 15 | 1 << 9,  # revision bit 0; package 1 (D0WD)
            efuse + 16: 0x11 << 8 | 0x80,  # ADC Vref calibration; 8 MHz oscillator calibration
            efuse + 20: 1 << 24 | 1 << 20,  # minor revision 1; revision bit 1
            target.APB_CTL_DATE_ADDR: 1 << 31 | 0x16042000,  # revision bit 2
            target.RTCCALICFG1: 800 << 7,  # with the 0x80 above, the ROM measured a 40 MHz crystal
        })
    else:  # MAC in eFuse block 1; ESP32-S3 (QFN56) v0.2 with 8 MB PSRAM, ESP32-C3 (QFN32) v0.4
        block1 = target.EFUSE_BLOCK1_ADDR
        regs.update({block1: low, block1 + 4: high,
                     block1 + 12: (2 if chip == "esp32s3" else 4) << 18,  # minor revision
                     block1 + 16: (1 << 3 | 1 << 7) if chip == "esp32s3" else 0})  # PSRAM 8 MB, AP 3.3 V
    return regs


def _sfdp(size):
    """A minimal SFDP table: the signature, one parameter header, and the flash density."""
    table = bytearray(b"\xff" * 0x100)
    table[0:16] = b"SFDP\x06\x01\x00\xff" + bytes([0x00, 0x06, 0x01, 0x10, 0x80, 0x00, 0x00, 0xFF])
    table[0x84:0x88] = (size * 8 - 1).to_bytes(4, "little")  # basic table dword 2: bits - 1
    return bytes(table)
