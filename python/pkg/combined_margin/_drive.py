"""Driving an implementation: generate the inputs in-process, run the callable, check it.

The callable is run by its own framework and differentiated by that framework's autodiff:

* **torch**: ``fn(cos, labels) -> logits`` (an ``nn.Module`` or a function of two
  arguments on tensors). The driver makes ``cos`` a tensor that requires grad, runs the
  forward, calls ``out.backward(top_diff)`` and reads ``cos.grad``: the gradient autograd
  really gives. ``leaf="auto"`` first passes the leaf itself; a callable that writes into its
  input (insightface's modules do) cannot write into a leaf that requires grad, and is run
  again on ``leaf.clone()``, with a warning. Any write into the input is detected
  (``Tensor._version``) and reported. ``autocast="f16"|"bf16"``: float32 inputs on the half
  grid, the forward run under ``torch.autocast("cpu", dtype)``; the check is in the dtype the
  output comes out in.
* **jax**: ``fn(cos, labels) -> logits`` on ``jax.numpy`` arrays; ``jax.vjp`` gives the
  gradient for ``top_diff`` (f64 runs under ``jax.enable_x64``).
* **tensorflow**: ``fn(cos, labels) -> logits`` on tf tensors; ``tf.GradientTape`` gives
  the gradient for ``top_diff`` (``output_gradients``).
* **numpy**: ``fn(cos, labels) -> forward`` (forward only: no gradient is checked), or
  ``fn(cos, labels, top_diff) -> (forward, backward)`` (either may be None). It receives
  copies; a write into them is reported.

``framework="auto"`` decides from the callable: an ``nn.Module`` is torch; three
positional arguments is numpy; otherwise a probe call on small numpy arrays, whose result
type names the framework (a ``jax.Array``: jax; a ``tf.Tensor``: tensorflow; a numpy array:
numpy); a probe that raises is repeated on the arrays of each framework the caller has
imported (jax, tensorflow, torch), and the first that returns its own array type wins. A
callable none of these fit gets a ``TypeError`` naming the accepted signatures.

The inputs are the fixtures of ``generate`` (uniform, realistic, edges) in ``dtype``; with
``profile="auto"`` the edges inputs are generated once per preset, so that every preset's
kinks are probed and the fingerprint can tell the presets apart.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core, _family
from ._arrays import asarray, to_core, torch_module, is_half
from ._core import Profile, Report
from ._dtypes import dtype_name, dtype_opt, numpy_dtype

Inputs = Union[str, Sequence[str]]

FRAMEWORKS = ("torch", "jax", "tensorflow", "numpy")
_ALIASES = {
    "auto": "auto", "torch": "torch", "pytorch": "torch", "jax": "jax",
    "tensorflow": "tensorflow", "tf": "tensorflow", "numpy": "numpy", "np": "numpy",
    "plain": "numpy",
}
_IMPL = {"torch": "torch autograd", "jax": "jax.vjp", "tensorflow": "tf.GradientTape", "numpy": "callable"}

SIGNATURES = """the accepted callables:
  torch:      fn(cos, labels) -> logits [N, C]: an nn.Module or a function on torch tensors (out.backward(top_diff))
  jax:        fn(cos, labels) -> logits [N, C] on jax.numpy arrays (jax.vjp)
  tensorflow: fn(cos, labels) -> logits [N, C] on tf tensors (tf.GradientTape)
  numpy:      fn(cos, labels) -> forward [N, C] (forward only), or fn(cos, labels, top_diff) -> (forward, backward)
