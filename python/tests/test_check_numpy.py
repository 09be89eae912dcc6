"""The checker through the API on numpy implementations written independently of the crate
(textbook.py): the correct layer passes, each planted bug is rejected with its cause named,
the report's numbers are consistent with the reference, and its text is the CLI's."""

import numpy as np
import pytest

import combined_margin as cm
import textbook as tb

CONFIGS = [(1.0, 0.5, 0.0), (1.0, 0.3, 0.2), (1.5, 0.0, 0.0), (0.9, 0.4, 0.15), (1.0, 0.0, 0.35)]


@pytest.mark.parametrize("params", CONFIGS)
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_textbook_layer_passes(params, dtype):
    r = cm.check_module(lambda c, l, t: tb.recommended(c, l, t, *params), params=params,
                        dtype=dtype, profile="recommended")
    assert r.passed and r.verdict == "PASS" and r.exit_code == 0, str(r)
    assert r.deviations == [] and len(r.cases) == 3


def test_textbook_layer_scaled_passes_and_fingerprints_as_recommended():
    r = cm.check_module(lambda c, l, t: tb.recommended(c, l, t, s=64.0), s=64.0, profile="auto")
    assert r.passed, str(r)
    assert r.profile.name == "recommended"
    assert r.fingerprint[0][0] == "recommended" and r.fingerprint[0][1] == 1.0
    assert "=> behaves like recommended" in str(r)


@pytest.mark.parametrize("bug", sorted(tb.BUGS))
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_planted_bug_is_rejected_with_its_cause_named(bug, dtype):
    params, s, cause = tb.BUGS[bug]
    r = cm.check_module(lambda c, l, t: tb.recommended(c, l, t, *params, s=s, bug=bug),
                        params=params, s=s, dtype=dtype, profile="recommended")
    assert not r.passed and r.verdict == "FAIL" and r.exit_code == 1, str(r)
    assert cause in r.deviation_names, str(r)
    assert f"deviation {cause}" in str(r)
    with pytest.raises(AssertionError, match=cause):
        cm.assert_conforms(r)


def test_allow_accepts_a_named_deviation_and_nothing_else():
    # The analytic reference itself: NaN/inf at the poles and outside [−1, 1] exactly where
    # the profile predicts them is agreement (SPEC.md §6.2), so it passes as is.
    fx = cm.generate(profile="analytic", inputs="edges")
    args = (fx.cos, fx.labels, fx.forward, fx.backward, fx.top_diff)
    r = cm.check_layer(*args, profile="analytic")
    assert r.verdict == "PASS" and r.passed, str(r)
    # Both sides scaled by 2: out of budget, named; accepted only when that name is allowed.
    bad = (fx.cos, fx.labels, fx.forward * 2.0, fx.backward * 2.0, fx.top_diff)
    r = cm.check_layer(*bad, profile="analytic")
    assert not r.passed and "scale-mismatch" in r.deviation_names, str(r)
    r = cm.check_layer(*bad, profile="analytic", allow=r.deviation_names)
    assert r.passed and "(allowed)" in str(r)
    # Allowing another deviation does not accept this one.
    r = cm.check_layer(*bad, profile="analytic", allow=["non-finite-output"])
    assert not r.passed


def test_report_numbers_agree_with_the_reference():
    params, s = (1.0, 0.5, 0.0), 64.0
    fx = cm.generate(profile="recommended", inputs="uniform", s=s, dtype="f32")
    fwd, bwd = tb.recommended(fx.cos, fx.labels, fx.top_diff, *params, s=s)
    bwd = bwd.copy()
    r0 = 1  # an interior target: cos far from every kink, factor well away from 0
    c0 = fx.labels[r0]
    assert abs(fx.cos[r0, c0]) < 0.99 and abs(bwd[r0, c0]) > 1
    bwd[r0, c0] *= np.float32(1.01)  # one element 1% off
    r = cm.check_layer(fx.cos, fx.labels, fwd, bwd, fx.top_diff, params=params, s=s,
                       profile="recommended")
    case = r.cases[0]
    ref_f, ref_b = cm.reference(fx.cos, fx.labels, params, s=s, profile="recommended",
                                top_diff=fx.top_diff)
    # fraction = |got − want| / budget, elementwise (0/0 := 0 where the budget is 0).
    for got, ref, frac, bud in ((fwd, ref_f, r.forward_fraction, case.forward_budget),
                                (bwd, ref_b, r.backward_fraction, case.backward_budget)):
        assert frac.shape == fx.cos.shape and bud.shape == fx.cos.shape
        err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        pos = (bud > 0) & np.isfinite(bud)  # an infinite budget (at a pole) gives fraction 0
        # The reference in the report is f64 (not rounded to f32): allow that half ulp.
        np.testing.assert_allclose(frac[pos] * bud[pos], err[pos], rtol=0,
                                   atol=float(np.spacing(np.float32(64))))
    assert (r.worst.side, r.worst.row, r.worst.col) == ("backward", r0, c0)
    assert r.worst.fraction == pytest.approx(r.backward_fraction.max())
    assert r.worst.fraction > 1 and not r.passed
    assert r.worst.got == float(bwd[r0, c0]) and r.worst.label == fx.labels[r0]
    assert case.within == case.count - int((r.backward_fraction > 1).sum())


