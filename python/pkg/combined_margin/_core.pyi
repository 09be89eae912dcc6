"""Type stubs of the compiled extension ``combined_margin._core`` (python/src/*.rs).

Formula: target logit cos(m1·θ + m2) − m3 with θ = acos(c) (m2 in radians, m3 in cosine
units), d out / d c = m1·sin(m1·θ + m2) / sqrt(1 − c²); other entries pass through; every
logit × s. Arrays are numpy arrays (f64, f32), or a 16-bit float array as
``("f16" | "bf16", uint16 view)`` (``_arrays.to_core``); dtype arguments are the crate's
names. The public wrappers in ``combined_margin`` accept more.
"""

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

FloatArray = Union[npt.NDArray[np.floating], Tuple[str, npt.NDArray[np.uint16]]]
ProfileArg = Union[str, "Profile"]

class Profile:
    """A numerics profile: input clamp, θ precision, angle policy, gradient mode, factor clip."""
    @staticmethod
    def preset(name: str) -> "Profile": ...
    @staticmethod
    def for_implementation(implementation: str, easy_margin: Optional[bool] = None) -> Optional["Profile"]: ...
    @staticmethod
    def names() -> List[str]: ...
    @staticmethod
    def from_json(text: str) -> "Profile": ...
    def to_json(self) -> str: ...
    @property
    def name(self) -> str: ...

class Worst:
    """The worst element: fraction = |got − want| / budget (≤ 1 passes)."""
    case: str
    side: str  # "forward" | "backward"
    role: str  # "target" | "pass-through"
    row: int
    col: int
    input: float
    label: int
    top_diff: float
    got: float
    want: float
    budget: float
    fraction: float
    region: str
    text: str

class Deviation:
    case: str
    name: str
    evidence: str
    elements: int
    note: bool

class CaseResult:
    name: str
    verdict: str
    passed: bool
    within: int
    count: int
    max_fraction: float
    worst: Optional[Worst]
    deviations: List[Deviation]
    unexplained: int
    forward_fraction: Optional[npt.NDArray[np.float64]]
    backward_fraction: Optional[npt.NDArray[np.float64]]
    forward_budget: Optional[npt.NDArray[np.float64]]
    backward_budget: Optional[npt.NDArray[np.float64]]

class Report:
    """A check's result; ``str(report)`` is ``cmargin check``'s text."""
    label: str
    implementation: str
    dtype: str
    passed: bool
    verdict: str  # "PASS" | "DEVIATES" | "FAIL"
    profile: Profile
    fingerprint: Optional[List[Tuple[str, float, float]]]
    cases: List[CaseResult]
    deviations: List[Deviation]
    worst: Optional[Worst]
    text: str
    notes: List[str]
    @property
    def exit_code(self) -> int: ...
    @property
    def forward_fraction(self) -> Optional[npt.NDArray[np.float64]]: ...
    @property
    def backward_fraction(self) -> Optional[npt.NDArray[np.float64]]: ...
    @property
    def deviation_names(self) -> List[str]: ...

class PipelineReport:
    passed: bool
    verdict: str
    profile: Profile
    deviations: List[str]
    worst: Dict[str, Tuple[int, float, float, float, float]]
    fractions: Dict[str, Union[float, npt.NDArray[np.float64]]]
    text: str
    @property
    def exit_code(self) -> int: ...

class Fixture:
    """A generated layer fixture (``cmargin generate``)."""
    name: str
    profile: str
    dtype: str
    params: Tuple[float, float, float]
    s: Optional[float]
    shape: Tuple[int, int]
    inputs: str
    seed: int
    command: str
    provenance: str
    catalogue: Tuple[int, int]
    cos: FloatArray
    labels: npt.NDArray[np.int64]
    top_diff: FloatArray
    forward: FloatArray
    backward: FloatArray
    def to_json(self) -> str: ...
    def to_npz(self) -> bytes: ...
    def write(self, path: str, force: bool = False) -> int: ...

def preset_names() -> List[str]: ...
def deviation_names() -> List[str]: ...
def check_cases(label: str, implementation: str, cases: Sequence[dict], m1: float, m2: float,
                m3: float, s: Optional[float], profile: ProfileArg, allow: Sequence[str],
                verbose: bool, dtype: Optional[str] = None, max_elements: int = 5,
                family: Optional[dict] = None) -> Report: ...
def disagree(label: str, a: FloatArray, b: FloatArray, budget: FloatArray) -> npt.NDArray[np.float64]: ...
def reference(cos: FloatArray, labels: np.ndarray, m1: float, m2: float, m3: float,
              s: Optional[float], profile: ProfileArg,
              top_diff: Optional[FloatArray] = None,
              dtype: Optional[str] = None,
              family: Optional[dict] = None) -> Tuple[np.ndarray, np.ndarray]: ...
def kinks(m1: float, m2: float, m3: float, profile: ProfileArg, dtype: str = "f64") -> List[dict]: ...
def loss_reference(features: FloatArray, weights: FloatArray, labels: np.ndarray, m1: float,
                   m2: float, m3: float, s: float, profile: ProfileArg, norm_eps: float,
                   dtype: Optional[str] = None) -> Dict[str, object]: ...
def generate(profile: ProfileArg, m1: float, m2: float, m3: float, s: Optional[float],
             shape: Optional[Tuple[int, int]], dtype: str, seed: int, inputs: str, dim: int,
             top_diff: str, ignore_every: int, input_grid: Optional[str] = None) -> Fixture: ...
def check_pipeline(label: str, features: FloatArray, weights: FloatArray, labels: np.ndarray,
                   loss: float, d_features: Optional[FloatArray], d_weights: Optional[FloatArray],
                   m1: float, m2: float, m3: float, s: float, profile: ProfileArg,
                   norm_eps: float, dtype: Optional[str] = None) -> PipelineReport: ...
def set_memory_limit(limit: Optional[int] = None) -> int:
    """Sets the memory limit in bytes (None or 0: back to $CMARGIN_MEMORY_LIMIT or the memory
    available); returns the limit in force."""
    ...
def memory_limit() -> Tuple[int, str, int]:
    """(limit in bytes, where it comes from, the bytes per element a check is estimated at)."""
    ...
def _selftest_panic() -> None: ...

def sweep_callable(
    f: Callable[[np.ndarray], Tuple[np.ndarray, np.ndarray]],
    profile: Union[str, Profile],
    params: Tuple[float, float, float],
    dtype: str,
    stride: int = 1,
    range: Optional[Tuple[float, float]] = None,
    kink_ulps: int = 64,
) -> Tuple[str, str]:
    """The sweep engine on a callable ``f(c) -> (forward, factor)`` over float64 chunks;
    returns (the table `cmargin sweep` prints, its JSON). Use ``combined_margin.sweep``."""
    ...
