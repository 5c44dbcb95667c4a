"""Import a hardware-free firmware module (node.vibration, node.alarms, ...) on CPython, board-less.

Host tools such as `floorwatch analyze` run the firmware's own code on recorded data, so their
numbers are the ones a node would compute. They import it through the simulator's Runtime
(floorwatch.sim.runtime), so the firmware sees the same fake `micropython`, `gc` and `time` modules
and the same import rules as on a simulated board, and the host's sys.path and sys.modules stay
untouched. A Runtime belongs to a board; `_Bench` is the least a board can be for code that touches
no hardware: a clock, a log on stderr, and the firmware directory as its flash.
"""

import sys
import time
from pathlib import Path

from .sim.board import RealClock
from .sim.runtime import FIRMWARE_DIR, Runtime


class _Bench:
    """Just enough of floorwatch.sim.board.Board for the fakes that pure code may import."""

    seed = 0
    boots = 1
    heap_used = 40000
    wdt = None

    def __init__(self, firmware_dir):
        firmware_dir = Path(firmware_dir)
        self.flash_dir = firmware_dir  # a board's flash holds a copy of the firmware
        self.clock = RealClock()
        self.runtime = Runtime(self, firmware_dir)

    def print(self, *args, sep=" ", end="\n", file=None, flush=False):
        print(*args, sep=sep, end=end, file=sys.stderr, flush=flush)

    def checkpoint(self):
        pass  # no power cuts, resets or watchdog off a board

    def sleep(self, seconds):
        time.sleep(max(0.0, seconds))

    def wall_time(self):
        return self.clock.now()


def load(name, firmware_dir=None):
    """A fresh import of firmware module `name` (e.g. "node.vibration") with its own module table.

    firmware_dir defaults to the repository's firmware/ next to host/. Raises ImportError when the
    module cannot be found, and whatever the module raises while it is imported.
    """
    bench = _Bench(firmware_dir or FIRMWARE_DIR)
    return bench.runtime.import_module(name)
