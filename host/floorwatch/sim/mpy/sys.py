"""`sys` as MicroPython has it, with print_exception writing to the board's log."""

import traceback

from . import new_module


# .mpy native-code arch in sys.implementation._mpy bits 10+ (MicroPython's MP_NATIVE_ARCH_*).
_NATIVE_ARCH = {"esp32": 10, "esp32s3": 10, "esp32c3": 11}  # xtensawin, rv32imc


class _Implementation:
    name = "micropython"

    def __init__(self, release, chip):
        self.version = tuple(int(part) for part in release.split(".")[:3]) + ("",)
        self._machine = "simulated ESP32 module with %s" % chip.upper()
        self._mpy = 6 | (3 << 8) | (_NATIVE_ARCH[chip] << 10)  # .mpy version 6.3


def module(board):
    def print_exception(exc, file=None):
        board.print("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())

    def exit(code=0):
        raise SystemExit(code)

    return new_module(
        "sys", __doc__, implementation=_Implementation(board.micropython, board.chip), platform="esp32",
        version="3.4.0; MicroPython v%s (simulated)" % board.micropython, byteorder="little", maxsize=(1 << 30) - 1,
        path=["", ".frozen", "/lib"], argv=[], print_exception=print_exception, exit=exit,
        modules=board.runtime.modules if hasattr(board, "runtime") else {},
    )
