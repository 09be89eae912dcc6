#!/usr/bin/env python3
"""Validate a numpy implementation of the combined margin with the cmargin CLI, end to end.
(examples/validate_numpy.py does the same in-process with the Python package.)

The loop a user runs for their own implementation:
  1. `cmargin generate` writes .npz fixtures (inputs, a top_diff, the reference outputs);
  2. a numpy-only implementation of the formula computes forward and backward;
  3. its outputs go back into the fixture as `impl_forward` / `impl_backward` (np.savez);
  4. `cmargin check` validates them against the profile with the tolerance model.

It also plants a typical porting bug (the Caffe GPU angle clamp forgotten) to show that the
check rejects it. Exit status 0 when every verdict is the expected one.

Usage: python3 examples/validate_numpy_cli.py [--cmargin PATH] [--workdir DIR]
(default cmargin: $CMARGIN, else `cargo run --release --quiet --`).
"""
import argparse
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np


def combined_margin(cos, labels, top, m1, m2, m3, s, *, clamp_eps=None, angle_hi=None,
                    factor_clip=None, float_theta=False):
    """Forward and backward of the combined margin in the arrays' own precision.

    Target entry c = cos[i, labels[i]] (labels == -1: row ignored):
      theta = acos(c), phi = m1*theta + m2, out = cos(phi) - m3,
      d out / d c = m1 * sin(phi) / sqrt(1 - c^2);
    every other entry passes through. Everything is then scaled by s.
    Optional patches, as the Caffe GPU kernel has them: clamp c to [-1+eps, 1-eps],
    phi to [0, angle_hi], the factor to factor_clip, and theta rounded to float32.
    """
    t = cos.dtype.type
    fwd = cos.copy()
    bwd = top.copy()
    rows = np.nonzero(labels >= 0)[0]
    cols = labels[rows]
    c = cos[rows, cols]
    if clamp_eps is not None:
        c = np.clip(c, t(-1) + t(clamp_eps), t(1) - t(clamp_eps))
    theta = np.arccos(c)
    if float_theta:
        theta = theta.astype(np.float32).astype(cos.dtype)
    phi = t(m1) * theta + t(m2)
    if angle_hi is not None:
        phi = np.clip(phi, t(0), t(angle_hi))
    fwd[rows, cols] = np.cos(phi) - t(m3)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = t(m1) * np.sin(phi) / np.sqrt(t(1) - c * c)
    if factor_clip is not None:
        factor = np.clip(factor, t(factor_clip[0]), t(factor_clip[1]))
    bwd[rows, cols] = top[rows, cols] * factor
    return fwd * t(s), bwd * t(s)


CAFFE_GPU = dict(clamp_eps=1e-4, angle_hi=np.pi - 1e-4, factor_clip=(0.0, 2.0), float_theta=True)

# (profile, params, generate options, patches of the numpy implementation, expected exit code)
SCENARIOS = [
    ("analytic", (1.0, 0.5, 0.0), ["--inputs", "uniform", "--shape", "64,100", "--scale", "64"], {}, 0),
    ("analytic", (1.0, 0.3, 0.2), ["--inputs", "realistic", "--shape", "32,1000", "--scale", "64"], {}, 0),
    ("caffe-gpu", (1.0, 0.5, 0.0), ["--inputs", "edges"], CAFFE_GPU, 0),
    ("caffe-gpu", (1.0, 0.3, 0.2), ["--inputs", "uniform", "--shape", "64,10"], CAFFE_GPU, 0),
    # The porting bug: the angle clamp forgotten. The check must reject it (exit 1).
    ("caffe-gpu", (1.0, 0.5, 0.0), ["--inputs", "edges"], dict(CAFFE_GPU, angle_hi=None), 1),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cmargin", default=os.environ.get("CMARGIN"))
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    cmargin = shlex.split(args.cmargin) if args.cmargin else ["cargo", "run", "--release", "--quiet", "--"]
    workdir = args.workdir or tempfile.mkdtemp(prefix="cmargin-numpy-")
    os.makedirs(workdir, exist_ok=True)

    ok = True
    print(f"{'#':>2}  {'profile':<10} {'(m1, m2, m3)':<16} {'inputs':<10} {'implementation':<22} {'exit':>4}  verdict")
    for k, (profile, (m1, m2, m3), gen, patches, want) in enumerate(SCENARIOS):
        path = os.path.join(workdir, f"case{k}.npz")
        subprocess.run(cmargin + ["generate", "--profile", profile, "--params", f"{m1},{m2},{m3}",
                                  "--dtype", "f32", "--seed", str(100 + k), "--force", "-o", path] + gen,
                       check=True, stdout=subprocess.DEVNULL)
        f = dict(np.load(path))
        s = float(f["s"]) if "s" in f else 1.0
        fwd, bwd = combined_margin(f["cos"], f["labels"], f["top_diff"], m1, m2, m3, s, **patches)
        f["impl_forward"], f["impl_backward"] = fwd, bwd
        np.savez(path, **f)
        r = subprocess.run(cmargin + ["check", path], capture_output=True, text=True)
        impl = "numpy" if patches == CAFFE_GPU or not patches else "numpy, angle clamp lost"
        good = r.returncode == want
        ok &= good
        print(f"{k:>2}  {profile:<10} {f'({m1}, {m2}, {m3})':<16} {gen[1]:<10} {impl:<22} {r.returncode:>4}  "
              f"{'as expected' if good else 'UNEXPECTED'}")
        if not good or want != 0:
            for line in r.stdout.splitlines()[:6]:
                print("      " + line)
            if r.stderr.strip():
                print("      " + r.stderr.strip())
    print("all verdicts as expected" if ok else "some verdicts were not as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
