"""Turning what a user hands over into numpy arrays, without copying where numpy allows.

numpy arrays pass through as they are (float16 and ml_dtypes.bfloat16 included); CPU torch
tensors become numpy views of the same memory (``Tensor.numpy()``; bfloat16 through an int16
view, as ml_dtypes.bfloat16); JAX and TensorFlow arrays through the array protocol
(``numpy.asarray``: bfloat16 comes back as ml_dtypes.bfloat16); other DLPack producers through
``numpy.from_dlpack``. A tensor on a device is refused with a message that says ``.cpu()``:
the checker reads host memory, and a silent copy would hide where the data was.

:func:`to_core` hands a 16-bit float array to the extension as ``(format, uint16 view)``
(numpy has no bfloat16 of its own; the view copies nothing).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import numpy as np


def torch_module():
    """The torch module if the caller has imported it (never imported here for them)."""
    return sys.modules.get("torch")


def is_tensor(x: Any) -> bool:
    torch = torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


#: DLPack device types whose memory the host reads: kDLCPU, kDLCUDAHost, kDLROCMHost.
_HOST_DEVICES = (1, 3, 11)


def _dlpack_device(x: Any) -> Optional[int]:
    """The DLPack device type of ``x`` if it says (``__dlpack_device__``), else None."""
    f = getattr(x, "__dlpack_device__", None)
    if f is None:
        return None
    try:
        return int(f()[0])
    except Exception:  # a producer that cannot say: let numpy decide below
        return None


def asarray(x: Any, label: str, field: str, required: bool = True) -> Optional[np.ndarray]:
    """``x`` as a numpy array; errors are one line, located as ``label: field "name": ...``."""
    if x is None:
        if required:
            raise TypeError(f'{label}: field "{field}": missing')
        return None
    if isinstance(x, np.ndarray):
        return x
    if is_tensor(x):
        if x.device.type != "cpu":
            raise TypeError(
                f'{label}: field "{field}": a tensor on {x.device}; the checker reads host '
                f"memory: pass {field}.cpu() (for example {field}.detach().cpu())"
            )
        t = x.detach()
        if t.is_conj() or t.is_neg():
            t = t.resolve_conj().resolve_neg()
        torch = torch_module()
        if t.dtype == torch.bfloat16:
            from ._dtypes import numpy_dtype

            # numpy has no bfloat16: the same bytes as int16, viewed as ml_dtypes.bfloat16.
            return t.view(torch.int16).numpy().view(numpy_dtype("bf16"))
        try:
            return t.numpy()  # a view of the tensor's memory, no copy
        except (TypeError, RuntimeError) as e:  # types numpy lacks
            raise TypeError(
                f'{label}: field "{field}": dtype {t.dtype} is not a type numpy reads ({e})'
            ) from None
    device = _dlpack_device(x)
    if device is not None and device not in _HOST_DEVICES:
        raise TypeError(
            f'{label}: field "{field}": an array on a device (DLPack device type {device}); '
            f"the checker reads host memory: copy it to the host first (torch: .cpu(), "
            f"jax: jax.device_get, cupy: .get())"
        )
    if hasattr(x, "__dlpack__") and not hasattr(x, "__array__"):
        try:
            return np.from_dlpack(x)
        except (TypeError, ValueError, RuntimeError, BufferError) as e:
            raise TypeError(
                f'{label}: field "{field}": a DLPack object numpy cannot read ({e}); '
                f"if it lives on a device, copy it to the host (.cpu())"
            ) from None
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f'{label}: field "{field}": not an array ({type(x).__name__}): {e}'
        ) from None


def is_half(a: np.ndarray) -> Optional[str]:
    """"f16" or "bf16" for a 16-bit float array, else None."""
    if a.dtype == np.float16:
        return "f16"
    if a.dtype.itemsize == 2 and a.dtype.name == "bfloat16":
        return "bf16"
    return None


def to_core(a: Any) -> Any:
    """What the extension reads: f32/f64 and integer arrays as they are, a 16-bit float array
    as ``(format, uint16 view)``."""
    if isinstance(a, np.ndarray):
        h = is_half(a)
        if h is not None:
            return (h, a.view(np.uint16))
    return a


def core_array(x: Any, label: str, field: str, required: bool = True) -> Any:
    """``to_core(asarray(...))``: any array a user hands over, as the extension reads it."""
    return to_core(asarray(x, label, field, required))
