"""check_layer above 2^20 entries per side is a bounded check (SPEC.md §8.5): every element is
still tallied and handed back as a fraction and a budget, without a record per element. The
expected values come from the closed form of CosFace (target c − m3, every other entry a
copy, so a pass-through budget of 0 at s = 1), not from the package."""

import numpy as np

import combined_margin as cm

N, C, M3 = 18, 60_000, 0.35


def _cosface():
    rng = np.random.default_rng(7)
    cos = rng.uniform(-0.5, 0.5, size=(N, C)).astype(np.float32)
    labels = (np.arange(N) * 7919) % C
    cos[np.arange(N), labels] = rng.uniform(0.25, 0.75, size=N).astype(np.float32)
    fwd = cos.copy()
    fwd[np.arange(N), labels] = (cos[np.arange(N), labels].astype(np.float64) - M3).astype(np.float32)
    top = np.where(np.arange(N * C).reshape(N, C) % 3 == 0, -1.0, 0.5).astype(np.float32)
    return cos, labels, fwd, top


def test_a_bounded_check_hands_back_every_fraction_and_budget():
    assert N * C > 1 << 20
    cos, labels, fwd, top = _cosface()
    r = cm.check_layer(cos, labels, fwd, top.copy(), top, params=(1.0, 0.0, M3), profile="analytic")
    assert r.verdict == "PASS", str(r)
    case = r.cases[0]
    assert case.count == 2 * N * C and case.within == case.count
    for a in (case.forward_fraction, case.forward_budget, case.backward_fraction, case.backward_budget):
        assert a.shape == (N, C) and not np.isnan(a).any()
    # Pass-through entries are copies: a zero budget and a zero fraction everywhere else.
    off = np.ones((N, C), dtype=bool)
    off[np.arange(N), labels] = False
    assert (case.forward_budget[off] == 0).all() and (case.forward_fraction[off] == 0).all()
    assert (case.forward_budget[~off] > 0).all()
    assert np.nanmax([case.forward_fraction.max(), case.backward_fraction.max()]) == case.max_fraction
    assert "bounded check" in str(r), str(r)


def test_a_bounded_check_places_a_planted_error_at_its_element():
    cos, labels, fwd, top = _cosface()
    col = (labels[3] + 17) % C
    fwd[3, col] += np.float32(1e-3)
    r = cm.check_layer(cos, labels, fwd, top.copy(), top, params=(1.0, 0.0, M3), profile="analytic")
    assert r.verdict == "FAIL", str(r)
    case = r.cases[0]
    assert case.within == case.count - 1
    assert np.isinf(case.forward_fraction[3, col])
    assert np.unravel_index(np.argmax(case.forward_fraction), (N, C)) == (3, col)
    assert case.worst.row == 3 and case.worst.col == col
