"""Bad input through the API raises ValueError/TypeError with the CLI's one-line message,
never a panic; each case is also written as an .npz and given to `cmargin check`, and the
two messages must agree after the location prefix (the file path vs the function name)."""

import numpy as np
import pytest

import combined_margin as cm


def good():
    fx = cm.generate(profile="recommended", inputs="uniform", shape=(6, 4), ignore_every=0)
    return dict(cos=fx.cos.copy(), labels=fx.labels.copy(), forward=fx.forward.copy(),
                backward=fx.backward.copy(), top_diff=fx.top_diff.copy(), params=fx.params)


def call(d, **kw):
    return cm.check_layer(d["cos"], d["labels"], d["forward"], d["backward"], d["top_diff"],
                          params=d["params"], profile="recommended", **kw)


def nan_cos(d):
    d["cos"][2, 3] = np.nan


def nan_top(d):
    d["top_diff"][1, 0] = np.nan


def label_high(d):
    d["labels"][4] = 4


def label_low(d):
    d["labels"][0] = -2


def label_fraction(d):
    d["labels"] = d["labels"].astype(np.float64)
    d["labels"][3] = 1.5


def bad_params(d):
    d["params"] = (0.0, 0.5, 0.0)


# (mutation, exception type, expected message after "label: ")
CASES = {
    "NaN in cos": (nan_cos, ValueError, 'field "cos": element 11 (row 2, column 3) is NaN; inputs must be numbers'),
    "NaN in top_diff": (nan_top, ValueError, 'field "top_diff": element 4 (row 1, column 0) is NaN; inputs must be numbers'),
    "label >= C": (label_high, ValueError, 'field "labels": element 4 (row 4) is 4; expected -1 (ignore) or an integer in [0, 4)'),
    "label < -1": (label_low, ValueError, 'field "labels": element 0 (row 0) is -2; expected -1 (ignore) or an integer in [0, 4)'),
    "label not an integer": (label_fraction, ValueError, 'field "labels": element 3 (row 3) is 1.5, not an integer'),
    "m1 <= 0": (bad_params, ValueError, 'field "params": invalid parameter m1 = 0: must be > 0'),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_the_cli_message(case, cmargin, tmp_path):
    mutate, exc, msg = CASES[case]
    d = good()
    call(d)  # the unmutated input is accepted (the test has teeth only if this passes)
    mutate(d)
    with pytest.raises(exc) as e:
        call(d)
    assert str(e.value) == f"check_layer: {msg}"
    assert "\n" not in str(e.value)
    # The same input as a filled-in .npz, through the CLI.
    path = tmp_path / "bad.npz"
    np.savez(path, cos=d["cos"], labels=d["labels"], params=np.array(d["params"], dtype=np.float64),
             top_diff=d["top_diff"], impl_forward=d["forward"], impl_backward=d["backward"],
             profile=np.array("recommended"))
    r = cmargin("check", path)
    assert r.returncode == 2
    assert r.stderr.strip() == f"cmargin: {path}: {msg}"


@pytest.mark.parametrize("field", ["forward", "backward", "top_diff"])
def test_wrong_shape(field):
    d = good()
    d[field] = d[field][:, :3]
    with pytest.raises(ValueError, match=rf'^check_layer: field "{field}": shape \(6, 3\), expected \(6, 4\)$'):
        call(d)


def test_wrong_shapes_of_cos_and_labels():
    d = good()
    with pytest.raises(ValueError, match=r'field "cos": shape \(24,\) has 1 dimensions, expected 2 \(N, C\)'):
        cm.check_layer(d["cos"].reshape(-1), d["labels"], d["forward"])
    with pytest.raises(ValueError, match=r'field "labels": shape \(5,\), expected \(6,\) or \(6, 1\)'):
        cm.check_layer(d["cos"], d["labels"][:5], d["forward"])


@pytest.mark.parametrize("value, descr", [("hello", "<U5"), ({"a": 1}, "|O"), (object(), "|O")])
def test_a_non_array_is_a_type_error(value, descr):
    d = good()
    with pytest.raises(TypeError, match=rf'^check_layer: field "cos": dtype {descr} is not a float type \(float64, float32, float16 or bfloat16\)$'):
        cm.check_layer(value, d["labels"], d["forward"])
    with pytest.raises(TypeError, match=r'^check_layer: field "labels": dtype .* is not an integer or float type$'):
        cm.check_layer(d["cos"], "abc", d["forward"])


def test_missing_and_ragged_inputs():
    d = good()
    with pytest.raises(TypeError, match=r'^check_layer: field "cos": missing$'):
        cm.check_layer(None, d["labels"], d["forward"])
    with pytest.raises(TypeError, match=r'^check_layer: field "cos": not an array \(list\)'):
        cm.check_layer([[0.1, 0.2], [0.3]], d["labels"], d["forward"])
    with pytest.raises(ValueError, match=r'^check_layer: fields "forward", "backward": absent'):
        cm.check_layer(d["cos"], d["labels"])
    with pytest.raises(ValueError, match=r'field "top_diff": missing: "backward" is given without'):
        cm.check_layer(d["cos"], d["labels"], backward=d["backward"])


def test_integer_cos_is_refused():
    d = good()
    with pytest.raises(TypeError, match=r'field "cos": dtype <i8 is not a float type \(float64, float32, float16 or bfloat16\)'):
        cm.check_layer(np.zeros((6, 4), dtype=np.int64), d["labels"], d["forward"])


def test_unknown_profile_and_deviation_names():
    d = good()
    with pytest.raises(ValueError, match=r'^check_layer: field "profile": unknown profile "caffe-tpu"'):
        cm.check_layer(d["cos"], d["labels"], d["forward"], profile="caffe-tpu")
    with pytest.raises(ValueError, match=r'^check_layer: field "allow": "nan": unknown deviation \(known: non-finite-output'):
        cm.check_layer(d["cos"], d["labels"], d["forward"], allow=["nan"])
    with pytest.raises(ValueError, match=r'field "profile": unknown profile "auto"'):
        cm.reference(d["cos"], d["labels"], profile="auto")


def test_other_entry_points_locate_their_errors():
    d = good()
    with pytest.raises(ValueError, match=r'^reference: field "labels": element 4 \(row 4\) is 9'):
        lab = d["labels"].copy()
        lab[4] = 9
        cm.reference(d["cos"], lab)
    with pytest.raises(ValueError, match=r'^generate: field "inputs": "gaussian": expected uniform, realistic or edges$'):
        cm.generate(inputs="gaussian")
    with pytest.raises(ValueError, match=r'^generate: field "dtype": "f128"'):
        cm.generate(dtype="f128")
    # A negative m2 is AdaFace's (SPEC.md §11.1); m2 <= -pi is not an angular margin.
    with pytest.raises(ValueError, match=r'^kinks: field "params": invalid parameter m2 = -4: must be > -pi$'):
        cm.kinks((1.0, -4.0, 0.0))
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match=r'^loss_reference: field "weights": shape \(5, 3\), expected \(5, 4\)'):
        cm.loss_reference(x, np.ones((5, 3)), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r'^check_pipeline: field "features": element 1 \(row 0, column 1\) is NaN'):
        x2 = x.copy()
        x2[0, 1] = np.nan
        cm.check_pipeline(x2, np.ones((5, 4)), np.zeros(3, dtype=np.int64), 1.0)


def test_a_panic_is_a_runtime_error_not_an_abort():
    from combined_margin import _core

    with pytest.raises(RuntimeError, match="internal error .*deliberate panic"):
        _core._selftest_panic()
    # The interpreter and the extension still work.
    assert cm.check_layer(**{k: v for k, v in good().items() if k in ("cos", "labels", "forward")},
                          profile="recommended").passed


def test_an_array_on_a_device_is_refused_before_any_copy():
    class OnDevice:
        """A stand-in for a GPU array (cupy, jax): numpy could copy it, the driver must not."""

        def __dlpack_device__(self):
            return (2, 0)  # kDLCUDA

        def __array__(self, dtype=None, copy=None):
            raise AssertionError("must not be copied")

    d = good()
    with pytest.raises(TypeError, match=r'^check_layer: field "forward": an array on a device \(DLPack device type 2\)'):
        cm.check_layer(d["cos"], d["labels"], OnDevice())
