"""One simulated fleet over several processes: `floorwatch sim --processes P`.

Why. Every simulated board runs the firmware on a thread of its own, and CPython's interpreter lock
lets the threads of one process use about one core between them, however many the machine has
(bench/fleet_size.py: about 1,400 boards in real time on one process). P worker processes, each
running a `Fleet` of a share of the boards, can use P cores.

Who does what. The parent (the `floorwatch sim` process, or a bench) owns the broker, the live view
(its observer is one more MQTT client), Ctrl-C and shutdown. Worker k runs a contiguous block of
board numbers, each board exactly as one process would run it: same device id, same seed (so a
board behaves the same whichever process runs it), same password, its flash in the parent's work
directory, connected to the same broker. A worker talks to the parent over a pipe only: "ready"
once its boards are powered on (with each board's power-on instant on CLOCK_MONOTONIC, which the
processes of a machine share), its boards' slowest clock twice a second, statistics on request,
"stopped" after it cut its boards' power, or one line saying why it failed.

Clocks. Real or scaled time only (`--speed` a number): each board then has a ScaledClock of its own
and needs nothing from the others. `--speed max` puts every board of a fleet on one VirtualClock,
whose time jumps ahead only when *every* board waits: that needs all of them in one process (a
clock shared between processes would cost an inter-process round trip at every wait of every
board), so more than one process with it is refused (ShardError, one line).

Why "spawn". The parent has threads by the time it starts workers (the observer's network loop,
the live view's refresh) and holds sockets (its MQTT connection, the broker's pipes). fork() copies
a multi-threaded process with only the calling thread: a lock another thread held at that instant
(paho's, logging's, the import lock) stays held forever in the child, and the child keeps copies
of the parent's descriptors (the observer's connection would not close when the parent's does). A
spawned worker is a fresh interpreter that imports only the simulator and inherits nothing but its
end of the pipe; it is also the one start method macOS and Windows have. forkserver would save
each worker's interpreter start (about 0.3 s of imports), which is nothing next to booting
thousands of boards, and is POSIX-only.

Ctrl-C, shutdown, no orphans. The terminal sends SIGINT to the whole foreground process group,
workers included. Workers are started with SIGINT ignored (an ignored signal stays ignored across
exec, and Python then installs no KeyboardInterrupt handler), so only the parent reacts: `stop()`
tells every worker to cut its boards' power (the broker publishes their Last Wills), waits for
them, then terminates and at last kills any that has not exited. A worker also stops by itself
when the parent goes away (its pipe reaches end of file, or its parent process id changes), so it
never outlives the parent. A worker that fails or dies shows up as one line in `failures` (how it
ended: its error, its exit code or the signal), never as a traceback.
"""

import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from multiprocessing.connection import wait as _wait_any

from .fleet import Fleet, device_id, raise_fd_limit
from .physics import ONSET_S

START_METHOD = "spawn"  # see the module docstring
STATUS_EVERY_S = 0.5  # how often a worker reports its boards' slowest clock
STOP_TIMEOUT_S = 20.0  # a worker's time to power its boards off and exit before it is terminated
KILL_AFTER_S = 3.0  # then after SIGTERM, before SIGKILL


class ShardError(RuntimeError):
    """A sharded run cannot be made or a worker failed; str() is one line."""


def split(count, processes):
    """Board numbers of `count` boards in `processes` contiguous blocks, as even as can be (no
    more blocks than boards): a list of ranges."""
    processes = max(1, min(int(processes), count))
    base, extra = divmod(count, processes)
    blocks, start = [], 0
    for k in range(processes):
        size = base + (k < extra)
        blocks.append(range(start, start + size))
        start += size
    return blocks


def check(speed, processes):
    """ShardError when `processes` workers cannot run at `speed` (see Clocks above)."""
    if processes > 1 and speed == "max":
        raise ShardError("--processes above 1 needs real or scaled time: --speed max puts every board on one "
                         "virtual clock, which a single process must own")


def span(indices):
    """'sim-001..sim-500': the device ids of a block of board numbers."""
    if len(indices) == 1:
        return device_id(indices[0])
    return "%s..%s" % (device_id(indices[0]), device_id(indices[-1]))


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


