"""A simulated board with the virtual board's console on a loopback TCP port: the REPL tests'
stand-in for a whole VBoard (no ROM loader, no flash image), so that code typed at the REPL runs in
the board's own thread and resets, power cuts and Ctrl-C reach it there.
"""

import subprocess
import sys
import threading
from pathlib import Path

from floorwatch.sim.board import SOFT_RESET, Board
from floorwatch.vboard.console import Console
from floorwatch.vboard.serve import open_endpoint

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))


class ReplBoard:
    def __init__(self, root, main_py=None):
        root = Path(root)
        (root / "frozen").mkdir(parents=True, exist_ok=True)  # no frozen firmware: a stock MicroPython
        self.sent = bytearray()  # everything the board sent
        self.received = bytearray()  # everything the hosts sent
        self.hard_boots = 0  # power-ons and hard resets
        self._changed = threading.Condition()
        self.endpoint = open_endpoint("socket://127.0.0.1:0")
        self.url = self.endpoint.url
        self.console = _CountingConsole(self, self._send, lambda: None, roots=(root / "flash",))
        self.board = Board("repl-test", flash_dir=root, firmware_dir=root / "frozen", console=self.console)
        self.console.attach(self.board)
        self.shell = self.console.repl_state
        if main_py is not None:
            (self.board.flash_dir / "main.py").write_text(main_py)

    def start(self):
        self.endpoint.serve(self.feed, lambda: None)
        self.board.power_on()
        return self

    def close(self):
        self.endpoint.close()
        self.board.power_off()
        self.console.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def feed(self, data):
        """Bytes from the host, as the serial port delivers them."""
        self.received += data
        self.console.input(data)

    def wait_for(self, pattern, since=0, timeout=10.0):
        """What the board sent from offset `since`, once it contains `pattern`."""
        with self._changed:
            if not self._changed.wait_for(lambda: pattern in self.sent[since:], timeout):
                raise AssertionError("no %r in %r" % (pattern, bytes(self.sent[since:])))
            return bytes(self.sent[since:])

    def mpremote(self, *args, cwd=None):
        return subprocess.run([MPREMOTE, "connect", self.url, *args], capture_output=True, text=True,
                              timeout=60, cwd=cwd)

    def _send(self, data):
        with self._changed:
            self.sent += data
            self._changed.notify_all()
        self.endpoint.send(data)


class _CountingConsole(Console):
    """The console, counting the boots that were not soft resets for the tests."""

    def __init__(self, owner, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._owner = owner

    def runs_main(self):
        if self._board.reset_cause != SOFT_RESET:
            self._owner.hard_boots += 1
        return super().runs_main()
