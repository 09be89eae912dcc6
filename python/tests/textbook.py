"""Implementations of the combined-margin layer written from the published formulas, in
numpy, independently of the crate (nothing here calls combined_margin). The correct one is
the ``recommended`` profile as SPEC.md §3.6 states it; the planted bugs are each one
realistic mistake away from it.

    target (j = y):  φ = clamp(m1·acos(clamp(c, −1, 1)) + m2, 0, π),  out = cos φ − m3
                     d out / d c = m1·sin φ / sqrt(1 − c²), 0 where a clamp is active,
                     the limit at c = ±1 (m1² at c = 1 when m2 = 0, else +∞), clipped to [0, 16]
    other entries:   out = c, d out / d c = 1;  rows with label −1: unchanged
    (m1, m2) = (1, 0): out = clamp(c, −1, 1) − m3 exactly, factor 1 inside (the shortcut)
"""

from __future__ import annotations

import numpy as np

FACTOR_MAX = 16.0


def recommended(cos, labels, top_diff, m1=1.0, m2=0.5, m3=0.0, s=None, *, bug=None):
    """forward, backward of the recommended profile in the dtype of ``cos``; ``bug`` plants
    one named mistake (see BUGS)."""
    dt = cos.dtype.type
    labels = np.asarray(labels).reshape(-1)
    out = cos.copy()
    grad = top_diff.copy()
    rows = np.arange(cos.shape[0]) if bug == "ignore-not-skipped" else np.nonzero(labels != -1)[0]
    cols = labels[rows] % cos.shape[1] if bug == "ignore-not-skipped" else labels[rows]
    if bug == "label-off-by-one":
        cols = (cols + 1) % cos.shape[1]
    c = cos[rows, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        if m1 == 1.0 and m2 == 0.0:
            # The shortcut skips the angle, not the input clamp: flat outside [−1, 1].
            cc = np.clip(c, dt(-1.0), dt(1.0))
            o = cc - dt(m3)
            f = np.where(c != cc, dt(0.0), dt(1.0))
        else:
            eps = 1e-3 if bug == "eps-1e-3" else 0.0
            lo, hi = dt(-1.0 + eps), dt(1.0 - eps)
            cc = np.clip(c, lo, hi)
            theta = np.arccos(cc)
            phi = dt(m1) * theta + dt(m2)
            if bug == "no-angle-clamp":
                phic, flat = phi, np.zeros(c.shape, bool)
            else:
                flat = (phi < 0) | (phi > dt(np.pi))
                phic = np.clip(phi, dt(0.0), dt(np.pi))
            o = np.cos(phic) - dt(0.0 if bug == "m3-ignored" else m3)
            # (1 − c)(1 + c): exact in floating point near ±1, where 1 − c² cancels.
            f = dt(m1) * np.sin(phic) / np.sqrt((dt(1) - cc) * (dt(1) + cc))
            at_pole = np.abs(cc) == 1
            limit = dt(m1 * m1) if m2 == 0.0 else dt(np.inf)
            f = np.where(at_pole & (cc == 1), limit, f)
            f = np.where(at_pole & (cc == -1) & ~flat, dt(np.inf), f)
            f = np.where(flat | (c != cc), dt(0.0), f)
            clip_hi = 1.0 if bug == "clip-0-1" else FACTOR_MAX
            f = np.clip(f, dt(0.0), dt(clip_hi))
        if bug == "straight-through":
            f = np.ones_like(f)
        if bug == "sign-flip":
            f = -f
        out[rows, cols] = o
        grad[rows, cols] = top_diff[rows, cols] * f
    if s is not None:
        k = dt(s * s) if bug == "scale-twice" else dt(s)
        out = out * k
        grad = grad * k
    if bug == "f16-output":
        out = out.astype(np.float16).astype(cos.dtype)
        grad = grad.astype(np.float16).astype(cos.dtype)
    return out, grad


#: planted bug -> (params, s, the deviation the checker must name)
BUGS = {
    "no-angle-clamp": ((1.0, 0.5, 0.0), None, "angle-policy-differs"),
    "eps-1e-3": ((1.0, 0.5, 0.0), None, "input-clamp-differs"),
    "clip-0-1": ((1.0, 0.5, 0.0), None, "factor-clip-differs"),
    "sign-flip": ((1.0, 0.5, 0.0), None, "gradient-sign-flipped"),
    "straight-through": ((1.0, 0.5, 0.0), None, "gradient-detached"),
    "m3-ignored": ((1.0, 0.3, 0.2), None, "margin-term-ignored"),
    "ignore-not-skipped": ((1.0, 0.5, 0.0), None, "ignore-label-not-honoured"),
    "label-off-by-one": ((1.0, 0.5, 0.0), None, "wrong-target-column"),
    "scale-twice": ((1.0, 0.5, 0.0), 64.0, "scale-mismatch"),
    "f16-output": ((1.0, 0.5, 0.0), None, "reduced-precision"),
}
