"""A per-board MicroPython module world inside one CPython process.

Each board gets its own `sys.modules`-like table: firmware modules are executed afresh in it, the
MicroPython hardware modules (machine, network, esp32, ...) are built for that board alone, and
`import`, `open` and `print` inside the firmware resolve through it. Nothing leaks between boards
and the firmware runs unchanged.

Written by hand because no library gives isolated import namespaces within one process: importlib
hooks are process-wide, and subinterpreters cannot share the host's sockets and device models.

Resolution order for `import name` (as MicroPython's sys.path ['', '.frozen', 'lib'] would):
1. a fake MicroPython module (also under its u-prefixed name, e.g. `utime`);
2. a file on the board's flash, then in `firmware/` (our stand-in for frozen modules), then in
   `firmware/lib/`;
3. a stateless standard module both interpreters share (json, struct, math, ...).
Anything else raises ImportError, as it would on the board.

Looking a module up asks the directories what they hold, not the files one by one: a boot imports
some 30 modules through 4 roots, a few hundred stat() calls that way, and every system call lets the
interpreter lock go, which a thousand boards booting at once turn into a convoy. A Runtime lists
each directory once (os.scandir). The flash's listings hold for the boot, and the fake `os` drops
them whenever the firmware creates, renames or removes anything (forget_listings); files a host
program puts on a running board's flash are seen from its next boot. The firmware directories are
the same for every board and never written by one: their listings are shared by all Runtimes of
the process and checked against the directory's mtime once a boot. Each module's code is still
checked against its file's mtime (_compile), so an edited firmware file is what the next boot runs.
"""

import builtins
import importlib
import os
import types
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parents[3] / "firmware"

FAKES = ("machine", "network", "time", "micropython", "esp32", "socket", "ssl", "os", "gc", "sys",
         "random", "onewire", "ds18x20", "select", "ntptime", "neopixel")
SHARED = ("json", "struct", "math", "array", "binascii", "errno", "hashlib", "collections", "io",
          "re", "cmath", "heapq")
ALIASES = {"u" + name: name for name in FAKES + SHARED}

_code_cache = {}  # path -> (mtime_ns, code): compile each firmware file once for all boards
_shared_listings = {}  # firmware directory -> (its mtime_ns, its listing): for all Runtimes (see above)


def _scan(directory):
    """{name: "d" (directory) or "f" (regular file) or "?"} of a directory; {} when there is none."""
    try:
        with os.scandir(directory) as entries:
            return {e.name: "d" if e.is_dir() else "f" if e.is_file() else "?" for e in entries}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def _compile(path):
    mtime = path.stat().st_mtime_ns
    cached = _code_cache.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    code = compile(path.read_bytes(), str(path), "exec")
    _code_cache[path] = (mtime, code)
    return code


