"""Write docs/benchmarks.md from the JSON the bench scripts left in bench/results/.

`make bench` runs the benches, then this. Each bench keeps its own JSON layout; the adapters below
pick each one's headline figures (what was measured, the target, whether it was met). A bench whose
JSON is missing is listed as not run. The machine named is the one this runs on, which under `make
bench` is the one the figures were measured on.

    .venv/bin/python bench/report.py [--results bench/results] [--out docs/benchmarks.md]
"""

import argparse
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _vibration(d):
    return [("vibration window in the MicroPython VM: fuel of the plain float version / ours",
             "%.2fx" % d["fuel_ratio"], None, None),
            ("heap one window allocates: ours vs the float version",
             "%d B vs %.1f MB" % (d["analyzer"]["heap_bytes"], d["baseline"]["heap_bytes"] / 1e6), None, None)]


def _provision(d):
    return [("provision: %d boards in parallel / 1 board (wall time)" % d["boards"],
             "%.2fx (%.1f s / %.1f s)" % (d["ratio"], d["many_boards_s"], d["one_board_s"]),
             "<= %.1fx" % d["target_ratio"], d["met"])]


def _fleet_monitor(d):
    return [("fleet monitor records/s / a bare paho subscriber's",
             "%.2f (%d / %d)" % (d["ratio"], d["monitor_records_per_s"], d["bare_records_per_s"]),
             ">= %.1f" % d["target_ratio"], d["met"])]


def _chaos(d):
    t = d["totals"]
    return [("chaos campaign, %d boards x %d h: records silently lost" % (d["boards"], d["duration_s"] // 3600),
             "%d of %d produced (%d s wall)" % (t["silently_lost"], t["produced"], d["wall_s"]), "0",
             t["silently_lost"] == 0)]


def _wire_bytes(d):
    rows = []
    for label, row in d["per_sample"].items():
        rows.append(("PUBLISH bytes per sample, %s: floorwatch / Tasmota-style" % label,
                     "%.2f (%.0f B / %.0f B)" % (row["ratio"], row["floorwatch"], row["tasmota_style"]),
                     "<= %.2f" % d["target_ratio"] if row["met"] is not None else "—", row["met"]))
    return rows


def _heap(d):
    t = d["targets"]
    rows = [("firmware heap in the MicroPython VM (.mpy), steady after gc.collect()",
             "%.1f KB (largest %.1f KB)" % (d["steady_bytes"] / 1024, d["steady_max_bytes"] / 1024),
             "<= %g KB" % (t["steady_bytes"] / 1024), d["steady_met"]),
            ("firmware heap, peak allocation of one full cycle", "%.1f KB" % (d["cycle_peak_bytes"] / 1024),
             "<= %g KB" % (t["cycle_bytes"] / 1024), d["cycle_met"])]
    if d.get("romfs"):
        rows.append(("firmware heap, steady, code run in place from a ROMFS image",
                     "%.1f KB" % (d["romfs"]["steady_bytes"] / 1024), "<= %g KB" % (t["steady_bytes"] / 1024),
                     d["romfs"]["steady_met"]))
    return rows


def _virtual_time(d):
    r = d["records"]
    return [("virtual time, one board through a day at the node's default intervals: speed-up",
             "%.0fx = %.2f simulated h per wall s (a day in %.0f s; %d of %d records received)"
             % (d["speedup"], d["sim_hours_per_wall_s"], d["wall_s"], r["received"], r["expected"]),
             ">= 3600 (read as 3600x; literally 3600 h/s)", d["target"]["as_speedup_3600x_met"])]


def _fleet_size(d):
    steps = d["steps"]
    passed = [s for s in steps if s["passed"]]
    best = max(passed, key=lambda s: s["n"]) if passed else None
    tried = ", ".join("%d over %d process%s %s" % (s["n"], s.get("processes", 1), "" if s.get("processes", 1) == 1 else "es",
                                                  "pass" if s["passed"] else "fail") for s in steps)
    return [("simulated boards in one `floorwatch sim` (worker processes as tried), real time, >= %g %% of telemetry on time"
             % d["target_on_time_pct"],
             "%s (tried: %s)" % (best["n"] if best else "none", tried), ">= %d" % d["target_n"],
             bool(best) and best["n"] >= d["target_n"]),
            ("memory per simulated board (RSS / N at the largest passing N)",
             "%.2f MB" % best["rss_per_board_mb"] if best else "-", None, None)]


# (results file, the script or make target that writes it, adapter)
BENCHES = (
    ("vibration.json", "bench/vibration.py", _vibration),
    ("provision.json", "bench/provision.py", _provision),
    ("fleet-monitor.json", "bench/fleet_monitor.py", _fleet_monitor),
    ("wire_bytes.json", "bench/wire_bytes.py", _wire_bytes),
    ("heap.json", "bench/heap.py", _heap),
    ("virtual_time.json", "bench/virtual_time.py", _virtual_time),
    ("fleet_size.json", "bench/fleet_size.py", _fleet_size),
    ("chaos-100x24h.json", "make bench-chaos", _chaos),
)


def machine():
    """The machine this runs on, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    try:
        memory = "%.1f GB RAM" % (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9)
    except (ValueError, OSError, AttributeError):
        memory = "RAM unknown"
    return "%s, %d cores, %s, %s %s, Python %s" % (cpu, os.cpu_count() or 0, memory, platform.system(),
                                                   platform.release(), platform.python_version())


def table(results_dir):
    lines = ["| figure | measured | target | met | from |", "|---|---|---|---|---|"]
    for name, source, adapt in BENCHES:
        path = results_dir / name
        if not path.exists():
            lines.append("| %s | not run | | | `%s` |" % (name, source))
            continue
        data = json.loads(path.read_text())
        stamp = ", " + data["date"][:10] if data.get("date") else ""  # file times say when git wrote it
        for figure, measured, target, met in adapt(data):
            verdict = "" if met is None else ("yes" if met else "**no**")
            lines.append("| %s | %s | %s | %s | `%s`%s |" % (figure, measured, target or "", verdict, source, stamp))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    text = "\n".join([
        "# Benchmarks",
        "",
        "Written by `bench/report.py` (the last step of `make bench`) from `bench/results/*.json`; what each",
        "bench measures and how is in [bench/README.md](../bench/README.md). Every figure is a measurement,",
        "met or not.",
        "",
        "Machine: %s." % machine(),
        "Written: %s." % datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "",
        table(args.results),
        "",
    ])
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
