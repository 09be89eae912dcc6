"""Margin families through the Python contract (issue 17, SPEC.md §11, §7.9).

Every expected value here comes from numpy written in this file from the published formulas
(never from the package's reference): ElasticFace-Arc per-row margins (Boutros et al. 2022,
eq. 4), AdaFace with negative angular margins (Kim et al. 2022, eq. 10-12, head.py's clips),
Sub-center ArcFace with K = 3 and ties (Deng et al. 2020, eq. 1; torch.max's first index),
CurricularFace (Huang et al. 2020, eq. 8), the inter-top-k penalty (Zhao et al. 2021, eq. 6)
and A-Softmax with λ annealing (Liu et al. 2017, §3.4). Each correct head passes
``check_layer``; each planted bug fails with its named cause.
"""

import numpy as np
import pytest

import combined_margin as cm
from conftest import require_torch

N, C = 12, 10
M = 0.5


def draw(dt, seed=1717):
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, C, N)
    cos = rng.uniform(-0.6, 0.6, (N, C))
    cos[np.arange(N), labels] = rng.uniform(-0.2, 0.9, N)
    cos[0, labels[0]] = -0.95  # past ArcFace's th/mm threshold cos(π − m)
    cos[1, labels[1]] = -0.9
    top = rng.standard_normal((N, C))
    return rng, labels, cos.astype(dt), top.astype(dt)


def onehot(labels):
    h = np.zeros((N, C), bool)
    h[np.arange(N), labels] = True
    return h


def arcface_thmm(c, m, dt):
    """insightface's ArcFace: cos(θ + m) = c·cos m − sqrt(1 − c²)·sin m where c > cos(π − m),
    else c − m·sin m: (value, d value / d c, the margin branch before the fallback)."""
    cmg, smg = dt(np.cos(m)), dt(np.sin(m))
    th, mm = dt(np.cos(np.pi - m)), dt(np.sin(np.pi - m) * m)
    sine = np.sqrt(dt(1) - c * c)
    phi = c * cmg - sine * smg
    on = c > th
    return np.where(on, phi, c - mm), np.where(on, cmg + smg * c / sine, dt(1)), phi


def with_target(cos, top, labels, value, deriv):
    fwd, bwd = cos.copy(), top.copy()
    fwd[np.arange(N), labels] = value
    bwd[np.arange(N), labels] = top[np.arange(N), labels] * deriv
    return fwd, bwd


# ---- heads -------------------------------------------------------------------------------


def elasticface(dt, row0=False):
    """ElasticFace-Arc: row i's target cos(θ + mᵢ), mᵢ ~ N(0.5, 0.05); θ = arccos c."""
    rng, labels, cos, top = draw(dt)
    m_rows = rng.normal(0.5, 0.05, N)
    used = np.full(N, m_rows[0]) if row0 else m_rows
    c = cos[np.arange(N), labels]
    phi = np.arccos(c) + used.astype(dt)
    fwd, bwd = with_target(cos, top, labels, np.cos(phi), np.sin(phi) / np.sqrt(dt(1) - c * c))
    return dict(cos=cos, labels=labels, forward=fwd, backward=bwd, top_diff=top), (1.0, m_rows, 0.0)


def adaface(dt, rotated=False):
    """AdaFace: ẑ ∈ [−1, 1] per row, g_angle = −m·ẑ (negative for ẑ > 0), g_add = m·ẑ + m;
    every entry clamped to [−1 + ε, 1 − ε] and sent through cos(arccos ·), the target's
    angle θ + g_angle clipped to [ε, π − ε], then − g_add."""
    rng, labels, cos, top = draw(dt)
    eps, m = dt(1e-3), 0.4
    zhat = rng.uniform(-1, 1, N)
    g_angle, g_add = -m * zhat, m * zhat + m
    assert (g_angle < 0).any()
    idx = np.roll(np.arange(N), -1) if rotated else np.arange(N)
    ga, gd = g_angle[idx].astype(dt), g_add[idx].astype(dt)
    c = np.clip(cos, dt(-1) + eps, dt(1) - eps)
    inside = (cos > dt(-1) + eps) & (cos < dt(1) - eps)
    theta = np.arccos(c)
    dtheta = -dt(1) / np.sqrt(dt(1) - c * c)
    ang = theta.copy()
    ty = theta[np.arange(N), labels] + ga
    lo, hi = eps, dt(np.pi) - eps
    ang[np.arange(N), labels] = np.clip(ty, lo, hi)
    keep = np.ones((N, C), bool)
    keep[np.arange(N), labels] = (ty > lo) & (ty < hi)
    fwd = np.cos(ang)
    fwd[np.arange(N), labels] -= gd
    bwd = np.where(inside & keep, top * -np.sin(ang) * dtheta, dt(0))
    return dict(cos=cos, labels=labels, forward=fwd, backward=bwd, top_diff=top), (1.0, g_angle, g_add)


