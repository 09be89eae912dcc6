"""torch, for real: insightface's modules transcribed from their published source
(insightface_torch.py) checked in-process through autograd; the leaf/clone handling and the
in-place warning; labels as [N] and [N, 1]; CPU tensors read without a copy; a CUDA tensor
refused with a message that says .cpu() (skipped, visibly, without a GPU)."""

import warnings

import numpy as np
import pytest

import combined_margin as cm
from conftest import require_torch

torch = require_torch()

from insightface_torch import AnalyticAutograd, ArcFace2e2e8c9, CombinedMarginLoss9097cd7  # noqa: E402


def quiet(fn, *a, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = fn(*a, **kw)
    return r, [str(x.message) for x in w]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_arcface_thmm_2e2e8c9(dtype):
    """th/mm on the autograd path: within budget of arcface-thmm except where torch.where's
    unselected sqrt branch sends NaN into the gradient (|c| ≥ 1), which is named."""
    r, warns = quiet(cm.check_module, ArcFace2e2e8c9(64.0, 0.5), params=(1.0, 0.5, 0.0), s=64.0,
                     dtype=dtype, profile="arcface-thmm")
    by = {c.name.split("_")[1]: c for c in r.cases}
    assert by["uniform"].verdict == "PASS" and by["realistic"].verdict == "PASS", str(r)
    edges = by["edges"]
    # In f32, th = cos(π − 0.5) rounds to −0.87758255, above the exact value: the edges row
    # there takes the fallback, named constant-rounded-wrong-side (as the f32 golden dump).
    names = [d.name for d in edges.deviations]
    assert edges.verdict == "FAIL" and "non-finite-output" in names
    assert set(names) <= {"non-finite-output", "constant-rounded-wrong-side"}, names
    assert edges.unexplained == 0, str(r)
    assert abs(edges.worst.input) >= 1 and edges.worst.side == "backward" and np.isnan(edges.worst.got)
    # It writes into its input: the leaf is refused by torch, the clone is used, and it says so.
    assert any("writes into its input" in n for n in r.notes)
    assert any("writes into its input" in w for w in warns)
    assert r.profile.name == "arcface-thmm"


def test_arcface_thmm_fingerprint():
    r, _ = quiet(cm.check_module, ArcFace2e2e8c9(64.0, 0.5), s=64.0, inputs=("uniform", "realistic"),
                 profile="auto")
    # Away from the kinks th/mm and the raw formula agree; the ranking puts the thmm family first
    # only once the edges probe the threshold:
    r2, _ = quiet(cm.check_module, ArcFace2e2e8c9(64.0, 0.5), s=64.0, profile="auto")
    assert r2.profile.name.startswith("arcface-thmm"), str(r2)
    assert r.passed


def test_combined_margin_loss_9097cd7_no_grad_arccos():
    """arccos_/cos_ under no_grad on the whole matrix: detached gradient as the profile says,
    but every non-target moves by rounding and out-of-range entries become NaN: named."""
    r, warns = quiet(cm.check_module, CombinedMarginLoss9097cd7(64.0, 1.0, 0.5, 0.0),
                     params=(1.0, 0.5, 0.0), s=64.0, profile="detached")
    assert r.verdict == "FAIL"
    assert set(r.deviation_names) == {"non-target-altered", "non-finite-output"}, str(r)
    assert all(c.unexplained == 0 for c in r.cases), str(r)
    # In place on the leaf under no_grad: allowed by torch, detected by the driver.
    assert any("wrote into its input cos in place" in n for n in r.notes)
    assert any("wrote into its input" in w for w in warns)
    # Its backward is straight-through: every backward target within budget of `detached`.
    for c in r.cases:
        assert "gradient-detached" not in [d.name for d in c.deviations]


def test_cosface_branch_of_9097cd7_passes():
    r, _ = quiet(cm.check_module, CombinedMarginLoss9097cd7(64.0, 1.0, 0.0, 0.35),
                 params=(1.0, 0.0, 0.35), s=64.0, profile="analytic")
    assert r.passed, str(r)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_autograd_of_the_formula_is_the_analytic_profile(dtype):
    r = cm.check_module(AnalyticAutograd(1.0, 0.5, 0.0), dtype=dtype, profile="analytic",
                        allow=["non-finite-output"])
    assert r.passed and r.notes == [], str(r)
    # Teeth: under a profile that differs in one policy (the angle: th/mm) it is rejected
    # with that policy named; under recommended (four policies differ) it is rejected too.
    r = cm.check_module(AnalyticAutograd(1.0, 0.5, 0.0), dtype=dtype, profile="arcface-thmm")
    assert not r.passed and "angle-policy-differs" in r.deviation_names, str(r)
    r = cm.check_module(AnalyticAutograd(1.0, 0.5, 0.0), dtype=dtype, profile="recommended")
    assert not r.passed and r.verdict == "FAIL", str(r)


def test_labels_as_a_column_give_the_same_report():
    a = cm.check_module(AnalyticAutograd(), profile="analytic", allow=["non-finite-output"])
    b = cm.check_module(AnalyticAutograd(), profile="analytic", allow=["non-finite-output"],
                        labels_shape="N,1")
    assert str(a) == str(b)


def test_leaf_mode_on_an_in_place_module_raises_torchs_error():
    with pytest.raises(RuntimeError, match="in-place"):
        cm.check_module(ArcFace2e2e8c9(64.0, 0.5), s=64.0, leaf="leaf", profile="arcface-thmm")
    r, _ = quiet(cm.check_module, ArcFace2e2e8c9(64.0, 0.5), s=64.0, leaf="clone",
                 inputs="uniform", profile="arcface-thmm")
    assert r.passed and any("wrote into its input" in n for n in r.notes)


def test_compare_two_torch_modules():
    same = cm.compare(AnalyticAutograd(), AnalyticAutograd(), profile="analytic",
                      allow=["non-finite-output"])
    assert same.agree, str(same)
    # th/mm vs the raw formula: they differ past the threshold c ≤ cos(π − m) only.
    diff, _ = quiet(cm.compare, ArcFace2e2e8c9(1.0, 0.5), AnalyticAutograd(s=1.0), s=1.0,
                    profile="arcface-thmm", names=("thmm", "raw"))
    assert not diff.agree
    th = np.cos(np.pi - 0.5)
    assert all(d["input"] <= th + 1e-6 for d in diff.disagreements), str(diff)


def test_cpu_tensors_are_read_in_place():
    from combined_margin._arrays import asarray

    t = torch.linspace(-0.5, 0.5, 12).reshape(3, 4)
    a = asarray(t, "x", "cos")
    assert a.__array_interface__["data"][0] == t.data_ptr()
    # A tensor that requires grad is detached, still without a copy.
    t2 = t.clone().requires_grad_(True)
    assert asarray(t2, "x", "cos").__array_interface__["data"][0] == t2.data_ptr()
    fx = cm.generate(inputs="uniform")
    fwd, bwd = cm.reference(torch.from_numpy(fx.cos), torch.from_numpy(fx.labels), top_diff=torch.from_numpy(fx.top_diff))
    assert np.array_equal(fwd, fx.forward) and np.array_equal(bwd, fx.backward)
    r = cm.check_layer(torch.from_numpy(fx.cos), torch.from_numpy(fx.labels).view(-1, 1),
                       torch.from_numpy(fx.forward), profile="recommended")
    assert r.passed


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_half_precision_tensors_are_read(dtype):
    """Once refused (`dtype <f2 is not float32 or float64`): f16 and bf16 CPU tensors are read
    in place (bf16 through an int16 view) and checked in their precision."""
    from combined_margin._arrays import asarray

    tdt = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    t = torch.linspace(-0.5, 0.5, 12, dtype=tdt).reshape(3, 4)
    a = asarray(t, "x", "cos")
    assert a.__array_interface__["data"][0] == t.data_ptr()
    assert np.array_equal(a.astype(np.float32), t.float().numpy())
    fx = cm.generate(dtype=dtype, inputs="uniform")
    tt = {k: torch.from_numpy(getattr(fx, k).view(np.int16).copy()).view(tdt)
          for k in ("cos", "forward", "backward", "top_diff")}
    r = cm.check_layer(tt["cos"], torch.from_numpy(fx.labels), tt["forward"], tt["backward"], tt["top_diff"],
                       profile="recommended")
    assert r.passed and r.dtype == dtype, str(r)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_cuda_tensor_is_refused_with_cpu_advice():
    t = torch.zeros(2, 3, device="cuda")
    with pytest.raises(TypeError, match=r'field "cos": a tensor on cuda:0; .* pass cos\.cpu\(\)'):
        cm.check_layer(t, torch.zeros(2, dtype=torch.int64), t)


def test_cuda_refusal_message_without_a_device():
    """The refusal path itself, on a stand-in whose .device says cuda (runs everywhere)."""
    from combined_margin._arrays import asarray

    class FakeCuda(torch.Tensor):
        @property
        def device(self):
            return torch.device("cuda", 0)

    t = torch.zeros(2, 3).as_subclass(FakeCuda)
    with pytest.raises(TypeError, match=r'a tensor on cuda:0; the checker reads host memory: pass cos\.cpu\(\)'):
        asarray(t, "check_layer", "cos")
