"""combined_margin: the Combined Margin loss's reference, checker and fingerprint, in-process.

The loss (insightface's combined margin, SphereFace/CosFace/ArcFace unified): for row i
with label y (an integer in [0, C), or -1 = ignore the row) and input c = cos θ,

    target entry (j = y):   out = cos(m1·θ + m2) − m3,   θ = acos(c)          (dimensionless)
                            d out / d c = m1·sin(m1·θ + m2) / sqrt(1 − c²)
    every other entry:      out = c,                       d out / d c = 1

then every logit is scaled by s and fed to softmax cross-entropy (nats). m2 is in radians,
m3 in cosine units. acos is singular at ±1 and m1·θ + m2 can pass π; each real
implementation patches this differently, and a *profile* names each patch (``Profile``,
``preset_names()``; SPEC.md §3).

Everything here calls the Rust crate ``combined-margin`` (its ``_core`` extension): the
reference, the tolerance model, the named deviations and the report text are the crate's,
so ``str(report)`` is what ``cmargin check`` prints for the same check.

Arrays: numpy arrays (float64, float32, float16, ml_dtypes.bfloat16), CPU torch tensors
(read in place), JAX and TensorFlow arrays, anything ``numpy.asarray`` or DLPack takes. The
dtype of a check is that of ``cos`` unless ``dtype=`` says otherwise; a ``dtype`` argument
takes any spelling (``"bf16"``, ``"float32"``, ``torch.float16``, ``jnp.bfloat16``,
``tf.float32``, ``np.float64``, ``ml_dtypes.bfloat16``; see ``_dtypes``). Bad input raises
``ValueError`` or ``TypeError`` with the CLI's one-line message (``label: field "labels": ...``);
an input too large for the memory limit (``set_memory_limit``) raises ``ValueError`` before
anything is allocated.

Margin families (SPEC.md §11, docs/frameworks.md): ``check_layer``, ``reference``,
``check_module`` and ``compare`` take per-row margins (any entry of ``params`` an array of N),
sub-centres (``cos`` of shape (N, C, K); ``check_module(..., subcenters=K)``), and the keywords
``curricular_t=``, ``intertopk=(k, m_prime)`` and ``lam=``.

Frameworks: ``check_module`` runs a torch module or function, a JAX function, a TensorFlow
function or a numpy callable, each differentiated by its own autodiff (docs/frameworks.md).
"""


import typing as _t

from . import _core
from ._arrays import asarray as _asarray_np
from ._arrays import core_array as _asarray
from ._dtypes import dtype_name as _dtype_name
from ._dtypes import dtype_opt as _dtype_opt
from ._core import (
    CaseResult,
    Deviation,
    Fixture,
    PipelineReport,
    Profile,
    Report,
    Worst,
    deviation_names,
    preset_names,
)
from ._core import check_layer_memory, memory_limit, set_memory_limit
from ._drive import Comparison, assert_conforms, check_module, compare
from . import _family

__version__ = _core.__version__

ProfileLike = _t.Union[str, Profile]
Params = _t.Tuple[float, float, float]

#: ArcFace (m1, m2, m3) = (1, 0.5, 0): the default of ``cmargin generate``.
ARCFACE: Params = (1.0, 0.5, 0.0)

__all__ = [
    "ARCFACE",
    "CaseResult",
    "Comparison",
    "Deviation",
    "Fixture",
    "PipelineReport",
    "Profile",
    "Report",
    "Worst",
    "assert_conforms",
    "check_layer",
    "check_layer_memory",
    "check_module",
    "check_pipeline",
    "compare",
    "deviation_names",
    "generate",
    "kinks",
    "loss_reference",
    "memory_limit",
    "preset_names",
    "reference",
    "set_memory_limit",
    "sweep",
    "SweepResult",
]


def _params(params: _t.Sequence[float], label: str) -> Params:
    try:
        m1, m2, m3 = (float(v) for v in params)
    except (TypeError, ValueError):
        raise TypeError(
            f'{label}: field "params": expected (m1, m2, m3) of numbers, got {_family.describe(params)}'
            " (per-row margins are taken by check_layer, reference, check_module and compare)"
        ) from None
    return m1, m2, m3