def subcenter(dt, bug=None):
    """Sub-center ArcFace, K = 3: cos_ij = max_k cos_ijk (torch.max: the first index on
    ties), the ArcFace target on it, the gradient to the arg-max sub-centre only. Every 4th
    (row, class) has sub-centres 0 and 2 tied at the max."""
    rng, labels, _, top = draw(dt)
    K = 3
    sub = rng.uniform(-0.6, 0.6, (N, C, K))
    sub[np.arange(N), labels, 1] = rng.uniform(-0.2, 0.9, N)
    sub = sub.astype(dt)
    mx = sub.max(axis=2)
    tie = (np.arange(N * C).reshape(N, C) % 4) == 0
    sub[tie, 0] = mx[tie]
    sub[tie, 2] = mx[tie]
    assert tie[np.arange(N), labels].any()
    red = sub[:, :, 0] if bug == "first" else sub.max(axis=2)
    ry = red[np.arange(N), labels]
    val, der, _ = arcface_thmm(ry, M, dt)
    fwd, d_red = with_target(red, top, labels, val, der)
    if bug == "last-on-ties":
        arg = K - 1 - np.argmax(sub[:, :, ::-1], axis=2)
    elif bug == "first":
        arg = np.zeros((N, C), int)
    else:
        arg = np.argmax(sub, axis=2)  # numpy's argmax: the first index, as torch.max
    bwd = np.zeros((N, C, K), dt)
    r, c = np.indices((N, C))
    bwd[r, c, arg] = d_red
    return dict(cos=sub, labels=labels, forward=fwd, backward=bwd, top_diff=top), (1.0, M, 0.0)


T_BEFORE = 0.125


def curricular(dt, bug=None):
    """CurricularFace on the ArcFace target: t ← 0.01·mean(c_y) + 0.99·t before use; a
    non-target above the target's cos(θ + m) (before the fallback) becomes c·(t + c),
    gradient t + 2c (t and the mask detached)."""
    _, labels, cos, top = draw(dt)
    cy = cos[np.arange(N), labels]
    val, der, branch = arcface_thmm(cy, M, dt)
    fwd, bwd = with_target(cos, top, labels, val, der)
    t = dt(dt(0.01) * cy.mean(dtype=dt) + dt(0.99) * dt(T_BEFORE))
    hard = (cos > branch[:, None]) & ~onehot(labels)
    assert hard.sum() > 5
    fwd = np.where(hard, cos * (t + cos), fwd)
    d = top * (t + cos)
    if bug != "grad-t-plus-c":
        d = d + top * cos
    bwd = np.where(hard, d, bwd)
    claimed = dt(1.5) * t if bug == "t-too-large" else t
    return dict(cos=cos, labels=labels, forward=fwd, backward=bwd, top_diff=top), float(claimed)


K_TOP, M_PRIME = 3, 0.06


def intertopk(dt, k=K_TOP):
    """Inter-top-k on the ArcFace target: the k largest non-targets (torch.topk of
    c − 2·onehot) get cos(θ − m′) = c·cos m′ + sqrt(1 − c²)·sin m′."""
    _, labels, cos, top = draw(dt)
    cy = cos[np.arange(N), labels]
    val, der, _ = arcface_thmm(cy, M, dt)
    fwd, bwd = with_target(cos, top, labels, val, der)
    masked = np.where(onehot(labels), cos - 2, cos)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    top_k = np.zeros((N, C), bool)
    top_k[np.arange(N)[:, None], order] = True
    cmp, smp = dt(np.cos(M_PRIME)), dt(np.sin(M_PRIME))
    sine = np.sqrt(dt(1) - cos * cos)
    fwd = np.where(top_k, cos * cmp + sine * smp, fwd)
    bwd = np.where(top_k, top * (cmp - smp * cos / sine), bwd)
    return dict(cos=cos, labels=labels, forward=fwd, backward=bwd, top_diff=top)


