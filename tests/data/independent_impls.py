#!/usr/bin/env python3
"""Independent numpy implementations of the combined margin, written from the published
formulas (not from this crate's reference), for tests/independent.rs.

Usage: independent_impls.py NAME FIXTURE.npz M1 M2 M3
Reads the fixture's `cos`, `labels`, `top_diff` (and `s` if present), computes forward and
backward with implementation NAME in float64, and writes them back as `impl_forward` /
`impl_backward` (np.savez, the other arrays unchanged).

Implementations (target entry c = cos[i, labels[i]]; label -1: row untouched):
  textbook        theta = arccos(clip(c, -1, 1)); out = cos(m1*theta + m2) - m3;
                  d/dc = m1*sin(m1*theta + m2)/sqrt(1 - c^2) inside [-1, 1], 0 outside (clip).
  fallback_angle  insightface's th/mm ArcFace, but the fallback written through the angle:
                  out = cos(theta) - m*sin(m) where c <= th = cos(pi - m), so its derivative is
                  sin(theta)/sqrt(1 - c^2) (autograd through arccos and cos).
  autograd_chain  textbook values; the backward as autograd forms it, one rounded factor at a
                  time: ((-sin(phi)) * m1) * (-1/sqrt(1 - c^2)).
  sin_theta       no clamp; backward divided by sin of the saved theta:
                  dy*sin(m1*theta + m2)*m1/sin(theta) (OneFlow's CPU grad kernel's form).
  m2_degrees      the textbook layer with the bug of reading m2 in degrees: it uses
                  radians(m2).
"""
import sys

import numpy as np


def run(name, cos, labels, top, m1, m2, m3):
    fwd = cos.copy()
    bwd = top.copy()
    rows = np.nonzero(labels >= 0)[0]
    cols = labels[rows]
    c = cos[rows, cols]
    dy = top[rows, cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        if name in ("textbook", "autograd_chain", "m2_degrees"):
            m2u = np.deg2rad(m2) if name == "m2_degrees" else m2
            cc = np.clip(c, -1.0, 1.0)
            inside = (c >= -1.0) & (c <= 1.0)
            theta = np.arccos(cc)
            phi = m1 * theta + m2u
            out = np.cos(phi) - m3
            if name == "autograd_chain":
                d_cos = -np.sin(phi)
                d_theta = d_cos * m1
                d_c = d_theta * (-1.0 / np.sqrt(1.0 - cc * cc))
                factor = d_c
            else:
                factor = m1 * np.sin(phi) / np.sqrt((1.0 - cc) * (1.0 + cc))
            factor = np.where(inside, factor, 0.0)
        elif name == "fallback_angle":
            theta = np.arccos(c)
            th = np.cos(np.pi - m2)
            mm = np.sin(np.pi - m2) * m2
            margin = np.cos(theta + m2) - m3
            fallback = np.cos(theta) - mm - m3
            use = c > th
            out = np.where(use, margin, fallback)
            sin_t = np.sqrt((1.0 - c) * (1.0 + c))
            factor = np.where(use, np.sin(theta + m2) / sin_t, np.sin(theta) / sin_t)
        elif name == "sin_theta":
            theta = np.arccos(c)
            out = np.cos(theta * m1 + m2) - m3
            bwd[rows, cols] = dy * np.sin(theta * m1 + m2) * m1 / np.sin(theta)
            fwd[rows, cols] = out
            return fwd, bwd
        else:
            raise SystemExit(f"unknown implementation {name!r}")
    fwd[rows, cols] = out
    bwd[rows, cols] = dy * factor
    return fwd, bwd


def main():
    name, path = sys.argv[1], sys.argv[2]
    m1, m2, m3 = (float(x) for x in sys.argv[3:6])
    f = dict(np.load(path))
    s = float(f["s"]) if "s" in f else 1.0
    fwd, bwd = run(name, f["cos"], f["labels"], f["top_diff"], m1, m2, m3)
    f["impl_forward"], f["impl_backward"] = fwd * s, bwd * s
    np.savez(path, **f)


if __name__ == "__main__":
    main()
