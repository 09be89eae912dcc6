#!/usr/bin/env python3
"""The Python package's `check_layer` peak memory per element (python/src/memory.rs, SPEC.md
§7.9). A measurement, not a test: nothing here asserts a size.

Makes a fixture with `cmargin generate --inputs realistic` in a temporary directory (its
implementation outputs := the reference's, so every case passes and the check does its full
work), then, for each profile, runs `check_layer` in a fresh interpreter on the loaded arrays
and prints how much the process's peak RSS grew over the loaded inputs, in bytes per element
of one array, and the time. Deletes the directory at the end.

Usage: python3 scripts/python-check-memory.py [--shape 128,180855] [--profiles recommended,auto]
       [--cmargin target/release/cmargin]
(run from the repository root with the package installed: maturin build, pip install; needs
numpy; sets CMARGIN_MEMORY_LIMIT high enough for the shape's own figure not to refuse it).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

RUN = """
import resource, sys, time
import numpy as np
import combined_margin as cm
d = np.load(sys.argv[1])
a = {k: d[k] for k in ("cos", "labels", "top_diff", "impl_forward", "impl_backward")}
params = tuple(float(x) for x in d["params"][:3])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t = time.perf_counter()
r = cm.check_layer(a["cos"], a["labels"], a["impl_forward"], a["impl_backward"], a["top_diff"],
                   params=params, profile=sys.argv[2])
dt = time.perf_counter() - t
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
n = a["cos"].size
print(f"{sys.argv[2]:<12} {r.verdict:<5} {dt:6.2f} s   peak grew {grew / 1e6:9.1f} MB = "
      f"{grew / n:6.1f} bytes per element ({n} elements); counted: "
      f"{cm.check_layer_memory(n) / 1e6:.1f} MB")
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="128,180855", help="N,C")
    ap.add_argument("--profiles", default="recommended,auto")
    ap.add_argument("--cmargin", default="target/release/cmargin")
    a = ap.parse_args()
    import numpy as np

    tmp = tempfile.mkdtemp(prefix="python-check-memory-")
    try:
        path = os.path.join(tmp, "fixture.npz")
        subprocess.run([a.cmargin, "generate", "--shape", a.shape, "--dtype", "f32",
                        "--inputs", "realistic", "-o", path], check=True, capture_output=True)
        d = dict(np.load(path))
        d["impl_forward"], d["impl_backward"] = d["forward"], d["backward"]
        np.savez(path, **d)
        del d
        env = dict(os.environ, CMARGIN_MEMORY_LIMIT=str(10**15))
        for prof in a.profiles.split(","):
            r = subprocess.run([sys.executable, "-c", RUN, path, prof], env=env,
                               capture_output=True, text=True)
            print(r.stdout.strip() or f"{prof}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
