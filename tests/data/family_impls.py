"""Margin-family heads written in numpy from the papers, without the crate (SPEC.md §11.3).

    python3 family_impls.py HEAD OUT.json DTYPE [backward-only]

writes a `layer` dump (golden-dump/1) of one case: inputs drawn from a fixed seed, the
head's forward and its backward for a random upstream gradient, computed in DTYPE (f32 or
f64) as a PyTorch port would. The target is ArcFace with the th/mm fallback (Deng et al.
2019, insightface's `ArcFace` head): cos(θ + m) = c·cos m − sqrt(1 − c²)·sin m where
c > cos(π − m), else c − m·sin m. HEAD is one of:

  curricular           CurricularFace (Huang et al. 2020, eq. 8): non-targets above the target's
                       cos(θ + m) (the margin branch, before the fallback) become c·(t + c);
                       gradient t + 2c, t and the mask detached. t recorded as `t_used`.
  curricular-stale     the same outputs, but the dump claims the t before the update
                       (`t_before_forward`, `t_after_forward` swapped): a planted bug.
  curricular-nograd2c  planted bug: gradient of a hard negative t + c (one factor detached).
  curricular-t5        planted bug: the outputs use t 5 % larger than the `t_used` recorded.
  intertopk            inter-top-k (Zhao et al. 2021, eq. 6): the k hardest non-targets get
                       cos(θ − m′) = c·cos m′ + sqrt(1 − c²)·sin m′; k = 3, m′ = 0.06.
  intertopk-inactive   planted bug: the dump says active, the outputs are ESPnet's state
                       before update() (m′ = 0).
  intertopk-k2         planted bug: only the 2 hardest penalized, the dump says k = 3.
  intertopk-k4         planted bug: the 4 hardest penalized, the dump says k = 3.
  intertopk-m          planted bug: the outputs use m′ = 0.07, the dump says 0.06.
  asoftmax             A-Softmax with λ annealing (Liu et al. 2017, SphereFace, §3.4 and its
                       training code): the target is (λ·c + ψ(θ))/(1 + λ), ψ(θ) =
                       (−1)^k cos(mθ) − 2k, k = ⌊mθ/π⌋, m = 4 (cos 4θ as the Chebyshev
                       polynomial 8c⁴ − 8c² + 1), λ = 5; non-targets unchanged.
  asoftmax-nolambda    planted bug: the outputs are ψ alone, the dump states λ = 5.
  asoftmax-swapped     planted bug: (c + λ·ψ)/(1 + λ), the weights swapped.
  asoftmax-lambda      planted bug: the outputs use λ = 5.5, the dump states λ = 5.
  elasticface          ElasticFace-Arc (Boutros et al. 2022, eq. 4): row i's target is
                       cos(θ + mᵢ), mᵢ ~ N(0.5, 0.05) drawn per row, θ = arccos(clip(c, -1, 1))
                       of every entry and every entry through cos (the non-targets' cos(θ));
                       the per-row margins recorded as `params.m2` = [N numbers].
  elasticface-plus     ElasticFace-Arc+ (the paper's sorted assignment, as the released code
                       writes it): the draws sorted ascending, row i given the draw at the
                       position of the i-th largest target cos; `params.m2` the margins used.
  elasticface-row0     planted bug: every row used row 0's draw; the dump records the draws.
  elasticcos           ElasticFace-Cos (eq. 5): clip(c, -1, 1) of every entry, the target minus
                       mᵢ ~ N(0.35, 0.05); `params.m3` per row.
  elasticcos-row0      planted bug: every row used row 0's draw.
  adaface              AdaFace (Kim et al. 2022, eq. 10-12, and head.py's clips): ẑ per row in
                       [-1, 1] (some negative), g_angle = −m·ẑ, g_add = m·ẑ + m, m = 0.4; every
                       entry clamped to [−1+ε, 1−ε], ε = 1e-3, θ + g_angle clipped to
                       [ε, π − ε], target cos(·) − g_add, non-targets cos(arccos c̃);
                       `params.m2`, `params.m3` per row. Checked under the profile AdaFace's
                       implementation string maps to.
  adaface-rotated      planted bug: the outputs are row i with row i + 1's margins.
  magface              MagFace (Meng et al. 2021, eq. 3-4): a margin linear in the feature norm
                       a ∈ [10, 110], m(a) = (0.8 − 0.45)/(110 − 10)·(a − 10) + 0.45, per row;
                       the ArcFace target with each row's own th/mm fallback; `params.m2`
                       per row.
  magface-rotated      planted bug: row i used row i + 1's norm.
  magface-easy         the same margins with easy_margin (MagFace's default): where c ≤ 0 the
                       target is c; the margin formula c·cos m − sqrt(1 − c²)·sin m otherwise.
  magface-easy-rotated planted bug: row i used row i + 1's norm.
  subcenter            Sub-center ArcFace (Deng et al. 2020, eq. 1): `cos_subcenters` [N, C, K],
                       K = 3, reduced by the max over K, then the ArcFace target; the
                       backward is the gradient at the max matrix.
  subcenter-first      planted bug: the head used sub-centre 0, not the max.
"""

