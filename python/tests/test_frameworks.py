"""check_module on every framework and every precision: a head written from the formula in
torch, JAX, TensorFlow and numpy (heads.py, independent of the crate) passes the ``analytic``
profile in f64, f32, f16 and bf16, each differentiated by its own autodiff; the same head
with the margin added as a constant (straight-through gradient) is rejected with
``gradient-detached`` named. The framework is detected from a probe call, or given; a
callable no framework fits gets the accepted signatures, never a crash inside another
framework. Each framework's arrays, half precision included, are read by check_layer."""

import numpy as np
import pytest

import combined_margin as cm
from conftest import require_framework
from heads import jax_head, numpy_head, tf_head, torch_head

DTYPES = ["f64", "f32", "f16", "bf16"]
# The analytic profile's gradient is ±inf at c = ±1 and NaN outside [-1, 1] (the edges
# inputs probe both): named non-finite-output, accepted here, as in test_torch.py.
ALLOW = ["non-finite-output"]
HEADS = {"torch": torch_head, "jax": jax_head, "tensorflow": tf_head, "numpy": numpy_head}
SMALL = dict(inputs=("uniform", "edges"), shape=(32, 10))


def _head(framework, **kw):
    if framework != "numpy":
        require_framework(framework)
    return HEADS[framework](**kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", ["torch", "jax", "tensorflow", "numpy"])
def test_correct_head_passes(framework, dtype):
    r = cm.check_module(_head(framework), dtype=dtype, profile="analytic", allow=ALLOW, **SMALL)
    assert r.passed, str(r)
    assert r.dtype == dtype, str(r)
    assert r.implementation == {"torch": "torch autograd", "jax": "jax.vjp",
                                "tensorflow": "tf.GradientTape", "numpy": "callable"}[framework]
    # The report's header names the precision the head ran in.
    assert f", {dtype}" in str(r).splitlines()[0] or dtype in str(r).splitlines()[0], str(r)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", ["torch", "jax", "tensorflow", "numpy"])
def test_planted_straight_through_gradient_is_named(framework, dtype):
    r = cm.check_module(_head(framework, bug="straight-through"), dtype=dtype, profile="analytic",
                        allow=ALLOW, **SMALL)
    assert not r.passed, str(r)
    assert "gradient-detached" in r.deviation_names, str(r)


@pytest.mark.parametrize("framework", ["jax", "tensorflow"])
def test_framework_is_detected_from_the_probe(framework):
    """The JAX user of the issue: a two-argument JAX function was taken for torch and died
    inside JAX. Now the probe's result type names the framework."""
    r = cm.check_module(_head(framework), profile="analytic", allow=ALLOW, inputs="uniform")
    assert r.passed and r.implementation == {"jax": "jax.vjp", "tensorflow": "tf.GradientTape"}[framework], str(r)


def test_framework_given_and_numpy_forward_only():
    r = cm.check_module(_head("jax"), profile="analytic", framework="jax", inputs="uniform")
    assert r.passed, str(r)

    def forward_only(cos, labels):
        f, _ = numpy_head()(cos, labels, np.ones_like(cos))
        return f

    r = cm.check_module(forward_only, profile="analytic", inputs="uniform")
    assert r.passed and r.implementation == "callable", str(r)
    assert all(c.backward_fraction is None for c in r.cases)


def test_unrecognised_callable_names_the_signatures():
    def strange(cos, labels):
        raise RuntimeError("not a head")

    with pytest.raises(TypeError) as e:
        cm.check_module(strange)
    msg = str(e.value)
    for needle in ("cannot tell which framework", "not a head", "fn(cos, labels) -> logits",
                   "fn(cos, labels, top_diff) -> (forward, backward)", 'framework="torch"'):
        assert needle in msg, msg
    with pytest.raises(TypeError, match="required positional"):
        cm.check_module(lambda a, b, c, d: None)
    with pytest.raises(TypeError, match="not callable"):
        cm.check_module(42)
    with pytest.raises(ValueError, match='field "framework"'):
        cm.check_module(numpy_head(), framework="paddle")


@pytest.mark.parametrize("autocast", ["f16", "bf16"])
def test_torch_autocast(autocast):
    """float32 tensors on the half grid, the head run under torch.autocast: elementwise
    acos/cos stay float32 under CPU autocast, so the output is float32 and checked as f32,
    on inputs that are exactly the half values autocast would hand over."""
    torch = require_framework("torch")
    r = cm.check_module(torch_head(), autocast=autocast, profile="analytic", allow=ALLOW, **SMALL)
    assert r.passed, str(r)
    assert all(f"_{autocast}inputs_" in c.name for c in r.cases), [c.name for c in r.cases]

    # A head that really lowers (a matmul-free cast, as an autocast-region op would): the
    # output comes out in the half dtype and the check is in it.
    tdt = {"f16": torch.float16, "bf16": torch.bfloat16}[autocast]

    def lowered(cos, labels):
        return torch_head()(cos.to(tdt), labels)

    r = cm.check_module(lowered, autocast=autocast, profile="analytic", allow=ALLOW, **SMALL)
    assert r.passed and r.dtype == autocast, str(r)
    with pytest.raises(ValueError, match='field "autocast"'):
        cm.check_module(torch_head(), autocast="f16", dtype="f64")
    with pytest.raises(ValueError, match="torch callables only"):
        cm.check_module(numpy_head(), autocast="bf16")


# --- arrays of every framework, every precision, into check_layer -----------------------

def _as(framework, a):
    """A numpy array (float16 / ml_dtypes.bfloat16 included) as the framework's array."""
    if framework == "numpy":
        return a
    if framework == "torch":
        torch = require_framework("torch")
        if a.dtype.name == "bfloat16":
            return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
        return torch.from_numpy(a.copy())
    if framework == "jax":
        jnp = require_framework("jax.numpy")
        return jnp.asarray(a)
    tf = require_framework("tensorflow")
    if a.dtype.name == "bfloat16":
        return tf.cast(tf.constant(a.astype(np.float32)), tf.bfloat16)
    return tf.constant(a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", ["numpy", "torch", "jax", "tensorflow"])
def test_check_layer_reads_every_frameworks_arrays(framework, dtype):
    import contextlib

    ctx = contextlib.nullcontext()
    if framework == "jax" and dtype == "f64":
        ctx = require_framework("jax").enable_x64(True)  # jax keeps float64 only when asked
    with ctx:
        fx = cm.generate(dtype=dtype, inputs="uniform", shape=(16, 10))
        assert fx.cos.dtype.name == {"f64": "float64", "f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dtype]
        r = cm.check_layer(_as(framework, fx.cos), _as(framework, fx.labels), _as(framework, fx.forward),
                           _as(framework, fx.backward), _as(framework, fx.top_diff), profile="recommended")
        assert r.passed and r.dtype == dtype, str(r)
        # Teeth: one target logit moved by 0.25 is far out of budget in every precision
        # (bf16's budget near 1 is about 1e-2).
        fwd = fx.forward.astype(np.float64)
        row = int(np.nonzero(fx.labels != -1)[0][0])
        fwd[row, fx.labels[row]] += 0.25
        bad = fwd.astype(fx.forward.dtype)
        r = cm.check_layer(_as(framework, fx.cos), _as(framework, fx.labels), _as(framework, bad),
                           profile="recommended")
        assert not r.passed and r.worst.row == row, str(r)
