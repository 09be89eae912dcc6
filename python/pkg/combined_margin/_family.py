"""The margin families' arguments (SPEC.md §11) as the extension takes them.

``params = (m1, m2, m3)``: each a number or an array of N (one margin per row);
``curricular_t``: CurricularFace's t; ``intertopk``: ``(k, m_prime)`` or
``(k, m_prime, active)``; ``lam``: A-Softmax's λ. Types are checked here (``TypeError``
naming the field); shapes, lengths and ranges in the extension (``ValueError`` naming the
field and the expected shape). Messages never print an array's values.
"""

from __future__ import annotations

import operator
import typing as _t

import numpy as np

#: The scalar the extension is given for a margin passed as an array (the array overrides
#: it row by row; an always-valid value, so that only the array's own values are judged).
_PLACEHOLDER = (1.0, 0.5, 0.0)


def describe(v) -> str:
    """A value for a message: its type and shape, never an array's contents."""
    shape = getattr(v, "shape", None)
    if shape is not None:
        return f"{type(v).__name__} of shape {tuple(shape)}"
    if isinstance(v, (list, tuple)):
        return f"{type(v).__name__} of length {len(v)}"
    r = repr(v)
    return r if len(r) <= 60 else f"{type(v).__name__}"


def _number(v, label: str, field: str) -> float:
    if isinstance(v, (str, bytes)) or v is None:
        raise TypeError(f'{label}: field "{field}": expected a number, got {describe(v)}')
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f'{label}: field "{field}": expected a number, got {describe(v)}') from None


def _margin(v, label: str, field: str):
    """A number, or an array of margins (float64, any shape: the extension judges it)."""
    if np.ndim(v) == 0 and not isinstance(v, (list, tuple)):
        return _number(v, label, field), None
    try:
        a = np.asarray(v)
    except Exception:
        raise TypeError(
            f'{label}: field "{field}": expected a number or an array of N numbers, got {describe(v)}'
        ) from None
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise TypeError(
            f'{label}: field "{field}": expected a number or an array of N numbers, '
            f"got an array of dtype {a.dtype} and shape {a.shape}"
        )
    return None, np.ascontiguousarray(a, dtype=np.float64)


def split(params, label: str, curricular_t=None, intertopk=None, lam=None):
    """(m1, m2, m3, family): the scalars for the extension (a placeholder where the margin
    is an array) and the family dict (None for the plain head)."""
    if isinstance(params, (str, bytes, dict)):
        raise TypeError(f'{label}: field "params": expected (m1, m2, m3), got {describe(params)}')
    try:
        entries = list(params)
    except TypeError:
        raise TypeError(f'{label}: field "params": expected (m1, m2, m3), got {describe(params)}') from None
    if len(entries) != 3:
        raise ValueError(
            f'{label}: field "params": expected (m1, m2, m3), got {len(entries)} entries'
        )
    scalars, fam = [], {}
    for i, v in enumerate(entries):
        field = f"params.m{i + 1}"
        x, arr = _margin(v, label, field)
        scalars.append(_PLACEHOLDER[i] if arr is not None else x)
        if arr is not None:
            fam[f"m{i + 1}"] = arr
    if curricular_t is not None:
        fam["curricular_t"] = _number(curricular_t, label, "curricular_t")
    if intertopk is not None:
        if isinstance(intertopk, (str, bytes)) or not hasattr(intertopk, "__len__"):
            raise TypeError(
                f'{label}: field "intertopk": expected (k, m_prime) or (k, m_prime, active), got {describe(intertopk)}'
            )
        if len(intertopk) not in (2, 3):
            raise ValueError(
                f'{label}: field "intertopk": expected (k, m_prime) or (k, m_prime, active), got {len(intertopk)} entries'
            )
        try:
            k = operator.index(intertopk[0])
        except TypeError:
            raise TypeError(
                f'{label}: field "intertopk": k must be an integer, got {describe(intertopk[0])}'
            ) from None
        m = _number(intertopk[1], label, "intertopk")
        active = True
        if len(intertopk) == 3:
            if not isinstance(intertopk[2], (bool, np.bool_)):
                raise TypeError(
                    f'{label}: field "intertopk": active must be True or False, got {describe(intertopk[2])}'
                )
            active = bool(intertopk[2])
        fam["intertopk"] = (k, m, active)
    if lam is not None:
        fam["lam"] = _number(lam, label, "lam")
    m1, m2, m3 = scalars
    return m1, m2, m3, (fam or None)


def has_rows(fam) -> bool:
    return bool(fam) and any(k in fam for k in ("m1", "m2", "m3"))


Params = _t.Tuple[float, float, float]
