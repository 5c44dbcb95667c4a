"""The console a running virtual board has on its serial port: MicroPython's UART REPL.

The simulated board (`floorwatch.sim.board.Board`) calls this object: `output()` for what the
firmware prints, `repl(board)` when MicroPython sits at its prompt (it serves the REPL in the
board's own thread, so code typed there runs, resets and is interrupted exactly as firmware does),
`runs_main()` to know whether this boot runs main.py, `download_mode()` for machine.bootloader().

Bytes from the host arrive through `input()` from the endpoint's thread. A Ctrl-C that arrives
while code runs (boot.py, main.py, or code the REPL runs) is taken as the interrupt
(KeyboardInterrupt at the firmware's next checkpoint) and consumed, as MicroPython's UART handler
does; everything else waits in a pipe, the UART's buffer, for the REPL.
"""

import os
import select
import threading

from ..sim.board import SOFT_RESET, ResetBoard
from .repl import Repl, to_console

CTRL_C = b"\x03"


class Console:
    def __init__(self, send, on_bootloader, roots=()):
        self._send = send
        self._on_bootloader = on_bootloader
        self._reader, self._writer = os.pipe()
        os.set_blocking(self._writer, False)
        self._board = None
        self._lock = threading.Lock()
        self._running = False  # code runs (boot.py, main.py, or the REPL's): a Ctrl-C is the interrupt
        self._globals = None  # the REPL's namespace; a fresh one every boot
        self.repl_state = Repl(self._read, send, self._execute, roots=roots)

    def attach(self, board):
        self._board = board

    # --- what the board calls ----------------------------------------------------------------
    def output(self, text):
        self._send(to_console(text))

    def runs_main(self):
        with self._lock:
            self._running = True  # boot.py and main.py can be interrupted
        if self._board.reset_cause != SOFT_RESET:
            self.repl_state.reset()  # a hard boot starts at the friendly REPL, its input lost
            self._drain()
            return True
        return self.repl_state.mode != "raw"  # MicroPython skips main.py after a raw-REPL soft reset

    def repl(self, board):
        with self._lock:
            self._running = False
            board.cancel_interrupt()
        self._globals = {"__name__": "__main__", "__builtins__": board.runtime.builtins}
        self.repl_state.run()

    def download_mode(self):
        self._on_bootloader()

    # --- what the endpoint calls -------------------------------------------------------------
    def input(self, data):
        with self._lock:
            if self._running and CTRL_C in data:
                self._board.interrupt()
                data = data.replace(CTRL_C, b"")
        if data:
            try:
                os.write(self._writer, data)
            except BlockingIOError:
                pass  # nobody reads and the buffer is full: an overrun loses bytes, as a UART's does

    def close(self):
        for fd in (self._reader, self._writer):
            os.close(fd)

    # --- the REPL's side, in the board's thread ---------------------------------------------
    def _read(self, timeout):
        ready = self._board.sleep(timeout, watch={self._reader: select.POLLIN})  # a reset ends the wait
        return os.read(self._reader, 4096) if ready else b""

    def _execute(self, source, filename="<stdin>"):
        code = compile(source, filename, "exec")
        with self._lock:
            self._running = True
        try:
            exec(code, self._globals)  # noqa: S102 (the board's own REPL)
        except ResetBoard as reset:
            if reset.cause == SOFT_RESET:  # machine.soft_reset(): MicroPython's REPL takes it as SystemExit
                raise SystemExit() from None
            raise
        finally:
            with self._lock:
                self._running = False
                self._board.cancel_interrupt()  # a Ctrl-C that came as the code ended

    def _drain(self):
        while select.select([self._reader], [], [], 0)[0]:
            os.read(self._reader, 4096)
