#!/usr/bin/env python3
"""`cmargin check` at a realistic shape: its wall time and peak RSS against the arrays'
bytes and against numpy loading the same file (SPEC.md §8.5, issue 19). A measurement, not a
test: nothing here asserts a time or a size.

The fixture is made by `cmargin generate --inputs realistic` in a temporary directory, its
implementation outputs filled in with the reference's (so every case passes and the check does
its full work), and deleted at the end. Each run is timed by /usr/bin/time -v (wall clock and
"Maximum resident set size"); the runs alternate (load, check, load, check, ...) so that
drifting load from other processes hits both alike; the medians are compared.

With --auto, `cmargin check --profile auto` is timed too, in the same alternation, and
compared with the plain check.

Usage: python3 scripts/check-scale.py [--shape 128,180855] [--dtype f32] [--reps 3] [--auto]
       [--cmargin target/release/cmargin] [-- extra cmargin check arguments]
(run from the repository root after `cargo build --release --bin cmargin`; needs numpy).
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

import numpy as np

LOAD = """
import sys, time, numpy as np
t = time.perf_counter()
d = np.load(sys.argv[1])
a = {k: d[k] for k in d.files}
print(time.perf_counter() - t)
"""

IMPORT = "import numpy"


def timed(cmd, expect_rc=0):
    """(wall seconds, peak RSS bytes, stdout) of one run under /usr/bin/time -v."""
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    if p.returncode != expect_rc:
        sys.exit(f"check-scale: {' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-500:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", p.stderr).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = 60 * secs + float(part)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) * 1024
    return secs, rss, p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="128,180855", help="N,C")
    ap.add_argument("--dtype", default="f32")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cmargin", default="target/release/cmargin")
    ap.add_argument("--auto", action="store_true", help="also time check --profile auto")
    ap.add_argument("extra", nargs="*", help="more `cmargin check` arguments (after --)")
    a = ap.parse_args()
    if not os.path.exists(a.cmargin):
        sys.exit(f"check-scale: {a.cmargin} not found: cargo build --release --bin cmargin")
    n, c = (int(x) for x in a.shape.split(","))

    tmp = tempfile.mkdtemp(prefix="check-scale-")
    try:
        path = os.path.join(tmp, "fixture.npz")
        gen = [a.cmargin, "generate", "--shape", f"{n},{c}", "--dtype", a.dtype,
               "--inputs", "realistic", "-o", path]
        g_wall, g_rss, _ = timed(gen)
        # The implementation's outputs := the reference's (uncompressed, as generate writes).
        d = dict(np.load(path))
        d["impl_forward"] = d["forward"]
        d["impl_backward"] = d["backward"]
        np.savez(path, **d)
        arrays = sum(v.nbytes for v in d.values() if v.dtype.kind in "fiu")
        del d
        file_bytes = os.path.getsize(path)

        _, base_rss, _ = timed([sys.executable, "-c", IMPORT])
        loads, checks, autos = [], [], []
        for _ in range(a.reps):
            loads.append(timed([sys.executable, "-c", LOAD, path]))
            checks.append(timed([a.cmargin, "check", path] + a.extra))
            if a.auto:
                autos.append(timed([a.cmargin, "check", "--profile", "auto", path] + a.extra))
    finally:
        shutil.rmtree(tmp)

    med = lambda xs: statistics.median(xs)
    lw, lr = med([t for t, _, _ in loads]), max(r for _, r, _ in loads)
    li = med([float(o) for _, _, o in loads])
    cw, cr = med([t for t, _, _ in checks]), max(r for _, r, _ in checks)
    elems = n * c
    mb = lambda b: f"{b / 1e6:,.1f} MB"
    print(f"shape {n} x {c} {a.dtype}, {elems:,} elements per array; file {mb(file_bytes)}, "
          f"numeric arrays {mb(arrays)}")
    print(f"generate: {g_wall:.2f} s, peak RSS {mb(g_rss)}")
    print("numpy load (all members): " + ", ".join(f"{t:.2f} s" for t, _, _ in loads)
          + " (process); " + ", ".join(f"{float(o):.2f} s" for _, _, o in loads)
          + f" (np.load and reading every member, in-process); peak RSS {mb(lr)} "
          f"(python + numpy alone: {mb(base_rss)})")
    print("cmargin check:            " + ", ".join(f"{t:.2f} s" for t, _, _ in checks)
          + f"; peak RSS {mb(cr)}")
    print(f"check / load wall time (medians): {cw / li:.2f}x the in-process load, "
          f"{cw / lw:.2f}x the load's whole process")
    print(f"check peak RSS / arrays' bytes: {cr / arrays:.2f}x ({cr / elems:.0f} bytes per "
          f"element of one array); numpy load's peak RSS / arrays' bytes: {lr / arrays:.2f}x")
    if autos:
        aw, ar = med([t for t, _, _ in autos]), max(r for _, r, _ in autos)
        print("cmargin check --profile auto: " + ", ".join(f"{t:.2f} s" for t, _, _ in autos)
              + f"; peak RSS {mb(ar)}; auto / check wall time (medians) {aw / cw:.2f}x, "
              f"peak RSS {ar / cr:.2f}x")
    print("check's report (last run):")
    print("  " + checks[-1][2].strip().replace("\n", "\n  "))


if __name__ == "__main__":
    main()
