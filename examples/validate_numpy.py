#!/usr/bin/env python3
"""Validate a numpy implementation of the combined margin in-process, with the Python package.

The same loop as examples/validate_numpy_cli.py (which drives the `cmargin` CLI through
files), without files or subprocesses:
  1. `combined_margin.generate` makes the inputs (cos, labels, top_diff) in memory;
  2. a numpy-only implementation of the formula computes forward and backward;
  3. `combined_margin.check_layer` checks them against the profile with the tolerance model
     and returns a Report whose text is what `cmargin check` prints.

It plants a typical porting bug (the Caffe GPU angle clamp forgotten) to show that the
check rejects it and names why. Exit status 0 when every verdict is the expected one.

Usage: python3 examples/validate_numpy.py   (after `pip install ./python`)
"""
import sys

import numpy as np

import combined_margin as cm


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
    ("analytic", (1.0, 0.5, 0.0), dict(inputs="uniform", shape=(64, 100), s=64.0), {}, 0),
    ("analytic", (1.0, 0.3, 0.2), dict(inputs="realistic", shape=(32, 1000), s=64.0), {}, 0),
    ("caffe-gpu", (1.0, 0.5, 0.0), dict(inputs="edges"), CAFFE_GPU, 0),
    ("caffe-gpu", (1.0, 0.3, 0.2), dict(inputs="uniform", shape=(64, 10)), CAFFE_GPU, 0),
    # The porting bug: the angle clamp forgotten. The check must reject it (exit code 1).
    ("caffe-gpu", (1.0, 0.5, 0.0), dict(inputs="edges"), dict(CAFFE_GPU, angle_hi=None), 1),
]


def main():
    ok = True
    print(f"{'#':>2}  {'profile':<10} {'(m1, m2, m3)':<16} {'inputs':<10} {'implementation':<22} {'exit':>4}  verdict")
    for k, (profile, params, gen, patches, want) in enumerate(SCENARIOS):
        fx = cm.generate(profile=profile, params=params, dtype="f32", seed=100 + k, **gen)
        s = fx.s if fx.s is not None else 1.0
        fwd, bwd = combined_margin(fx.cos, fx.labels, fx.top_diff, *params, s, **patches)
        r = cm.check_layer(fx.cos, fx.labels, fwd, bwd, fx.top_diff, params=params, s=fx.s,
                           profile=profile, name=fx.name)
        impl = "numpy" if patches == CAFFE_GPU or not patches else "numpy, angle clamp lost"
        good = r.exit_code == want
        ok &= good
        print(f"{k:>2}  {profile:<10} {str(params):<16} {gen['inputs']:<10} {impl:<22} {r.exit_code:>4}  "
              f"{'as expected' if good else 'UNEXPECTED'}")
        if not good or want != 0:
            for line in str(r).splitlines()[:6]:
                print("      " + line)
            print(f"      named: {', '.join(r.deviation_names) or 'nothing'}")
    print("all verdicts as expected" if ok else "some verdicts were not as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