def reference(
    cos,
    labels,
    params: _t.Sequence[float] = ARCFACE,
    s: _t.Optional[float] = None,
    profile: ProfileLike = "recommended",
    top_diff=None,
    dtype=None,
    *,
    curricular_t: _t.Optional[float] = None,
    intertopk=None,
    lam: _t.Optional[float] = None,
) -> _t.Tuple[_t.Any, _t.Any]:
    """The layer's reference (forward, backward), bit-identical to the crate's fixtures.

    forward[i, y_i] = s·(cos(m1·θ + m2) − m3) under the profile's patches, every other entry
    s·c; backward = top_diff · d out / d c (top_diff = ones if None, so backward is then the
    factor). Both computed in f64 on the inputs as given, times s only if ``s`` is given,
    rounded once to ``dtype`` (default: that of ``cos``: float64, float32, float16 or
    bfloat16; the arrays come back in it), NaN as the positive quiet NaN.

    Margin families (SPEC.md §11): each of ``params`` may be an array of N (per-row
    margins); ``cos`` of shape (N, C, K) is K sub-centres (forward (N, C), backward
    (N, C, K): the gradient goes to the arg-max, the first index on ties);
    ``curricular_t=t`` (CurricularFace), ``intertopk=(k, m_prime)`` (or
    ``(k, m_prime, active)``) and ``lam=λ`` (A-Softmax annealing). The family's reference
    is the one the checker compares with; within the few-ulp band of a CurricularFace mask
    or a top-k boundary, where either value is accepted, the one nearer 0 is returned.
    """
    label = "reference"
    m1, m2, m3, fam = _family.split(params, label, curricular_t, intertopk, lam)
    return _core.reference(
        _asarray(cos, label, "cos"),
        _asarray(labels, label, "labels"),
        m1,
        m2,
        m3,
        s,
        profile,
        _asarray(top_diff, label, "top_diff", required=False),
        _dtype_opt(dtype, label),
        fam,
    )


def kinks(
    params: _t.Sequence[float] = ARCFACE, profile: ProfileLike = "recommended", dtype="f64"
) -> _t.List[_t.Dict]:
    """Where the profile's forward or backward is not smooth, in cos-space (SPEC.md §4).

    A list of dicts sorted by ``c``: ``c`` (cos θ, as ``dtype`` represents the profile's
    constants), ``theta`` = acos(c) in radians, ``kind`` (e.g. "angle clamp (phi = hi)",
    "th/mm threshold", "pole at c = +1") and ``smoothness`` (jump, corner, pole, boundary,
    gradientcorner, smooth).
    """
    m1, m2, m3 = _params(params, "kinks")
    return _core.kinks(m1, m2, m3, profile, _dtype_name(dtype, "kinks"))


def loss_reference(
    features,
    weights,
    labels,
    params: _t.Sequence[float] = ARCFACE,
    s: float = 64.0,
    profile: ProfileLike = "recommended",
    norm_eps: float = 0.0,
    dtype=None,
) -> _t.Dict[str, object]:
    """The loss pipeline's f64 reference with every intermediate and the gradients (SPEC.md §8).

    x̂ = x / sqrt(Σx² + eps) (features [N, D]), ŵ = w / sqrt(Σw² + eps) (weights [C, D]),
    cos = x̂·ŵᵀ, m = margin(cos), z = s·m, loss = (1/N_valid) Σ_valid logsumexp(z_i) − z_i,y
    (nats). Keys: features_normalized, weights_normalized, cos, margin_logits, scaled_logits,
    probs, lse, row_loss (NaN for ignored rows), loss, valid, d_scaled_logits,
    d_margin_logits, d_cos, d_features_normalized, d_features, d_weights (all f64).
    ``dtype`` (default: that of ``features``) rounds the profile's constants as the
    implementation would hold them.
    """
    label = "loss_reference"
    m1, m2, m3 = _params(params, label)
    return _core.loss_reference(
        _asarray(features, label, "features"),
        _asarray(weights, label, "weights"),
        _asarray(labels, label, "labels"),
        m1,
        m2,
        m3,
        float(s),
        profile,
        float(norm_eps),
        _dtype_opt(dtype, label),
    )


