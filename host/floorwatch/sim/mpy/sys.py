"""`sys` as MicroPython has it, with print_exception writing to the board's log."""

import traceback

from . import new_module


class _Implementation:
    name = "micropython"
    version = (1, 24, 1, "")
    _machine = "simulated ESP32 module with ESP32"
    _mpy = 6 | (3 << 8)


def module(board):
    def print_exception(exc, file=None):
        board.print("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())

    def exit(code=0):
        raise SystemExit(code)

    return new_module(
        "sys", __doc__, implementation=_Implementation(), platform="esp32",
        version="3.4.0; MicroPython v1.24.1 (simulated)", byteorder="little", maxsize=(1 << 30) - 1,
        path=["", ".frozen", "/lib"], argv=[], print_exception=print_exception, exit=exit,
        modules=board.runtime.modules if hasattr(board, "runtime") else {},
    )
