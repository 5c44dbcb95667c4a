"""`os` (uos) for one board: its flash filesystem is a host directory; `/` is the flash root.

Errors are raised as MicroPython raises them: OSError(errno) with the errno as args[0].

Every operation is a board checkpoint, so a power cut (`Board.cut_power_after`) can land on any of
them. Files opened through `open()` are `File`s: writes go straight through to the host file, and
a write that the power cut lands on first writes a random-length prefix of its data (none, some or
all of it), then dies: a torn write, harsher than littlefs (which would roll the file back to its
last sync) on purpose, so that the firmware's own framing has to find the tear. While the board's
flash is full (`board.flash_full`) opening for writing and every write fail with OSError(ENOSPC),
writing nothing.
"""

import collections
import errno
import os as _host_os
import posixpath

from . import new_module
from ..board import PowerOff

FLASH_BLOCK, FLASH_BLOCKS = 4096, 512  # a 2 MiB littlefs partition, as on a 4 MiB board
_UName = collections.namedtuple("uname_result", "sysname nodename release version machine")  # MicroPython's attrtuple


def module(board):
    root = str(board.flash_dir)
    state = {"cwd": "/"}

    def host_path(path):
        if not isinstance(path, str):
            raise TypeError("path must be a str")
        full = posixpath.normpath(posixpath.join(state["cwd"], path))
        if not full.startswith("/"):
            full = "/" + full
        return _host_os.path.join(root, full.lstrip("/"))

    def _call(function, *args):
        board.checkpoint()
        try:
            return function(*args)
        except OSError as exc:
            raise OSError(exc.errno or errno.EIO) from None

    def _changing(function, *args):
        """_call for what may add, move or remove a name on the flash: the runtime's directory
        listings (module lookup) are then out of date."""
        try:
            return _call(function, *args)
        finally:
            runtime = getattr(board, "runtime", None)
            if runtime is not None:
                runtime.forget_listings()

    def open_file(path, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            board.check_flash_write()
            return File(board, _changing(open, host_path(path), mode, *args))
        return File(board, _call(open, host_path(path), mode, *args))

    def listdir(path=""):
        return sorted(_call(_host_os.listdir, host_path(path or state["cwd"])))

    def ilistdir(path=""):
        base = host_path(path or state["cwd"])
        for name in listdir(path):
            full = _host_os.path.join(base, name)
            kind = 0x4000 if _host_os.path.isdir(full) else 0x8000
            yield (name, kind, 0, 0 if kind == 0x4000 else _host_os.path.getsize(full))

    def stat(path):
        st = _call(_host_os.stat, host_path(path))
        mode = 0x4000 if _host_os.path.isdir(host_path(path)) else 0x8000
        return (mode, 0, 0, 0, 0, 0, 0 if mode == 0x4000 else st.st_size, int(st.st_mtime), int(st.st_mtime), int(st.st_mtime))

    def statvfs(path="/"):
        used = sum(_host_os.path.getsize(_host_os.path.join(d, f)) for d, _, fs in _host_os.walk(root) for f in fs)
        free = max(0, FLASH_BLOCKS - (used + FLASH_BLOCK - 1) // FLASH_BLOCK)
        return (FLASH_BLOCK, FLASH_BLOCK, FLASH_BLOCKS, free, free, 0, 0, 0, 0, 255)

    def chdir(path):
        target = posixpath.normpath(posixpath.join(state["cwd"], path))
        if not _host_os.path.isdir(host_path(target)):
            raise OSError(errno.ENOENT)
        state["cwd"] = target

    def uname():
        release = board.micropython
        return _UName("esp32", "esp32", release, "v%s (simulated)" % release, "Simulated %s module" % board.chip.upper())

    return new_module(
        "os", __doc__, open_file=open_file, listdir=listdir, ilistdir=ilistdir, stat=stat,
        statvfs=statvfs, chdir=chdir, getcwd=lambda: state["cwd"], uname=uname,
        remove=lambda path: _changing(_host_os.remove, host_path(path)),
        rename=lambda old, new: _changing(_host_os.replace, host_path(old), host_path(new)),
        mkdir=lambda path: _changing(_host_os.mkdir, host_path(path)),
        rmdir=lambda path: _changing(_host_os.rmdir, host_path(path)),
        sync=lambda: None, urandom=lambda n: bytes(board.rng.getrandbits(8) for _ in range(n)),
        dupterm=lambda stream=None, index=0: None, sep="/",
    )


class File:
    """A file on a board's flash, with the surface of a MicroPython file object.

    write() returns the count and goes through to the host at once, so whatever the firmware
    wrote is on "flash" when the power goes, and nothing turns up later. write, flush, close and
    the reads are checkpoints; only a write tears.
    """

    def __init__(self, board, host_file):
        self._board = board
        self._f = host_file

    def write(self, data):
        board = self._board
        powered = board.powered
        try:
            board.checkpoint()
        except PowerOff:
            if powered:  # the power went at this very write, not before it
                self._tear(data)
            raise
        board.check_flash_write()
        n = self._f.write(data)
        self._f.flush()
        return n

    def _tear(self, data):
        try:
            if not self._board.flash_full:
                self._f.write(data[: self._board.rng.randint(0, len(data))])
        except (OSError, ValueError):
            pass  # a file not open for writing, or closed: nothing to tear
        finally:
            self._f.close()

    def flush(self):
        self._board.checkpoint()
        self._f.flush()

    def close(self):
        try:
            self._board.checkpoint()
        finally:
            self._f.close()  # the data went through already: a cut here loses nothing; twice is fine

    def read(self, size=-1):
        self._board.checkpoint()
        return self._f.read(size)

    def readinto(self, buf, size=None):
        self._board.checkpoint()
        if size is not None:
            buf = memoryview(buf)[:size]
        return self._f.readinto(buf)

    def readline(self, size=-1):
        self._board.checkpoint()
        return self._f.readline(size)

    def readlines(self):
        return list(self)

    def seek(self, offset, whence=0):
        return self._f.seek(offset, whence)

    def tell(self):
        return self._f.tell()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line