def test_report_text_is_the_cli_text(cmargin, tmp_path):
    fx = cm.generate(profile="caffe-gpu", inputs="edges")
    path = tmp_path / "case.npz"
    fx.write(str(path))
    f = dict(np.load(path))
    bwd = f["backward"].copy()
    bwd[0, f["labels"][0]] *= 1.01
    f["impl_forward"], f["impl_backward"] = f["forward"], bwd
    np.savez(path, **f)
    for profile, args in (("caffe-gpu", []), ("auto", ["--profile", "auto"]),
                          ("recommended", ["--profile", "recommended"])):
        for verbose in (False, True):
            cli = cmargin("check", *args, *(["-v"] if verbose else []), path)
            r = cm.check_layer(f["cos"], f["labels"], f["impl_forward"], bwd, f["top_diff"],
                               params=tuple(f["params"]), profile=profile, name=str(f["name"]),
                               verbose=verbose)
            assert r.exit_code == cli.returncode, cli.stdout
            # The same text, except the file label and the "npz fixture" / "arrays" source.
            norm_cli = cli.stdout.replace(str(path), "LABEL").replace("npz fixture", "SRC")
            norm_py = str(r).replace(str(f["name"]) + "  (arrays", "LABEL  (arrays").replace("arrays,", "SRC,")
            if profile == "auto":
                norm_py = norm_py.replace(str(f["name"]) + ": fingerprint", "LABEL: fingerprint")
            assert norm_py == norm_cli


def test_fraction_accessors_of_a_multi_case_report():
    r = cm.check_module(lambda c, l, t: tb.recommended(c, l, t), profile="recommended")
    with pytest.raises(ValueError, match="3 cases"):
        r.forward_fraction
    assert all(c.forward_fraction.shape == c.backward_fraction.shape for c in r.cases)


def test_forward_only_and_backward_only():
    fx = cm.generate(profile="recommended", inputs="uniform")
    fwd, bwd = tb.recommended(fx.cos, fx.labels, fx.top_diff)
    r = cm.check_layer(fx.cos, fx.labels, forward=fwd, profile="recommended")
    assert r.passed and r.backward_fraction is None
    r = cm.check_layer(fx.cos, fx.labels, backward=bwd, top_diff=fx.top_diff, profile="recommended")
    assert r.passed and r.forward_fraction is None


def test_compare_two_implementations_element_by_element():
    good = lambda c, l, t: tb.recommended(c, l, t)  # noqa: E731
    bad = lambda c, l, t: tb.recommended(c, l, t, bug="no-angle-clamp")  # noqa: E731
    same = cm.compare(good, good, profile="recommended", names=("mine", "copy"))
    assert same.agree and same.compared > 0 and same.report_a.passed
    diff = cm.compare(good, bad, profile="recommended", names=("mine", "port"))
    assert not diff.agree and diff.report_a.passed and not diff.report_b.passed
    # Where they disagree is exactly where the clamp acts: φ = θ + 0.5 > π.
    for d in diff.disagreements:
        assert d["side"] in ("forward", "backward")
        assert np.arccos(np.clip(d["input"], -1, 1)) + 0.5 > np.pi - 1e-6, d
    assert "mine vs port:" in str(diff) and "differ by more than their budget" in str(diff)