import json
import sys

import numpy as np

N, C, M = 12, 10, 0.5
K_TOP, M_PRIME = 3, 0.06
T_BEFORE = 0.125


def target(c, dt):
    """ArcFace with the th/mm fallback: (value, d value / d c)."""
    cm, sm = dt(np.cos(M)), dt(np.sin(M))
    th, mm = dt(np.cos(np.pi - M)), dt(np.sin(np.pi - M) * M)
    sine = np.sqrt(dt(1) - c * c)
    phi = c * cm - sine * sm
    dphi = cm + sm * c / sine
    on = c > th
    return np.where(on, phi, c - mm), np.where(on, dphi, dt(1)), c * cm - sine * sm


def implementation(head):
    """The implementation string: the source's own for the heads whose source maps to a
    profile (SPEC.md §6.1, §11.6), so the check picks that profile."""
    for prefix, impl in [
        ("adaface", "mk-minchul/AdaFace@numpy:head.py:AdaFace"),
        ("elasticface", "fdbtrs/ElasticFace@numpy:utils/losses.py:ElasticArcFace"),
        ("elasticcos", "fdbtrs/ElasticFace@numpy:utils/losses.py:ElasticCosFace"),
        ("magface", "IrvingMeng/MagFace@numpy:models/magface.py:MagLinear"),
    ]:
        if head.startswith(prefix):
            return f"{impl}:{head}"
    return f"numpy.{head}"


