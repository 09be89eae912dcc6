"""Half precision end to end. The Python verdict on each shipped f16/bf16 golden dump (the
unmodified insightface torch modules run in float16/bfloat16, fixtures/golden/
insightface-torch-half) is the CLI's: every case's report lines (word, profile, counts,
worst element, deviations) equal what `cmargin check` prints for it. generate returns arrays
of its dtype and takes input_grid; f16 and bf16 arrays go into check_layer and reference."""

import json

import numpy as np
import pytest

import combined_margin as cm
from conftest import REPO

HALF = REPO / "fixtures" / "golden" / "insightface-torch-half"
DUMPS = sorted(p.name for p in HALF.glob("*.json"))


def _cli_blocks(text):
    """case name -> its report lines (whitespace-normalised), from `cmargin check` text."""
    blocks, name = {}, None
    for line in text.splitlines()[1:]:
        words = line.split()
        if not words or line.startswith("  summary") or words[0] in ("summary:",):
            continue
        if line.startswith("  ") and not line.startswith("   ") and len(words) > 1:
            name = words[1]
            blocks[name] = [" ".join(words)]
        elif name is not None:
            blocks[name].append(" ".join(words))
    return blocks


def _np_dtype(dtype):
    import ml_dtypes

    return {"f16": np.float16, "bf16": ml_dtypes.bfloat16, "f32": np.float32, "f64": np.float64}[dtype]


def _arrays(case, dtype):
    """The case's arrays as a user holds them: JSON numbers -> float32 -> the dump's dtype
    (the CLI reads them the same way: FORMAT.md)."""
    n, c = case["shape"]
    dt = _np_dtype(dtype)

    def arr(k):
        if k not in case:
            return None
        return np.asarray(case[k], dtype=np.float32).reshape(n, c).astype(dt)

    return arr("cos"), np.asarray(case["labels"], dtype=np.int64), arr("forward"), arr("backward"), arr("top_diff")


def test_the_half_dumps_are_there():
    assert len([d for d in DUMPS if "f16" in d]) >= 4 and len([d for d in DUMPS if "bf16" in d]) >= 4, DUMPS


@pytest.mark.parametrize("dump", DUMPS)
def test_python_verdict_on_the_half_dumps_is_the_clis(dump, cmargin):
    path = HALF / dump
    rel = path.relative_to(REPO)
    r = cmargin("check", rel, cwd=REPO)
    assert r.returncode in (0, 1), r.stderr
    cli = _cli_blocks(r.stdout)
    d = json.loads(path.read_text())
    assert len(cli) == len(d["cases"]), r.stdout
    for case in d["cases"]:
        p = case["params"]
        assert "params_effective" not in case
        # The CLI's profile for this case (SPEC.md §6's mapping) is the third column.
        profile = cli[case["name"]][0].split()[2]
        cos, labels, fwd, bwd, top = _arrays(case, d["dtype"])
        rep = cm.check_layer(cos, labels, fwd, bwd, top, params=(p["m1"], p["m2"], p["m3"]),
                             s=p.get("s"), profile=profile, name=case["name"],
                             easy_margin=p.get("easy_margin"))
        assert rep.dtype == d["dtype"]
        ours = _cli_blocks(str(rep))[case["name"]]
        assert ours == cli[case["name"]], (case["name"], ours, cli[case["name"]])


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_generate_returns_the_dtype_and_takes_input_grid(dtype):
    fx = cm.generate(dtype=dtype, inputs="edges")
    want = np.dtype(_np_dtype(dtype))
    for a in (fx.cos, fx.top_diff, fx.forward, fx.backward):
        assert a.dtype == want
    # The same values the f32 fixture would round to (independent: numpy's/ml_dtypes' rounding).
    wide = cm.generate(dtype="f32", inputs="uniform", input_grid=dtype, shape=(16, 10))
    assert wide.cos.dtype == np.float32 and f"_{dtype}inputs_" in wide.name
    assert np.array_equal(wide.cos.astype(want).astype(np.float32), wide.cos)
    assert f"--input-grid {dtype}" in wide.command


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_reference_in_half_is_the_f64_formula_rounded_once(dtype):
    """The analytic profile's forward in f64 from the formula, rounded once by numpy/ml_dtypes,
    is what reference gives for half inputs."""
    fx = cm.generate(dtype=dtype, inputs="uniform", shape=(32, 10))
    f, b = cm.reference(fx.cos, fx.labels, profile="analytic")
    assert f.dtype == np.dtype(_np_dtype(dtype))
    c = fx.cos.astype(np.float64)
    want = c.copy()
    rows = np.nonzero(fx.labels != -1)[0]
    t = c[rows, fx.labels[rows]]
    want[rows, fx.labels[rows]] = np.cos(np.arccos(t) + 0.5)
    assert np.array_equal(f.astype(np.float64), want.astype(_np_dtype(dtype)).astype(np.float64))


def test_half_in_a_plain_callable_is_judged_with_half_budgets():
    """The AMP user of the issue: a bf16 computation in a numpy callable was judged with f32
    budgets and its header said f32. Now the callable gets bf16 arrays and the check is bf16."""
    seen = []

    def head(cos, labels, top_diff):
        seen.append(cos.dtype.name)
        f, b = cm.reference(cos, labels, profile="recommended", top_diff=top_diff)
        return f, b

    r = cm.check_module(head, dtype="bf16", profile="recommended", inputs="uniform")
    assert r.passed and r.dtype == "bf16" and "bf16" in str(r).splitlines()[0], str(r)
    assert set(seen) == {"bfloat16"}
