"""A pytest file to copy into your own test suite: checks a margin implementation in-process.

Replace `MyArcFace` (a torch module with a hand-written backward) and/or `my_numpy_margin`
(a plain function returning forward and backward) by your implementation, set PARAMS, S and
PROFILE to what it claims to implement, and run `pytest test_my_margin.py` (pytest is not a
dependency of the package: `pip install 'combined_margin[test]'`, or `pip install pytest`;
docs/frameworks.md has the same for JAX, TensorFlow and half precision). A failure prints
the same report as `cmargin check`: the worst element with its input, label and region, and
the named deviations.

The target logit is cos(m1·θ + m2) − m3 with θ = acos(cos) (m2 in radians, m3 in cosine
units), every logit times s. Here PROFILE = "recommended" (SPEC.md §3.6): cos clamped to
[−1, 1], m1·θ + m2 clamped to [0, π], gradient m1·sin φ / sqrt(1 − c²) clipped to [0, 16].
"""

import math

import numpy as np
import pytest

import combined_margin as cm

PARAMS = (1.0, 0.5, 0.0)  # ArcFace
S = 64.0
PROFILE = "recommended"


def my_numpy_margin(cos, labels, top_diff):
    """forward, backward (both times S) of the recommended profile, in cos's precision."""
    t = cos.dtype.type
    m1, m2, m3 = PARAMS
    fwd, bwd = cos.copy(), top_diff.copy()
    rows = np.nonzero(labels != -1)[0]
    cols = labels[rows]
    c = np.clip(cos[rows, cols], t(-1), t(1))
    phi_raw = t(m1) * np.arccos(c) + t(m2)
    phi = np.clip(phi_raw, t(0), t(math.pi))
    fwd[rows, cols] = np.cos(phi) - t(m3)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = t(m1) * np.sin(phi) / np.sqrt((t(1) - c) * (t(1) + c))
    factor = np.where(c == 1, t(m1 * m1) if m2 == 0 else t(np.inf), factor)
    flat = (phi_raw != phi) | (c != cos[rows, cols])  # a clamp is active: the forward is flat
    factor = np.clip(np.where(flat, t(0), factor), t(0), t(16))
    bwd[rows, cols] = top_diff[rows, cols] * factor
    return fwd * t(S), bwd * t(S)


def test_numpy_margin_conforms():
    cm.assert_conforms(my_numpy_margin, params=PARAMS, s=S, dtype="f32", profile=PROFILE)


def test_numpy_margin_fingerprints_as_the_profile():
    report = cm.check_module(my_numpy_margin, params=PARAMS, s=S, dtype="f32", profile="auto")
    assert report.profile.name == PROFILE, str(report)


try:
    import torch
except ImportError:  # the numpy tests above still run
    torch = None

if torch is None:

    @pytest.mark.skip(reason="the torch example needs torch (pip install torch)")
    def test_torch_module_conforms():
        pass

else:

    class _Margin(torch.autograd.Function):
        """The recommended profile with a hand-written backward (what a fused kernel would do)."""

        @staticmethod
        def forward(ctx, cos, labels):
            m1, m2, m3 = PARAMS
            rows = torch.nonzero(labels != -1).view(-1)
            cols = labels[rows]
            raw = cos[rows, cols]
            c = raw.clamp(-1.0, 1.0)
            phi_raw = m1 * torch.acos(c) + m2
            phi = phi_raw.clamp(0.0, math.pi)
            out = cos.clone()
            out[rows, cols] = torch.cos(phi) - m3
            factor = m1 * torch.sin(phi) / torch.sqrt((1 - c) * (1 + c))
            factor = torch.where(c == 1, torch.full_like(c, m1 * m1 if m2 == 0 else math.inf), factor)
            flat = (phi_raw != phi) | (c != raw)
            factor = torch.where(flat, torch.zeros_like(c), factor).clamp(0.0, 16.0)
            ctx.save_for_backward(rows, cols, factor)
            return out

        @staticmethod
        def backward(ctx, grad_out):
            rows, cols, factor = ctx.saved_tensors
            grad = grad_out.clone()
            grad[rows, cols] = grad_out[rows, cols] * factor
            return grad, None


    class MyArcFace(torch.nn.Module):
        def forward(self, cos, labels):
            return _Margin.apply(cos, labels.view(-1)) * S


    @pytest.mark.parametrize("dtype", ["f32", "f64"])
    def test_torch_module_conforms(dtype):
        cm.assert_conforms(MyArcFace(), params=PARAMS, s=S, dtype=dtype, profile=PROFILE)


    def test_torch_module_takes_labels_as_a_column():
        cm.assert_conforms(MyArcFace(), params=PARAMS, s=S, profile=PROFILE, labels_shape="N,1")
