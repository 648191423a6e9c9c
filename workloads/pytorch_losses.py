"""Losses with the API's contract: per-example values, masked sum, number of valid examples.

    loss_fn(label_batch, logits_batch, mask_batch=None, label_smoothing=0.0)
      -> {'summed': sum_i w_i l_i, 'n_valid_examples': sum_i w_i, 'per_example': w_i l_i}

Nothing is synced across processes: submissions all-reduce 'summed' and 'n_valid_examples'.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F


def _masked(per_example: torch.Tensor, mask: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
    if mask is None:  # no padding: skip the multiply, it is on every training step
        return {"summed": per_example.sum(),
                "n_valid_examples": per_example.new_tensor(float(per_example.shape[0])),
                "per_example": per_example}
    per_example = per_example * mask
    return {"summed": per_example.sum(), "n_valid_examples": mask.sum(),
            "per_example": per_example}


def masked_bce(labels: torch.Tensor, logits: torch.Tensor, mask: Optional[torch.Tensor] = None,
               label_smoothing: float = 0.0) -> Dict[str, torch.Tensor]:
    """AlgoPerf's loss_fn contract for multi-label BCE (ogbg; the formula is in
    ``workloads.ogbg.metrics``). labels, logits, mask: [G, T].

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


def softmax_cross_entropy(labels: torch.Tensor, logits: torch.Tensor,
                          mask: Optional[torch.Tensor] = None,
                          label_smoothing: float = 0.0) -> Dict[str, torch.Tensor]:
    """l_i = -sum_c q_ic log softmax(z_i)_c with q_i = (1 - s) onehot(y_i) + s / C.

    labels: [N] int class ids; logits: [N, C]; mask: [N] (1 real, 0 padding).
    """
    per_example = F.cross_entropy(logits, labels, reduction="none",
                                  label_smoothing=label_smoothing)
    return _masked(per_example, mask)