def check_layer(
    cos,
    labels,
    forward=None,
    backward=None,
    top_diff=None,
    *,
    params: _t.Sequence[float] = ARCFACE,
    s: _t.Optional[float] = None,
    profile: ProfileLike = "auto",
    allow: _t.Iterable[str] = (),
    dtype=None,
    easy_margin: _t.Optional[bool] = None,
    name: str = "check_layer",
    verbose: bool = False,
    max_elements: int = 5,
    curricular_t: _t.Optional[float] = None,
    intertopk=None,
    lam: _t.Optional[float] = None,
) -> Report:
    """Checks an implementation's layer outputs against the reference (SPEC.md §5, §6).

    ``cos`` [N, C] float64/float32/float16/bfloat16 (the precision the implementation ran
    in, unless ``dtype`` says otherwise: then ``cos`` must hold values of it), ``labels`` [N]
    or [N, 1] (−1 = ignored row), ``forward`` and/or ``backward`` [N, C] (any float
    precision; widened, never rounded), ``top_diff`` [N, C] (required with ``backward``).
    ``s``: the scale the outputs carry (None: the layer does not scale). ``profile``: a
    ``Profile``, a preset name, or "auto" (rank every preset and variant, check against the
    best, as ``cmargin check --profile auto``). Each element passes when
    |got − want| ≤ budget; ``allow`` names deviations to accept. ``easy_margin``: what the
    implementation was configured with, if it has the flag (as a dump's params.easy_margin;
    a flag the code ignores is then named easy-margin-ignored). ``verbose`` lists the
    out-of-budget elements no deviation explains, ``max_elements`` of them per case.

    Margin families (SPEC.md §11): each of ``params = (m1, m2, m3)`` may be an array of N
    (per-row margins: ElasticFace, AdaFace with a negative m2, MagFace; arrays that each hold
    one value are the scalar case; varying ones need a named ``profile``, not "auto").
    ``cos`` of shape (N, C, K) is K sub-centres: ``forward`` and ``top_diff`` are (N, C),
    ``backward`` (N, C, K), the gradient at the arg-max sub-centre (first index on ties)
    and exactly 0 elsewhere (otherwise named ``subcenter-reduction-differs``).
    ``curricular_t=t``: CurricularFace's hard negatives c·(t + c), t the value the forward
    used; ``intertopk=(k, m_prime)`` or ``(k, m_prime, active)``: the k hardest
    non-targets get cos(θ − m′); ``lam=λ``: A-Softmax's target (λ·c + ψ(θ))/(1 + λ).

    Returns a ``Report``; ``str(report)`` is ``cmargin check``'s text for the same check.
    """
    m1, m2, m3, fam = _family.split(params, name, curricular_t, intertopk, lam)
    case = {
        "name": name,
        "cos": _asarray(cos, name, "cos"),
        "labels": _asarray(labels, name, "labels"),
        "forward": _asarray(forward, name, "forward", required=False),
        "backward": _asarray(backward, name, "backward", required=False),
        "top_diff": _asarray(top_diff, name, "top_diff", required=False),
        "easy_margin": None if easy_margin is None else bool(easy_margin),
    }
    return _core.check_cases(
        name, "arrays", [case], m1, m2, m3, s, profile, list(allow), bool(verbose),
        _dtype_opt(dtype, name), int(max_elements), fam,
    )


def check_pipeline(
    features,
    weights,
    labels,
    loss: float,
    d_features=None,
    d_weights=None,
    *,
    params: _t.Sequence[float] = ARCFACE,
    s: float = 64.0,
    profile: ProfileLike = "recommended",
    norm_eps: float = 0.0,
    dtype=None,
    name: str = "check_pipeline",
) -> PipelineReport:
    """Checks a loss head's outputs (loss in nats, d loss / d features [N, D], d loss / d
    weights [C, D]) against ``loss_reference`` within the pipeline budget (SPEC.md §8.3).

    A weight gradient that equals d loss / d ŵ (not through the normalization) is named
    ``weight-gradient-wrt-normalized`` (SPEC.md §8.4).
    """
    m1, m2, m3 = _params(params, name)
    return _core.check_pipeline(
        name,
        _asarray(features, name, "features"),
        _asarray(weights, name, "weights"),
        _asarray(labels, name, "labels"),
        float(loss),
        _asarray(d_features, name, "d_features", required=False),
        _asarray(d_weights, name, "d_weights", required=False),
        m1,
        m2,
        m3,
        float(s),
        profile,
        float(norm_eps),
        _dtype_opt(dtype, name),
    )


