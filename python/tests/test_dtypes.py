"""One dtype normaliser behind every function that takes a dtype: each spelling a user may
write (the crate's names, "float32", "fp32", "half", "bfloat16", ...; numpy, torch, JAX and
TensorFlow dtype objects; ml_dtypes.bfloat16) means the same precision everywhere, and a bad
one is a ValueError that lists what is accepted."""

import importlib

import numpy as np
import pytest

import combined_margin as cm
from combined_margin._dtypes import dtype_name
from conftest import require_framework
from heads import numpy_head

STRINGS = {
    "f64": ["f64", "float64", "fp64", "double", "F64", "np.float64", "torch.float64"],
    "f32": ["f32", "float32", "fp32", "single", "float", "Float32", "tf.float32"],
    "f16": ["f16", "float16", "fp16", "half", "torch.float16"],
    "bf16": ["bf16", "bfloat16", "BF16", "torch.bfloat16", "jnp.bfloat16"],
}


def _objects(framework):
    """(dtype object, crate name) pairs of a framework (skipped visibly where missing)."""
    if framework == "numpy":
        return [(np.float64, "f64"), (np.dtype("float32"), "f32"), (np.float16, "f16"),
                (np.dtype("<f2"), "f16"), (float, "f64")]
    if framework == "ml_dtypes":
        ml = require_framework("ml_dtypes")
        return [(ml.bfloat16, "bf16"), (np.dtype(ml.bfloat16), "bf16")]
    if framework == "torch":
        t = require_framework("torch")
        return [(t.float64, "f64"), (t.float32, "f32"), (t.float16, "f16"), (t.half, "f16"),
                (t.bfloat16, "bf16"), (t.double, "f64")]
    if framework == "jax":
        jnp = require_framework("jax.numpy")
        return [(jnp.float64, "f64"), (jnp.float32, "f32"), (jnp.float16, "f16"), (jnp.bfloat16, "bf16")]
    tf = require_framework("tensorflow")
    return [(tf.float64, "f64"), (tf.float32, "f32"), (tf.float16, "f16"), (tf.half, "f16"),
            (tf.bfloat16, "bf16")]


@pytest.mark.parametrize("want", list(STRINGS))
def test_every_string_spelling(want):
    for s in STRINGS[want]:
        assert dtype_name(s, "t") == want, s


@pytest.mark.parametrize("framework", ["numpy", "ml_dtypes", "torch", "jax", "tensorflow"])
def test_every_dtype_object(framework):
    for obj, want in _objects(framework):
        assert dtype_name(obj, "t") == want, obj


@pytest.mark.parametrize("framework", ["numpy", "ml_dtypes", "torch", "jax", "tensorflow"])
def test_every_function_takes_every_spelling(framework):
    """Each function that takes a dtype, with one object of each precision, gives what the
    crate's name gives."""
    fx64 = cm.generate(dtype="f64", inputs="uniform", shape=(8, 6))
    feats = np.random.default_rng(1).normal(size=(8, 5))
    weights = np.random.default_rng(2).normal(size=(6, 5))
    for obj, want in _objects(framework):
        assert cm.generate(dtype=obj, shape=(8, 6)).dtype == want
        assert cm.generate(dtype=obj, shape=(8, 6)).cos.dtype == cm.generate(dtype=want, shape=(8, 6)).cos.dtype
        fx = cm.generate(dtype=want, inputs="uniform", shape=(8, 6))
        f1, b1 = cm.reference(fx.cos, fx.labels, dtype=obj)
        f2, b2 = cm.reference(fx.cos, fx.labels, dtype=want)
        assert f1.dtype == f2.dtype and np.array_equal(f1, f2, equal_nan=True)
        r = cm.check_layer(fx.cos, fx.labels, fx.forward, fx.backward, fx.top_diff,
                           profile="recommended", dtype=obj)
        assert r.passed and r.dtype == want, str(r)
        r = cm.check_module(numpy_head(), dtype=obj, profile="analytic", inputs="uniform",
                            shape=(8, 6))
        assert r.dtype == want and r.passed, str(r)
        lr1 = cm.loss_reference(feats, weights, fx64.labels, dtype=obj)
        lr2 = cm.loss_reference(feats, weights, fx64.labels, dtype=want)
        assert lr1["loss"] == lr2["loss"]
        p = cm.check_pipeline(feats, weights, fx64.labels, lr2["loss"], dtype=obj)
        assert p.passed and f", {want}," in str(p), str(p)
        assert cm.kinks(dtype=obj) == cm.kinks(dtype=want)
        s = cm.sweep(lambda c: (c, np.ones_like(c)), (1.0, 0.0, 0.0), profile="recommended",
                     dtype=obj, range=(0.25, 0.5), stride={"f64": 2**42, "f32": 4096}.get(want, 1))
        assert s.data["verdict"] == cm.sweep(lambda c: (c, np.ones_like(c)), (1.0, 0.0, 0.0),
                                             profile="recommended", dtype=want, range=(0.25, 0.5),
                                             stride={"f64": 2**42, "f32": 4096}.get(want, 1)).data["verdict"]


@pytest.mark.parametrize("bad", ["f8", "int32", "", "float128", np.int32, None, 3, True])
def test_a_bad_dtype_lists_what_is_accepted(bad):
    for call in (
        lambda: cm.generate(dtype=bad),
        lambda: cm.check_module(numpy_head(), dtype=bad),
        lambda: cm.sweep(lambda c: (c, c), (1.0, 0.5, 0.0), dtype=bad),
        lambda: cm.kinks(dtype=bad),
    ):
        with pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert 'field "dtype"' in msg and '"bf16"' in msg and '"fp32"' in msg and "ml_dtypes.bfloat16" in msg, msg
    fx = cm.generate(shape=(4, 3))
    if bad is not None:  # None means "the dtype of cos" where the dtype is optional
        for call in (
            lambda: cm.check_layer(fx.cos, fx.labels, fx.forward, dtype=bad),
            lambda: cm.reference(fx.cos, fx.labels, dtype=bad),
        ):
            with pytest.raises(ValueError, match='field "dtype"'):
                call()


def test_dtype_given_must_match_the_values():
    """dtype="f16" on float32 arrays that are not f16 values is refused, element named; on
    values that are (autocast-style inputs) it is the precision of the check."""
    fx = cm.generate(dtype="f32", inputs="uniform", shape=(8, 6))
    with pytest.raises(ValueError, match=r'field "cos": element \d+ is .* not a f16 value'):
        cm.check_layer(fx.cos, fx.labels, fx.forward, dtype="f16")
    h = cm.generate(dtype="f16", inputs="uniform", shape=(8, 6))
    r = cm.check_layer(h.cos.astype(np.float32), h.labels, h.forward.astype(np.float32), dtype="half")
    assert r.passed and r.dtype == "f16", str(r)
    assert importlib.import_module("combined_margin._dtypes").ACCEPTED in str(
        pytest.raises(ValueError, dtype_name, "f8", "t").value)