class Runtime:
    def __init__(self, board, firmware_dir=None):
        self.board = board
        firmware = Path(firmware_dir) if firmware_dir else FIRMWARE_DIR
        self.firmware = firmware
        self.path = [board.flash_dir, board.flash_dir / "lib", firmware, firmware / "lib"]
        self.modules = {}
        self._flash = str(board.flash_dir)
        self._listings = {}  # directory (str) -> _scan() of it, for this boot (see the module docstring)
        self.builtins = dict(vars(builtins))
        self.builtins["__import__"] = self._import
        self.builtins["print"] = board.print
        self.builtins["open"] = self._open
        self.builtins.pop("exit", None)
        self.builtins.pop("quit", None)

    # --- public ------------------------------------------------------------------------------
    def import_module(self, name):
        name = ALIASES.get(name, name)
        parent = None
        for depth, part in enumerate(name.split(".")):
            full = ".".join(name.split(".")[: depth + 1])
            module = self.modules.get(full) or self._load(full, parent)
            if parent is not None:
                setattr(parent, part, module)
            parent = module
        return parent

    def run_file(self, name):
        """Run a top-level script (boot.py, main.py) as MicroPython does; False if there is none."""
        path = self._find_file(name)
        if path is None:
            return False
        exec(_compile(path), self._globals("__main__", path))
        return True

    def forget_listings(self):
        """The firmware changed the flash's contents: look again at the next import."""
        self._listings.clear()

    def run_main(self, main=True):
        """boot.py, then main.py unless told not to (a soft reset from the raw REPL skips it)."""
        self.run_file("boot.py")
        if main:
            self.run_file("main.py")

    # --- import machinery --------------------------------------------------------------------
    def _import(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level:
            raise ImportError("relative import of %r is not supported by this firmware loader" % name)
        module = self.import_module(name)
        if fromlist:
            for item in fromlist:
                if item != "*" and not hasattr(module, item) and hasattr(module, "__path__"):
                    self.import_module(module.__name__ + "." + item)
            return module
        return self.modules[ALIASES.get(name, name).split(".")[0]]

    def _load(self, name, parent):
        self.board.checkpoint()
        if "." not in name and name in FAKES:
            fake = importlib.import_module("floorwatch.sim.mpy." + name)
            module = fake.module(self.board)
            module.__name__ = name
        else:
            module = self._load_firmware(name, parent)
            if module is None:
                if "." in name or name not in SHARED:
                    raise ImportError("no module named '%s'" % name)
                module = importlib.import_module(name)
        self.modules[name] = module
        return module

    def _load_firmware(self, name, parent):
        roots = parent.__path__ if parent is not None else self.path
        for root in roots:
            base = Path(root) / name.rsplit(".", 1)[-1]
            source = self._source(base)
            if source is not None:
                return self._exec_module(name, source, None)
            if self._kind(base) == "d":
                return self._exec_module(name, self._source(base / "__init__"), [str(base)])
        return None

    def _source(self, base):
        """The code for module file `base` (no suffix): base.py, or the source base.mpy was built from."""
        entries = self._entries(base.parent)
        if entries.get(base.name + ".py") == "f":
            return base.with_suffix(".py")
        if entries.get(base.name + ".mpy") == "f":
            return self._mpy_source(base.with_suffix(".mpy"))
        return None

    def _kind(self, path):
        """"d", "f", "?" or None (nothing there) for a path, from its directory's listing."""
        return self._entries(path.parent).get(path.name)

    def _entries(self, directory):
        key = str(directory)
        listing = self._listings.get(key)
        if listing is None:
            if key == self._flash or key.startswith(self._flash + os.sep):
                listing = _scan(key)
            else:
                listing = self._shared(key)
            self._listings[key] = listing
        return listing

    @staticmethod
    def _shared(directory):
        try:
            mtime = os.stat(directory).st_mtime_ns
        except OSError:
            return {}
        cached = _shared_listings.get(directory)
        if cached is None or cached[0] != mtime:
            cached = _shared_listings[directory] = (mtime, _scan(directory))
        return cached[1]

    def _exec_module(self, name, path, package_path):
        module = types.ModuleType(name)
        if package_path is not None:
            module.__path__ = package_path
        self.modules[name] = module  # before exec, so circular imports see it as Python does
        if path is not None:
            try:
                exec(_compile(path), self._globals(name, path, module))
            except BaseException:
                self.modules.pop(name, None)
                raise
        return module

    def _mpy_source(self, path):
        source = self.board.mpy_source(path) if self.board.mpy_source else None
        if source is None:  # what MicroPython says of bytecode it cannot load
            raise ValueError("incompatible .mpy file")
        return source

    def _globals(self, name, path, module=None):
        namespace = module.__dict__ if module is not None else {}
        namespace.update({"__name__": name, "__file__": str(path), "__builtins__": self.builtins})
        return namespace

    def _find_file(self, name):
        for root in (self.board.flash_dir, self.firmware):  # flash first, then "frozen"
            candidate = Path(root) / name
            if self._kind(candidate) == "f":
                return candidate
        return None

    def _open(self, path, mode="r", *args, **kwargs):
        return self.import_module("os").open_file(path, mode, *args, **kwargs)
