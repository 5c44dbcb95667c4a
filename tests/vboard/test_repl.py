"""The virtual board's MicroPython console (floorwatch.vboard.repl).

Two levels: the Repl alone, fed scripted input, for the exact bytes of each protocol; and a
simulated board whose console it is (repllib.ReplBoard), driven by mpremote's SerialTransport and
by the real `mpremote` command line.
"""

import errno
import os
import time

import pytest
from mpremote.transport import TransportExecError
from mpremote.transport_serial import SerialTransport

from floorwatch.vboard.repl import Repl, format_exception, to_console
from repllib import ReplBoard

BANNER = b'MicroPython v1.24.1 on 2024-11-29; Generic ESP32 module with ESP32\r\nType "help()" for more information.\r\n'


class EndOfInput(BaseException):
    """The script ran out: what a reset is to run(), something it must let through."""


class Host:
    """Scripted host input, and what the device sent, for a Repl running code in a dict."""

    def __init__(self, *chunks, namespace=None):
        self.chunks = list(chunks)
        self.output = bytearray()
        self.namespace = {} if namespace is None else namespace
        self.namespace["print"] = lambda *args: self.output.extend(to_console(" ".join(map(str, args)) + "\n"))

    def read(self, timeout):
        if not self.chunks:
            raise EndOfInput()
        return self.chunks.pop(0)

    def execute(self, source, filename="<stdin>"):
        exec(compile(source, filename, "exec"), self.namespace)

    def take(self):
        sent = bytes(self.output)
        self.output.clear()
        return sent


def serve(repl):
    """run() until the script ends: what it returned, or None."""
    try:
        return repl.run()
    except EndOfInput:
        return None


def converse(*chunks, mode="friendly", namespace=None):
    """Run a Repl on `chunks` of host input: (what run() returned or None, the device's output, the Repl)."""
    host = Host(*chunks, namespace=namespace)
    repl = Repl(host.read, host.output.extend, host.execute, prompt_mode=mode)
    result = serve(repl)
    return result, host.take(), repl


# --- raw REPL and raw-paste: the bytes hosts depend on ---------------------------------------
def test_raw_paste_exchange_is_the_documented_one():
    # MicroPython's docs (reference/repl.rst): the host writes \x01\x05A\x01print(123)\x04
    _, out, _ = converse(b"\x01\x05A\x01print(123)\x04")
    assert out == BANNER + b">>> " + b"\r\nraw REPL; CTRL-B to exit\r\n>R\x01\x80\x00\x01\x04123\r\n\x04\x04>"


def test_raw_paste_opens_a_window_per_128_bytes_consumed():
    program = b"x = 1\n" * 50  # 300 bytes: two windows used up, so two \x01 after the first one
    _, out, _ = converse(b"\x05A\x01", program, b"\x04print(x)\x04", mode="raw")
    header = b"raw REPL; CTRL-B to exit\r\n>R\x01\x80\x00\x01"
    assert out.startswith(header)
    assert out[len(header):] == b"\x01\x01\x04\x04\x04>OK1\r\n\x04\x04>"


def test_raw_paste_other_than_A_is_refused_and_ctrl_c_cancels_one():
    _, out, _ = converse(b"\x05B\x01", b"\x05A\x01print(1)\x03", mode="raw")
    assert out == (b"raw REPL; CTRL-B to exit\r\n>R\x00>"
                   b"R\x01\x80\x00\x01\x04\x04KeyboardInterrupt: \r\n\x04>")


def test_raw_repl_frames_output_and_errors_with_eof_markers():
    _, out, _ = converse(b"print(1)\x04", b"junk\x03print(2)\x04", b"1/0\x04", mode="raw")
    assert out == (b"raw REPL; CTRL-B to exit\r\n>"
                   b"OK1\r\n\x04\x04>"
                   b"OK2\r\n\x04\x04>"
                   b"OK\x04Traceback (most recent call last):\r\n  File \"<stdin>\", line 1, in <module>\r\n"
                   b"ZeroDivisionError: division by zero\r\n\x04>")


def test_globals_persist_between_executions():
    _, out, _ = converse(b"f = [1]\x04", b"f.append(2)\x04", b"print(f)\x04", mode="raw")
    assert out.endswith(b"OK[1, 2]\r\n\x04\x04>")


