"""MicroPython's console on a virtual board: the friendly REPL, the raw REPL and raw-paste, over bytes.

Written by hand because nothing emulates the device side of these protocols: mpremote, pyboard.py
and rshell are hosts, and MicroPython's own REPL (shared/runtime/pyexec.c) runs MicroPython, not
the simulator's firmware. This follows pyexec.c (v1.24) byte for byte where hosts look, so the
real `mpremote` works against it:

- friendly REPL: banner, `>>> ` and `... ` prompts, echo, backspace, printing the repr of top-level
  expression statements, continuation lines, Ctrl-E paste mode; Ctrl-A to the raw REPL, Ctrl-B
  prints the banner again, Ctrl-C drops the line, Ctrl-D soft-resets.
- raw REPL (`raw REPL; CTRL-B to exit\\r\\n>`): code, Ctrl-D, `OK`, output, `\\x04`, traceback,
  `\\x04`, `>`. Ctrl-D on an empty line: `OK\\r\\n` and a soft reset.
- raw-paste (`\\x05A\\x01` in the raw REPL): `R\\x01`, the window (128 bytes, as `\\x80\\x00`) and one
  `\\x01` for the second free window, then a `\\x01` per window consumed; `\\x04` once the end came.

A soft reset ends run() after `MPY: soft reboot\\r\\n` (the ESP32 port's line); the mode survives it,
so a board reset from the raw REPL comes back to the raw REPL (and MicroPython skips main.py).

run() is meant for the board's own thread: code runs through `execute` in that thread, so a reset,
a power cut or a Ctrl-C interrupt raised at the firmware's checkpoints reaches it as on the chip.
Anything read() or execute() raises that is not an Exception, KeyboardInterrupt or SystemExit (the
simulator's ResetBoard, PowerOff) goes through run() untouched. The owner delivers Ctrl-C while
code runs (see Repl); while the REPL waits for input a Ctrl-C is just a key.

Not modelled: cursor movement and history (escape sequences are swallowed), tab completion, and
auto-indent. A lone `\\n` ends a line as `\\r` does (MicroPython ignores it), for hosts that send it.
"""

import ast
import codeop
import errno
import os
import struct
import traceback
import warnings

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5
BACKSPACE, TAB, LF, CR, ESC, DEL = 8, 9, 10, 13, 27, 127

SOFT_RESET = "soft-reset"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
RAW_HEADER = b"raw REPL; CTRL-B to exit\r\n"
PASTE_HEADER = b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== "
PASTE_WINDOW = 128  # MICROPY_REPL_STDIN_BUFFER_MAX (256) / 2, as the ESP32 port has it
PS1, PS2 = b">>> ", b"... "
HELP_LINE = 'Type "help()" for more information.'
DEFAULT_BANNER = "MicroPython v1.24.1 on 2024-11-29; Generic ESP32 module with ESP32"
READ_TIMEOUT_S = 0.5  # how long one read() may wait; the owner's read wakes early on a reset anyway
STDIN = "<stdin>"
PSEUDO_FILES = (STDIN, "<string>")  # code typed or sent, and exec()'d strings: MicroPython names them so

# The errno names MicroPython's OSError prints (py/moderrno.c's default list); other numbers print
# bare ("OSError: 20"), which mpremote maps back through its own table.
ERRNO_NAMES = {getattr(errno, name): name for name in (
    "EPERM", "ENOENT", "EIO", "EBADF", "EAGAIN", "ENOMEM", "EACCES", "EEXIST", "ENODEV", "EISDIR",
    "EINVAL", "EOPNOTSUPP", "EADDRINUSE", "ECONNABORTED", "ECONNRESET", "ENOBUFS", "ENOTCONN",
    "ETIMEDOUT", "ECONNREFUSED", "EHOSTUNREACH", "EALREADY", "EINPROGRESS")}


def to_console(text):
    """Text as MicroPython's UART stdout sends it: every \\n goes out as \\r\\n, UTF-8."""
    return text.replace("\n", "\r\n").encode("utf-8", "replace")


def format_exception(exc, roots=()):
    """What MicroPython prints for an uncaught exception, with \\n newlines (to_console() them).

    Frames are those of code the board runs: <stdin> and exec()'d strings, and files under one of
    `roots` (the board's filesystem, its frozen modules), named relative to their root as
    MicroPython names them. Host frames (the simulator's fake modules, the standard library) are
    left out, as MicroPython's built-in functions leave none.
    """
    roots = [os.path.realpath(root) for root in roots]
    lines = []
    for frame in traceback.extract_tb(exc.__traceback__):
        name = _board_path(frame.filename, roots)
        if name is not None:
            lines.append('  File "%s", line %d, in %s' % (name, frame.lineno, frame.name))
    if isinstance(exc, SyntaxError):  # raised by the compiler: it names the place, no frame does
        name = _board_path(exc.filename or STDIN, roots) or exc.filename
        lines.append('  File "%s", line %d' % (name, exc.lineno or 1))
    head = ["Traceback (most recent call last):"] if lines else []
    return "\n".join(head + lines + ["%s: %s" % (_type_name(exc), _message(exc))]) + "\n"