class BoardRef:
    """The parent's stand-in for a board a worker runs: its id, its worker, when it powered on."""

    def __init__(self, index, shard):
        self.index = index
        self.device_id = device_id(index)
        self.shard = shard
        self.powered_at = None  # CLOCK_MONOTONIC time of its up = 0, once its worker is ready


class _Shard:
    """One worker process and the parent's view of it."""

    def __init__(self, number, indices):
        self.number = number
        self.indices = indices
        self.process = None
        self.conn = None
        self.send_lock = threading.Lock()
        self.ready = threading.Event()
        self.ended = threading.Event()  # the process exited (or never started)
        self.board_time = 0.0
        self.crashed = 0  # boards whose firmware died to the REPL
        self.error = None  # the worker's own one-line account of a failure
        self.stopped = False  # the worker said it powered its boards off
        self.replies = []  # stats replies, in order
        self.reply = threading.Condition()

    @property
    def name(self):
        return "worker %d (%s)" % (self.number + 1, span(self.indices))

    def send(self, message):
        with self.send_lock:
            try:
                self.conn.send(message)
                return True
            except (OSError, ValueError):  # the worker is gone (broken pipe, closed connection)
                return False


class ShardedFleet:
    """`count` boards in `processes` worker processes: what `Fleet` gives the live view and benches.

    Arguments as Fleet's (`speed` a number: see check()), and `stagger_s` as Fleet.start's (the
    workers start together, so the whole fleet is spread over it). `boards` lists BoardRef stand-ins;
    `board_time()`, `start()`, `stop()`, `close()` and the context manager work as Fleet's.
    Besides: `wait_ready()`, `stats()` (each worker's CPU, memory, threads and boards' boots), and
    `failures` (one line per worker that failed or died).
    """

    def __init__(self, count, host, port, processes, site="sim", seed=0, board_name="esp32-devkitc", workdir=None,
                 mode="normal", intervals=None, speed=1.0, thresholds=None, onset_s=ONSET_S, passwords=None, ca=None,
                 keepalive_s=None, stagger_s=0.0):
        check(speed, processes)
        self.stagger_s = stagger_s
        self._tmp = None if workdir else tempfile.mkdtemp(prefix="floorwatch-sim-")
        self.workdir = str(workdir or self._tmp)
        self.count = count
        self.speed = speed
        self.passwords = dict(passwords or {})
        self._fleet_args = dict(count=count, host=host, port=port, site=site, seed=seed, board_name=board_name,
                                workdir=self.workdir, mode=mode, intervals=intervals, speed=speed,
                                thresholds=thresholds, onset_s=onset_s, ca=ca, keepalive_s=keepalive_s)
        self.shards = [_Shard(number, block) for number, block in enumerate(split(count, processes))]
        self.boards = [BoardRef(index, shard) for shard in self.shards for index in shard.indices]
        self._monitor = None
        self._stopping = False
        self._lock = threading.Lock()

    @property
    def processes(self):
        return len(self.shards)

    # --- life cycle ---------------------------------------------------------------------------
    def start(self):
        """Start the workers and return; each powers its boards on as soon as it has built them."""
        raise_fd_limit()  # inherited by the workers
        context = multiprocessing.get_context(START_METHOD)
        previous = _ignore_sigint()  # inherited across exec by the workers: Ctrl-C is the parent's
        try:
            for shard in self.shards:
                parent_end, child_end = context.Pipe()
                spec = {"fleet": self._fleet_args, "indices": (shard.indices.start, shard.indices.stop),
                        "stagger_s": self.stagger_s,
                        "passwords": {device_id(i): self.passwords[device_id(i)] for i in shard.indices
                                      if device_id(i) in self.passwords},
                        "parent": os.getpid()}
                shard.conn = parent_end
                shard.process = context.Process(target=_worker, args=(child_end, spec),
                                                name="floorwatch-sim-%d" % (shard.number + 1), daemon=False)
                shard.process.start()
                child_end.close()  # the worker's end lives in the worker only: its end of file is ours to see
        finally:
            _restore_sigint(previous)
        self._monitor = threading.Thread(target=self._watch, name="shard-monitor", daemon=True)
        self._monitor.start()
        return self

    def wait_ready(self, timeout=None):
        """True once every worker has powered its boards on; False when one failed or time ran out."""
        end = None if timeout is None else time.monotonic() + timeout
        for shard in self.shards:
            while not shard.ready.is_set():
                if shard.ended.is_set():
                    return False
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                shard.ready.wait(0.2 if left is None else min(0.2, left))
        return True

    def stop(self, timeout=STOP_TIMEOUT_S):
        """Power every board off (each worker cuts its own), wait for the workers to exit, then
        terminate and kill the stragglers. Safe to call twice."""
        with self._lock:
            first, self._stopping = not self._stopping, True
        if first:
            for shard in self.shards:
                if shard.process is not None and not shard.ended.is_set():
                    shard.send(("stop",))
        end = time.monotonic() + timeout
        for shard in self.shards:
            if shard.process is not None:
                shard.process.join(max(0.0, end - time.monotonic()))
        for shard in self.shards:
            if shard.process is not None and shard.process.is_alive():
                shard.error = shard.error or "did not stop within %.0f s: terminated" % timeout
                shard.process.terminate()
        for shard in self.shards:
            if shard.process is not None and shard.process.is_alive():
                shard.process.join(KILL_AFTER_S)
                if shard.process.is_alive():
                    shard.process.kill()
                    shard.process.join(KILL_AFTER_S)
        if self._monitor is not None:
            self._monitor.join(2.0)
        for shard in self.shards:
            if shard.conn is not None:
                shard.conn.close()
                shard.conn = None

    def close(self):
        self.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # --- what the parent sees ----------------------------------------------------------------
    @property
    def ended(self):
        """True once every worker is gone (nothing left to run or show)."""
        return all(shard.ended.is_set() for shard in self.shards)

    def board_time(self):
        """Simulated seconds every board has lived through, as the workers last reported it (a
        worker that has ended no longer holds it back)."""
        running = [shard.board_time for shard in self.shards if not shard.ended.is_set()]
        return min(running) if running else max(shard.board_time for shard in self.shards)

    @property
    def failures(self):
        """One line per worker that failed, died or had to be terminated."""
        lines = []
        for shard in self.shards:
            why = self._why(shard)
            if why:
                lines.append("%s %s" % (shard.name, why))
        return lines

    def stats(self, timeout=30.0):
        """Each live worker's figures, asked now: a list of dicts (None for a worker that did not
        answer within `timeout`) with pid, cpu_s (its process CPU time), rss_mb, threads,
        board_time, boots {device id: boots}, crashed and monotonic (when it answered)."""
        asked = []
        for shard in self.shards:
            with shard.reply:
                before = len(shard.replies)
            asked.append((shard, before, not shard.ended.is_set() and shard.send(("stats",))))
        end = time.monotonic() + timeout
        out = []
        for shard, before, sent in asked:
            with shard.reply:
                while sent and len(shard.replies) <= before and not shard.ended.is_set():
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    shard.reply.wait(min(left, 0.5))
                out.append(shard.replies[before] if len(shard.replies) > before else None)
        return out

    def _why(self, shard):
        if shard.error:
            return shard.error
        process = shard.process
        if process is None or process.exitcode is None:
            return None
        if process.exitcode == 0 and (shard.stopped or self._stopping):
            return None
        if process.exitcode < 0:
            return "died: killed by %s" % _signal_name(-process.exitcode)
        return "died: exit code %d" % process.exitcode

    def _watch(self):
        """The parent's thread that reads every worker's pipe and notices when one exits."""
        waiting = {shard.conn: shard for shard in self.shards}
        sentinels = {shard.process.sentinel: shard for shard in self.shards}
        while waiting or sentinels:
            try:
                ready = _wait_any(list(waiting) + list(sentinels), timeout=1.0)
            except OSError:  # a connection closed by stop()
                break
            for item in ready:
                if item in sentinels:
                    shard = sentinels.pop(item)
                    # drain what it said before it went
                    conn = shard.conn
                    while conn is not None and conn in waiting and self._read(shard, conn, waiting):
                        pass
                    shard.ended.set()
                    with shard.reply:
                        shard.reply.notify_all()
                elif item in waiting:
                    self._read(waiting[item], item, waiting)

    def _read(self, shard, conn, waiting):
        """Handle one message from a worker; False when there is none or the pipe has ended."""
        try:
            if not conn.poll():
                return False
            message = conn.recv()
        except (EOFError, OSError):
            waiting.pop(conn, None)
            return False
        kind = message[0]
        if kind == "ready":
            facts = message[1]
            for board in self.boards:
                if board.shard is shard:
                    board.powered_at = facts["powered_at"].get(board.device_id)
            shard.ready.set()
        elif kind == "time":
            shard.board_time, shard.crashed = message[1], message[2]
        elif kind == "stats":
            with shard.reply:
                shard.replies.append(message[1])
                shard.reply.notify_all()
        elif kind == "stopped":
            shard.stopped = True
        elif kind == "error":
            shard.error = message[1]
        return True


