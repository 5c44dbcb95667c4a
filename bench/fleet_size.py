"""Simulated fleet size: how many boards the simulator runs in real time, in one process and in P (issue 8).

What it measures. The simulator (`floorwatch.sim.shard.ShardedFleet`, what `floorwatch sim --plain
--processes P` runs) drives N boards in P worker processes (contiguous blocks of board numbers,
each board named and seeded as in one process), each board running the real, unchanged firmware on
its own thread, against one local mosquitto, plain and anonymous (`floorwatch.broker.Mosquitto()`):
the secured default would add a TLS handshake per board and TLS on every message, a cost of the
simulator's TLS, not of the fleet. Board clocks run at wall speed (speed 1). P = 1 is one simulator
process (the bench process itself only owns the broker and the workers).

The boards run the node's defaults where the figure allows: temp_s 10, vib_s 30, diag_s 60
(firmware/node/config.py), MQTT keepalive 30 s (the node's default; the sim's own boards use 15,
which adds a ping every 3.75 s), and send_s 0 (the node's default is 300: records batched for up
to 5 minutes; the figure asks for one telemetry message every 10 s, so each record goes at once).
The boards are powered on spread evenly over 30 s (--stagger-s; board i at i/N x 30 s), as a
plant's nodes are not all powered in the same second: powered at once, every board would take its
readings, and every third time its vibration window, in the same second for ever after, a burst
every 10 s that the host must clear within the interval although it is idle in between.
The node makes one record per sampling pass in which anything is due, temp and vib are both due at
boot, and vib_s is a multiple of temp_s: so one record every 10 s, every third also carrying the
vibration analysis of a 1024-sample window, one telemetry message each (the queue drains at
drain_per_s 20 records/s). A vibration analysis every 10 s is not what the figure asks for
(--vib-s 10 gives it: about three times the CPU).

An independent subscriber, a separate process (paho-mqtt, QoS 1), timestamps every telemetry
message on arrival (CLOCK_MONOTONIC, which the processes of one machine share); records are read
with floorwatch.contract.records().

Definitions. For a board, up = 0 of its first boot is at wall time P (its worker reports it: board
time runs at wall speed). Its schedule is the first record's `up` u0 plus k * 10 s: slot k is due at
P + u0 + 10 k, and its record is the one whose `up` rounds to it. A slot is *on time* when its
record arrives no later than one interval (10 s) after it was due, *received* when it arrives at
all (by the end of a grace period). Only slots due in the measurement window count: it opens
max(30 s, 0.04 s x N / P) after the last worker powered its boards on, so the boot storm is left
out. A board that samples late (a starved host) or skips a sample (the node skips rather than
bursts) misses slots: they count as late. `lost` counts seqs missing between the first and last
seen. A step passes when on time >= 99.9 %, every slot and seq was received, and no worker failed.

Also per step: RSS of the workers at the window's end (summed), per board, and the marginal RSS
between steps of the same P; the workers' CPU seconds per board-second in the window (ms), their
CPU % (one core is 100 %: the interpreter lock lets one process use about one) in all and per
worker; mosquitto's CPU %; the highest load average seen; how long starting the workers and their
threads took. A worker that does not answer the bench within 30 s when asked for its figures (it
is then starved: its main thread waits for the interpreter lock like its boards) fails the step.

Run (each step takes about 2 to 5 minutes):
    .venv/bin/python bench/fleet_size.py                  # quick, for make bench (see QUICK)
    .venv/bin/python bench/fleet_size.py --n 100,200 --processes 2      # given sizes
    .venv/bin/python bench/fleet_size.py --search --processes 1,2       # per P: 50, 100, 200, ...
                                   # doubling until one fails, then bisect twice (--start to begin higher)
Options: --warmup-s, --measure-s (60), --vib-s (30), --keepalive-s (30), --stagger-s (30), --out
(bench/results/fleet_size.json). The role `_sub` is the subscriber's child process.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))

INTERVAL_S = 10
ON_TIME_TARGET = 99.9
KEEPALIVE_S = 30  # the node's default (firmware/node/config.py _KEEPALIVE)
# The default run, for make bench: (processes, N) steps, a light load and one near each limit
QUICK = ((1, 1200), (2, 2400))
STATS_TIMEOUT_S = 30.0


def warmup_for(n, processes=1):
    """Seconds from the last worker's power-on to the window: the boot storm (about 30-80 ms of CPU
    a board, all at once, shared by the workers), then the first samples."""
    return max(30.0, 0.04 * n / processes)


def _load():
    return os.getloadavg()[0]


# --- child: the independent subscriber ------------------------------------------------------------
def role_sub(args):
    import paho.mqtt.client as mqtt

    from floorwatch import contract

    got = []
    ready = threading.Event()

    def on_connect(client, userdata, flags, reason, props):
        client.subscribe("floorwatch/+/+/telemetry", qos=1)

    def on_subscribe(client, userdata, mid, reasons, props):
        ready.set()

    def on_message(client, userdata, msg):
        got.append((time.monotonic(), msg.topic, msg.payload))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-size-bench-%d" % os.getpid())
    client.max_inflight_messages_set(1000)
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect(args.host, args.port, keepalive=60)
    client.loop_start()
    ready.wait(10)
    print("ready", flush=True)
    sys.stdin.readline()  # the parent says stop
    client.loop_stop()
    with open(args.out, "w") as f:
        for arrived, topic, payload in got:
            device = topic.split("/")[2]
            try:
                msg = json.loads(payload)
                rec = [(msg["boot"], msg["seq"] + i, r["up"]) for i, r in enumerate(contract.records(msg))]
            except (ValueError, KeyError, TypeError, IndexError):
                rec = "bad"
            f.write(json.dumps([arrived, device, rec]) + "\n")
    print("done %d" % len(got), flush=True)


# --- the parent -----------------------------------------------------------------------------------
def analyse(sim, arrivals_path):
    """On-time and received percentages from the sim's schedule facts and the subscriber's arrivals."""
    per_board = {}  # device -> {(boot, seq): (up, first arrival)}
    bad = 0
    for line in open(arrivals_path):
        arrived, device, recs = json.loads(line)
        if recs == "bad":
            bad += 1
            continue
        seen = per_board.setdefault(device, {})
        for boot, seq, up in recs:
            if (boot, seq) not in seen:
                seen[(boot, seq)] = (up, arrived)
    w0, w1 = sim["window"]
    expected = on_time = received = lost = 0
    lateness = []
    for device, p in sim["up0"].items():
        seen = per_board.get(device, {})
        first_boot = [v for (boot, _), v in seen.items() if boot == 1]
        # slots due inside the window, from the board's schedule
        u0 = min((up for up, _ in first_boot), default=None)
        if u0 is None:  # never published: every slot of the window is missed
            expected += int((w1 - w0) // INTERVAL_S)
            continue
        base = p + u0 / 1000
        k0 = max(0, int((w0 - base) // INTERVAL_S) + 1)
        k1 = int((w1 - base) // INTERVAL_S)
        slots = {}
        for up, arrived in first_boot:
            k = round((up - u0) / 1000 / INTERVAL_S)
            slots[k] = min(arrived, slots.get(k, arrived))
        for k in range(k0, k1 + 1):
            expected += 1
            due = base + k * INTERVAL_S
            if k in slots:
                received += 1
                delay = slots[k] - due
                lateness.append(delay)
                if delay <= INTERVAL_S:
                    on_time += 1
        seqs = sorted(seq for (boot, seq) in seen if boot == 1)
        if seqs:
            lost += (seqs[-1] - seqs[0] + 1) - len(seqs)
    lateness.sort()

    def pct(q):
        return round(lateness[min(len(lateness) - 1, int(q * len(lateness)))], 3) if lateness else None

    return {
        "expected": expected, "on_time": on_time, "received_slots": received, "lost_seq": lost, "bad": bad,
        "on_time_pct": round(100.0 * on_time / expected, 3) if expected else 0.0,
        "received_pct": round(100.0 * received / expected, 3) if expected else 0.0,
        "delay_s": {"p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999),
                    "max": round(lateness[-1], 3) if lateness else None},
    }


def run_step(n, processes, broker, args, tmp):
    from floorwatch.sim.shard import ShardedFleet

    arrivals = os.path.join(tmp, "arrivals-%d-%d.jsonl" % (processes, n))
    py = sys.executable
    me = str(Path(__file__).resolve())
    sub = subprocess.Popen([py, me, "_sub", "--host", broker.host, "--port", str(broker.port), "--out", arrivals],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert sub.stdout.readline().strip() == "ready"
    intervals = {"temp_s": INTERVAL_S, "vib_s": args.vib_s, "diag_s": 60, "send_s": 0}
    warmup_s = args.warmup_s if args.warmup_s is not None else warmup_for(n, processes)
    fleet = ShardedFleet(n, broker.host, broker.port, processes, site="bench", seed=1, intervals=intervals, speed=1,
                         workdir=os.path.join(tmp, "boards-%d-%d" % (processes, n)), keepalive_s=args.keepalive_s,
                         stagger_s=args.stagger_s)
    mosquitto, wall = _cpu_s(broker), time.monotonic()
    load = [_load()]
    note = None
    report = None
    try:
        t_start = time.monotonic()
        fleet.start()
        if not fleet.wait_ready(timeout=120 + 0.05 * n + args.stagger_s):
            note = "; ".join(fleet.failures) or "the workers did not power their boards on in time"
        else:
            t_started = time.monotonic()
            window0 = t_started + warmup_s  # every board has booted and found its rhythm
            window1 = window0 + args.measure_s
            while time.monotonic() < window0:
                time.sleep(min(10.0, max(0.0, window0 - time.monotonic())))
            load = [_load()]  # the window's: a 1-minute average still remembers what ran before
            stats0, wall0 = fleet.stats(STATS_TIMEOUT_S), time.monotonic()
            while time.monotonic() < window1:
                time.sleep(min(10.0, max(0.0, window1 - time.monotonic())))
                load.append(_load())
            stats1, wall1 = fleet.stats(STATS_TIMEOUT_S), time.monotonic()
            if None in stats0 or None in stats1:
                note = "a worker did not answer within %d s (overloaded)" % STATS_TIMEOUT_S
            else:
                time.sleep(args.grace_s)  # records due at the window's end get their interval to arrive
                report = {"window": [window0, window1], "wall_s": wall1 - wall0,
                          "up0": {b.device_id: b.powered_at for b in fleet.boards},
                          "cpu_s": [b["cpu_s"] - a["cpu_s"] for a, b in zip(stats0, stats1)],
                          "boot_cpu_s": sum(a["cpu_s"] for a in stats0), "rss_mb": [b["rss_mb"] for b in stats1],
                          "threads": sum(b["threads"] for b in stats1),
                          "boots": {k: v for b in stats1 for k, v in b["boots"].items()},
                          "crashed": sum(b["crashed"] for b in stats1), "start_s": t_started - t_start,
                          "late_s": max(0.0, wall1 - window1)}
                note = "; ".join(fleet.failures) or None
    finally:
        fleet.close()
        sub.stdin.write("stop\n")
        sub.stdin.flush()
        sub.stdout.readline()
        sub.wait(60)
    mosquitto, wall = _cpu_s(broker) - mosquitto, time.monotonic() - wall
    if report is None:  # could not run or overloaded past its time budget: a failed step
        os.remove(arrivals)
        return {"n": n, "processes": processes, "passed": False, "on_time_pct": 0.0, "received_pct": 0.0,
                "note": note, "load": round(max(load), 2)}
    result = analyse(report, arrivals)
    os.remove(arrivals)
    reboots = sum(1 for b in report["boots"].values() if b > 1)
    cpu = sum(report["cpu_s"])
    rss = sum(report["rss_mb"])
    step = {
        "n": n, "processes": processes, **result, "reboots": reboots, "crashed": report["crashed"],
        "rss_mb": round(rss, 1), "rss_per_board_mb": round(rss / n, 3),
        "cpu_per_board_s": round(cpu / report["wall_s"] / n * 1000, 4),  # ms CPU per board-second
        "cpu_pct": round(100 * cpu / report["wall_s"], 1),
        "cpu_pct_per_worker": [round(100 * c / report["wall_s"], 1) for c in report["cpu_s"]],
        "boot_cpu_s": round(report["boot_cpu_s"], 2), "threads": report["threads"], "load": round(max(load), 2),
        "mosquitto_cpu_pct": round(100 * mosquitto / wall, 1),  # over the step's whole run, boot included
        "start_s": round(report["start_s"], 1), "window_late_s": round(report["late_s"], 1),
    }
    if note:
        step["note"] = note
    step["passed"] = (step["on_time_pct"] >= ON_TIME_TARGET and step["received_pct"] >= 100.0
                      and step["lost_seq"] == 0 and not note)
    return step


def _cpu_s(broker):
    """CPU seconds mosquitto has used so far (its whole life: the parent takes differences)."""
    try:
        with open("/proc/%d/stat" % broker._proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, IndexError, ValueError):
        return 0.0


def print_header():
    print("%2s %6s %9s %9s %5s %6s %7s %8s %10s %6s %11s %6s %7s" % (
        "P", "N", "on-time%", "recv%", "lost", "p999s", "RSS MB", "MB/board", "ms CPU/b·s", "CPU%", "CPU%/worker",
        "load", "reboots"))


def print_row(step):
    if "delay_s" not in step:
        print("%2d %6d  FAIL: %s" % (step["processes"], step["n"], step["note"]), flush=True)
        return
    print("%2d %6d %9.3f %9.3f %5d %6.1f %7.1f %8.3f %10.4f %6.1f %11s %6.2f %7s %s%s" % (
        step["processes"], step["n"], step["on_time_pct"], step["received_pct"], step["lost_seq"],
        step["delay_s"]["p999"] or 0, step["rss_mb"], step["rss_per_board_mb"], step["cpu_per_board_s"],
        step["cpu_pct"], "/".join("%.0f" % c for c in step["cpu_pct_per_worker"]), step["load"], step["reboots"],
        "pass" if step["passed"] else "FAIL", (" (%s)" % step["note"]) if step.get("note") else ""), flush=True)


def search(step, start, bisect):
    """Double from `start` until a size fails, then bisect `bisect` times between the last pass and
    the first fail (sizes rounded to 50). Returns the largest size that passed, or None."""
    n, good, bad = start, None, None
    while True:
        if step(n)["passed"]:
            good, n = n, n * 2
        else:
            bad = n
            break
    for _ in range(bisect):
        if good is None:
            break
        n = (good + bad) // 2 // 50 * 50
        if n <= good or n >= bad:
            break
        if step(n)["passed"]:
            good = n
        else:
            bad = n
    return good


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="bench", choices=("bench", "_sub"))
    parser.add_argument("--n", default=None, help="comma-separated fleet sizes (default: the QUICK steps %s)" % (QUICK,))
    parser.add_argument("--processes", default=None, help="comma-separated worker process counts (default 1 with "
                        "--n or --search)")
    parser.add_argument("--search", action="store_true", help="per P: double from --start until a size fails, "
                        "then bisect --bisect times; a later P starts at the largest size an earlier one passed")
    parser.add_argument("--start", type=int, default=50)
    parser.add_argument("--bisect", type=int, default=2)
    parser.add_argument("--warmup-s", type=float, default=None, help="after the last power-on; default max(30, 0.04 N / P)")
    parser.add_argument("--measure-s", type=float, default=60.0)
    parser.add_argument("--grace-s", type=float, default=12.0)
    parser.add_argument("--vib-s", type=float, default=30.0)
    parser.add_argument("--keepalive-s", type=int, default=KEEPALIVE_S)
    parser.add_argument("--stagger-s", type=float, default=30.0, help="power the boards on spread over this "
                        "many seconds (default 30, one vibration interval; 0: all at once)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fleet_size.json"))
    args = parser.parse_args()
    if args.role == "_sub":
        return role_sub(args)

    import tempfile

    from floorwatch.broker import Mosquitto
    from floorwatch.sim.fleet import raise_fd_limit

    raise_fd_limit()  # before mosquitto starts: it inherits the limit (a connection a board)
    processes = [int(x) for x in args.processes.split(",")] if args.processes else [1]
    steps = []
    print("fleet size: boards at one telemetry / %d s each (temp_s %d, vib_s %g, send_s 0, keepalive %d s), "
          "powered on over %g s, speed 1, plain mosquitto; P worker processes" % (
              INTERVAL_S, INTERVAL_S, args.vib_s, args.keepalive_s, args.stagger_s))
    print_header()
    largest = {}
    with tempfile.TemporaryDirectory(prefix="fleet-size-") as tmp, Mosquitto() as broker:
        def step(n, p):
            s = run_step(n, p, broker, args, tmp)
            steps.append(s)
            print_row(s)
            return s

        if args.search:
            start = args.start
            for p in processes:
                largest[p] = search(lambda n: step(n, p), start, args.bisect)
                start = max(start, largest[p] or start)
        elif args.n:
            for p in processes:
                for n in [int(x) for x in args.n.split(",")]:
                    step(n, p)
        else:
            for p, n in QUICK:
                step(n, p)
    for p in sorted({s["processes"] for s in steps}):
        mine = sorted((s for s in steps if s["processes"] == p), key=lambda s: s["n"])
        passed = [s["n"] for s in mine if s["passed"]]
        largest[p] = max(passed) if passed else None
        measured = [s for s in mine if "rss_mb" in s]
        for a, b in zip(measured, measured[1:]):
            b["marginal_rss_per_board_mb"] = round((b["rss_mb"] - a["rss_mb"]) / (b["n"] - a["n"]), 3)
        print("P = %d: largest N passing (on time >= %.1f %%, all received): %s" % (p, ON_TIME_TARGET, largest[p]))
        for s in measured:
            if "marginal_rss_per_board_mb" in s:
                print("  marginal RSS per board, %d boards on: %.3f MB" % (s["n"], s["marginal_rss_per_board_mb"]))
    best = max((n for n in largest.values() if n), default=None)
    result = {
        "bench": "fleet_size", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "cpu": _cpu_model()},
        "broker": "mosquitto, plain anonymous (floorwatch.broker.Mosquitto())",
        "intervals": {"temp_s": INTERVAL_S, "vib_s": args.vib_s, "diag_s": 60, "send_s": 0},
        "keepalive_s": args.keepalive_s, "stagger_s": args.stagger_s,
        "warmup_s": args.warmup_s or "max(30, 0.04 N / P) after the last worker powered its boards on",
        "measure_s": args.measure_s, "target_on_time_pct": ON_TIME_TARGET,
        "largest_passing_n": best, "largest_passing_n_by_processes": {str(p): n for p, n in sorted(largest.items())},
        "steps": steps, "target_n": 10000,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", args.out)


def _cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