LAMBDA = 5.0


def asoftmax(dt, bug=None):
    """A-Softmax, m = 4, annealed: target (λ·c + ψ(θ))/(1 + λ), ψ = (−1)^k cos(4θ) − 2k,
    k = ⌊4θ/π⌋, cos 4θ = 8c⁴ − 8c² + 1 (the released code's Chebyshev form)."""
    _, labels, cos, top = draw(dt)
    lam, c = dt(LAMBDA), cos[np.arange(N), labels]
    k = np.floor(4 * np.arccos(c) / np.pi)
    sign = np.where(k % 2 == 0, dt(1), dt(-1))
    psi = sign * (dt(8) * c**4 - dt(8) * c**2 + dt(1)) - dt(2) * k
    dpsi = sign * (dt(32) * c**3 - dt(16) * c)
    if bug == "swapped":
        val, der = (c + lam * psi) / (dt(1) + lam), (dt(1) + lam * dpsi) / (dt(1) + lam)
    else:
        val, der = (lam * c + psi) / (dt(1) + lam), (lam + dpsi) / (dt(1) + lam)
    fwd, bwd = with_target(cos, top, labels, val, der)
    return dict(cos=cos, labels=labels, forward=fwd, backward=bwd, top_diff=top)


#: The profile `cmargin check` maps AdaFace's implementation string to (SPEC.md §11.1).
ADAFACE = getattr(cm.Profile, "for_implementation", lambda s: None)("mk-minchul/AdaFace@c60eaa7")

# ---- correct heads pass, planted bugs are named -------------------------------------------

DTYPES = [np.float64, np.float32]


def check(case, **kw):
    return cm.check_layer(
        case["cos"], case["labels"], case["forward"], case["backward"], case["top_diff"], **kw
    )


def assert_named(r, name):
    assert not r.passed, str(r)
    assert name in r.deviation_names, str(r)
    assert all(c.unexplained == 0 for c in r.cases), str(r)


@pytest.mark.parametrize("dt", DTYPES)
def test_elasticface_per_row_margins(dt):
    case, params = elasticface(dt)
    r = check(case, params=params, profile="textbook")
    assert r.passed, str(r)
    bad, params = elasticface(dt, row0=True)
    assert_named(check(bad, params=params, profile="textbook"), "row-margins-differ")


@pytest.mark.parametrize("dt", DTYPES)
def test_adaface_negative_m2(dt):
    case, params = adaface(dt)
    assert (params[1] < 0).any()
    r = check(case, params=params, profile=ADAFACE)
    assert r.passed, str(r)
    bad, params = adaface(dt, rotated=True)
    assert_named(check(bad, params=params, profile=ADAFACE), "row-margins-differ")


@pytest.mark.parametrize("dt", DTYPES)
def test_subcenters_k3_with_ties(dt):
    case, params = subcenter(dt)
    assert case["cos"].shape == (N, C, 3) and case["backward"].shape == (N, C, 3)
    r = check(case, params=params, profile="arcface-thmm")
    assert r.passed, str(r)
    bad, _ = subcenter(dt, bug="first")
    assert_named(check(bad, params=params, profile="arcface-thmm"), "subcenter-reduction-differs")
    # The gradient to the last of the tied sub-centres (torch.max returns the first).
    bad, _ = subcenter(dt, bug="last-on-ties")
    r = check(bad, params=params, profile="arcface-thmm")
    assert_named(r, "subcenter-reduction-differs")
    assert any("first index on ties" in d.evidence for d in r.deviations), r.deviations
    # A gradient copied to a tied sub-centre as well (the arg-max's own is right) fails too.
    both = dict(case)
    last, _ = subcenter(dt, bug="last-on-ties")
    both["backward"] = case["backward"] + last["backward"] * (case["backward"] == 0)
    assert_named(check(both, params=params, profile="arcface-thmm"), "subcenter-reduction-differs")


@pytest.mark.parametrize("dt", DTYPES)
def test_curricularface_with_t(dt):
    case, t = curricular(dt)
    r = check(case, params=(1.0, M, 0.0), profile="arcface-thmm", curricular_t=t)
    assert r.passed, str(r)
    for bug in ("grad-t-plus-c", "t-too-large"):
        bad, t = curricular(dt, bug=bug)
        r = check(bad, params=(1.0, M, 0.0), profile="arcface-thmm", curricular_t=t)
        assert_named(r, "modulation-differs")
    # Without the modulation the hard negatives are altered non-targets.
    r = check(case, params=(1.0, M, 0.0), profile="arcface-thmm")
    assert not r.passed


