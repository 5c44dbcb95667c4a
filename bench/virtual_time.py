"""Virtual time: how fast one simulated board lives through a day of normal operation.

Issue 8's figure: simulated hours per wall-clock second for ONE board running the real firmware in
the simulator on the virtual clock (`Fleet(1, ..., speed="max")`, what `floorwatch sim --speed max`
uses), through a day (86,400 s of board time) of normal operation, against a real local mosquitto
(plain, anonymous), at the node's DEFAULT intervals (firmware config defaults: a temperature record
every 10 s, vibration every 30 s, diag every 60 s, records batched for up to send_s = 300 s; not
the sim's faster SIM_INTERVALS, nor its send_s 0), so the day is the day a node in the field has.
An independent paho subscriber counts what arrives, so the run is shown to be a real one: every
record the board's store numbered must arrive, and the count must match what the intervals give
for the day.

The bench joins the virtual clock and waits for board time `--board-s`: wall time is from
power-on to that moment. Then the records numbered so far are counted, board time is let run one
batch longer (send_s plus a little, so the last batch goes out) and held again while the last
messages arrive. Reported: wall s, board s, the speed-up (board s / wall s), simulated hours per wall s
(speed-up / 3600), records expected / numbered by the node / received, CPU seconds of this
process and of mosquitto, and the load on the (shared) machine during the run.

    .venv/bin/python bench/virtual_time.py [--board-s 86400] [--intervals default|sim] [--send-s S]
                                           [--keepalive 30] [--profile [N]] [--py-spy [BIN]]
                                           [--out bench/results/virtual_time.json]

Records are read through floorwatch.contract.records() (the telemetry payload is positional, v2).

The arrival lag (board time from a record's sampling to its arrival at the subscriber) is shown
but is no on-time test: the subscriber does not take part in the virtual clock, so while its thread
waits for the interpreter lock board time runs on (the board publishes and sleeps without it).

`--profile` also runs cProfile inside the board's thread (which makes the run slower: profile
runs are never the figure) and prints where the time goes, by area (firmware, sim fakes, sensor
models, the clock machinery, host sockets and polls, ...), then the top N functions. cProfile
inflates code that makes many small calls (the sensor models) against code that loops (the FFT);
`--py-spy [BIN]` samples a second run with py-spy instead (when installed), whose shares are the
ones to trust, by activity (vibration FIFO drain, analysis, publish, ...) and by whose code.
Prints the figures and writes bench/results/virtual_time.json.
"""

import argparse
import cProfile
import json
import os
import platform
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt

from floorwatch import contract
from floorwatch.broker import Mosquitto
from floorwatch.sim.chaos.campaign import store_of
from floorwatch.sim.fleet import SIM_INTERVALS, Fleet

RESULTS = Path(__file__).resolve().parent / "results" / "virtual_time.json"
DAY_S = 86400
# The firmware's defaults (firmware/node/config.py, _INTERVALS): what a node runs with unless told.
DEFAULT_INTERVALS = {"temp_s": 10, "vib_s": 30, "diag_s": 60, "send_s": 300}
DEFAULT_KEEPALIVE_S = 30  # the firmware's broker.keepalive_s default; the sim's board_config says 15
TARGET = 3600
SITE = "vtime"


class Subscriber:
    """An independent subscriber: keeps each message's bytes and the board time it arrived at."""

    def __init__(self, broker, vclock):
        self.vclock = vclock
        self.messages = []  # (kind, payload bytes, board time at arrival, wall time)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="vtime-counter")
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe("floorwatch/%s/+/+" % SITE, qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=60)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise SystemExit("the subscriber did not get its SUBACK")

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic.rsplit("/", 1)[1], msg.payload, self.vclock.now(), time.monotonic()))

    def count(self, kind):
        with self._lock:
            return sum(1 for m in self.messages if m[0] == kind)

    def seqs(self):
        """(boot, seq) of every record received (a record is number seq + i of its message)."""
        with self._lock:
            out = set()
            for m in self.messages:
                if m[0] == "telemetry":
                    msg = json.loads(m[1])
                    out.update((msg["boot"], msg["seq"] + i) for i in range(len(msg["r"])))
            return out

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


def records_of(msg):
    """A telemetry message's records as dicts with "up" (ms) and "v" when vibration was taken."""
    if hasattr(contract, "records"):  # telemetry v2: positional records, decoded by the contract
        return contract.records(msg)
    return msg["r"]


