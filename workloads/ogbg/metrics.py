"""Masked binary cross-entropy and mean average precision (as OGB computes it) for ogbg.

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
from typing import Dict, Optional

import numpy as np
import torch


def masked_bce(labels: torch.Tensor, logits: torch.Tensor, mask: Optional[torch.Tensor] = None,
               label_smoothing: float = 0.0) -> Dict[str, torch.Tensor]:
    """AlgoPerf's loss_fn contract for multi-label BCE. labels, logits, mask: [G, T].

    ``mask`` None: every label that is not NaN counts. NaN labels are always masked (never
    reach the gradient), whatever ``mask`` says.
    """
    if labels.shape != logits.shape or labels.dim() != 2:
        raise ValueError(f"labels {tuple(labels.shape)} and logits {tuple(logits.shape)} must "
                         f"both be [graphs, tasks]")
    measured = ~torch.isnan(labels)
    mask = measured.to(logits.dtype) if mask is None else mask.to(logits.dtype) * measured
    if mask.shape != logits.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must match logits {tuple(logits.shape)}")
    labels = torch.where(measured, labels, torch.zeros_like(labels)).to(logits.dtype)
    num_tasks = labels.shape[-1]
    target = (1.0 - label_smoothing) * labels + label_smoothing / num_tasks
    losses = logits.clamp(min=0) - logits * target + torch.log1p(torch.exp(-logits.abs()))
    per_example = losses * mask
    return {"summed": per_example.sum(), "n_valid_examples": mask.sum(),
            "per_example": per_example}


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