def generate(
    profile: ProfileLike = "recommended",
    params: _t.Sequence[float] = ARCFACE,
    s: _t.Optional[float] = None,
    shape: _t.Optional[_t.Tuple[int, int]] = None,
    dtype="f32",
    seed: int = 1,
    inputs: str = "uniform",
    dim: int = 512,
    top_diff: str = "uniform",
    ignore_every: int = 8,
    out: _t.Union[None, str, _t.Sequence[str]] = None,
    force: bool = False,
    input_grid=None,
) -> Fixture:
    """The fixture ``cmargin generate`` makes from the same arguments (SPEC.md §7).

    ``inputs``: "uniform" (cos ~ U(−1, 1)), "realistic" (clip(N(0, 1)/sqrt(dim), −1, 1)) or
    "edges" (the profile's edge-case catalogue at the targets). ``shape`` (N, C) defaults to
    16×10, or with edges to enough rows for the whole catalogue. Every ``ignore_every``-th
    row is ignored (label −1, out-of-range cos). ``out``: path(s) ending in .json or .npz,
    written atomically with the bytes the CLI writes; an existing file needs ``force=True``.
    The arrays come back in ``dtype`` (float16: numpy.float16, bf16: ml_dtypes.bfloat16).
    ``input_grid`` (a narrower dtype): cos drawn on that grid, as autocast feeds a half
    tensor to a float32 layer (``cmargin generate --input-grid``).
    """
    m1, m2, m3 = _params(params, "generate")
    fx = _core.generate(
        profile,
        m1,
        m2,
        m3,
        s,
        None if shape is None else (int(shape[0]), int(shape[1])),
        _dtype_name(dtype, "generate"),
        int(seed),
        inputs,
        int(dim),
        top_diff,
        int(ignore_every),
        _dtype_opt(input_grid, "generate", "input_grid"),
    )
    paths = [] if out is None else [out] if isinstance(out, (str, bytes)) or hasattr(out, "__fspath__") else list(out)
    import os

    if not force:
        for p in paths:
            if os.path.exists(p):
                raise FileExistsError(f"{os.fspath(p)} exists; pass force=True to overwrite it")
    for p in paths:
        fx.write(os.fspath(p), force)
    return fx


class SweepResult:
    """The result of :func:`sweep`: ``passed``, ``complete``, the JSON as a dict (``data``:
    maxima of the budget fraction and the ulp error, forward and backward, with the input
    where each is reached; per-region maxima; the ulp histogram; the worst inputs), and
    ``str()`` = the table `cmargin sweep` prints."""

    def __init__(self, text: str, data: dict):
        self.text = text
        self.data = data

    @property
    def passed(self) -> bool:
        return self.data.get("verdict") == "pass"

    @property
    def complete(self) -> bool:
        return bool(self.data.get("inputs", {}).get("complete"))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"<SweepResult {self.data.get('verdict')} ({self.data.get('inputs', {}).get('evaluated', '?')} inputs)>"


def sweep(fn, params: _t.Sequence[float], profile="recommended", dtype="f32",
          stride: int = 1, range: _t.Optional[_t.Tuple[float, float]] = None,
          kink_ulps: int = 64) -> SweepResult:
    """Sweep a callable over every float of ``dtype`` in [−1, 1] (both zeros) plus 1024 floats
    beyond ±1, against the f64 reference under ``profile`` and the tolerance model.

    ``fn(c) -> (forward, factor)``: ``c`` is a 1-D array of the dtype's values (float32 for
    f32 and bf16, float16 for f16, float64 for f64), a few million at a time; ``forward`` is
    the unscaled target logit cos(m1·θ + m2) − m3 (θ = acos c, as the profile patches it) and
    ``factor`` the backward factor d forward / d c. ``stride=k`` takes every k-th float (and
    still every float within ``kink_ulps`` of each kink); ``range=(lo, hi)`` a subset.
    """
    import json

    import numpy as np

    dtype = _dtype_name(dtype, "sweep")
    np_dtype = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "bf16": np.float32}[dtype]
    m1, m2, m3 = _params(params, "sweep")

    def call(c):
        out, factor = fn(c.astype(np_dtype))
        out = _asarray_np(out, "sweep", "forward")
        factor = _asarray_np(factor, "sweep", "factor")
        return (np.ascontiguousarray(out, dtype=np.float64).reshape(-1),
                np.ascontiguousarray(factor, dtype=np.float64).reshape(-1))

    text, js = _core.sweep_callable(call, profile, (m1, m2, m3), dtype, stride, range, kink_ulps)
    return SweepResult(text, json.loads(js))
