"""The one dtype normaliser: every function that takes a ``dtype`` (check_module, check_layer,
check_pipeline, generate, sweep, reference, loss_reference, kinks) passes it through
:func:`dtype_name`, which gives the crate's name ("f64", "f32", "f16" or "bf16").

Accepted: the crate's names; "float64", "fp64", "double", "float32", "fp32", "single",
"float", "float16", "fp16", "half", "bfloat16" (any case, with or without a "torch." /
"tf." / "jnp." / "np." prefix); numpy dtypes and scalar types (``np.float32``,
``np.dtype("float16")``), torch dtypes (``torch.bfloat16``), JAX's (``jnp.float32``),
TensorFlow's (``tf.float16``) and ``ml_dtypes.bfloat16``.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import numpy as np

#: crate name -> the spellings that mean it (lower case).
SPELLINGS = {
    "f64": ("f64", "float64", "fp64", "double"),
    "f32": ("f32", "float32", "fp32", "single", "float"),
    "f16": ("f16", "float16", "fp16", "half"),
    "bf16": ("bf16", "bfloat16"),
}
_BY_SPELLING = {s: name for name, spellings in SPELLINGS.items() for s in spellings}
_PREFIXES = ("torch.", "tf.", "tensorflow.", "jnp.", "jax.numpy.", "np.", "numpy.")

ACCEPTED = (
    "one of "
    + ", ".join(f'"{s}"' for spellings in SPELLINGS.values() for s in spellings)
    + "; a numpy, torch, JAX or TensorFlow dtype (np.float32, torch.bfloat16, jnp.float16, "
    "tf.float64); or ml_dtypes.bfloat16"
)


def _key(d: Any) -> Optional[str]:
    """The lower-case name ``d`` spells, or None."""
    if isinstance(d, str):
        k = d.strip().lower()
        for p in _PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
        return k
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(d, torch.dtype):
        return str(d).split(".")[-1]
    if type(d).__module__.split(".")[0] == "tensorflow":
        name = getattr(d, "name", None)
        return name.lower() if isinstance(name, str) else None
    try:
        dt = np.dtype(d)  # numpy dtypes and types, jnp.float32 (has .dtype), ml_dtypes.bfloat16
    except Exception:
        return None
    return dt.name


def dtype_name(d: Any, label: str, field: str = "dtype") -> str:
    """The crate's name of ``d`` ("f64", "f32", "f16" or "bf16"); a ValueError listing what
    is accepted otherwise."""
    if isinstance(d, bool) or d is None:
        k = None
    else:
        k = _key(d)
    name = _BY_SPELLING.get(k) if k is not None else None
    if name is None:
        shown = f'"{d}"' if isinstance(d, str) else repr(d)  # strings quoted as the CLI quotes them
        raise ValueError(f'{label}: field "{field}": {shown} is not a float dtype; expected {ACCEPTED}')
    return name


def dtype_opt(d: Any, label: str, field: str = "dtype") -> Optional[str]:
    return None if d is None else dtype_name(d, label, field)


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a crate name (bf16: ml_dtypes.bfloat16)."""
    if name == "bf16":
        try:
            import ml_dtypes
        except ImportError:
            raise TypeError("bfloat16 arrays need the ml_dtypes package (pip install ml_dtypes)") from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype({"f64": np.float64, "f32": np.float32, "f16": np.float16}[name])
