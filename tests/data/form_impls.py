#!/usr/bin/env python3
"""Independent numpy implementations of the forms real code uses outside the acos/cos
combined margin, written from each library's published code (not from this crate's
reference), for tests/forms.rs. All in float64, m1 = 1.

Usage: form_impls.py NAME FIXTURE.npz M2 M3 [CONSTANT]
Reads the fixture's `cos`, `labels`, `top_diff` (and `s`), writes `impl_forward` and
`impl_backward` (np.savez, the other arrays unchanged; `cos` may be rewritten where a form
needs inputs exactly at a bound). The backward is what reverse-mode autodiff of the
forward gives, term by term, with IEEE arithmetic (0*inf = NaN), as torch/JAX compute it.

Trig-identity heads (target c; phi = c*cos(m) - sin_t*sin(m) - m3):
  trig_unguarded    sin_t = sqrt(1 - c^2)                       (OML, pml-style layers)
  trig_clamp        sin_t = sqrt(clip(1 - c^2, 0, 1))            (insightface-style guard)
  trig_eps          sin_t = sqrt(1 - c^2 + EPS)                  (PaddleClas: EPS = 1e-6)
  trig_safe         sin_t = sqrt(max((1-c)(1+c), 0)), zero tangent where the argument <= 0
  *_whole           the same form evaluated on the whole matrix, the target picked by
                    where(one_hot, phi, cos): non-targets get d = 1 + 0*dphi/dc.
Fallbacks past th = cos(pi - m) (margin branch cos(acos(c) + m) where c > th):
  fallback_offset   c - (1 + cos(pi - m))                        (WeSpeaker, ESPnet)
  fallback_plain    c                                            (no margin past th)
Others:
  output_clip       clip(cos(acos(c) + m) - m3, -B, B), zero gradient outside (facelib)
  f32_constants     th/mm ArcFace with th and mm rounded to float32 (mmpretrain's buffers)
  jax_clip          JAX: theta = arccos(jnp.clip(c, -1 + 1e-7, 1 - 1e-7)); the derivative
                    of jnp.clip at the bound is 1/2 (minimum/maximum split ties); some
                    targets are set exactly at the bounds.
"""
import sys

import numpy as np


def guarded(c, guard, eps):
    """(sin_t, d sin_t / dc as autodiff computes it, singular) per guard."""
    x = 1.0 - c * c
    if guard == "unguarded":
        s = np.sqrt(x)
        return s, -c / s, ~(x > 0)
    if guard == "clamp":
        xc = np.clip(x, 0.0, 1.0)
        s = np.sqrt(xc)
        # sqrt's backward 1/(2s), then the clip's: passes inside [0, 1] (bounds included).
        d = np.where((x >= 0.0) & (x <= 1.0), (1.0 / (2.0 * s)) * (-2.0 * c), 0.0)
        return s, d, (x == 0.0)
    if guard == "eps":
        xe = x + eps
        s = np.sqrt(xe)
        return s, -c / s, ~(xe > 0)
    if guard == "safe":
        y = (1.0 - c) * (1.0 + c)
        pos = y > 0.0
        s = np.where(pos, np.sqrt(np.where(pos, y, 1.0)), 0.0)
        d = np.where(pos, -c / np.where(pos, s, 1.0), 0.0)
        return s, d, np.zeros_like(c, dtype=bool)
    raise SystemExit(f"unknown guard {guard!r}")


def run(name, cos, labels, top, m, m3, const):
    fwd = cos.copy()
    bwd = top.copy()
    rows = np.nonzero(labels >= 0)[0]
    cols = labels[rows]
    cm, sm = np.cos(m), np.sin(m)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if name.startswith("trig_"):
            guard = name[len("trig_"):].replace("_whole", "")
            eps = const if guard == "eps" else 0.0
            c = cos[rows, cols]
            s, d, _ = guarded(c, guard, eps)
            out = c * cm - s * sm - m3
            factor = cm - sm * d
            if name.endswith("_whole"):
                # Non-targets: where() sends them cos, and a zero gradient into phi, whose
                # backward is 0*dphi/dc: NaN where dphi/dc is not finite.
                _, dall, _ = guarded(cos, guard, eps)
                zero_path = 0.0 * (cm - sm * dall)
                bwd = top * (1.0 + zero_path)
        elif name in ("fallback_offset", "fallback_plain", "f32_constants", "output_clip"):
            c = cos[rows, cols]
            theta = np.arccos(c)
            margin = np.cos(theta + m) - m3
            dmargin = np.sin(theta + m) / np.sqrt((1.0 - c) * (1.0 + c))
            th = np.cos(np.pi - m)
            if name == "fallback_offset":
                fb = c - (1.0 + np.cos(np.pi - m))
            elif name == "fallback_plain":
                fb = c
            elif name == "f32_constants":
                th = float(np.float32(th))
                fb = c - float(np.float32(np.sin(np.pi - m) * m)) - m3
            else:
                fb = margin
            use = c > th
            out = np.where(use, margin, fb)
            factor = np.where(use, dmargin, 1.0)
            if name == "output_clip":
                inside = (out >= -const) & (out <= const)
                out = np.clip(out, -const, const)
                factor = np.where(inside, factor, 0.0)
        elif name == "jax_clip":
            lo, hi = -1.0 + 1e-7, 1.0 - 1e-7
            # Put a few targets exactly at the bounds (and one just inside each).
            k = len(rows)
            for i, v in zip(range(0, k, max(k // 6, 1)), [hi, lo, hi, lo, np.nextafter(hi, 0), np.nextafter(lo, 0)]):
                cos[rows[i], cols[i]] = v
            fwd = cos.copy()
            c = cos[rows, cols]
            cc = np.minimum(np.maximum(c, lo), hi)
            dclip = np.where((c > lo) & (c < hi), 1.0, np.where((c == lo) | (c == hi), 0.5, 0.0))
            theta = np.arccos(cc)
            out = np.cos(theta + m) - m3
            factor = np.sin(theta + m) / np.sqrt((1.0 - cc) * (1.0 + cc)) * dclip
        else:
            raise SystemExit(f"unknown implementation {name!r}")
    fwd[rows, cols] = out
    bwd[rows, cols] = top[rows, cols] * factor
    return cos, fwd, bwd


def main():
    name, path = sys.argv[1], sys.argv[2]
    m, m3 = float(sys.argv[3]), float(sys.argv[4])
    const = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    f = dict(np.load(path))
    s = float(f["s"]) if "s" in f else 1.0
    cos, fwd, bwd = run(name, f["cos"].copy(), f["labels"], f["top_diff"], m, m3, const)
    f["cos"] = cos
    f["impl_forward"], f["impl_backward"] = fwd * s, bwd * s
    np.savez(path, **f)


if __name__ == "__main__":
    main()
