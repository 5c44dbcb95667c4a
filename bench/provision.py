"""How long `floorwatch provision` takes for 1 board and for 8 boards in parallel.

Issue 5's target: 8 virtual boards take at most 1.5x as long as one. Each board is blank, so every
one is flashed (a 1.5 MB MicroPython image through the ROM loader), deployed, and waited for online
on a real mosquitto. Every virtual board runs in its own `floorwatch vboard` process, as boards on
separate USB ports are separate hardware; the provisioner is the real command line, one process,
one thread per board. The figures are wall-clock seconds of the whole command, and the per-stage
seconds each board's inventory record gives.

    .venv/bin/python bench/provision.py [--boards 8] [--runs 2]

Prints the figures and writes bench/results/provision.json.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from floorwatch import esp_image
from floorwatch.broker import Mosquitto

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).resolve().parent / "results" / "provision.json"
TARGET_RATIO = 1.5


def start_vboards(count, workdir):
    procs, urls = [], []
    for index in range(count):
        proc = subprocess.Popen([str(BIN / "floorwatch"), "vboard", "--dir", str(workdir / ("vboard%d" % index)),
                                 "--seed", str(100 + index * 7)], stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        match = re.match(r"(socket://\S+)", line)
        if not match:
            raise SystemExit("a virtual board did not start: %r" % line)
        procs.append(proc)
        urls.append(match.group(1))
    return procs, urls


def one_run(count, image, workdir):
    workdir.mkdir(parents=True)
    with Mosquitto() as broker:
        fleet = workdir / "fleet.toml"
        fleet.write_text(
            '[fleet]\nsite = "bench"\nid_prefix = "b"\nfirmware = "%s"\n[wifi]\nssid = "floorwatch-sim"\n'
            'password = "sim-password"\n[broker]\nhost = "127.0.0.1"\nport = %d\n' % (image, broker.port))
        procs, urls = start_vboards(count, workdir)
        try:
            started = time.monotonic()
            done = subprocess.run([str(BIN / "floorwatch"), "provision", "--fleet", str(fleet), "--ports", ",".join(urls)],
                                  capture_output=True, text=True, timeout=600)
            seconds = time.monotonic() - started
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)
    records = [json.loads(line) for line in (workdir / "inventory.jsonl").read_text().splitlines()]
    if done.returncode != 0 or any(r["result"] != "ok" for r in records):
        raise SystemExit("provisioning %d boards failed:\n%s" % (count, done.stdout[-2000:] + done.stderr[-2000:]))
    return {"seconds": round(seconds, 2), "board_seconds": [r["seconds"] for r in records],
            "stages": {name: max(r["stages"][name] for r in records) for name in records[0]["stages"]}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boards", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="floorwatch-bench-") as tmp:
        tmp = Path(tmp)
        image = tmp / "ESP32_GENERIC-v1.24.1.bin"
        image.write_bytes(esp_image.build_micropython_image("esp32", size=1_500_000))
        runs = {1: [], args.boards: []}
        for run in range(args.runs):
            for count in runs:
                result = one_run(count, image, tmp / ("run%d-%d" % (run, count)))
                runs[count].append(result)
                print("%d board%s: %.1f s; slowest board's stages: %s" % (
                    count, "" if count == 1 else "s", result["seconds"],
                    ", ".join("%s %.1f s" % item for item in result["stages"].items())))
    one = statistics.median(r["seconds"] for r in runs[1])
    many = statistics.median(r["seconds"] for r in runs[args.boards])
    ratio = many / one
    report = {"boards": args.boards, "runs": args.runs, "image_bytes": 1_500_000, "cpus": os.cpu_count(),
              "one_board_s": one, "many_boards_s": many, "ratio": round(ratio, 2),
              "target_ratio": TARGET_RATIO, "met": ratio <= TARGET_RATIO, "detail": {str(k): v for k, v in runs.items()}}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print("median: 1 board %.1f s, %d boards %.1f s: %.2fx (target <= %.1fx: %s)"
          % (one, args.boards, many, ratio, TARGET_RATIO, "met" if report["met"] else "NOT met"))


if __name__ == "__main__":
    main()
