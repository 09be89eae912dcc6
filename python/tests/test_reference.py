"""The reference through the API, against independent sources: the CLI's fixture files,
closed forms, the kink positions' formulas, and an independent numpy loss pipeline with
finite differences."""

import math

import numpy as np
import pytest

import combined_margin as cm


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("profile", cm.preset_names())
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_reference_is_bit_identical_to_the_cli_fixture(cmargin, tmp_path, profile, dtype):
    path = tmp_path / "case.npz"
    r = cmargin("generate", "--profile", profile, "--inputs", "edges", "--dtype", dtype,
                "--scale", "64", "-o", path)
    assert r.returncode == 0, r.stderr
    f = np.load(path)
    fwd, bwd = cm.reference(f["cos"], f["labels"], tuple(f["params"]), s=float(f["s"]),
                            profile=profile, top_diff=f["top_diff"])
    assert fwd.dtype == f["cos"].dtype
    assert np.array_equal(bits(fwd), bits(f["forward"]))
    assert np.array_equal(bits(bwd), bits(f["backward"]))


def test_reference_closed_forms_f64():
    rng = np.random.default_rng(7)
    cos = rng.uniform(-0.999, 0.999, size=(64, 5))
    labels = rng.integers(0, 5, size=64)
    labels[::9] = -1
    rows = np.nonzero(labels != -1)[0]
    c = cos[rows, labels[rows]]
    # CosFace under analytic (shortcut): c − m3, factor 1, exactly.
    fwd, bwd = cm.reference(cos, labels, (1.0, 0.0, 0.35), profile="analytic")
    assert np.array_equal(fwd[rows, labels[rows]], c - 0.35)
    assert np.array_equal(bwd, np.ones_like(cos))
    # ArcFace: c·cos m − sqrt(1 − c²)·sin m and its derivative, to a few ulps.
    m = 0.5
    fwd, bwd = cm.reference(cos, labels, (1.0, m, 0.0), profile="analytic")
    want_f = c * math.cos(m) - np.sqrt(1 - c * c) * math.sin(m)
    want_b = math.cos(m) + c * math.sin(m) / np.sqrt(1 - c * c)
    np.testing.assert_allclose(fwd[rows, labels[rows]], want_f, rtol=0, atol=1e-15)
    np.testing.assert_allclose(bwd[rows, labels[rows]], want_b, rtol=1e-13)
    # Everything else passes through untouched.
    mask = np.ones_like(cos, bool)
    mask[rows, labels[rows]] = False
    assert np.array_equal(fwd[mask], cos[mask])
    # Teeth: a wrong margin is not within these tolerances.
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(fwd[rows, labels[rows]], c * math.cos(0.49) - np.sqrt(1 - c * c) * math.sin(0.49), atol=1e-15)


def test_reference_takes_torch_like_inputs_and_labels_as_a_column():
    cos = np.linspace(-0.9, 0.9, 12, dtype=np.float32).reshape(4, 3)
    labels = np.array([[0], [1], [-1], [2]])
    a = cm.reference(cos, labels)
    b = cm.reference(cos, labels.reshape(-1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    # Lists go through numpy.asarray: Python floats are float64.
    c = cm.reference(cos.astype(np.float64).tolist(), labels.reshape(-1).tolist())
    d = cm.reference(cos.astype(np.float64), labels.reshape(-1))
    assert c[0].dtype == np.float64 and all(np.array_equal(x, y) for x, y in zip(c, d))


def test_kinks_at_their_formulas():
    m2 = 0.5
    ks = cm.kinks((1.0, m2, 0.0), "arcface-thmm")
    th = [k for k in ks if k["kind"] == "th/mm threshold"]
    assert len(th) == 1 and th[0]["c"] == pytest.approx(math.cos(math.pi - m2), abs=1e-15)
    ks = cm.kinks((1.0, m2, 0.0), "recommended")
    hi = [k for k in ks if k["kind"] == "angle clamp (phi = hi)"]
    assert hi and hi[0]["c"] == pytest.approx(math.cos(math.pi - m2), abs=1e-15)
    assert all(k["theta"] == pytest.approx(math.acos(k["c"])) for k in ks)
    ks = cm.kinks((1.0, m2, 0.0), "caffe-gpu", dtype="f32")
    lo = [k for k in ks if k["kind"] == "domain clamp (low)"]
    assert lo[0]["c"] == float(np.float32(-1 + 1e-4))


def numpy_pipeline(x, w, labels, m1, m2, m3, s):
    """Independent f64 loss: normalize, cos, margin (recommended: no clamp active on these
    inputs), scale, mean softmax CE over labelled rows."""
    xh = x / np.sqrt((x * x).sum(1, keepdims=True))
    wh = w / np.sqrt((w * w).sum(1, keepdims=True))
    cos = xh @ wh.T
    rows = np.nonzero(labels != -1)[0]
    z = cos.copy()
    t = np.clip(cos[rows, labels[rows]], -1, 1)
    z[rows, labels[rows]] = np.cos(np.clip(m1 * np.arccos(t) + m2, 0, np.pi)) - m3
    z *= s
    zr = z[rows]
    lse = np.log(np.exp(zr - zr.max(1, keepdims=True)).sum(1)) + zr.max(1)
    return (lse - zr[np.arange(len(rows)), labels[rows]]).mean()


def test_loss_reference_against_numpy_and_finite_differences():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 8))
    w = rng.normal(size=(5, 8))
    labels = np.array([0, 1, 2, -1, 4, 3])
    p, s = (1.0, 0.3, 0.2), 8.0
    r = cm.loss_reference(x, w, labels, p, s=s, profile="recommended")
    assert r["loss"] == pytest.approx(numpy_pipeline(x, w, labels, *p, s), rel=1e-13)
    assert r["valid"] == 5 and math.isnan(r["row_loss"][3])
    h = 1e-6
    for i, j in [(0, 0), (2, 5), (5, 7)]:
        xp, xm = x.copy(), x.copy()
        xp[i, j] += h
        xm[i, j] -= h
        fd = (numpy_pipeline(xp, w, labels, *p, s) - numpy_pipeline(xm, w, labels, *p, s)) / (2 * h)
        assert r["d_features"][i, j] == pytest.approx(fd, rel=1e-6, abs=1e-9)
    for i, j in [(1, 1), (4, 6)]:
        wp, wm = w.copy(), w.copy()
        wp[i, j] += h
        wm[i, j] -= h
        fd = (numpy_pipeline(x, wp, labels, *p, s) - numpy_pipeline(x, wm, labels, *p, s)) / (2 * h)
        assert r["d_weights"][i, j] == pytest.approx(fd, rel=1e-6, abs=1e-9)
