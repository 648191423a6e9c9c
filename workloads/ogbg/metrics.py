"""Masked binary cross-entropy and mean average precision (as OGB computes it) for ogbg, on numpy
arrays (the training loss, the same formula in PyTorch, is ``pytorch_losses.masked_bce``).

Loss over G graphs x T tasks, mask m (1 = measured label of a real graph), labels y in {0, 1},
smoothed as y' = (1 - s) y + s / T (AlgoPerf's smoothing, T = 128 tasks), logits z:

    l_gt = m_gt * (max(z, 0) - z y' + log(1 + exp(-|z|)))          (= BCE-with-logits)
    summed = sum_gt l_gt,   n_valid_examples = sum_gt m_gt,   per_example = l [G, T]

Mean average precision (OGB's ``Evaluator('ogbg-molpcba')``): for every task with at least one
measured positive and one measured negative, the average precision of the scores over that
task's measured labels, then the mean over those tasks. Average precision (scikit-learn's
``average_precision_score``, which OGB calls):

    AP = sum_k (R_k - R_{k-1}) P_k

over the distinct score thresholds k from high to low (tied scores enter together), with
precision P_k and recall R_k of predicting "positive" for scores >= threshold k, R_0 = 0.
"""
from typing import Optional

import numpy as np


def masked_bce_mean(labels: np.ndarray, logits: np.ndarray, mask: np.ndarray) -> float:
    """The eval loss: sum_gt l_gt / sum_gt m_gt (float64; 0 where nothing is measured).
    labels [G, T] in {0, 1} (0 where missing), logits [G, T], mask [G, T]."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    m = np.asarray(mask, dtype=np.float64)
    losses = np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return float(np.sum(losses * m) / max(np.sum(m), 1.0))


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """AP of one task: y_true {0, 1} [n], scores [n] (at least one positive)."""
    order = np.argsort(-scores, kind="stable")
    y, s = y_true[order].astype(np.float64), scores[order]
    tp = np.cumsum(y)
    # The last row of each group of tied scores is where that threshold's counts end.
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    tp = tp[ends]
    precision = tp / (ends + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(labels: np.ndarray, scores: np.ndarray,
                           mask: Optional[np.ndarray] = None) -> float:
    """OGB's molpcba metric. labels [G, T] (NaN = missing), scores [G, T], optional mask
    [G, T] (0 = ignore, e.g. padding). NaN when no task has both a positive and a negative."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    valid = ~np.isnan(labels)
    if mask is not None:
        valid &= np.asarray(mask) > 0
    aps = []
    for t in range(labels.shape[1]):
        y, s = labels[valid[:, t], t], scores[valid[:, t], t]
        if np.any(y == 1) and np.any(y == 0):
            aps.append(average_precision(y == 1, s))
    return float(np.mean(aps)) if aps else float("nan")
