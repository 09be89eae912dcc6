"""ArcFace-style heads written from the published formula in each framework, independently of
the crate (nothing here calls combined_margin): the target logit cos(m1·acos(c) + m2) − m3 at
the label, every other entry c, rows labelled −1 unchanged; the gradient is whatever the
framework's autodiff makes of it (the ``analytic`` profile: no clamp, NaN outside [−1, 1]).

``bug="straight-through"`` plants a realistic mistake: the margin added as a constant
(``c + stop_gradient(m(c) − c)``), so the gradient at the target is top_diff, not
top_diff · m'(c): the checker must name it ``gradient-detached``.

Each head computes in the dtype of its input (f64, f32, f16, bf16) as the framework does.
"""

from __future__ import annotations

import numpy as np


def torch_head(m1=1.0, m2=0.5, m3=0.0, bug=None):
    import torch

    def head(cos, labels):
        labels = labels.reshape(-1)
        index = torch.where(labels != -1)[0]
        t = cos[index, labels[index]]
        m = torch.cos(m1 * torch.acos(t) + m2) - m3
        if bug == "straight-through":
            m = t + (m - t).detach()
        return cos.index_put((index, labels[index]), m)

    return head


def jax_head(m1=1.0, m2=0.5, m3=0.0, bug=None):
    import jax
    import jax.numpy as jnp

    def head(cos, labels):
        labels = labels.reshape(-1)
        valid = labels != -1
        safe = jnp.where(valid, labels, 0)
        rows = jnp.arange(cos.shape[0])
        t = cos[rows, safe]
        # The ignored rows' stand-in is 0 (inside [-1, 1]): no NaN in the unselected branch.
        tc = jnp.where(valid, t, jnp.zeros_like(t))
        m = jnp.cos(m1 * jnp.arccos(tc) + m2) - m3
        if bug == "straight-through":
            m = tc + jax.lax.stop_gradient(m - tc)
        new = jnp.where(valid, m.astype(cos.dtype), t)
        return cos.at[rows, safe].set(new)

    return head


def tf_head(m1=1.0, m2=0.5, m3=0.0, bug=None):
    import tensorflow as tf

    def head(cos, labels):
        labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
        index = tf.where(labels != -1)[:, 0]
        cols = tf.gather(labels, index)
        idx = tf.stack([index, cols], axis=1)
        t = tf.gather_nd(cos, idx)
        m = tf.cos(tf.cast(m1, cos.dtype) * tf.acos(t) + tf.cast(m2, cos.dtype)) - tf.cast(m3, cos.dtype)
        if bug == "straight-through":
            m = t + tf.stop_gradient(m - t)
        return tf.tensor_scatter_nd_update(cos, idx, m)

    return head


def numpy_head(m1=1.0, m2=0.5, m3=0.0, bug=None):
    """fn(cos, labels, top_diff) -> (forward, backward): the formula and its derivative
    m1·sin(m1·θ + m2)/sin θ, computed in float64 and rounded once to the dtype of ``cos``
    (numpy float16 or ml_dtypes.bfloat16 included)."""

    def head(cos, labels, top_diff):
        dt = cos.dtype
        c = np.asarray(cos, dtype=np.float64)
        top = np.asarray(top_diff, dtype=np.float64)
        labels = np.asarray(labels).reshape(-1)
        out, grad = c.copy(), top.copy()
        rows = np.nonzero(labels != -1)[0]
        cols = labels[rows]
        t = c[rows, cols]
        with np.errstate(invalid="ignore", divide="ignore"):
            theta = np.arccos(t)
            out[rows, cols] = np.cos(m1 * theta + m2) - m3
            f = m1 * np.sin(m1 * theta + m2) / np.sqrt((1 - t) * (1 + t))
        if bug == "straight-through":
            f = np.ones_like(f)
        grad[rows, cols] = top[rows, cols] * f
        return out.astype(dt), grad.astype(dt)

    return head