def _type_name(exc):
    # MicroPython has OSError alone, where CPython raises FileNotFoundError, TimeoutError, ...
    if isinstance(exc, OSError) and type(exc).__module__ == "builtins":
        return "OSError"
    return type(exc).__name__


def _board_path(filename, roots):
    if filename in PSEUDO_FILES:
        return filename
    path = os.path.realpath(filename)
    for root in roots:
        if path.startswith(root + os.sep):
            return os.path.relpath(path, root).replace(os.sep, "/")
    return None


def _message(exc):
    """The text after "Name: ", by MicroPython's rules (mp_obj_exception_print)."""
    args = exc.args
    if isinstance(exc, OSError) and args and type(args[0]) is int:
        # MicroPython's own OSErrors carry just the number; a host strerror would read differently
        name = ERRNO_NAMES.get(args[0])
        return "[Errno %d] %s" % (args[0], name) if name else str(args[0])
    if isinstance(exc, SyntaxError):
        return "invalid syntax" if type(exc) is SyntaxError else exc.msg
    if not args:
        return ""
    return str(args[0]) if len(args) == 1 else repr(args)


def _source(data):
    """Bytes typed or sent as code → source text, with MicroPython's lexer's view of newlines."""
    return data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")


def _incomplete(text):
    """Whether the friendly REPL asks for a continuation line (an open block, bracket, string)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return codeop.compile_command(text, STDIN, "single") is None
        except (SyntaxError, ValueError, OverflowError):
            return False  # run it and let the error show


def _echo_expressions(source):
    """Source in which each module-level expression statement prints its value's repr unless it is
    None, as the REPL compiles input (MicroPython's __repl_print__). Line numbers are unchanged.
    Unparseable source comes back as it is, for execute() to raise its SyntaxError."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return source
    data = source.encode("utf-8")
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    for node in sorted(_module_level_expressions(tree.body), key=lambda n: (n.lineno, n.col_offset), reverse=True):
        begin = starts[node.lineno - 1] + node.col_offset
        end = starts[node.end_lineno - 1] + node.end_col_offset
        data = (data[:begin] + b"(lambda __repl_value: __repl_value is None or print(repr(__repl_value)))(("
                + data[begin:end] + b"))" + data[end:])
    return data.decode("utf-8")


def _module_level_expressions(statements):
    for node in statements:
        if isinstance(node, ast.Expr):
            yield node
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):  # blocks run at module scope
                yield from _module_level_expressions(getattr(node, field, ()))


