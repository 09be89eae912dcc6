"""Driving an implementation: generate the inputs in-process, run the callable, check it.

Two kinds of callable:

* **torch**: ``fn(cos, labels) -> logits`` (an ``nn.Module`` or a function of two
  arguments). The driver makes ``cos`` a tensor that requires grad, runs the forward, calls
  ``out.backward(top_diff)`` and reads ``cos.grad``: the gradient autograd really gives.
  ``leaf="auto"`` first passes the leaf itself; a callable that writes into its input
  (insightface's modules do) cannot write into a leaf that requires grad, and is run again
  on ``leaf.clone()``, with a warning. Any write into the input is detected
  (``Tensor._version``) and reported.
* **plain**: ``fn(cos, labels, top_diff) -> (forward, backward)`` on numpy arrays (either
  may be None). It receives copies; a write into them is reported.

The inputs are the fixtures of ``generate`` (uniform, realistic, edges); with
``profile="auto"`` the edges inputs are generated once per preset, so that every preset's
kinks are probed and the fingerprint can tell the presets apart.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from ._arrays import asarray, torch_module
from ._core import Profile, Report

Inputs = Union[str, Sequence[str]]


def _fixtures(params, s, dtype, inputs, seed, profile, shape, dim):
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
                _core.generate(p, m1, m2, m3, s, sh, dtype, seed, kind, dim, "uniform", 8)
            )
    return out


def _is_torch_callable(fn, kind: str) -> bool:
    if kind == "torch":
        return True
    if kind == "plain":
        return False
    if kind != "auto":
        raise ValueError(f'check_module: field "kind": {kind!r}: expected "auto", "torch" or "plain"')
    torch = torch_module()
    if torch is not None and isinstance(fn, torch.nn.Module):
        return True
    try:
        sig = inspect.signature(fn)
        n = len(
            [
                p
                for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                and p.default is p.empty
            ]
        )
    except (TypeError, ValueError):
        n = 3
    return n == 2


def _run_torch(fn, fx, dtype: str, labels_shape: str, leaf: str, notes: List[str], who: str):
    import torch

    tdt = {"f32": torch.float32, "f64": torch.float64}[dtype]
    cos0 = torch.from_numpy(np.ascontiguousarray(fx.cos)).to(tdt)
    labels = torch.from_numpy(fx.labels)
    if labels_shape == "N,1":
        labels = labels.view(-1, 1)
    elif labels_shape != "N":
        raise ValueError(f'{who}: field "labels_shape": {labels_shape!r}: expected "N" or "N,1"')
    top = torch.from_numpy(np.ascontiguousarray(fx.top_diff)).to(tdt)
    if leaf not in ("auto", "leaf", "clone"):
        raise ValueError(f'{who}: field "leaf": {leaf!r}: expected "auto", "leaf" or "clone"')
    modes = ["leaf", "clone"] if leaf == "auto" else [leaf]
    fell_back = False
    for mode in modes:
        x = cos0.clone().requires_grad_(True)
        inp = x if mode == "leaf" else x.clone()
        version = inp._version
        try:
            out = fn(inp, labels.clone())
        except RuntimeError as e:
            if mode == "leaf" and leaf == "auto" and "in-place" in str(e):
                msg = (
                    f"{fx.name}: the callable writes into its input, which a leaf that "
                    f"requires grad forbids; ran it on cos.clone() ({str(e).splitlines()[0]})"
                )
                warnings.warn(msg, stacklevel=3)
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
            warnings.warn(msg, stacklevel=3)
            notes.append(msg)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{who}: the callable returned {type(out).__name__}, expected a tensor [N, C]")
        if tuple(out.shape) != tuple(cos0.shape):
            raise ValueError(
                f'{who}: field "forward": shape {tuple(out.shape)}, expected {tuple(cos0.shape)}'
            )
        if out.requires_grad:
            out.backward(top)
        grad = x.grad
        fwd = asarray(out.detach(), who, "forward")
        if grad is None:
            notes.append(f"{fx.name}: no gradient reached cos (the output does not depend on it through autograd)")
            bwd = np.zeros_like(fx.cos)
        else:
            bwd = asarray(grad, who, "backward")
        return fwd, bwd
    raise AssertionError("unreachable: the clone mode returns or raises")


def _run_plain(fn, fx, notes: List[str], who: str):
    cos, labels, top = fx.cos, fx.labels, fx.top_diff
    c_in, l_in, t_in = cos.copy(), labels.copy(), top.copy()
    res = fn(c_in, l_in, t_in)
    for name, before, after in (("cos", cos, c_in), ("labels", labels, l_in), ("top_diff", top, t_in)):
        if before.tobytes() != np.asarray(after).tobytes():
            msg = f"{fx.name}: the callable wrote into its input {name} in place; the check compares with the input as generated"
            warnings.warn(msg, stacklevel=3)
            notes.append(msg)
    try:
        fwd, bwd = res
    except (TypeError, ValueError):
        raise TypeError(
            f"{who}: a plain callable must return (forward, backward), got {type(res).__name__}"
        ) from None
    return asarray(fwd, who, "forward", required=False), asarray(bwd, who, "backward", required=False)


def _drive(fn, params, s, dtype, inputs, seed, profile, shape, dim, labels_shape, leaf, kind, name):
    who = name or getattr(fn, "__qualname__", None) or type(fn).__name__
    params = tuple(float(v) for v in params)
    use_torch = _is_torch_callable(fn, kind)
    if use_torch and torch_module() is None:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise TypeError(f"{who}: a torch callable needs torch installed (pip install torch)") from None
    notes: List[str] = []
    runs = []
    for fx in _fixtures(params, s, dtype, inputs, seed, profile, shape, dim):
        if use_torch:
            fwd, bwd = _run_torch(fn, fx, dtype, labels_shape, leaf, notes, who)
        else:
            fwd, bwd = _run_plain(fn, fx, notes, who)
        runs.append((fx, fwd, bwd))
    return who, params, runs, notes, use_torch


def _check_runs(who, impl, params, s, runs, notes, profile, allow, verbose) -> Report:
    cases = [
        {
            "name": fx.name,
            "cos": fx.cos,
            "labels": fx.labels,
            "top_diff": fx.top_diff,
            "forward": fwd,
            "backward": bwd,
        }
        for fx, fwd, bwd in runs
    ]
    m1, m2, m3 = params
    r = _core.check_cases(who, impl, cases, m1, m2, m3, s, profile, list(allow), verbose)
    r.notes = list(notes)
    return r


def check_module(
    fn: Callable,
    params: Sequence[float] = (1.0, 0.5, 0.0),
    s: Optional[float] = None,
    dtype: str = "f32",
    inputs: Inputs = ("uniform", "realistic", "edges"),
    seed: int = 1,
    profile: Union[str, Profile] = "auto",
    *,
    shape: Optional[Tuple[int, int]] = None,
    dim: int = 512,
    allow: Iterable[str] = (),
    labels_shape: str = "N",
    leaf: str = "auto",
    kind: str = "auto",
    name: Optional[str] = None,
    verbose: bool = False,
) -> Report:
    """Runs an implementation on generated inputs and checks it (see the module docstring).

    The target logit must be cos(m1·θ + m2) − m3 (θ = acos c, m2 in radians, m3 in cosine
    units) under the profile's patches, times ``s`` if given (None: the callable returns
    unscaled logits); the gradient autograd gives (torch) or the callable returns (plain)
    must be top_diff · d out / d c. ``dtype``: "f32" or "f64", the precision the callable
    runs in. ``labels_shape``: "N" or "N,1" (torch). ``leaf``: "auto", "leaf" or "clone".
    ``kind``: "auto" (nn.Module or two arguments: torch; three: plain), "torch", "plain".
    Returns a ``Report`` whose ``notes`` say whether the callable wrote into its input.
    """
    who, params, runs, notes, use_torch = _drive(
        fn, params, s, dtype, inputs, seed, profile, shape, dim, labels_shape, leaf, kind, name
    )
    impl = "torch autograd" if use_torch else "callable"
    return _check_runs(who, impl, params, s, runs, notes, profile, allow, verbose)


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
    dtype: str = "f32",
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
    drive_kw = dict(
        shape=kwargs.pop("shape", None),
        dim=kwargs.pop("dim", 512),
        labels_shape=kwargs.pop("labels_shape", "N"),
        leaf=kwargs.pop("leaf", "auto"),
        kind=kwargs.pop("kind", "auto"),
    )
    if kwargs:
        raise TypeError(f"compare: unexpected arguments {sorted(kwargs)}")
    results = []
    for fn, nm in ((impl_a, names[0]), (impl_b, names[1])):
        results.append(
            _drive(fn, params, s, dtype, inputs, seed, profile, drive_kw["shape"], drive_kw["dim"],
                   drive_kw["labels_shape"], drive_kw["leaf"], drive_kw["kind"], nm)
        )
    (wa, pa, runs_a, notes_a, ta), (wb, pb, runs_b, notes_b, tb) = results
    ra = _check_runs(wa, "torch autograd" if ta else "callable", pa, s, runs_a, notes_a, profile, allow, verbose)
    rb = _check_runs(wb, "torch autograd" if tb else "callable", pb, s, runs_b, notes_b, ra.profile, allow, verbose)
    out: List[dict] = []
    compared = 0
    for (fx, fa, ba), (_, fb, bb), case in zip(runs_a, runs_b, ra.cases):
        for side, xa, xb, budget in (
            ("forward", fa, fb, case.forward_budget),
            ("backward", ba, bb, case.backward_budget),
        ):
            if xa is None or xb is None or budget is None:
                continue
            fr = _core.disagree(f"compare {names[0]} vs {names[1]}", xa, xb, budget)
            compared += fr.size
            cos, labels = fx.cos, fx.labels
            for r, c in zip(*np.nonzero(~(fr <= 1.0))):
                out.append(
                    dict(case=fx.name, side=side, row=int(r), col=int(c), input=float(cos[r, c]),
                         label=int(labels[r]), a=float(xa[r, c]), b=float(xb[r, c]),
                         budget=float(budget[r, c]), fraction=float(fr[r, c]))
                )
    return Comparison(ra, rb, out, compared, names[0], names[1])