def test_ctrl_d_on_an_empty_raw_line_soft_resets_and_the_mode_survives():
    result, out, repl = converse(b"\x04", b"print(1)\x04", mode="raw")
    assert result == "soft-reset"
    assert out == b"raw REPL; CTRL-B to exit\r\n>OK\r\nMPY: soft reboot\r\n"
    assert repl.mode == "raw"


def test_input_waiting_survives_a_soft_reset_but_not_a_hard_one():
    host = Host(b"\x04print(1)\x04")
    repl = Repl(host.read, host.output.extend, host.execute, prompt_mode="raw")
    assert repl.run() == "soft-reset"
    host.take()
    assert serve(repl) is None
    assert host.take() == b"raw REPL; CTRL-B to exit\r\n>OK1\r\n\x04\x04>"

    host.chunks.append(b"\x04print(2)\x04")
    assert repl.run() == "soft-reset"
    host.take()
    repl.reset()
    assert serve(repl) is None
    assert (host.take(), repl.mode) == (BANNER + b">>> ", "friendly")


def test_ctrl_b_leaves_the_raw_repl_for_the_friendly_one():
    _, out, repl = converse(b"\r\x02", mode="raw")
    assert out == b"raw REPL; CTRL-B to exit\r\n>\r\n" + BANNER + b">>> "
    assert repl.mode == "friendly"


def test_sys_exit_soft_resets_after_the_eof_markers():
    result, out, _ = converse(b"raise SystemExit\x04", mode="raw")
    assert (result, out) == ("soft-reset", b"raw REPL; CTRL-B to exit\r\n>OK\x04\x04MPY: soft reboot\r\n")


def test_a_reset_from_the_code_goes_through_run_with_nothing_more_printed():
    class ResetBoard(BaseException):
        pass

    namespace = {"ResetBoard": ResetBoard}
    with pytest.raises(ResetBoard):
        converse(b"raise ResetBoard()\x04", mode="raw", namespace=namespace)


# --- the friendly REPL ---------------------------------------------------------------------
def typed(*lines):
    return b"".join(line + b"\r" for line in lines)


def test_friendly_repl_echoes_and_prints_expression_values_as_repr():
    _, out, _ = converse(typed(b"1 + 2", b"x = 'a'", b"x", b"None", b"print(x)"))
    assert out == (BANNER + b">>> 1 + 2\r\n3\r\n>>> x = 'a'\r\n>>> x\r\n'a'\r\n>>> None\r\n"
                   b">>> print(x)\r\na\r\n>>> ")


def test_compound_statements_take_continuation_lines_until_an_empty_one():
    _, out, _ = converse(typed(b"for i in range(2):", b"    i", b"", b"def f():", b"    7", b"", b"f()"))
    assert out == (BANNER + b">>> for i in range(2):\r\n...     i\r\n... \r\n0\r\n1\r\n"
                   b">>> def f():\r\n...     7\r\n... \r\n"  # not at module level: nothing printed
                   b">>> f()\r\n>>> ")


def test_tracebacks_give_the_line_within_the_input():
    _, out, _ = converse(typed(b"if True:", b"    y = 1", b"    open('/missing')", b""))
    assert out.endswith(b'Traceback (most recent call last):\r\n  File "<stdin>", line 3, in <module>\r\n'
                        b"OSError: [Errno 2] ENOENT\r\n>>> ")


def test_backspace_ctrl_c_and_escape_sequences_edit_the_line():
    _, out, _ = converse(b"12\x7f3\r", b"1/0\x03", b"4\x1b[A\r", b"'\xc3\xa9\x7fe'\r")
    assert out == (BANNER + b">>> 12\b\x1b[K3\r\n13\r\n"
                   b">>> 1/0\r\n"  # Ctrl-C dropped the line: nothing ran
                   b">>> 4\r\n4\r\n"  # the arrow key is swallowed
                   b">>> '\xc3\xa9\b\x1b[Ke'\r\n'e'\r\n>>> ")


def test_ctrl_d_soft_resets_and_ctrl_b_prints_the_banner_again():
    result, out, repl = converse(b"\x02", b"\x04")
    assert result == "soft-reset" and repl.mode == "friendly"
    assert out == BANNER + b">>> \r\n" + BANNER + b">>> \r\nMPY: soft reboot\r\n"


def test_paste_mode_runs_the_pasted_block_as_a_whole():
    _, out, _ = converse(b"\x05", b"a = 2\rif a:\r    a\r", b"\x04")
    assert out == (BANNER + b">>> \r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== "
                   b"a = 2\r\n=== if a:\r\n===     a\r\n=== \r\n2\r\n>>> ")


