"""Simulated fleet size: how many boards one simulator process runs in real time (issue 8).

What it measures. One simulator process (a `Fleet`, what `floorwatch sim --plain --speed 1` runs)
drives N boards, each running the real, unchanged firmware on its own thread, against a local
mosquitto, plain and anonymous (`floorwatch.broker.Mosquitto()`): the secured default would add a
TLS handshake per board and TLS on every message, a cost of the simulator's TLS, not of the fleet.
Board clocks run at wall speed (speed 1). Every board has the node's default intervals, temp_s 10,
vib_s 30 (diag_s 60). The node makes one record per sampling pass in which anything is due, temp and
vib are both due at boot, and vib_s is a multiple of temp_s: so one record every 10 s, every third
also carrying the vibration analysis of a 1024-sample window. The queue drains at drain_per_s 20
records/s (token bucket, app.py _drain), so each record leaves at once, alone: one telemetry
message every 10 s per board. (--vib-s 10 puts an analysis in every record.)

An independent subscriber, a separate process (paho-mqtt, QoS 1), timestamps every telemetry
message on arrival (CLOCK_MONOTONIC, which the processes of one machine share).

Definitions. For a board, up = 0 of its first boot is at wall time P (the sim process reports it:
board time runs at wall speed). Its schedule is the first record's `up` u0 plus k * 10 s: slot k is
due at P + u0 + 10 k, and its record is the one whose `up` rounds to it. A slot is *on time* when its
record arrives no later than one interval (10 s) after it was due, *received* when it arrives at
all (by the end of a grace period). Only slots due in the measurement window count: it opens
max(30 s, 0.04 s a board) after the last board was powered on, so the boot storm is left out. A
board that samples late (a starved host) or skips a sample (the node skips rather than bursts)
misses slots: they count as late. `lost` counts seqs missing between the first and last seen. A
step passes when on time >= 99.9 % and every slot and seq was received.

Also per step: RSS of the sim process at the window's end, per board, and the marginal RSS between
steps; the sim's CPU seconds per board-second in the window (ms) and CPU % (one core is 100 %: the
interpreter lock lets the boards use about one); mosquitto's CPU %; the highest load average seen;
how long starting the N threads took. A sim process that overruns its time budget (it is then
starved: its main thread waits for the interpreter lock like the boards) is a failed step.

Run (each step takes about 2 to 5 minutes):
    .venv/bin/python bench/fleet_size.py                  # quick, for make bench: N = 400 and 1200
    .venv/bin/python bench/fleet_size.py --n 100,200      # given sizes
    .venv/bin/python bench/fleet_size.py --search         # 50, 100, 200, ... until one fails, then
                                                           # bisect once (--start to begin higher)
Options: --warmup-s, --measure-s (60), --vib-s (30), --out (bench/results/fleet_size.json). The
roles `_sim` and `_sub` are the two child processes.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))

INTERVAL_S = 10
ON_TIME_TARGET = 99.9
QUICK_N = (400, 1200)  # the default run (about 5 min): a light load and one near the limit --search found


def warmup_for(n):
    """Seconds from the last board's power-on to the window: the boot storm (about 30 ms of CPU a
    board, all at once), then the first samples."""
    return max(30.0, 0.04 * n)


def rss_mb(pid="self"):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return None


# --- child: the simulator ------------------------------------------------------------------------
def role_sim(args):
    from floorwatch.sim.fleet import Fleet

    args.n = int(args.n)
    intervals = {"temp_s": INTERVAL_S, "vib_s": args.vib_s, "diag_s": 60}
    rss0 = rss_mb()
    fleet = Fleet(args.n, args.host, args.port, site="bench", seed=1, intervals=intervals, speed=1,
                  workdir=args.workdir)  # the parent's temporary directory: removed after os._exit below
    t_start = time.monotonic()
    cpu_start = time.process_time()
    fleet.start()  # a thread a board: starting thousands takes a while
    t_started = time.monotonic()
    # up = 0 of each board's boot, in this machine's monotonic time (board time runs at wall speed)
    up0 = {}
    for board in fleet.boards:
        up0[board.device_id] = time.monotonic() - board.clock.now() + board.ticks_origin
    warmup_s = args.warmup_s if args.warmup_s is not None else warmup_for(args.n)
    window0 = t_started + warmup_s  # every board has booted and found its rhythm
    window1 = window0 + args.measure_s
    time.sleep(max(0.0, window0 - time.monotonic()))
    cpu0, wall0 = time.process_time(), time.monotonic()
    load = [os.getloadavg()[0]]
    while time.monotonic() < window1:
        time.sleep(min(10.0, max(0.0, window1 - time.monotonic())))
        load.append(os.getloadavg()[0])
    cpu1, wall1 = time.process_time(), time.monotonic()
    rss = rss_mb()
    threads = threading.active_count()
    time.sleep(args.grace_s)  # records due at the window's end get their interval to arrive
    report = {
        "n": args.n, "up0": up0, "window": [window0, window1], "rss_mb": rss, "rss_before_mb": rss0,
        "cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0, "boot_cpu_s": cpu0 - cpu_start, "warmup_s": warmup_s, "threads": threads,
        "load": max(load), "boots": {b.device_id: b.boots for b in fleet.boards},
        "crashed": sum(1 for b in fleet.boards if b.crashed),
        "start_s": t_started - t_start, "late_s": wall1 - window1,
    }
    print(json.dumps(report), flush=True)
    os._exit(0)  # skip joining N threads: the broker sees the connections drop


# --- child: the independent subscriber ------------------------------------------------------------
def role_sub(args):
    import paho.mqtt.client as mqtt

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
                rec = [(msg["boot"], msg["seq"] + i, r["up"]) for i, r in enumerate(msg["r"])]
            except (ValueError, KeyError, TypeError):
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


def run_step(n, broker, args, tmp):
    arrivals = os.path.join(tmp, "arrivals-%d.jsonl" % n)
    py = sys.executable
    me = str(Path(__file__).resolve())
    sub = subprocess.Popen([py, me, "_sub", "--host", broker.host, "--port", str(broker.port), "--out", arrivals],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert sub.stdout.readline().strip() == "ready"
    # A process that cannot keep up with its boards cannot keep up with its own clock either (its
    # main thread waits for the interpreter lock like every board): its run gets a bounded time.
    budget = 60 + 0.05 * n + (args.warmup_s or warmup_for(n)) + args.measure_s + args.grace_s
    sim = subprocess.Popen([py, me, "_sim", "--host", broker.host, "--port", str(broker.port), "--n", str(n),
                            *(["--warmup-s", str(args.warmup_s)] if args.warmup_s is not None else []),
                            "--measure-s", str(args.measure_s), "--grace-s", str(args.grace_s),
                            "--vib-s", str(args.vib_s), "--workdir", os.path.join(tmp, "boards-%d" % n)],
                           stdout=subprocess.PIPE, text=True)
    mosquitto, sim_wall = _cpu_s(broker), time.monotonic()
    try:
        out, _ = sim.communicate(timeout=budget)
        report = json.loads(out.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        sim.kill()
        sim.wait()
        report = None
    sub.stdin.write("stop\n")
    sub.stdin.flush()
    sub.stdout.readline()
    sub.wait(60)
    mosquitto, sim_wall = _cpu_s(broker) - mosquitto, time.monotonic() - sim_wall
    shutil.rmtree(os.path.join(tmp, "boards-%d" % n), ignore_errors=True)
    if report is None:  # overloaded past its time budget: a failed step
        os.remove(arrivals)
        return {"n": n, "passed": False, "timed_out_s": round(budget), "on_time_pct": 0.0, "received_pct": 0.0,
                "note": "the sim process did not finish its run within %d s (overloaded)" % budget}
    result = analyse(report, arrivals)
    os.remove(arrivals)
    reboots = sum(1 for b in report["boots"].values() if b > 1)
    step = {
        "n": n, **result, "reboots": reboots, "crashed": report["crashed"],
        "rss_mb": round(report["rss_mb"], 1), "rss_per_board_mb": round(report["rss_mb"] / n, 3),
        "cpu_per_board_s": round(report["cpu_s"] / report["wall_s"] / n * 1000, 4),  # ms CPU per board-second
        "cpu_pct": round(100 * report["cpu_s"] / report["wall_s"], 1),
        "boot_cpu_s": round(report["boot_cpu_s"], 2), "threads": report["threads"], "load": round(report["load"], 2),
        "mosquitto_cpu_pct": round(100 * mosquitto / sim_wall, 1),  # over the sim's whole run, boot included
        "start_s": round(report["start_s"], 1), "window_late_s": round(report["late_s"], 1),
    }
    step["passed"] = step["on_time_pct"] >= ON_TIME_TARGET and step["received_pct"] >= 100.0 and step["lost_seq"] == 0
    return step


def _cpu_s(broker):
    """CPU seconds mosquitto has used so far (its whole life: the parent takes differences)."""
    try:
        with open("/proc/%d/stat" % broker._proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, IndexError, ValueError):
        return 0.0


def print_row(step):
    if "timed_out_s" in step:
        print("%6d  FAIL: %s" % (step["n"], step["note"]), flush=True)
        return
    print("%6d %9.3f %9.3f %5d %6.1f %7.1f %8.3f %10.4f %6.1f %6.2f %8s %s" % (
        step["n"], step["on_time_pct"], step["received_pct"], step["lost_seq"], step["delay_s"]["p999"] or 0,
        step["rss_mb"], step["rss_per_board_mb"], step["cpu_per_board_s"], step["cpu_pct"], step["load"],
        step["reboots"], "pass" if step["passed"] else "FAIL"), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="bench", choices=("bench", "_sim", "_sub"))
    parser.add_argument("--n", default=None, help="comma-separated fleet sizes (default: %s)" % ",".join(map(str, QUICK_N)))
    parser.add_argument("--search", action="store_true", help="50, 100, 200, ... until a size fails, then bisect once")
    parser.add_argument("--start", type=int, default=50)
    parser.add_argument("--warmup-s", type=float, default=None, help="after the last power-on; default max(30, 0.04 N)")
    parser.add_argument("--measure-s", type=float, default=60.0)
    parser.add_argument("--grace-s", type=float, default=12.0)
    parser.add_argument("--vib-s", type=float, default=30.0)
    parser.add_argument("--workdir")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fleet_size.json"))
    args = parser.parse_args()
    if args.role == "_sim":
        return role_sim(args)
    if args.role == "_sub":
        return role_sub(args)

    import tempfile

    from floorwatch.broker import Mosquitto

    steps = []
    print("fleet size: boards at one telemetry / %d s each (temp_s %d, vib_s %g), speed 1, plain mosquitto"
          % (INTERVAL_S, INTERVAL_S, args.vib_s))
    print("%6s %9s %9s %5s %6s %7s %8s %10s %6s %6s %8s" % (
        "N", "on-time%", "recv%", "lost", "p999s", "RSS MB", "MB/board", "ms CPU/b·s", "CPU%", "load", "reboots"))
    with tempfile.TemporaryDirectory(prefix="fleet-size-") as tmp, Mosquitto() as broker:
        def step(n):
            s = run_step(n, broker, args, tmp)
            steps.append(s)
            print_row(s)
            return s

        if args.search:
            n, good, bad = args.start, None, None
            while True:
                if step(n)["passed"]:
                    good, n = n, n * 2
                else:
                    bad = n
                    break
            if good is not None:
                step((good + bad) // 2)
        else:
            for n in [int(x) for x in args.n.split(",")] if args.n else QUICK_N:
                step(n)
    passed = [s["n"] for s in steps if s["passed"]]
    steps_sorted = sorted(steps, key=lambda s: s["n"])
    measured = [s for s in steps_sorted if "rss_mb" in s]
    for a, b in zip(measured, measured[1:]):
        b["marginal_rss_per_board_mb"] = round((b["rss_mb"] - a["rss_mb"]) / (b["n"] - a["n"]), 3)
    largest = max(passed) if passed else None
    print("largest N passing (on time >= %.1f %%, all received): %s" % (ON_TIME_TARGET, largest))
    for s in steps_sorted:
        if "marginal_rss_per_board_mb" in s:
            print("marginal RSS per board, %d boards on: %.3f MB" % (s["n"], s["marginal_rss_per_board_mb"]))
    result = {
        "bench": "fleet_size", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "cpu": _cpu_model()},
        "broker": "mosquitto, plain anonymous (floorwatch.broker.Mosquitto())",
        "intervals": {"temp_s": INTERVAL_S, "vib_s": args.vib_s, "diag_s": 60},
        "warmup_s": args.warmup_s or "max(30, 0.04 N) after the last power-on", "measure_s": args.measure_s, "target_on_time_pct": ON_TIME_TARGET,
        "largest_passing_n": largest, "steps": steps, "target_n": 10000,
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