def main():
    head, out, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
    dt = {"f32": np.float32, "f64": np.float64}[dtype]
    rng = np.random.RandomState(1717)
    labels = rng.randint(0, C, N)
    cos = rng.uniform(-0.6, 0.6, (N, C))
    # Targets spread over the range, two rows past the fallback threshold.
    cos[np.arange(N), labels] = rng.uniform(-0.2, 0.9, N)
    cos[0, labels[0]] = -0.95
    cos[1, labels[1]] = -0.9
    cos = cos.astype(dt)
    top = rng.standard_normal((N, C)).astype(dt)
    onehot = np.zeros((N, C), bool)
    onehot[np.arange(N), labels] = True

    fwd = cos.copy()
    bwd = top.copy()
    cy = cos[np.arange(N), labels]
    ty, dty, margin_branch = target(cy, dt)
    fwd[np.arange(N), labels] = ty
    bwd[np.arange(N), labels] = top[np.arange(N), labels] * dty
    extra = {}
    params = {"m1": 1.0, "m2": M, "m3": 0.0}

    if head.startswith("magface"):
        norms = rng.uniform(10, 110, N)
        m_rows = (0.8 - 0.45) / (110 - 10) * (norms - 10) + 0.45
        used = np.roll(m_rows, -1) if head.endswith("rotated") else m_rows
        easy = head.startswith("magface-easy")
        c = cy
        for i in range(N):
            mi = used[i]
            cm, sm = dt(np.cos(mi)), dt(np.sin(mi))
            th, mm = dt(np.cos(np.pi - mi)), dt(np.sin(np.pi - mi) * mi)
            sine = np.sqrt(dt(1) - c[i] * c[i])
            if easy:
                if c[i] > 0:
                    fwd[i, labels[i]] = c[i] * cm - sine * sm
                    bwd[i, labels[i]] = top[i, labels[i]] * (cm + sm * c[i] / sine)
                else:
                    fwd[i, labels[i]] = c[i]
                    bwd[i, labels[i]] = top[i, labels[i]]
            elif c[i] > th:
                fwd[i, labels[i]] = c[i] * cm - sine * sm
                bwd[i, labels[i]] = top[i, labels[i]] * (cm + sm * c[i] / sine)
            else:
                fwd[i, labels[i]] = c[i] - mm
                bwd[i, labels[i]] = top[i, labels[i]]
        params = {"m1": 1.0, "m2": m_rows.tolist(), "m3": 0.0, "easy_margin": easy}
    elif head.startswith("subcenter"):
        K = 3
        sub = rng.uniform(-0.6, 0.6, (N, C, K))
        sub[np.arange(N), labels, 1] = rng.uniform(-0.2, 0.9, N)
        sub = sub.astype(dt)
        red = sub[:, :, 0] if head == "subcenter-first" else sub.max(axis=2)
        ry = red[np.arange(N), labels]
        ty2, dty2, _ = target(ry, dt)
        fwd = red.copy()
        fwd[np.arange(N), labels] = ty2
        bwd = top.copy()
        bwd[np.arange(N), labels] = top[np.arange(N), labels] * dty2
        extra = {"cos_subcenters": sub.astype(float).ravel().tolist()}
        params = {"m1": 1.0, "m2": M, "m3": 0.0, "k": K}
    elif head.startswith("elasticface"):
        m_rows = rng.normal(0.5, 0.05, N)
        if head == "elasticface-plus":
            # sort(margin)[argsort(target cos, descending)], row by row, as the code indexes
            m_rows = np.sort(m_rows)[np.argsort(-cy, kind="stable")]
        used = np.full(N, m_rows[0]) if head == "elasticface-row0" else m_rows
        c = np.clip(cos, dt(-1), dt(1))
        ang = np.arccos(c)
        ang[np.arange(N), labels] += used.astype(dt)
        fwd = np.cos(ang)
        # autograd of cos(acos(c) + m): sin(·)/sqrt(1 − c²), every entry (inputs inside ±1)
        bwd = top * (np.sin(ang) / np.sqrt(dt(1) - c * c))
        params = {"m1": 1.0, "m2": m_rows.tolist(), "m3": 0.0}
    elif head.startswith("elasticcos"):
        m_rows = rng.normal(0.35, 0.05, N)
        used = np.full(N, m_rows[0]) if head == "elasticcos-row0" else m_rows
        fwd = np.clip(cos, dt(-1), dt(1))
        fwd[np.arange(N), labels] -= used.astype(dt)
        bwd = top.copy()
        params = {"m1": 1.0, "m2": 0.0, "m3": m_rows.tolist()}
    elif head.startswith("adaface"):
        eps, m = dt(1e-3), 0.4
        zhat = rng.uniform(-1, 1, N)
        g_angle, g_add = -m * zhat, m * zhat + m
        used = np.roll(np.arange(N), -1) if head == "adaface-rotated" else np.arange(N)
        ga, gd = g_angle[used].astype(dt), g_add[used].astype(dt)
        c = np.clip(cos, dt(-1) + eps, dt(1) - eps)
        inside = (cos > dt(-1) + eps) & (cos < dt(1) - eps)
        theta = np.arccos(c)
        dtheta = -dt(1) / np.sqrt(dt(1) - c * c)
        # every entry through cos(θ); the target's angle shifted by g_angle and clipped
        ang = theta.copy()
        ty = theta[np.arange(N), labels] + ga
        lo, hi = eps, dt(np.pi) - eps
        ang[np.arange(N), labels] = np.clip(ty, lo, hi)
        keep = np.ones((N, C), bool)
        keep[np.arange(N), labels] = (ty > lo) & (ty < hi)
        fwd = np.cos(ang)
        fwd[np.arange(N), labels] -= gd
        bwd = np.where(inside & keep, top * -np.sin(ang) * dtheta, dt(0))
        params = {"m1": 1.0, "m2": g_angle.tolist(), "m3": g_add.tolist()}
    elif head.startswith("asoftmax"):
        lam, m = dt(5.5 if head == "asoftmax-lambda" else 5.0), 4
        c = cy
        k = np.floor(m * np.arccos(c) / np.pi)
        sign = np.where(k % 2 == 0, dt(1), dt(-1))
        psi = sign * (dt(8) * c**4 - dt(8) * c**2 + dt(1)) - dt(2) * k
        dpsi = sign * (dt(32) * c**3 - dt(16) * c)
        if head == "asoftmax-nolambda":
            val, der = psi, dpsi
        elif head == "asoftmax-swapped":
            val, der = (c + lam * psi) / (dt(1) + lam), (dt(1) + lam * dpsi) / (dt(1) + lam)
        else:
            val, der = (lam * c + psi) / (dt(1) + lam), (lam + dpsi) / (dt(1) + lam)
        fwd = cos.copy()
        bwd = top.copy()
        fwd[np.arange(N), labels] = val
        bwd[np.arange(N), labels] = top[np.arange(N), labels] * der
        params = {"m1": 4.0, "m2": 0.0, "m3": 0.0, "lambda": 5.0}
    elif head.startswith("curricular"):
        # t <- 0.01·mean(target cos) + 0.99·t, before use (both published codes).
        t = dt(dt(0.01) * cy.mean(dtype=dt) + dt(0.99) * dt(T_BEFORE))
        recorded = t
        if head == "curricular-t5":
            t = dt(dt(1.05) * t)
        hard = (cos > margin_branch[:, None]) & ~onehot
        assert hard.sum() > 5, hard.sum()
        fwd = np.where(hard, cos * (t + cos), fwd)
        # Autograd of hard·(t + hard): g·(t + c) + g·c; the planted bug drops the second term.
        d = top * (t + cos)
        if head != "curricular-nograd2c":
            d = d + top * cos
        bwd = np.where(hard, d, bwd)
        if head == "curricular-stale":
            extra = {"t_before_forward": [float(t)], "t_after_forward": [T_BEFORE]}
        else:
            extra = {"t_used": float(recorded)}
    elif head.startswith("intertopk"):
        k = {"intertopk-k2": 2, "intertopk-k4": 4}.get(head, K_TOP)
        mp = {"intertopk-inactive": 0.0, "intertopk-m": 0.07}.get(head, M_PRIME)
        masked = np.where(onehot, cos - 2, cos)
        order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        top_k = np.zeros((N, C), bool)
        top_k[np.arange(N)[:, None], order] = True
        cmp, smp = dt(np.cos(mp)), dt(np.sin(mp))
        sine = np.sqrt(dt(1) - cos * cos)
        fwd = np.where(top_k, cos * cmp + sine * smp, fwd)
        bwd = np.where(top_k, top * (cmp - smp * cos / sine), bwd)
        params.update({"intertopk_k": K_TOP, "intertopk_m": M_PRIME})
    else:
        raise SystemExit(f"unknown head {head}")

    case = {
        "name": head,
        "params": params,
        "shape": [N, C],
        "cos": cos.astype(float).ravel().tolist(),
        "labels": labels.tolist(),
        "forward": fwd.astype(float).ravel().tolist(),
        "top_diff": top.astype(float).ravel().tolist(),
        "backward": bwd.astype(float).ravel().tolist(),
    }
    case.update(extra)
    if sys.argv[4:] == ["backward-only"]:
        del case["forward"]  # the constants must then be read from the backward alone
    if "cos_subcenters" in extra:
        del case["cos"]  # recorded only per sub-centre: the checker reads it through the max
    dump = {
        "format": "golden-dump/1",
        "source": "numpy (tests/data/family_impls.py)",
        "implementation": implementation(head),
        "dtype": dtype,
        "kind": "layer",
        "cases": [case],
    }
    with open(out, "w") as f:
        json.dump(dump, f)


if __name__ == "__main__":
    main()