@pytest.mark.parametrize("dt", DTYPES)
def test_intertopk(dt):
    case = intertopk(dt)
    kw = dict(params=(1.0, M, 0.0), profile="arcface-thmm")
    assert check(case, intertopk=(K_TOP, M_PRIME), **kw).passed
    assert check(case, intertopk=(K_TOP, M_PRIME, True), **kw).passed
    assert_named(check(intertopk(dt, k=2), intertopk=(K_TOP, M_PRIME), **kw), "modulation-differs")
    # Claimed inactive (ESPnet before update()), but the penalty was applied.
    assert_named(check(case, intertopk=(K_TOP, M_PRIME, False), **kw), "modulation-differs")


@pytest.mark.parametrize("dt", DTYPES)
def test_asoftmax_lambda(dt):
    case = asoftmax(dt)
    kw = dict(params=(4.0, 0.0, 0.0), profile="sphereface")
    r = check(case, lam=LAMBDA, **kw)
    assert r.passed, str(r)
    assert_named(check(asoftmax(dt, bug="swapped"), lam=LAMBDA, **kw), "modulation-differs")


# ---- the reference agrees with the independent heads --------------------------------------


def test_reference_of_the_families_matches_the_numpy_heads():
    dt = np.float64
    case, params = elasticface(dt)
    f, b = cm.reference(case["cos"], case["labels"], params, profile="textbook", top_diff=case["top_diff"])
    np.testing.assert_allclose(f, case["forward"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(b, case["backward"], rtol=0, atol=1e-12)
    case, params = subcenter(dt)
    f, b = cm.reference(case["cos"], case["labels"], params, profile="arcface-thmm", top_diff=case["top_diff"])
    assert f.shape == (N, C) and b.shape == (N, C, 3)
    np.testing.assert_allclose(f, case["forward"], rtol=0, atol=1e-13)
    np.testing.assert_array_equal(b == 0, case["backward"] == 0)
    np.testing.assert_allclose(b, case["backward"], rtol=0, atol=1e-12)
    case, t = curricular(dt)
    f, b = cm.reference(case["cos"], case["labels"], (1.0, M, 0.0), profile="arcface-thmm",
                        top_diff=case["top_diff"], curricular_t=t)
    np.testing.assert_allclose(f, case["forward"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(b, case["backward"], rtol=0, atol=1e-12)
    case = intertopk(dt)
    f, b = cm.reference(case["cos"], case["labels"], (1.0, M, 0.0), profile="arcface-thmm",
                        top_diff=case["top_diff"], intertopk=(K_TOP, M_PRIME))
    np.testing.assert_allclose(f, case["forward"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(b, case["backward"], rtol=0, atol=1e-12)
    case = asoftmax(dt)
    f, b = cm.reference(case["cos"], case["labels"], (4.0, 0.0, 0.0), profile="sphereface",
                        top_diff=case["top_diff"], lam=LAMBDA)
    np.testing.assert_allclose(f, case["forward"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(b, case["backward"], rtol=0, atol=1e-11)


# ---- constant per-row arrays are the scalar case ------------------------------------------


@pytest.mark.parametrize("profile", ["arcface-thmm", "auto"])
def test_constant_per_row_arrays_give_the_scalar_report(profile):
    dt = np.float32
    _, labels, cos, top = draw(dt)
    cy = cos[np.arange(N), labels]
    val, der, _ = arcface_thmm(cy, M, dt)
    fwd, bwd = with_target(cos, top, labels, val, der)
    scalar = cm.check_layer(cos, labels, fwd, bwd, top, params=(1.0, M, 0.0), profile=profile)
    for params in [(1.0, np.full(N, M), 0.0), (np.ones(N), [M] * N, np.zeros(N, np.float32))]:
        rows = cm.check_layer(cos, labels, fwd, bwd, top, params=params, profile=profile)
        assert str(rows) == str(scalar)
        assert rows.passed == scalar.passed
        np.testing.assert_array_equal(rows.forward_fraction, scalar.forward_fraction)
    f0, b0 = cm.reference(cos, labels, (1.0, M, 0.0), profile="arcface-thmm", top_diff=top)
    f1, b1 = cm.reference(cos, labels, (1.0, np.full(N, M), 0.0), profile="arcface-thmm", top_diff=top)
    np.testing.assert_array_equal(f0, f1)
    np.testing.assert_array_equal(b0, b1)


def test_one_subcenter_and_zero_k_are_the_plain_head():
    dt = np.float64
    _, labels, cos, top = draw(dt)
    val, der, _ = arcface_thmm(cos[np.arange(N), labels], M, dt)
    fwd, bwd = with_target(cos, top, labels, val, der)
    kw = dict(params=(1.0, M, 0.0), profile="arcface-thmm")
    plain = cm.check_layer(cos, labels, fwd, bwd, top, **kw)
    one = cm.check_layer(cos[:, :, None], labels, fwd, bwd[:, :, None], top, **kw)
    assert plain.passed and str(one) == str(plain)
    assert str(cm.check_layer(cos, labels, fwd, bwd, top, intertopk=(0, 0.1), **kw)) == str(plain)


# ---- bad input: ValueError / TypeError naming the field ------------------------------------


def raises(exc, fields, fn, *a, **kw):
    with pytest.raises(exc) as e:
        fn(*a, **kw)
    msg = str(e.value)
    for f in fields:
        assert f in msg, msg
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def test_bad_family_inputs_are_located():
    dt = np.float64
    case, params = elasticface(dt)
    args = (case["cos"], case["labels"], case["forward"], case["backward"], case["top_diff"])
    kw = dict(profile="textbook")
    long = np.linspace(0.4, 0.6, 1000)
    msg = raises(ValueError, ['"params.m2"', "(1000,)", "(N,) = (12,)"], cm.check_layer, *args,
                 params=(1.0, long, 0.0), **kw)
    assert "0.4" not in msg  # never the array
    raises(ValueError, ['"params.m3"', "(12, 1)", "(N,) = (12,)"], cm.check_layer, *args,
           params=(1.0, 0.5, np.zeros((N, 1))), **kw)
    raises(ValueError, ['"params.m1"', "row 3", "must be > 0"], cm.check_layer, *args,
           params=(np.where(np.arange(N) == 3, -1.0, 1.0), 0.5, 0.0), **kw)
    raises(TypeError, ['"params.m2"'], cm.check_layer, *args, params=(1.0, ["a"] * N, 0.0), **kw)
    raises(TypeError, ['"params.m2"'], cm.check_layer, *args, params=(1.0, "0.5", 0.0), **kw)
    raises(ValueError, ['"params"', "2 entries"], cm.check_layer, *args, params=(1.0, 0.5), **kw)
    raises(ValueError, ['"profile"', "per-row"], cm.check_layer, *args, params=params, profile="auto")
    raises(ValueError, ['"curricular_t"'], cm.check_layer, *args, curricular_t=float("nan"), **kw)
    raises(TypeError, ['"curricular_t"'], cm.check_layer, *args, curricular_t="0.1", **kw)
    raises(ValueError, ['"intertopk"', "(k, m_prime)"], cm.check_layer, *args, intertopk=(3,), **kw)
    raises(TypeError, ['"intertopk"'], cm.check_layer, *args, intertopk=3, **kw)
    raises(TypeError, ['"intertopk"', "integer"], cm.check_layer, *args, intertopk=(1.5, 0.1), **kw)
    raises(ValueError, ['"intertopk"', "k = -1"], cm.check_layer, *args, intertopk=(-1, 0.1), **kw)
    raises(TypeError, ['"intertopk"', "active"], cm.check_layer, *args, intertopk=(1, 0.1, "yes"), **kw)
    raises(ValueError, ['"intertopk"', "not both"], cm.check_layer, *args, curricular_t=0.1,
           intertopk=(1, 0.1), **kw)
    raises(ValueError, ['"lam"', ">= 0"], cm.check_layer, *args, lam=-1.0, **kw)
    raises(TypeError, ['"lam"'], cm.check_layer, *args, lam=[1.0], **kw)
    sub, _ = subcenter(dt)
    raises(ValueError, ['"backward"', "(N, C, K) = (12, 10, 3)"], cm.check_layer, sub["cos"], sub["labels"],
           sub["forward"], sub["backward"][:, :, 0], sub["top_diff"], profile="arcface-thmm")
    raises(ValueError, ['"forward"', "(12, 10)"], cm.check_layer, sub["cos"], sub["labels"],
           sub["cos"], None, None, profile="arcface-thmm")
    raises(ValueError, ['"cos"', "K = 0"], cm.check_layer, np.zeros((N, C, 0)), sub["labels"],
           sub["forward"], profile="arcface-thmm")
    raises(ValueError, ['"cos"', "dimensions"], cm.check_layer, np.zeros((N, C, 2, 2)), sub["labels"],
           sub["forward"], profile="arcface-thmm")
    # The reference takes the same fields.
    raises(ValueError, ['"params.m2"', "(N,) = (12,)"], cm.reference, case["cos"], case["labels"],
           (1.0, long, 0.0), profile="textbook")
    raises(ValueError, ['"lam"'], cm.reference, case["cos"], case["labels"], lam=float("inf"))
    raises(TypeError, ['"params"'], cm.kinks, (1.0, np.zeros(3), 0.0))


# ---- check_module ---------------------------------------------------------------------------


def test_check_module_numpy_heads_of_the_families():
    """check_module with numpy callables: sub-centres (cos [N, C, K], gradient [N, C, K]),
    CurricularFace's t and per-row margins."""
    dt = np.float64

    def sub_head(cos, labels, top):
        red = cos.max(axis=2)
        fwd, d = red.copy(), top.copy()
        rows = np.flatnonzero(labels >= 0)
        c = red[rows, labels[rows]]
        v, der, _ = arcface_thmm(c, M, dt)
        fwd[rows, labels[rows]] = v
        d[rows, labels[rows]] = top[rows, labels[rows]] * der
        bwd = np.zeros(cos.shape, dt)
        r, cc = np.indices(red.shape)
        bwd[r, cc, np.argmax(cos, axis=2)] = d
        return fwd, bwd

    kw = dict(dtype="f64", inputs=("uniform", "realistic"), profile="arcface-thmm")
    r = cm.check_module(sub_head, (1.0, M, 0.0), subcenters=3, **kw)
    assert r.passed, str(r)

    def sub_last(cos, labels, top):
        fwd, bwd = sub_head(cos, labels, top)
        k = cos.shape[2]
        last = k - 1 - np.argmax(cos[:, :, ::-1], axis=2)
        first = np.argmax(cos, axis=2)
        r_, c_ = np.indices(first.shape)
        g = bwd[r_, c_, first]
        out = np.zeros_like(bwd)
        out[r_, c_, last] = g
        return fwd, out

    r = cm.check_module(sub_last, (1.0, M, 0.0), subcenters=3, **kw)
    assert not r.passed and "subcenter-reduction-differs" in r.deviation_names, str(r)

    m_rows = np.linspace(0.3, 0.6, 16)

    def elastic(cos, labels, top):
        fwd, bwd = cos.copy(), top.copy()
        rows = np.flatnonzero(labels >= 0)
        c = cos[rows, labels[rows]]
        phi = np.arccos(c) + m_rows[rows]
        fwd[rows, labels[rows]] = np.cos(phi)
        bwd[rows, labels[rows]] = top[rows, labels[rows]] * np.sin(phi) / np.sqrt(1 - c * c)
        return fwd, bwd

    r = cm.check_module(elastic, (1.0, m_rows, 0.0), dtype="f64", inputs="uniform",
                        shape=(16, 10), profile="textbook")
    assert r.passed, str(r)
    r = cm.check_module(elastic, (1.0, np.roll(m_rows, 1), 0.0), dtype="f64", inputs="uniform",
                        shape=(16, 10), profile="textbook")
    assert_named(r, "row-margins-differ")
    raises(ValueError, ['"inputs"', "edges"], cm.check_module, elastic, (1.0, m_rows, 0.0),
           profile="textbook")
    # compare() takes the same family: two heads with the same per-row margins agree.
    cmp = cm.compare(elastic, elastic, (1.0, m_rows, 0.0), dtype="f64", inputs="uniform",
                     shape=(16, 10), profile="textbook")
    assert cmp.agree and cmp.report_a.passed, str(cmp)
    raises(ValueError, ['"subcenters"'], cm.check_module, sub_head, (1.0, M, 0.0), subcenters=0, **kw)
    raises(TypeError, ['"subcenters"'], cm.check_module, sub_head, (1.0, M, 0.0), subcenters=2.0, **kw)


def test_check_module_torch_heads_of_the_families():
    torch = require_torch()

    class SubCenterArcFace(torch.nn.Module):
        """pytorch-metric-learning / insightface style: max over K, ArcFace th/mm."""

        def __init__(self, m=M):
            super().__init__()
            self.cos_m, self.sin_m = float(np.cos(m)), float(np.sin(m))
            self.th, self.mm = float(np.cos(np.pi - m)), float(np.sin(np.pi - m) * m)

        def forward(self, cos, labels):
            red, _ = torch.max(cos, dim=2)
            rows = labels >= 0
            lab = labels.clamp(min=0)
            c = torch.where(rows[:, None], red.gather(1, lab[:, None]), torch.zeros((), dtype=red.dtype))
            sine = torch.sqrt((1.0 - c * c).clamp(0, 1))
            phi = c * self.cos_m - sine * self.sin_m
            phi = torch.where(c > self.th, phi, c - self.mm)
            onehot = torch.zeros_like(red, dtype=torch.bool)
            onehot.scatter_(1, lab[:, None], True)
            onehot &= rows[:, None]
            return torch.where(onehot, phi.expand_as(red), red)

    class CurricularFace(torch.nn.Module):
        def __init__(self, t, m=M):
            super().__init__()
            self.t = t
            self.cos_m, self.sin_m = float(np.cos(m)), float(np.sin(m))
            self.th, self.mm = float(np.cos(np.pi - m)), float(np.sin(np.pi - m) * m)

        def forward(self, cos, labels):
            rows = labels >= 0
            lab = labels.clamp(min=0)
            c = torch.where(rows[:, None], cos.gather(1, lab[:, None]), torch.zeros((), dtype=cos.dtype))
            sine = torch.sqrt((1.0 - c * c).clamp(0, 1))
            branch = c * self.cos_m - sine * self.sin_m
            final = torch.where(c > self.th, branch, c - self.mm)
            onehot = torch.zeros_like(cos, dtype=torch.bool)
            onehot.scatter_(1, lab[:, None], True)
            onehot &= rows[:, None]
            hard = (cos > branch.detach()) & ~onehot & rows[:, None]
            out = torch.where(hard, cos * (self.t + cos), cos)
            return torch.where(onehot, final.expand_as(cos), out)

    class ElasticFaceArc(torch.nn.Module):
        """A margin per row: cos(acos(c) + m_i) at the target."""

        def __init__(self, m_rows):
            super().__init__()
            self.m = torch.as_tensor(m_rows)

        def forward(self, cos, labels):
            rows = labels >= 0
            lab = labels.clamp(min=0)
            c = torch.where(rows[:, None], cos.gather(1, lab[:, None]), torch.zeros((), dtype=cos.dtype)).clamp(-1, 1)
            phi = torch.cos(torch.acos(c) + self.m[:, None].to(cos.dtype))
            onehot = torch.zeros_like(cos, dtype=torch.bool)
            onehot.scatter_(1, lab[:, None], True)
            onehot &= rows[:, None]
            return torch.where(onehot, phi.expand_as(cos), cos)

    m_rows = np.linspace(0.3, 0.6, 16)
    r = cm.check_module(ElasticFaceArc(m_rows), (1.0, m_rows, 0.0), dtype="f64", inputs="uniform",
                        shape=(16, 10), profile="textbook")
    assert r.passed, str(r)
    r = cm.check_module(ElasticFaceArc(np.roll(m_rows, 1)), (1.0, m_rows, 0.0), dtype="f64",
                        inputs="uniform", shape=(16, 10), profile="textbook")
    assert not r.passed and "row-margins-differ" in r.deviation_names, str(r)

    kw = dict(dtype="f64", inputs=("uniform", "realistic"), profile="arcface-thmm")
    r = cm.check_module(SubCenterArcFace(), (1.0, M, 0.0), subcenters=3, **kw)
    assert r.passed, str(r)
    r = cm.check_module(CurricularFace(0.3), (1.0, M, 0.0), curricular_t=0.3, **kw)
    assert r.passed, str(r)
    r = cm.check_module(CurricularFace(0.45), (1.0, M, 0.0), curricular_t=0.3, **kw)
    assert not r.passed and "modulation-differs" in r.deviation_names, str(r)
