#!/usr/bin/env python3
"""check_layer from Python against the same check in Rust (benches/check_layer.rs), on one
N×C f32 layer (default 4096 × 10000, 82 M compared elements): the implementation's outputs
are the reference rounded to f32, the profile `recommended`, the inputs `generate(...,
inputs="uniform", seed=1)` in both. Prints each run's seconds, the medians and their ratio
(target: Python ≤ 1.2 × Rust). A benchmark, not a test: nothing here asserts a time.

Usage: python scripts/bench-python-overhead.py [--n 4096] [--c 10000] [--reps 3]
(run from the repository root, in a venv with the package installed: scripts/test-all.sh).
"""

import argparse
import re
import statistics
import subprocess
import sys
import time

import combined_margin as cm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--c", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()

    cmd = ["cargo", "bench", "--quiet", "--bench", "check_layer", "--",
           "--n", str(a.n), "--c", str(a.c), "--reps", str(a.reps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rust = [float(x) for x in re.findall(r"seconds: ([0-9.]+)", out)]
    print(f"rust   check ({a.n} x {a.c} f32): " + ", ".join(f"{t:.3f}" for t in rust) + " s")

    fx = cm.generate(profile="recommended", shape=(a.n, a.c), inputs="uniform", seed=1)
    cos, labels, top, fwd, bwd = fx.cos, fx.labels, fx.top_diff, fx.forward, fx.backward
    del fx
    py = []
    for _ in range(a.reps):
        t = time.perf_counter()
        r = cm.check_layer(cos, labels, fwd, bwd, top, profile="recommended", name="bench")
        py.append(time.perf_counter() - t)
        assert r.passed, str(r)
        del r
    print(f"python check_layer:              " + ", ".join(f"{t:.3f}" for t in py) + " s")
    mr, mp = statistics.median(rust), statistics.median(py)
    print(f"median: rust {mr:.3f} s, python {mp:.3f} s, ratio python/rust = {mp / mr:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