pass framework="torch" | "jax" | "tensorflow" | "numpy" to say which"""


def _fixtures(params, s, dtype, inputs, seed, profile, shape, dim, input_grid=None):
    kinds = [inputs] if isinstance(inputs, str) else list(inputs)
    m1, m2, m3 = params
    if isinstance(profile, Profile):
        gen_profiles = [profile.name] if profile.name in _core.preset_names() else ["recommended"]
    elif profile == "auto":
        gen_profiles = _core.preset_names()
    else:
        gen_profiles = [profile]
    out = []
    for kind in kinds:
        # Only the edges catalogue depends on the profile; other draws are the same for all.
        for p in gen_profiles if kind == "edges" else gen_profiles[:1]:
            sh = shape if kind != "edges" else None
            out.append(
                _core.generate(p, m1, m2, m3, s, sh, dtype, seed, kind, dim, "uniform", 8, input_grid)
            )
    return out


def _arity(fn) -> Optional[int]:
    """Required positional parameters of ``fn`` (of ``forward`` for a module), or None."""
    target = fn
    torch = torch_module()
    if torch is not None and isinstance(fn, torch.nn.Module):
        target = fn.forward
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    ps = list(sig.parameters.values())
    if any(p.kind == p.VAR_POSITIONAL for p in ps):
        return None
    return len([p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty])


def _framework_of(obj) -> Optional[str]:
    """The framework whose array type ``obj`` is (by the type's module), or None."""
    if isinstance(obj, (tuple, list)) and obj:
        obj = obj[0]
    if isinstance(obj, np.ndarray):
        return "numpy"
    root = type(obj).__module__.split(".")[0]
    return {"torch": "torch", "jax": "jax", "jaxlib": "jax", "tensorflow": "tensorflow", "keras": "tensorflow"}.get(root)


def _probe_inputs():
    cos = np.array([[0.1, -0.2, 0.3, 0.9, -0.9, 0.0],
                    [0.5, 0.25, -0.5, 0.75, -0.75, 0.125],
                    [-0.3, 0.6, 0.2, -0.1, 0.4, 0.7],
                    [0.05, -0.6, 0.8, -0.4, 0.3, -0.2]], dtype=np.float32)
    return cos, np.array([0, 3, -1, 5], dtype=np.int64)


def detect_framework(fn, framework="auto", who: str = "check_module") -> Tuple[str, int]:
    """(framework, arity): see the module docstring. Raises TypeError for a callable none of
    the accepted signatures fits, ValueError for an unknown framework name."""
    if not callable(fn):
        raise TypeError(f"{who}: {type(fn).__name__} is not callable; {SIGNATURES}")
    fw = _ALIASES.get(str(framework).lower()) if isinstance(framework, str) else None
    if fw is None:
        raise ValueError(
            f'{who}: field "framework": {framework!r}: expected "auto", "torch", "jax", "tensorflow" or "numpy"'
        )
    arity = _arity(fn)
    if fw != "auto":
        if fw == "numpy":
            return fw, 3 if arity == 3 else 2
        if arity == 3:
            raise TypeError(f"{who}: a {fw} callable takes (cos, labels), this one takes 3 arguments; {SIGNATURES}")
        return fw, 2
    torch = torch_module()
    if torch is not None and isinstance(fn, torch.nn.Module):
        return "torch", 2
    if arity == 3:
        return "numpy", 3
    if arity is not None and arity not in (2,):
        raise TypeError(f"{who}: the callable takes {arity} required positional argument(s); {SIGNATURES}")
    errors = []
    cos, labels = _probe_inputs()
    # numpy first (jnp and tf ops take numpy arrays), then each framework the caller has
    # imported, on that framework's own arrays (a head may use methods numpy lacks: `.at`).
    probes = [("numpy", lambda a: a)]
    if "jax" in sys.modules:
        probes.append(("jax", lambda a: sys.modules["jax"].numpy.asarray(a)))
    if "tensorflow" in sys.modules:
        probes.append(("tensorflow", lambda a: sys.modules["tensorflow"].constant(a)))
    if torch is not None:
        probes.append(("torch", lambda a: torch.from_numpy(a)))
    for fw_in, conv in probes:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with np.errstate(all="ignore"):
                    out = fn(conv(cos.copy()), conv(labels.copy()))
        except Exception as e:  # the probe: any failure means "not this framework"
            first = str(e).splitlines()[0] if str(e) else ""
            errors.append(f"on {fw_in} arrays it raised {type(e).__name__}: {first}")
            continue
        fw = _framework_of(out)
        if fw is not None and fw in (fw_in, "jax", "tensorflow", "torch"):
            return fw, 2
        errors.append(f"on {fw_in} arrays it returned {type(out).__module__}.{type(out).__name__}")
    raise TypeError(
        f"{who}: cannot tell which framework runs this callable ({'; '.join(errors)}); {SIGNATURES}"
    )


def _labels(fx, labels_shape: str, who: str) -> np.ndarray:
    if labels_shape == "N,1":
        return fx.labels.reshape(-1, 1)
    if labels_shape != "N":
        raise ValueError(f'{who}: field "labels_shape": {labels_shape!r}: expected "N" or "N,1"')
    return fx.labels


def _shape_ok(out, fx, who: str):
    want = tuple(getattr(fx, "out_shape", fx.cos.shape))
    if tuple(out.shape) != want:
        raise ValueError(f'{who}: field "forward": shape {tuple(out.shape)}, expected {want}')


class _SubcenterFixture:
    """A fixture's inputs spread over K sub-centres (SPEC.md §11.2): ``cos`` [N, C, K] whose
    max over K is the fixture's cos (so its edge cases stay at the targets), the maximum at
    a drawn sub-centre, the others below it, and every 5th (row, class) with a tie (a copy
    of the maximum at another sub-centre: the gradient goes to the first). ``forward`` and
    ``top_diff`` stay [N, C]."""

    def __init__(self, fx, k: int, seed: int):
        self.name = f"{fx.name}, K = {k}"
        self.labels = fx.labels
        self.top_diff = fx.top_diff
        self.dtype = fx.dtype
        base = np.asarray(fx.cos)
        n, c = base.shape
        self.out_shape = (n, c)
        rng = np.random.default_rng(seed)
        c64 = base.astype(np.float64)
        below = np.minimum(c64, 0.5 * c64 - 0.5 - 0.25 * rng.random((n, c)))
        cos = np.repeat(below.astype(base.dtype)[:, :, None], k, axis=2)
        for j in range(1, k):
            cos[:, :, j] = np.minimum(c64, c64 - 0.5 * rng.random((n, c))).astype(base.dtype)
        arg = rng.integers(0, k, size=(n, c))
        rows, cols = np.indices((n, c))
        cos[rows, cols, arg] = base
        if k > 1:
            tie = (np.arange(n * c).reshape(n, c) % 5) == 0
            other = (arg + 1 + rng.integers(0, k - 1, size=(n, c))) % k
            cos[rows[tie], cols[tie], other[tie]] = base[tie]
        self.cos = np.ascontiguousarray(cos)


class _Run:
    """One fixture run: the case as the implementation saw it, its outputs, the check dtype."""

    def __init__(self, fx, forward, backward, top_diff, dtype):
        self.fx = fx
        self.forward = forward
        self.backward = backward
        self.top_diff = top_diff
        self.dtype = dtype

    def case(self):
        return {
            "name": self.fx.name,
            "cos": to_core(self.fx.cos),
            "labels": self.fx.labels,
            "top_diff": to_core(self.top_diff),
            "forward": to_core(self.forward),
            "backward": to_core(self.backward),
        }


def _torch_tensor(a: np.ndarray, torch):
    """A numpy array (bfloat16 included) as a CPU tensor of the same dtype."""
    if is_half(a) == "bf16":
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


def _run_torch(fn, fx, labels_shape, leaf, notes, who, autocast):
    import torch

    cos0 = _torch_tensor(fx.cos, torch)
    labels = torch.from_numpy(_labels(fx, labels_shape, who).copy())
    if leaf not in ("auto", "leaf", "clone"):
        raise ValueError(f'{who}: field "leaf": {leaf!r}: expected "auto", "leaf" or "clone"')
    modes = ["leaf", "clone"] if leaf == "auto" else [leaf]
    fell_back = False
    for mode in modes:
        x = cos0.clone().requires_grad_(True)
        inp = x if mode == "leaf" else x.clone()
        version = inp._version
        try:
            if autocast is None:
                out = fn(inp, labels.clone())
            else:
                tdt = {"f16": torch.float16, "bf16": torch.bfloat16}[autocast]
                with torch.autocast("cpu", dtype=tdt):
                    out = fn(inp, labels.clone())
        except RuntimeError as e:
            if mode == "leaf" and leaf == "auto" and "in-place" in str(e):
                msg = (
                    f"{fx.name}: the callable writes into its input, which a leaf that "
                    f"requires grad forbids; ran it on cos.clone() ({str(e).splitlines()[0]})"
                )
                warnings.warn(msg, stacklevel=4)
                notes.append(msg)
                fell_back = True
                continue
            raise
        if inp._version != version and not fell_back:
            msg = (
                f"{fx.name}: the callable wrote into its input cos in place "
                f"(version {version} -> {inp._version}, {mode}); the check compares with the "
                f"input as generated"
            )
            warnings.warn(msg, stacklevel=4)
            notes.append(msg)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{who}: the callable returned {type(out).__name__}, expected a tensor [N, C]")
        _shape_ok(out, fx, who)
        fwd = asarray(out.detach(), who, "forward")
        dt = is_half(fwd) or fx.dtype
        if autocast is not None and dt != fx.dtype:
            notes.append(f"{fx.name}: under autocast the output is {out.dtype}: checked as {dt}")
        # The upstream gradient in the output's dtype: what backward really multiplies by.
        top = _torch_tensor(fx.top_diff, torch).to(out.dtype)
        if out.requires_grad:
            out.backward(top)
        grad = x.grad
        if grad is None:
            notes.append(f"{fx.name}: no gradient reached cos (the output does not depend on it through autograd)")
            bwd = np.zeros(fx.cos.shape, dtype=fwd.dtype)
        else:
            bwd = asarray(grad, who, "backward")
        return _Run(fx, fwd, bwd, asarray(top, who, "top_diff"), dt)
    raise AssertionError("unreachable: the clone mode returns or raises")


def _jax_x64(dtype: str):
    """A context in which jax keeps float64 (f64 runs), else a no-op context: ``jax.enable_x64``
    (newer jax) or ``jax.experimental.enable_x64`` (older)."""
    import contextlib

    if dtype != "f64":
        return contextlib.nullcontext()
    import jax

    if jax.config.read("jax_enable_x64"):
        return contextlib.nullcontext()
    ctx = getattr(jax, "enable_x64", None)
    if ctx is not None:
        return ctx(True)
    try:
        from jax.experimental import enable_x64

        return enable_x64()
    except ImportError:  # a jax without either: say how
        raise ValueError(
            "check_module: dtype f64 with jax needs float64: jax.config.update('jax_enable_x64', True)"
        ) from None


def _run_jax(fn, fx, labels_shape, notes, who):
    import jax
    import jax.numpy as jnp

    with _jax_x64(fx.dtype):
        cos = jnp.asarray(fx.cos)
        labels = jnp.asarray(_labels(fx, labels_shape, who))
        out, vjp = jax.vjp(lambda c: fn(c, labels), cos)
        if not hasattr(out, "shape") or not hasattr(out, "dtype"):
            raise TypeError(f"{who}: the callable returned {type(out).__name__}, expected an array [N, C]")
        _shape_ok(out, fx, who)
        top = jnp.asarray(fx.top_diff).astype(out.dtype)
        (grad,) = vjp(top)
        fwd = asarray(jax.device_get(out), who, "forward")
        bwd = asarray(jax.device_get(grad), who, "backward")
        topn = asarray(jax.device_get(top), who, "top_diff")
    dt = is_half(fwd) or {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}.get(fwd.dtype, fx.dtype)
    if dt != fx.dtype:
        notes.append(f"{fx.name}: the callable returned {fwd.dtype} for {fx.dtype} inputs: checked as {dt}")
    return _Run(fx, fwd, bwd, topn, dt)


def _run_tf(fn, fx, labels_shape, notes, who):
    import tensorflow as tf

    tdt = {"f64": tf.float64, "f32": tf.float32, "f16": tf.float16, "bf16": tf.bfloat16}[fx.dtype]
    wide = np.float64 if fx.dtype == "f64" else np.float32  # half values are exact in f32
    x = tf.cast(tf.constant(fx.cos.astype(wide)), tdt)
    labels = tf.constant(_labels(fx, labels_shape, who))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = fn(x, labels)
    if not tf.is_tensor(out):
        raise TypeError(f"{who}: the callable returned {type(out).__name__}, expected a tensor [N, C]")
    _shape_ok(out, fx, who)
    top = tf.cast(tf.constant(fx.top_diff.astype(wide)), out.dtype)
    grad = tape.gradient(out, x, output_gradients=top)
    fwd = asarray(out.numpy(), who, "forward")
    if grad is None:
        notes.append(f"{fx.name}: no gradient reached cos (the output does not depend on it through the tape)")
        bwd = np.zeros(fx.cos.shape, dtype=fwd.dtype)
    else:
        bwd = asarray(grad.numpy(), who, "backward")
    dt = is_half(fwd) or {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}.get(fwd.dtype, fx.dtype)
    if dt != fx.dtype:
        notes.append(f"{fx.name}: the callable returned {out.dtype.name} for {fx.dtype} inputs: checked as {dt}")
    return _Run(fx, fwd, bwd, asarray(top.numpy(), who, "top_diff"), dt)


def _run_numpy(fn, fx, arity, labels_shape, notes, who):
    cos, labels, top = fx.cos, _labels(fx, labels_shape, who), fx.top_diff
    c_in, l_in, t_in = cos.copy(), labels.copy(), top.copy()
    res = fn(c_in, l_in, t_in) if arity == 3 else fn(c_in, l_in)
    for name, before, after in (("cos", cos, c_in), ("labels", labels, l_in), ("top_diff", top, t_in)):
        if before.tobytes() != np.asarray(after).tobytes():
            msg = f"{fx.name}: the callable wrote into its input {name} in place; the check compares with the input as generated"
            warnings.warn(msg, stacklevel=4)
            notes.append(msg)
    if arity == 3:
        try:
            fwd, bwd = res
        except (TypeError, ValueError):
            raise TypeError(
                f"{who}: a numpy callable of (cos, labels, top_diff) must return (forward, backward), got {type(res).__name__}"
            ) from None
    else:
        fwd, bwd = res, None
    return _Run(fx, asarray(fwd, who, "forward", required=False),
                asarray(bwd, who, "backward", required=False), top, fx.dtype)


def _drive(fn, params, s, dtype, inputs, seed, profile, shape, dim, labels_shape, leaf, framework,
           name, autocast=None, family=None, subcenters=None):
    who = name or getattr(fn, "__qualname__", None) or type(fn).__name__
    if family is None:
        family = _family.split(params, who)
    m1, m2, m3, fam = family
    params = (m1, m2, m3)
    if subcenters is not None:
        if isinstance(subcenters, bool) or not isinstance(subcenters, (int, np.integer)):
            raise TypeError(f'{who}: field "subcenters": expected an integer K >= 1, got {_family.describe(subcenters)}')
        if subcenters < 1:
            raise ValueError(f'{who}: field "subcenters": K = {subcenters}, expected an integer K >= 1')
    if _family.has_rows(fam):
        kinds = [inputs] if isinstance(inputs, str) else list(inputs)
        if "edges" in kinds:
            raise ValueError(
                f'{who}: field "inputs": per-row margins (params arrays of N) need inputs of a fixed shape; '
                f'"edges" makes its own N: pass inputs=("uniform", "realistic") and shape=(N, C)'
            )
    dtype = dtype_name(dtype, who)
    autocast = dtype_opt(autocast, who, "autocast")
    fw, arity = detect_framework(fn, framework, who)
    if fw == "torch" and torch_module() is None:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise TypeError(f"{who}: a torch callable needs torch installed (pip install torch)") from None
    input_grid = None
    if autocast is not None:
        if fw != "torch":
            raise ValueError(f'{who}: field "autocast": torch.autocast runs torch callables only, this one is {fw}')
        if autocast not in ("f16", "bf16") or dtype != "f32":
            raise ValueError(
                f'{who}: field "autocast": {autocast!r} with dtype {dtype}: expected autocast "f16" or "bf16" '
                f'on dtype "f32" (float32 tensors the autocast region lowers)'
            )
        input_grid = autocast
    notes: List[str] = []
    runs = []
    for fx in _fixtures(params, s, dtype, inputs, seed, profile, shape, dim, input_grid):
        if subcenters is not None:
            fx = _SubcenterFixture(fx, int(subcenters), seed)
        if fw == "torch":
            runs.append(_run_torch(fn, fx, labels_shape, leaf, notes, who, autocast))
        elif fw == "jax":
            runs.append(_run_jax(fn, fx, labels_shape, notes, who))
        elif fw == "tensorflow":
            runs.append(_run_tf(fn, fx, labels_shape, notes, who))
        else:
            runs.append(_run_numpy(fn, fx, arity, labels_shape, notes, who))
    return who, params, runs, notes, fw


def _check_runs(who, impl, params, s, runs, notes, profile, allow, verbose, max_elements=5,
                fam=None) -> Report:
    m1, m2, m3 = params
    dtype = runs[0].dtype if runs else None
    r = _core.check_cases(who, impl, [run.case() for run in runs], m1, m2, m3, s, profile,
                          list(allow), bool(verbose), dtype, int(max_elements), fam)
    r.notes = list(notes)
    return r


def check_module(
    fn: Callable,
    params: Sequence[float] = (1.0, 0.5, 0.0),
    s: Optional[float] = None,
    dtype="f32",
    inputs: Inputs = ("uniform", "realistic", "edges"),
    seed: int = 1,
    profile: Union[str, Profile] = "auto",
    *,
    shape: Optional[Tuple[int, int]] = None,
    dim: int = 512,
    allow: Iterable[str] = (),
    labels_shape: str = "N",
    leaf: str = "auto",
    framework: str = "auto",
    autocast=None,
    kind: Optional[str] = None,
    name: Optional[str] = None,
    verbose: bool = False,
    max_elements: int = 5,
    curricular_t: Optional[float] = None,
    intertopk=None,
    lam: Optional[float] = None,
    subcenters: Optional[int] = None,
) -> Report:
    """Runs an implementation on generated inputs and checks it (see the module docstring).

    The target logit must be cos(m1·θ + m2) − m3 (θ = acos c, m2 in radians, m3 in cosine
    units) under the profile's patches, times ``s`` if given (None: the callable returns
    unscaled logits); the gradient the framework's autodiff gives (or the numpy callable
    returns) must be top_diff · d out / d c. ``dtype``: the precision the callable runs in
    ("f64", "f32", "f16", "bf16" or any spelling of them, e.g. ``torch.bfloat16``).
    ``framework``: "auto", "torch", "jax", "tensorflow" or "numpy" (``kind`` is its old name;
    "plain" = "numpy"). ``autocast``: "f16" or "bf16" runs a torch callable under
    ``torch.autocast`` on float32 inputs of that grid. ``labels_shape``: "N" or "N,1".
    ``leaf`` (torch): "auto", "leaf" or "clone". Returns a ``Report`` whose ``notes`` say
    whether the callable wrote into its input.

    Margin families (SPEC.md §11), as ``check_layer`` takes them: ``params`` entries may be
    arrays of N (then ``shape=(N, C)`` and inputs without "edges"), ``curricular_t``,
    ``intertopk=(k, m_prime)``, ``lam``. ``subcenters=K``: the callable gets ``cos`` of
    shape (N, C, K) (the fixture's cos as the max, the others below it, every 5th cell
    tied) and must return (N, C); its gradient is (N, C, K).
    """
    if kind is not None:
        framework = kind
    who0 = name or getattr(fn, "__qualname__", None) or type(fn).__name__
    family = _family.split(params, who0, curricular_t, intertopk, lam)
    who, params, runs, notes, fw = _drive(
        fn, params, s, dtype, inputs, seed, profile, shape, dim, labels_shape, leaf, framework, name,
        autocast, family, subcenters,
    )
    return _check_runs(who, _IMPL[fw], params, s, runs, notes, profile, allow, verbose, max_elements,
                       family[3])


def assert_conforms(fn_or_report, *args, **kwargs) -> Report:
    """``check_module(fn, ...)`` (or a given ``Report``) that raises ``AssertionError`` with
    the report text when the check does not pass, so a pytest failure reads like
    ``cmargin check``. Returns the report when it passes."""
    if isinstance(fn_or_report, Report):
        if args or kwargs:
            raise TypeError("assert_conforms(report) takes no further arguments")
        r = fn_or_report
    else:
        r = check_module(fn_or_report, *args, **kwargs)
    if not r.passed:
        raise AssertionError("\n" + str(r))
    return r


class Comparison:
    """Two implementations on the same inputs: each checked against the reference
    (``report_a``, ``report_b``), and where they differ from each other by more than the
    reference's budget of the element, element by element (``disagreements``)."""

    def __init__(self, report_a: Report, report_b: Report, disagreements: List[dict], compared: int, name_a: str, name_b: str):
        self.report_a = report_a
        self.report_b = report_b
        self.disagreements = disagreements
        self.compared = compared
        self.name_a = name_a
        self.name_b = name_b

    @property
    def agree(self) -> bool:
        """No element where the two differ by more than its budget."""
        return not self.disagreements

    def __str__(self) -> str:
        lines = [str(self.report_a), str(self.report_b)]
        k = len(self.disagreements)
        lines.append(
            f"{self.name_a} vs {self.name_b}: {k} of {self.compared} elements differ by more than their budget"
            + ("" if k else "; the two agree within budget everywhere")
        )
        for d in self.disagreements[:10]:
            lines.append(
                f"  {d['case']}: {d['side']} ({d['row']}, {d['col']}) cos = {d['input']!r} label {d['label']}: "
                f"{self.name_a} {d['a']!r}, {self.name_b} {d['b']!r} (budget {d['budget']:.2e}, {d['fraction']:.3g} of budget)"
            )
        if k > 10:
            lines.append(f"  ... and {k - 10} more")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"<Comparison {self.name_a} vs {self.name_b}: {len(self.disagreements)} disagreements>"


def compare(
    impl_a: Callable,
    impl_b: Callable,
    params: Sequence[float] = (1.0, 0.5, 0.0),
    s: Optional[float] = None,
    dtype="f32",
    inputs: Inputs = ("uniform", "realistic", "edges"),
    seed: int = 1,
    profile: Union[str, Profile] = "auto",
    *,
    names: Tuple[str, str] = ("a", "b"),
    **kwargs,
) -> Comparison:
    """Runs both implementations on the same generated inputs, checks each against the
    reference, and lists where they disagree with each other: |a − b| / budget > 1 with the
    reference's budget of the element (``kwargs`` as for ``check_module``; with
    profile="auto", b is checked under the profile a fingerprints to, so the budgets agree)."""
    allow = kwargs.pop("allow", ())
    verbose = kwargs.pop("verbose", False)
    kind = kwargs.pop("kind", None)
    framework = kwargs.pop("framework", "auto") if kind is None else kind
    drive_kw = dict(
        shape=kwargs.pop("shape", None),
        dim=kwargs.pop("dim", 512),
        labels_shape=kwargs.pop("labels_shape", "N"),
        leaf=kwargs.pop("leaf", "auto"),
        autocast=kwargs.pop("autocast", None),
    )
    # The margin family (per-row params, curricular_t, intertopk, lam) as check_module takes
    # it; sub-centres are not compared here (their gradients are [N, C, K]).
    family = _family.split(params, "compare", kwargs.pop("curricular_t", None),
                           kwargs.pop("intertopk", None), kwargs.pop("lam", None))
    if kwargs:
        raise TypeError(f"compare: unexpected arguments {sorted(kwargs)}")
    results = []
    for fn, nm in ((impl_a, names[0]), (impl_b, names[1])):
        results.append(
            _drive(fn, params, s, dtype, inputs, seed, profile, drive_kw["shape"], drive_kw["dim"],
                   drive_kw["labels_shape"], drive_kw["leaf"], framework, nm, drive_kw["autocast"],
                   family)
        )
    (wa, pa, runs_a, notes_a, fa_), (wb, pb, runs_b, notes_b, fb_) = results
    fam = family[3]
    ra = _check_runs(wa, _IMPL[fa_], pa, s, runs_a, notes_a, profile, allow, verbose, fam=fam)
    rb = _check_runs(wb, _IMPL[fb_], pb, s, runs_b, notes_b, ra.profile, allow, verbose, fam=fam)
    out: List[dict] = []
    compared = 0
    for run_a, run_b, case in zip(runs_a, runs_b, ra.cases):
        fx, fa, ba, fb, bb = run_a.fx, run_a.forward, run_a.backward, run_b.forward, run_b.backward
        for side, xa, xb, budget in (
            ("forward", fa, fb, case.forward_budget),
            ("backward", ba, bb, case.backward_budget),
        ):
            if xa is None or xb is None or budget is None:
                continue
            fr = _core.disagree(f"compare {names[0]} vs {names[1]}", to_core(xa), to_core(xb), budget)
            compared += fr.size
            cos, labels = fx.cos, fx.labels
            for r, c in zip(*np.nonzero(~(fr <= 1.0))):
                out.append(
                    dict(case=fx.name, side=side, row=int(r), col=int(c), input=float(cos[r, c]),
                         label=int(labels[r]), a=float(xa[r, c]), b=float(xb[r, c]),
                         budget=float(budget[r, c]), fraction=float(fr[r, c]))
                )
    return Comparison(ra, rb, out, compared, names[0], names[1])