class Repl:
    """MicroPython's REPL for one board, from power-up to power-down (reset() on a hard reset).

    read(timeout_s) -> bytes: what the host sent (b"" after timeout_s with nothing); may raise.
    write(data: bytes): to the host.
    execute(source, filename): run code in the REPL's globals (kept until the next reset; prints
        reach write() through the board, as to_console() bytes). May raise anything.
    banner: MicroPython's first banner line; `Type "help()"...` follows it.
    roots: directories whose files' frames tracebacks show (the board's filesystem, frozen code).

    A Ctrl-C that arrives while code runs (execute(), or main.py before run()) is the owner's to
    deliver: drop it from the input and raise KeyboardInterrupt in the board's thread, as
    MicroPython's UART handler does. While the REPL waits in read() it is an ordinary key.
    """

    def __init__(self, read, write, execute, banner=DEFAULT_BANNER, prompt_mode="friendly", roots=()):
        if prompt_mode not in ("friendly", "raw"):
            raise ValueError("prompt_mode must be 'friendly' or 'raw', not %r" % (prompt_mode,))
        self._read = read
        self._write = write
        self._execute = execute
        self.banner = banner
        self.mode = prompt_mode
        self.roots = tuple(roots)
        self._input = bytearray()  # read but not yet taken
        self._after_cr = False  # the last key ended a line with \r: a \n right after it is not another

    def run(self):
        """Serve the console until a soft reset is asked: then return SOFT_RESET ("soft-reset")."""
        while True:
            serve = self._raw_repl if self.mode == "raw" else self._friendly_repl
            if serve() == SOFT_RESET:
                self._write(SOFT_REBOOT)
                return SOFT_RESET

    def reset(self):
        """A hard reset: back to the friendly REPL, and input not yet taken is lost."""
        self.mode = "friendly"
        self._input.clear()
        self._after_cr = False

    def format_exception(self, exc):
        """What MicroPython prints for `exc` (e.g. main.py dying), as console bytes."""
        return to_console(format_exception(exc, self.roots))

    # --- input --------------------------------------------------------------------------------
    def _getc(self):
        while not self._input:
            self._input += self._read(READ_TIMEOUT_S)
        c = self._input[0]
        del self._input[0]
        return c

    # --- running code -------------------------------------------------------------------------
    def _run_code(self, source, framed, interactive=False):
        """Run source; framed: the raw REPL's \\x04 markers around output and error text."""
        if interactive:
            source = _echo_expressions(source)
        try:
            self._execute(source, STDIN)
        except SystemExit:  # sys.exit(), machine.soft_reset(): MicroPython soft-resets
            if framed:
                self._write(b"\x04\x04")
            return SOFT_RESET
        except (Exception, KeyboardInterrupt) as exc:
            text = self.format_exception(exc)
            self._write(b"\x04" + text + b"\x04" if framed else text)
            return None
        if framed:
            self._write(b"\x04\x04")
        return None

    # --- raw REPL -----------------------------------------------------------------------------
    def _raw_repl(self):
        self._write(RAW_HEADER + b">")
        line = bytearray()
        while True:
            c = self._getc()
            if c == CTRL_A:
                if len(line) == 2 and line[0] == CTRL_E:  # \x05 X \x01: a raw-paste request
                    if self._raw_paste(line[1]) == SOFT_RESET:
                        return SOFT_RESET
                    self._write(b">")
                else:
                    self._write(RAW_HEADER + b">")
                line.clear()
            elif c == CTRL_B:
                self._write(b"\r\n")
                self.mode = "friendly"
                return None
            elif c == CTRL_C:
                line.clear()
            elif c == CTRL_D:
                self._write(b"OK")
                if not line:
                    self._write(b"\r\n")
                    return SOFT_RESET
                if self._run_code(_source(line), framed=True) == SOFT_RESET:
                    return SOFT_RESET
                self._write(b">")
                line.clear()
            else:
                line.append(c)

    def _raw_paste(self, command):
        if command != ord("A"):
            self._write(b"R\x00")
            return None
        # The window, then \x01: the device starts with two windows free (pyexec.c).
        self._write(b"R\x01" + struct.pack("<H", PASTE_WINDOW) + b"\x01")
        source = bytearray()
        remain = PASTE_WINDOW
        while True:
            c = self._getc()
            if c in (CTRL_C, CTRL_D):
                self._write(b"\x04")  # end of reception
                break
            source.append(c)
            remain -= 1
            if remain == 0:
                self._write(b"\x01")
                remain = PASTE_WINDOW
        if c == CTRL_C:  # interrupted while receiving: KeyboardInterrupt, no traceback lines
            self._write(b"\x04" + to_console("KeyboardInterrupt: \n") + b"\x04")
            return None
        return self._run_code(_source(source), framed=True)

    # --- friendly REPL ------------------------------------------------------------------------
    def _friendly_repl(self):
        self._write(self._banner())
        while True:
            key, line = self._readline(PS1)
            if key == CTRL_A:
                self._write(b"\r\n")
                self.mode = "raw"
                return None
            if key == CTRL_B:
                self._write(b"\r\n" + self._banner())
                continue
            if key == CTRL_C:
                self._write(b"\r\n")
                continue
            if key == CTRL_D:
                self._write(b"\r\n")
                return SOFT_RESET
            if key == CTRL_E:
                source = self._paste_mode()
            elif not line:
                continue
            else:
                source = self._continuation(_source(line))
            if source is not None and self._run_code(source, framed=False, interactive=True) == SOFT_RESET:
                return SOFT_RESET

    def _banner(self):
        return to_console("%s\n%s\n" % (self.banner, HELP_LINE))

    def _continuation(self, text):
        """Read `... ` lines while the input is incomplete; None if Ctrl-C cancels it."""
        while _incomplete(text):
            key, more = self._readline(PS2)
            if key == CTRL_C:
                self._write(b"\r\n")
                return None
            if key is not None:  # Ctrl-D (or another control key) on an empty line: run what there is
                break
            text += "\n" + _source(more)
        return text

    def _paste_mode(self):
        self._write(PASTE_HEADER)
        data = bytearray()
        while True:
            c = self._getc()
            if c == CTRL_C:
                self._write(b"\r\n")
                return None
            if c == CTRL_D:
                self._write(b"\r\n")
                return _source(data)
            data.append(c)
            self._write(b"\r\n=== " if c == CR else bytes([c]))

    def _readline(self, prompt):
        """One line typed at `prompt`: (None, line) on Enter, or (control key, line) for Ctrl-A..E
        on an empty line and Ctrl-C on any line."""
        self._write(prompt)
        line = bytearray()
        while True:
            c = self._getc()
            after_cr, self._after_cr = self._after_cr, c == CR
            if CTRL_A <= c <= CTRL_E:
                if not line or c == CTRL_C:
                    return c, line
                # with text typed these are cursor keys (home, left, delete, end): not modelled
            elif c == CR or (c == LF and not after_cr):
                self._write(b"\r\n")
                return None, line
            elif c in (BACKSPACE, DEL):
                if line:
                    while len(line) > 1 and 0x80 <= line[-1] < 0xC0:  # one character, however many bytes
                        del line[-1]
                    del line[-1]
                    self._write(b"\b\x1b[K")
            elif c == TAB:
                if not line.strip():  # indentation; completion is not modelled
                    line += b"    "
                    self._write(b"    ")
            elif c == ESC:
                self._skip_escape_sequence()
            elif c >= 32:
                line.append(c)
                self._write(bytes([c]))

    def _skip_escape_sequence(self):
        if self._getc() in b"[O":  # CSI / SS3: parameter bytes up to a final byte
            while not 0x40 <= self._getc() <= 0x7E:
                pass