def test_keyboard_interrupt_from_the_code_prints_as_micropython_does():
    _, out, _ = converse(typed(b"raise KeyboardInterrupt"))
    assert out.endswith(b'line 1, in <module>\r\nKeyboardInterrupt: \r\n>>> ')


def test_a_bad_prompt_mode_is_one_line_error():
    with pytest.raises(ValueError, match="prompt_mode must be 'friendly' or 'raw', not 'paste'"):
        Repl(None, None, None, prompt_mode="paste")


# --- exception text ------------------------------------------------------------------------
def raised(function):
    try:
        function()
    except BaseException as exc:  # noqa: B036 (the test hands any exception over)
        return exc
    raise AssertionError("nothing raised")


@pytest.mark.parametrize("exc, line", [
    (OSError(errno.EEXIST), "OSError: [Errno 17] EEXIST"),
    (OSError(errno.EISDIR, "Is a directory"), "OSError: [Errno 21] EISDIR"),
    (OSError(errno.ENOTDIR), "OSError: 20"),  # not in MicroPython's errno table: mpremote maps the number
    (KeyError("k"), "KeyError: k"),
    (ValueError(), "ValueError: "),
    (ValueError(1, 2), "ValueError: (1, 2)"),
])
def test_exception_lines_follow_micropython(exc, line):
    assert format_exception(exc) == line + "\n"


def test_frames_are_those_of_board_code_named_from_their_root(tmp_path):
    (tmp_path / "lib").mkdir()
    module = tmp_path / "lib" / "thing.py"
    module.write_text("def boom():\n    return {}['x']\n")
    namespace = {}
    exec(compile(module.read_text(), str(module), "exec"), namespace)
    exc = raised(lambda: exec(compile("\n\nboom()", "<stdin>", "exec"), namespace))
    assert format_exception(exc, roots=[tmp_path]) == (
        "Traceback (most recent call last):\n"
        '  File "<stdin>", line 3, in <module>\n'
        '  File "lib/thing.py", line 2, in boom\n'
        "KeyError: x\n")


def test_syntax_errors_name_the_line():
    exc = raised(lambda: compile("x = 1\nx = (]\n", "<stdin>", "exec"))
    assert format_exception(exc) == ('Traceback (most recent call last):\n  File "<stdin>", line 2\n'
                                     "SyntaxError: invalid syntax\n")


# --- on a simulated board ----------------------------------------------------------------------
@pytest.fixture
def board(tmp_path):
    with ReplBoard(tmp_path / "board") as running:
        running.wait_for(b">>> ")
        yield running


def test_ctrl_c_interrupts_code_running_in_the_boards_thread(board):
    mark = len(board.sent)
    board.feed(typed(b"import time", b"while True:", b"    print('tick')", b"    time.sleep_ms(20)", b""))
    board.wait_for(b"tick\r\n", since=mark)  # the loop runs
    board.feed(b"\x03")
    out = board.wait_for(b"KeyboardInterrupt: \r\n>>> ", since=mark)
    assert b'File "<stdin>", line 3, in <module>' in out  # the sleep, in this input
    mark = len(board.sent)
    board.feed(typed(b"6 * 7"))  # the REPL goes on, the interrupt spent
    board.wait_for(b"42\r\n>>> ", since=mark)


def test_serial_transport_api(board):
    flash = board.board.flash_dir
    transport = SerialTransport(board.url)
    try:
        transport.enter_raw_repl(soft_reset=True)
        transport.exec("kept = 5")
        transport.fs_mkdir("d")
        transport.fs_writefile("d/data.bin", bytes(range(256)) * 3)
        assert (flash / "d" / "data.bin").read_bytes() == bytes(range(256)) * 3
        assert transport.fs_stat("d/data.bin").st_size == 768
        assert transport.fs_isdir("d")
        assert [(e.name, e.st_mode, e.st_size) for e in transport.fs_listdir("d")] == [("data.bin", 0x8000, 768)]
        assert transport.eval("kept * 2") == 10
        assert transport.fs_readfile("d/data.bin") == bytes(range(256)) * 3
        with pytest.raises(FileNotFoundError):
            transport.fs_stat("nothing")
        transport.exit_raw_repl()
        transport.enter_raw_repl(soft_reset=False)  # no reset: the REPL's globals are still there
        assert transport.eval("kept") == 5
        transport.exit_raw_repl()
        transport.enter_raw_repl(soft_reset=True)
        with pytest.raises(TransportExecError, match="NameError"):
            transport.eval("kept")
        transport.exit_raw_repl()
    finally:
        transport.close()