def _ignore_sigint():
    try:
        return signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: the worker ignores it itself, a moment later
        return None


def _restore_sigint(previous):
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


# --- the worker -------------------------------------------------------------------------------
def _worker(conn, spec):
    """A worker process's life: build and power on its boards, report, stop when told or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C (see the module docstring)
    code = 0
    fleet = None
    try:
        fleet = Fleet(**spec["fleet"], passwords=spec["passwords"], indices=range(*spec["indices"]))
        fleet.start(spec["stagger_s"])  # board i powers on at i / count x stagger_s, whichever worker runs it
        now = time.monotonic()
        powered = {b.device_id: now - b.clock.now() + b.ticks_origin for b in fleet.boards}
        conn.send(("ready", {"pid": os.getpid(), "powered_at": powered}))
        while True:
            if conn.poll(STATUS_EVERY_S):
                message = conn.recv()  # EOFError when the parent is gone
                if message[0] == "stop":
                    break
                if message[0] == "stats":
                    conn.send(("stats", _stats(fleet)))
            else:
                conn.send(("time", fleet.board_time(), sum(1 for b in fleet.boards if b.crashed)))
            if os.getppid() != spec["parent"]:  # orphaned: the parent died without a word
                break
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the parent is gone: stop the boards
        pass
    except Exception as exc:  # reported as one line by the parent
        code = 1
        _tell(conn, ("error", "failed: %s" % (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)))
    finally:
        if fleet is not None:
            fleet.stop()  # power cut: the broker sees the connections drop and sends the Last Wills
        _tell(conn, ("stopped",))
    conn.close()
    os._exit(code)  # the boards' threads are daemons and done: skip the interpreter's slow teardown


def _tell(conn, message):
    try:
        conn.send(message)
    except (OSError, ValueError):
        pass


def _stats(fleet):
    rss = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    rss = int(line.split()[1]) / 1024
    except OSError:
        pass
    return {"pid": os.getpid(), "cpu_s": time.process_time(), "rss_mb": rss, "threads": threading.active_count(),
            "board_time": fleet.board_time(), "boots": {b.device_id: b.boots for b in fleet.boards},
            "crashed": sum(1 for b in fleet.boards if b.crashed), "monotonic": time.monotonic()}


# --- `floorwatch sim --processes P`: the live view over sharded boards -------------------------
def run(boards, broker, duration, seed, site, processes, console=None, scenario="normal", speed=1.0, onset_s=None,
        plain=False):
    """live.run with the boards in `processes` workers: the parent owns the broker, the observer,
    the table and Ctrl-C. Returns (the observer's final views, the failures' lines)."""
    from rich.console import Console

    from . import live

    check(speed, processes)
    console = console or Console()
    raise_fd_limit()  # before the broker starts: mosquitto inherits it (a connection a board)
    made = []

    def make_fleet(count, host, port, **options):
        fleet = ShardedFleet(count, host, port, processes, **options)
        console.print("%d boards in %d processes: %s" % (
            count, fleet.processes, ", ".join(span(shard.indices) for shard in fleet.shards)))
        made.append(fleet)
        return fleet

    views = live.run(boards, broker, duration, seed, site, console, scenario, speed, onset_s, plain, make_fleet)
    return views, made[0].failures if made else []