def expected_records(board_s, intervals, first_s=0.0):
    """Sampling passes in [first_s, board_s): each one where a temperature or vibration reading is
    due makes one record (the two schedules start together, at the first pass after boot)."""
    times = set()
    for key in ("temp_s", "vib_s"):
        step, k = intervals[key], 0
        while first_s + k * step < board_s:
            times.add(round(k * step, 6))
            k += 1
    return len(times)


def proc_cpu_s(pid):
    """User + system CPU seconds of a process, from /proc."""
    try:
        fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy():
    """(busy jiffies, total jiffies) of all CPUs, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def run(board_s, intervals, seed=8, profiler=None, keepalive_s=DEFAULT_KEEPALIVE_S):
    with Mosquitto() as broker:
        fleet = Fleet(1, broker.host, broker.port, site=SITE, seed=seed, intervals=intervals, speed="max")
        board = fleet.boards[0]
        if keepalive_s is not None:  # the node's default keepalive (it pings after keepalive/4 without sending)
            path = board.flash_dir / "config.json"
            cfg = json.loads(path.read_text())
            cfg["broker"]["keepalive_s"] = keepalive_s
            path.write_text(json.dumps(cfg, indent=1))
        subscriber = Subscriber(broker, fleet.vclock)
        if profiler is not None:  # cProfile sees only the thread that enables it: the board's
            live = board._live

            def profiled():
                profiler.enable()
                try:
                    live()
                finally:
                    profiler.disable()

            board._live = profiled
        me = fleet.vclock.join()  # board time waits for this thread too: it stops at board_s
        load0, busy0 = os.getloadavg(), machine_busy()
        cpu0, broker_cpu0 = resource.getrusage(resource.RUSAGE_SELF), proc_cpu_s(broker._proc.pid)
        started = time.monotonic()
        try:
            fleet.start()
            me.wait(board_s)  # returns when board time reaches board_s, and holds it there
            wall_s = time.monotonic() - started
            cpu1, broker_cpu1 = resource.getrusage(resource.RUSAGE_SELF), proc_cpu_s(broker._proc.pid)
            busy1, load1 = machine_busy(), os.getloadavg()
            reached = fleet.vclock.now()
            # Whatever the node numbered by board_s must arrive: records wait up to send_s for their
            # batch, so board time runs one batch on, then stands still while the last ones arrive.
            store = store_of(board)
            numbered = store.seq if store is not None else 0
            boot = store.boot if store is not None else None
            send_s = intervals.get("send_s", 0)
            if send_s:
                me.wait(send_s + min(intervals["temp_s"], intervals["vib_s"]) + 1)
            wanted = {(boot, seq) for seq in range(numbered)}
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not wanted <= subscriber.seqs():
                time.sleep(0.05)
            got = subscriber.seqs()
            received = len(wanted & got)
        finally:
            fleet.close()
            me.leave()
            subscriber.stop()
        crashed = board.crashed
        spins = board.clock.spins
        log_tail = [line for line in board.log if "floorwatch" not in line][-8:]  # what the node printed
    report = analyse(subscriber.messages, intervals, board_s, locals())
    report["keepalive_s"] = keepalive_s if keepalive_s is not None else "sim (15)"
    return report


def analyse(messages, intervals, board_s, m):
    """The report: timing, CPU, load, and the books of what arrived: the records sampled before
    board_s (some arrive in the last batch, after it), the other messages that arrived by board_s."""
    messages = [msg for msg in messages if msg[0] == "telemetry" or msg[2] <= board_s + 1e-6]
    kinds = Counter(kind for kind, *_ in messages)
    violations, records, lateness, vib = [], [], [], 0
    seqs, last_diag, boots = [], None, set()
    for kind, payload, at, _wall in messages:
        try:
            obj = contract.validate(kind, payload)
        except Exception as exc:  # ContractError: a broken message is a finding, keep counting
            violations.append("%s: %s" % (kind, exc))
            continue
        if kind == "diag":
            last_diag = obj
        if kind != "telemetry":
            continue
        boots.add(obj["boot"])
        for i, rec in enumerate(records_of(obj)):
            if rec["up"] / 1000 >= board_s:  # sampled while the last batch was let go
                continue
            seqs.append((obj["boot"], obj["seq"] + i))
            records.append(rec["up"] / 1000)
            lateness.append(at - rec["up"] / 1000)  # board time from sampling to arrival (boot at board time 0)
            vib += "v" in rec
    step = min(intervals["temp_s"], intervals["vib_s"])
    first = min(records) if records else 0.0
    expected = expected_records(board_s, intervals, first)
    gaps = [b - a for a, b in zip(sorted(records), sorted(records)[1:])]
    wall_s, board_reached = m["wall_s"], m["reached"]
    cpu = (m["cpu1"].ru_utime - m["cpu0"].ru_utime) + (m["cpu1"].ru_stime - m["cpu0"].ru_stime)
    broker_cpu = (m["broker_cpu1"] - m["broker_cpu0"]) if m["broker_cpu0"] is not None else None
    busy = (m["busy1"][0] - m["busy0"][0]) / max(1, m["busy1"][1] - m["busy0"][1])  # share of all CPUs
    ncpu = os.cpu_count() or 1
    speedup = board_reached / wall_s
    lateness.sort()
    return {
        "board_s": round(board_reached, 3),
        "wall_s": round(wall_s, 3),
        "speedup": round(speedup, 1),
        "sim_hours_per_wall_s": round(speedup / 3600, 3),
        "wall_s_per_sim_day": round(wall_s * DAY_S / board_reached, 2),
        "intervals": dict(intervals),
        "records": {
            "expected": expected,  # sampling passes the intervals give from the first record to board_s
            "numbered": m["numbered"],  # what the node's store numbered (its boot's seq) by board_s
            "received": m["received"],  # of those, how many the subscriber got (after the last batch went)
            "unique_received": len(set(seqs)),
            "with_vibration": vib,
            "expected_with_vibration": expected_records(board_s, {"temp_s": intervals["vib_s"],
                                                                  "vib_s": intervals["vib_s"]}, first),
            "first_up_s": round(first, 3),
            "largest_gap_s": round(max(gaps), 3) if gaps else None,
            "gaps_over_interval": sum(1 for g in gaps if g > step + 0.5),
            "arrival_lag_board_s": {  # board time from a record's sampling to its arrival at the subscriber
                "median": round(lateness[len(lateness) // 2], 3) if lateness else None,
                "p999": round(lateness[int(len(lateness) * 0.999)], 3) if lateness else None,
                "max": round(lateness[-1], 3) if lateness else None,
                "within_interval": round(sum(1 for x in lateness if x <= step) / len(lateness), 5) if lateness else None,
            },
        },
        "messages": dict(kinds),
        "expected_diag": int(board_reached // intervals["diag_s"]),
        "contract_violations": violations[:5],
        "contract_violation_count": len(violations),
        "firmware_crashed": m["crashed"],
        "boots_seen": sorted(boots),
        "node_reconnects": {k: last_diag.get(k) for k in ("mqtt_reconnects", "wifi_reconnects")} if last_diag else None,
        "board_log_tail": m["log_tail"],
        "busy_wait_charges": m["spins"],
        "cpu_s": {"bench_process": round(cpu, 2), "mosquitto": round(broker_cpu, 2) if broker_cpu is not None else None},
        "bench_process_cpu_share": round(cpu / wall_s, 3),
        "load": {
            "loadavg_before": [round(x, 2) for x in m["load0"]],
            "loadavg_after": [round(x, 2) for x in m["load1"]],
            "machine_busy_cpus": round(busy * ncpu, 2),  # CPUs busy on average over the run, everything counted
            "others_busy_cpus": round(max(0.0, busy * ncpu - (cpu + (broker_cpu or 0)) / wall_s), 2),
            "cpus": ncpu,
        },
    }


# --- the profile ------------------------------------------------------------------------------
AREAS = (  # (area, test on the function's file name, or on "file:function"), first match wins
    ("firmware: vibration analysis (FFT)", lambda f: "/firmware/node/vibration.py" in f),
    ("firmware: other node code", lambda f: "/firmware/node/" in f),
    ("firmware: umqtt.simple", lambda f: "/firmware/lib/" in f),
    ("firmware: main.py/boot.py", lambda f: "/firmware/" in f),
    ("sim: socket fake (mpy/socket.py)", lambda f: "/sim/mpy/socket.py" in f),
    ("sim: select fake (mpy/select.py)", lambda f: "/sim/mpy/select.py" in f),
    ("sim: time fake (mpy/time.py)", lambda f: "/sim/mpy/time.py" in f),
    ("sim: other MicroPython fakes (mpy/)", lambda f: "/sim/mpy/" in f),
    ("sim: sensor models (devices/)", lambda f: "/sim/devices/" in f),
    ("sim: physics (signals)", lambda f: "/sim/physics.py" in f),
    ("sim: runtime (imports, open)", lambda f: "/sim/runtime.py" in f),
    ("sim: board + clock machinery (board.py)", lambda f: "/sim/board.py" in f),
    ("host: socket send/recv/settimeout", lambda f: f.startswith("~:") and ("socket" in f or "recv" in f or "send" in f)),
    ("host: poll / select / eventfd / Event waits", lambda f: f.startswith("~:") and any(
        w in f for w in ("poll", "select", "acquire", "os.read", "os.write", "wait"))),
    ("host: json (stdlib + C)", lambda f: "/json/" in f or "json" in f and f.startswith("~:")),
    ("host: threading.py", lambda f: "/threading.py" in f),
    ("host: math/struct/array builtins", lambda f: f.startswith("~:")),
    ("host: other stdlib", lambda f: "/lib/python3" in f),
)


def area_of(filename, func):
    key = filename if filename != "~" else "~:" + func
    for name, test in AREAS:
        if test(key):
            return name
    return "other: " + filename.rsplit("/", 1)[-1]


def profile_table(profiler, wall_s, top):
    stats = pstats.Stats(profiler)
    by_area = defaultdict(lambda: [0.0, 0])
    total = 0.0
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
        area = area_of(filename, func)
        by_area[area][0] += tt
        by_area[area][1] += nc
        total += tt
        rows.append((tt, ct, nc, "%s:%d(%s)" % (filename.replace(str(Path.cwd()) + "/", ""), line, func), area))
    areas = sorted(({"area": k, "self_s": round(v[0], 2), "share": round(v[0] / total, 3), "calls": v[1]}
                    for k, v in by_area.items()), key=lambda a: -a["self_s"])
    rows.sort(reverse=True)
    functions = [{"self_s": round(tt, 3), "cum_s": round(ct, 3), "calls": nc, "function": name, "area": area}
                 for tt, ct, nc, name, area in rows[:top]]
    return {"profiled_wall_s": round(wall_s, 2), "board_thread_self_s": round(total, 2), "areas": areas,
            "top_functions": functions}


# py-spy (a sampling profiler, when installed): unlike cProfile it does not inflate code that makes
# many small calls, so its shares are the ones to trust. Rows: what the board thread was doing
# (inclusive); columns: whose code the sample was in (the innermost frame's file).
SPY_COLUMNS = (("firmware vibration.py", "node/vibration.py"), ("firmware, other", "node/"), ("umqtt", "umqtt/"),
               ("sim devices/", "sim/devices/"), ("sim physics", "sim/physics.py"), ("sim socket fake", "sim/mpy/socket.py"),
               ("sim machine fake", "sim/mpy/machine.py"), ("sim other fakes", "sim/mpy/"),
               ("sim board/clock", "sim/board.py"), ("stdlib", "python3"))


def _spy_activity(frames):
    text = ";".join(frames)
    if "Accelerometer.read" in text:
        return "vibration: analysis (Analyzer.run)" if "Analyzer.run" in text else "vibration: FIFO drain"
    for marker, name in (("_read_temps", "temperatures (1-Wire)"), ("Node.flush", "publish (flush, PUBACK)"),
                         ("Link.publish", "publish (flush, PUBACK)"), ("Link.service", "link.service (pings)"),
                         ("Link.wait", "idle (link.wait, clock)"), ("Board.sleep", "idle (link.wait, clock)"),
                         ("Node.sample", "sample: record, encode, store")):
        if marker in text:
            return name
    return "other"


def spy_profile(py_spy, argv, rate=100):
    """Run this script again (no output file) under `py-spy record`; the board thread's samples
    by activity and by whose code they were in."""
    with tempfile.TemporaryDirectory(prefix="vtime-spy-") as tmp:
        raw = Path(tmp) / "raw.txt"
        cmd = [py_spy, "record", "--rate", str(rate), "--threads", "--format", "raw", "-o", str(raw), "--",
               sys.executable, os.path.abspath(__file__), "--out", str(Path(tmp) / "run.json")] + argv
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run = json.loads((Path(tmp) / "run.json").read_text())
        lines = raw.read_text().splitlines()
    table = defaultdict(Counter)
    leaves = Counter()
    total = 0
    for line in lines:
        stack, count = line.rsplit(" ", 1)
        frames = stack.split(";")
        if "board-sim" not in frames[0] or len(frames) < 2:
            continue
        frames, count = frames[1:], int(count)
        total += count
        leaf_file = re.sub(r":\d+\)$", "", frames[-1])
        column = next((name for name, pat in SPY_COLUMNS if pat in leaf_file), "other")
        table[_spy_activity(frames)][column] += count
        leaves[re.sub(r":\d+\)$", ")", frames[-1])] += count
    rows = [{"activity": activity, "share": round(sum(cols.values()) / total, 4),
             "by_code": {c: round(n / total, 4) for c, n in cols.most_common() if n}}
            for activity, cols in sorted(table.items(), key=lambda kv: -sum(kv[1].values()))]
    columns = Counter()
    for cols in table.values():
        columns.update(cols)
    return {"samples": total, "rate_hz": rate, "run_speedup": run["speedup"], "run_wall_s": run["wall_s"],
            "activities": rows, "code": {c: round(n / total, 4) for c, n in columns.most_common()},
            "top_functions": [{"share": round(n / total, 4), "function": f} for f, n in leaves.most_common(20)]}


def print_spy(spy):
    print()
    print("py-spy, board thread (%d samples at %d Hz of a %.1f s run at %.0fx):" % (
        spy["samples"], spy["rate_hz"], spy["run_wall_s"], spy["run_speedup"]))
    print("  by activity (inclusive), split by whose code the time was in:")
    for row in spy["activities"]:
        parts = ", ".join("%s %.1f" % (c, 100 * v) for c, v in row["by_code"].items() if v >= 0.002)
        print("  %5.1f %%  %-32s (%s)" % (100 * row["share"], row["activity"], parts))
    print("  by code:")
    for c, v in spy["code"].items():
        print("  %5.1f %%  %s" % (100 * v, c))
    print("  top functions (self):")
    for f in spy["top_functions"][:12]:
        print("  %5.1f %%  %s" % (100 * f["share"], f["function"]))


def print_report(report):
    r = report
    rec = r["records"]
    print()
    print("Virtual time: 1 board, real firmware, VirtualClock, local mosquitto, intervals %s, keepalive %s s" % (
        r["intervals"], r["keepalive_s"]))
    rows = [
        ("board time simulated", "%.0f s (%.2f days)" % (r["board_s"], r["board_s"] / DAY_S)),
        ("wall time", "%.2f s" % r["wall_s"]),
        ("speed-up (board s / wall s)", "%.0fx" % r["speedup"]),
        ("simulated hours per wall s", "%.3f" % r["sim_hours_per_wall_s"]),
        ("wall s per simulated day", "%.1f s" % r["wall_s_per_sim_day"]),
        ("records expected / numbered / received", "%d / %d / %d (unique %d)" % (
            rec["expected"], rec["numbered"], rec["received"], rec["unique_received"])),
        ("  with vibration (expected / received)", "%d / %d" % (rec["expected_with_vibration"], rec["with_vibration"])),
        ("  largest gap between records", "%s s" % rec["largest_gap_s"]),
        ("  arrival lag, board s (median / max; off the clock)", "%s / %s" % (rec["arrival_lag_board_s"]["median"],
                                                                rec["arrival_lag_board_s"]["max"])),
        ("messages by kind", ", ".join("%s %d" % kv for kv in sorted(r["messages"].items()))),
        ("contract violations", str(r["contract_violation_count"])),
        ("boots; node's reconnects (last diag)", "%s; %s" % (r["boots_seen"], r["node_reconnects"])),
        ("CPU s: bench process / mosquitto", "%.2f / %s" % (r["cpu_s"]["bench_process"], r["cpu_s"]["mosquitto"])),
        ("load: CPUs busy (all / others)", "%.2f / %.2f of %d" % (r["load"]["machine_busy_cpus"],
                                                                  r["load"]["others_busy_cpus"], r["load"]["cpus"])),
        ("loadavg before / after", "%s / %s" % (r["load"]["loadavg_before"][0], r["load"]["loadavg_after"][0])),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print("  %-*s  %s" % (width, k, v))
    sp, hps = r["speedup"], r["sim_hours_per_wall_s"]
    print()
    print("Target 3,600, read two ways:")
    print("  as a speed-up of 3,600x (1 simulated hour per wall s): %.0fx -> %s" % (sp, "met" if sp >= TARGET else "NOT met"))
    print("  as 3,600 simulated hours per wall s (a 150-day speed-up of 12,960,000x): %.3f h/s -> %s" % (
        hps, "met" if hps >= TARGET else "NOT met"))


def print_profile(prof):
    print()
    print("Profile of the board's thread (cProfile, self time; the profiled run took %.1f s wall, %.1f s in "
          "the board thread's functions):" % (prof["profiled_wall_s"], prof["board_thread_self_s"]))
    for a in prof["areas"]:
        print("  %6.2f s  %5.1f %%  %9d calls  %s" % (a["self_s"], 100 * a["share"], a["calls"], a["area"]))
    print()
    print("  top functions by self time:")
    for f in prof["top_functions"]:
        print("  %7.3f s self %7.3f s cum %9d calls  %s" % (f["self_s"], f["cum_s"], f["calls"], f["function"]))


def tree_state():
    """The commit measured, and any firmware/ or sim file changed since (the run measures the work tree)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "firmware", "host/floorwatch/sim"], cwd=root,
                                 capture_output=True, text=True).stdout.split("\n")
    except OSError:
        return None
    return {"commit": commit or None, "changed": [line[3:] for line in changed if line.strip()]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--board-s", type=float, default=DAY_S, help="board seconds to simulate (a day)")
    parser.add_argument("--intervals", choices=("default", "sim"), default="default",
                        help="the firmware's default intervals (10/30/60 s) or the sim's faster ones (5/10/30 s)")
    parser.add_argument("--send-s", type=float, default=None,
                        help="intervals.send_s on the node: records wait up to this long for a batch (default "
                             "intervals: the firmware's 300; sim intervals: the sim's 0, each record at once)")
    parser.add_argument("--keepalive", type=int, default=DEFAULT_KEEPALIVE_S,
                        help="broker keepalive_s on the node: the firmware's default 30; 0 keeps the sim's 15")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--profile", type=int, nargs="?", const=25, default=None, metavar="N",
                        help="profile the board's thread as well (a second run) and show the top N functions")
    parser.add_argument("--py-spy", nargs="?", const="py-spy", default=None, metavar="BIN",
                        help="also sample a run with py-spy (a second run; needs py-spy installed)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    intervals = dict(DEFAULT_INTERVALS if args.intervals == "default" else SIM_INTERVALS)
    if args.send_s is not None:
        intervals["send_s"] = args.send_s
    began = time.monotonic()
    keepalive = args.keepalive or None
    report = run(args.board_s, intervals, args.seed, keepalive_s=keepalive)
    print_report(report)
    report["target"] = {
        "stated": "simulated hours per wall-clock second >= 3600",
        "as_speedup_3600x_met": report["speedup"] >= TARGET,
        "as_sim_hours_per_wall_s_3600_met": report["sim_hours_per_wall_s"] >= TARGET,
    }
    if args.profile is not None:
        profiler = cProfile.Profile()
        profiled = run(args.board_s, intervals, args.seed, profiler, keepalive_s=keepalive)
        report["profile"] = profile_table(profiler, profiled["wall_s"], args.profile)
        report["profile"]["profiled_speedup"] = profiled["speedup"]
        print_profile(report["profile"])
    if args.py_spy is not None:
        found = shutil.which(args.py_spy)
        if found is None:
            print("py-spy not found (%s): no sampling profile" % args.py_spy)
        else:
            argv = ["--board-s", str(args.board_s), "--intervals", args.intervals, "--keepalive", str(args.keepalive),
                    "--seed", str(args.seed)] + (["--send-s", str(args.send_s)] if args.send_s is not None else [])
            report["py_spy"] = spy_profile(found, argv)
            print_spy(report["py_spy"])
    report["tree"] = tree_state()
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    report["script_wall_s"] = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print()
    print("script took %.1f s; wrote %s" % (report["script_wall_s"], args.out))


if __name__ == "__main__":
    main()
