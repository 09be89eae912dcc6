"""`combined_margin.sweep`: a callable swept by the crate's engine. An independent numpy
ArcFace (textbook formula) over every f16 value passes, completely; the same with the th/mm
comparison written `>=` instead of `>` is caught at exactly the one float where it differs
(the needle), and a strided f32 sweep of the correct layer passes."""
import numpy as np
import pytest

import combined_margin as cm


def arcface_thmm(strict=True, m=0.5):
    th = np.cos(np.pi - m)
    mm = np.sin(np.pi - m) * m

    def f(c):
        t = c.dtype.type
        c64 = c.astype(np.float64)
        # Comparisons against the constant as the dtype holds it (torch.where(cos > th, ...)).
        thr = t(th)
        use = (c > thr) if strict else (c >= thr)
        with np.errstate(invalid="ignore", divide="ignore"):
            theta = np.arccos(c64)
            margin = np.cos(theta + m)
            factor = np.sin(theta + m) / np.sqrt((1.0 - c64) * (1.0 + c64))
        out = np.where(use, margin, c64 - mm)
        g = np.where(use, factor, 1.0)
        return out.astype(c.dtype), g.astype(c.dtype)

    return f


def test_every_f16_value_of_a_correct_layer_passes_and_the_sweep_is_complete():
    r = cm.sweep(arcface_thmm(), (1.0, 0.5, 0.0), profile="arcface-thmm", dtype="f16")
    assert r.complete and r.passed, str(r)
    assert "python callable" in str(r)


def test_a_comparison_off_at_one_float_is_found():
    r = cm.sweep(arcface_thmm(strict=False), (1.0, 0.5, 0.0), profile="arcface-thmm", dtype="f16")
    assert not r.passed and r.data["verdict"] == "FAIL", str(r)
    # Exactly one of the 32,770 f16 inputs fails: the threshold itself, in its region.
    assert r.data["all"]["fails"] == 1 and r.data["inputs"]["evaluated"] == 32770
    worst = r.data["worst"][0]
    assert worst["c"] == float(np.float16(np.cos(np.pi - 0.5))) and worst["region"].startswith("th/mm")


def test_strided_f32_sweep_passes():
    r = cm.sweep(arcface_thmm(), (1.0, 0.5, 0.0), profile="arcface-thmm", dtype="f32", stride=40009)
    assert r.passed and not r.complete, str(r)


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="dtype"):
        cm.sweep(arcface_thmm(), (1.0, 0.5, 0.0), dtype="f128")
    with pytest.raises(ValueError, match="forward, factor|raised"):
        cm.sweep(lambda c: c, (1.0, 0.5, 0.0), profile="arcface-thmm", dtype="f16")
