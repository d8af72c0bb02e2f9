"""Classification losses, each returning ``(loss, dscores)``: the mean loss over the batch
and its gradient with respect to the scores, written by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxfc._checks import check_floating, check_labels, check_ndim

Array = jax.Array

LOSSES = ("softmax", "svm")


def _check_scores_and_labels(scores, y) -> None:
    check_floating("scores", scores)
    check_ndim("scores", scores, 2)
    check_labels(y, scores.shape[0], scores.shape[1])


def softmax_loss(scores: Array, y: Array) -> tuple[Array, Array]:
    """Softmax cross-entropy, mean over the N rows of ``scores`` (N, C).

    ``loss = -mean_i log softmax(scores_i)[y_i]``, computed as ``s - max(s) - logsumexp``
    so scores in the thousands stay finite;
    ``dscores = (softmax(scores) - onehot(y)) / N``.
    Labels must be integers in [0, C); out-of-range labels are rejected on concrete input
    (inside ``jit`` they cannot be checked).
    """
    _check_scores_and_labels(scores, y)
    n, c = scores.shape
    shifted = scores - jnp.max(scores, axis=1, keepdims=True)
    log_probs = shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=1, keepdims=True))
    onehot = jax.nn.one_hot(y, c, dtype=scores.dtype)
    # take_along_axis, not a product with onehot: a -inf score elsewhere would give 0 * -inf.
    loss = -jnp.sum(jnp.take_along_axis(log_probs, y[:, None], axis=1)) / n
    dscores = (jnp.exp(log_probs) - onehot) / n
    return loss, dscores


def svm_loss(scores: Array, y: Array) -> tuple[Array, Array]:
    """Multiclass (Weston-Watkins) hinge loss with margin 1, mean over the N rows.

    ``loss = mean_i sum_{j != y_i} max(0, s_ij - s_iy_i + 1)``;
    ``dscores_ij = [margin_ij > 0] / N`` for j != y_i and
    ``dscores_iy_i = -(number of positive margins in row i) / N``.
    """
    _check_scores_and_labels(scores, y)
    n, c = scores.shape
    onehot = jax.nn.one_hot(y, c, dtype=scores.dtype)
    correct = jnp.take_along_axis(scores, y[:, None], axis=1)
    margins = jnp.where(onehot > 0, 0, jnp.maximum(0, scores - correct + 1))
    loss = jnp.sum(margins) / n
    positive = (margins > 0).astype(scores.dtype)
    dscores = (positive - onehot * jnp.sum(positive, axis=1, keepdims=True)) / n
    return loss, dscores


def get_loss(name: str):
    """The loss function called ``name`` ('softmax' or 'svm')."""
    if name == "softmax":
        return softmax_loss
    if name == "svm":
        return svm_loss
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