def run_ok(board, *args, cwd=None):
    result = board.mpremote(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_mpremote_fs_commands(board, tmp_path):
    flash = board.board.flash_dir
    local = tmp_path / "local"
    local.mkdir()
    (local / "a.txt").write_text("line one\nline two\n")
    payload = os.urandom(1000)  # four 256-byte chunks each way, and bytes repr() must escape
    (local / "b.bin").write_bytes(payload)

    run_ok(board, "fs", "cp", "a.txt", "b.bin", ":", cwd=local)
    assert (flash / "a.txt").read_text() == "line one\nline two\n"
    assert (flash / "b.bin").read_bytes() == payload

    out = run_ok(board, "fs", "cp", "b.bin", ":b.bin", "+", "fs", "cp", ":b.bin", "back.bin",
                 "+", "fs", "mkdir", ":sub", "+", "fs", "ls", cwd=local)
    assert "Up to date: b.bin" in out  # the board's sha256 matched: nothing sent
    assert (local / "back.bin").read_bytes() == payload
    assert (flash / "sub").is_dir()
    assert out.splitlines()[-4:] == ["ls :", "          18 a.txt", "        1000 b.bin", "           0 sub/"]

    assert run_ok(board, "fs", "cat", ":a.txt") == "line one\nline two\n"

    gone = board.mpremote("fs", "rm", ":a.txt", "+", "fs", "cat", ":a.txt")
    assert not (flash / "a.txt").exists()
    assert (gone.returncode, gone.stderr) == (1, "mpremote: cat: a.txt: No such file or directory.\n")
    exists = board.mpremote("fs", "mkdir", ":sub")
    assert (exists.returncode, exists.stderr) == (1, "mpremote: mkdir: sub: File exists.\n")


def test_mpremote_recursive_copy_both_ways(board, tmp_path):
    tree = tmp_path / "app"
    (tree / "lib" / "deep").mkdir(parents=True)
    files = {"main.py": b"print('app')\n", "lib/util.py": b"X = 1\n", "lib/deep/data.bin": os.urandom(300)}
    for name, data in files.items():
        (tree / name).write_bytes(data)
    run_ok(board, "fs", "cp", "-r", "app", ":", cwd=tmp_path)
    flash = board.board.flash_dir
    assert {name: (flash / "app" / name).read_bytes() for name in files} == files

    again = run_ok(board, "fs", "cp", "-r", "app", ":", cwd=tmp_path)
    assert again.count("Up to date") == 3

    (tmp_path / "copy").mkdir()
    run_ok(board, "fs", "cp", "-r", ":app", "copy", cwd=tmp_path)
    assert {name: (tmp_path / "copy" / "app" / name).read_bytes() for name in files} == files


def test_mpremote_exec_eval_and_resets(tmp_path):
    with ReplBoard(tmp_path / "board", main_py="import time\nwhile True:\n    time.sleep_ms(10)\n") as board:
        # main.py never returns: mpremote's Ctrl-C has to interrupt it to get a prompt
        out = run_ok(board, "exec", "import os\nprint(os.uname()[0])", "+", "eval", "[n * n for n in range(4)]")
        assert out == "esp32\n[0, 1, 4, 9]\n"
        failed = board.mpremote("exec", "import nosuchmodule")
        assert failed.returncode == 1
        assert "ImportError: no module named 'nosuchmodule'" in failed.stdout

        mark = len(board.sent)
        run_ok(board, "soft-reset")
        assert b"OK\r\nMPY: soft reboot\r\nraw REPL; CTRL-B to exit\r\n" in board.sent[mark:]

        resets = board.hard_boots
        run_ok(board, "reset")
        deadline = time.monotonic() + 10
        while board.hard_boots == resets and time.monotonic() < deadline:
            time.sleep(0.01)
        assert board.hard_boots == resets + 1
        assert run_ok(board, "eval", "'back'") == "back\n"  # main.py runs again, and is interrupted again

    # every piece of code went by raw-paste: as many grants as requests, and no plain-raw "OK"
    assert board.received.count(b"\x05A\x01") == board.sent.count(b"R\x01\x80\x00\x01") > 0
    assert board.sent.count(b"OK") == board.sent.count(b"OK\r\nMPY: soft reboot\r\n")
