#!/usr/bin/env python3
"""Independent numpy implementations with one constant off, or a form constant no preset has,
written from the published formula (not from this crate's reference), for tests/fit_numpy.rs.

Usage: fit_impls.py NAME FIXTURE.npz
Reads the fixture's `cos`, `labels`, `top_diff` (and `s`), computes forward and backward with
implementation NAME in the fixture's dtype, and writes `impl_forward` / `impl_backward` back.

Target entry c = cos[i, labels[i]]; label -1: row untouched. The stated parameters are
(1, 0.5, 0) (s as the fixture says); each implementation departs as its name says:
  pml_arcface_f32  ArcFace with pytorch-metric-learning's margin 28.6 degrees, np.radians(28.6)
                   = 0.49916 rad, in float32: theta = arccos(clip(c, -1, 1)), cos(theta + m).
  m2_off           the textbook layer in float64 with m2 = 0.5 * 1.0016 (0.16% off).
  s_off            the textbook layer with the scale 0.8% off: s * 1.008.
  deg_rounded      m2 read in degrees and converted with pi written as 3.14: m2 * 3.14 / 180.
  clamp_3e5        the textbook layer with c clipped to [-1 + 3e-5, 1 - 3e-5], gradient 0 outside.
  textbook         the correct unclamped layer: arccos(c), cos(theta + m2), m1 sin(phi)/sqrt(1-c^2).
  insightface_f32  insightface's ArcFace in float32 through the angle: th = cos(pi - m),
                   mm = sin(pi - m) * m; out = cos(theta + m) where c > th, else c - mm.
"""
import sys

import numpy as np


def textbook(c, m2, dt, lo=None, hi=None):
    one = dt.type(1.0)
    if lo is not None:
        cc = np.clip(c, dt.type(lo), dt.type(hi))
        inside = (c >= dt.type(lo)) & (c <= dt.type(hi))
    else:
        cc = c
        inside = np.ones_like(c, dtype=bool)
    theta = np.arccos(cc)
    phi = theta + dt.type(m2)
    out = np.cos(phi)
    factor = np.sin(phi) / np.sqrt((one - cc) * (one + cc))
    return out, np.where(inside, factor, dt.type(0.0))


def run(name, cos, labels, top, s):
    dt = cos.dtype
    fwd = cos.copy()
    bwd = top.copy()
    rows = np.nonzero(labels >= 0)[0]
    cols = labels[rows]
    c = cos[rows, cols]
    dy = top[rows, cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "pml_arcface_f32":
            out, factor = textbook(c, np.float32(np.radians(28.6)), dt, -1.0, 1.0)
        elif name == "m2_off":
            out, factor = textbook(c, 0.5 * 1.0016, dt)
        elif name == "s_off":
            out, factor = textbook(c, 0.5, dt)
            s = s * 1.008
        elif name == "deg_rounded":
            out, factor = textbook(c, 0.5 * 3.14 / 180.0, dt)
        elif name == "clamp_3e5":
            out, factor = textbook(c, 0.5, dt, -1.0 + 3e-5, 1.0 - 3e-5)
        elif name == "textbook":
            out, factor = textbook(c, 0.5, dt)
        elif name == "insightface_f32":
            m = dt.type(0.5)
            th = dt.type(np.cos(np.pi - 0.5))
            mm = dt.type(np.sin(np.pi - 0.5) * 0.5)
            theta = np.arccos(c)
            use = c > th
            out = np.where(use, np.cos(theta + m), c - mm)
            sin_t = np.sqrt((dt.type(1.0) - c) * (dt.type(1.0) + c))
            factor = np.where(use, np.sin(theta + m) / sin_t, dt.type(1.0))
        else:
            raise SystemExit(f"unknown implementation {name!r}")
    fwd[rows, cols] = out
    bwd[rows, cols] = dy * factor
    return (fwd * dt.type(s)).astype(dt), (bwd * dt.type(s)).astype(dt)


def main():
    name, path = sys.argv[1], sys.argv[2]
    f = dict(np.load(path))
    s = float(f["s"]) if "s" in f else 1.0
    fwd, bwd = run(name, f["cos"], f["labels"], f["top_diff"], s)
    f["impl_forward"], f["impl_backward"] = fwd, bwd
    np.savez(path, **f)


if __name__ == "__main__":
    main()
