"""check_pipeline on a numpy loss head written from the formulas (SPEC.md §8.1, §8.2), with
the Caffe weight-gradient shortcut and a wrong loss planted."""

import numpy as np
import pytest

import combined_margin as cm


def head(x, w, labels, m1, m2, m3, s, *, weight_grad="true", dt=np.float64):
    """loss, d loss / d x, d loss / d w of normalize → cos → margin → s → softmax CE."""
    x, w = x.astype(dt), w.astype(dt)
    nx = np.sqrt((x * x).sum(1, keepdims=True))
    nw = np.sqrt((w * w).sum(1, keepdims=True))
    xh, wh = x / nx, w / nw
    cos = xh @ wh.T
    rows = np.nonzero(labels != -1)[0]
    cols = labels[rows]
    c = cos[rows, cols]
    theta = np.arccos(np.clip(c, -1, 1))
    phi = m1 * theta + m2
    z = cos.copy()
    z[rows, cols] = np.cos(phi) - m3
    z *= s
    zr = z[rows]
    mx = zr.max(1, keepdims=True)
    p = np.exp(zr - mx)
    p /= p.sum(1, keepdims=True)
    loss = (np.log(np.exp(zr - mx).sum(1)) + mx[:, 0] - zr[np.arange(len(rows)), cols]).mean()
    dz = np.zeros_like(cos)
    g = p.copy()
    g[np.arange(len(rows)), cols] -= 1
    dz[rows] = g / len(rows)
    dm = s * dz
    dcos = dm.copy()
    dcos[rows, cols] *= m1 * np.sin(phi) / np.sqrt(1 - c * c)
    dxh, dwh = dcos @ wh, dcos.T @ xh
    dx = (dxh - xh * (dxh * xh).sum(1, keepdims=True)) / nx
    dw = (dwh - wh * (dwh * wh).sum(1, keepdims=True)) / nw
    return loss, dx, (dw if weight_grad == "true" else dwh)


@pytest.fixture
def inputs():
    rng = np.random.default_rng(11)
    x, w = rng.normal(size=(16, 32)), rng.normal(size=(10, 32))
    labels = rng.integers(0, 10, size=16)
    labels[5] = -1
    return x, w, labels


@pytest.mark.parametrize("dt, dtype", [(np.float64, "f64"), (np.float32, "f32")])
def test_numpy_head_passes(inputs, dt, dtype):
    x, w, labels = inputs
    x, w = x.astype(dt), w.astype(dt)
    loss, dx, dw = head(x, w, labels, 1.0, 0.5, 0.0, 64.0, dt=dt)
    r = cm.check_pipeline(x, w, labels, loss, dx, dw, params=(1.0, 0.5, 0.0), s=64.0,
                          profile="analytic")
    assert r.passed and r.verdict == "PASS" and r.deviations == [], str(r)
    assert set(r.fractions) == {"loss", "d_features", "d_weights"}
    assert r.fractions["d_features"].shape == x.shape and r.fractions["d_weights"].shape == w.shape


def test_weight_gradient_wrt_normalized_is_named(inputs):
    x, w, labels = inputs
    w = w * 3.0  # unit-norm weights would make the two gradients agree
    loss, dx, dw = head(x, w, labels, 1.0, 0.5, 0.0, 64.0, weight_grad="normalized")
    r = cm.check_pipeline(x, w, labels, loss, dx, dw, params=(1.0, 0.5, 0.0), s=64.0,
                          profile="analytic")
    assert not r.passed and r.deviations == ["weight-gradient-wrt-normalized"], str(r)
    assert r.fractions["d_features"].max() <= 1  # only the weight gradient is off


def test_a_wrong_loss_fails(inputs):
    x, w, labels = inputs
    loss, dx, dw = head(x, w, labels, 1.0, 0.5, 0.0, 64.0)
    r = cm.check_pipeline(x, w, labels, loss * (1 + 1e-6), dx, dw, params=(1.0, 0.5, 0.0),
                          s=64.0, profile="analytic")
    assert not r.passed and r.fractions["loss"] > 1 and "FAIL     loss" in str(r)
