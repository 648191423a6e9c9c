"""KFAC: a torch optimizer with K-FAC-expand / K-FAC-reduce preconditioning.

Use (the curvature pass never touches ``.grad``, so the training gradients, and DDP's
all-reduce of them, are exactly those of the loss):

    opt = KFAC(model, lr=..., flavour="expand")
    logits = model(x)                       # hooks record layer inputs and outputs
    opt.update_curvature(logits, "cross_entropy")   # sampled-label backward, factors only
    loss_fn(logits, y).backward()
    opt.step()

Covered layers: ``nn.Linear`` (any leading weight-sharing dims, R = their product) and
``nn.Conv2d`` with groups = 1 and numeric padding (R = output pixels), up to ``max_layer_size``
weights. Bias folded into the factors. Everything else (norms, embeddings, grouped convs, huge
layers) is updated by NAdamW (``submissions.optimizers.nadamw.nadamw_step``, the same lr and
weight decay, ``betas``/``eps``), never dropped.

Per covered layer (weight W~ = [W, b] as [D_out, D_in], gradient Gr):
    factors   every ``factor_every`` (T) steps: A, G from ``factors.py`` (loss-scale
              convention there: A (x) G ~ GGN of the *mean* loss), EMA with ``factor_decay``
              (the first update sets the factors);
    inverses  every ``inverse_every`` (T_inv) steps, ``damping_mode`` "pi" (Cholesky) or
              "exact" (eigendecomposition), see ``inverse.py``;
    direction d = (A (x) G + damping)^{-1} Gr; before any curvature exists, d = Gr;
    KL-clip   (optional) all d scaled by min(1, sqrt(kl_clip / (lr^2 sum <d, Gr>)));
    momentum  m <- momentum * m + d;   p <- p (1 - lr wd) - lr m   (decoupled decay; wd
              per layer with ``set_layer_weight_decays``, e.g. learned priors).
The lr schedule (warmup + cosine) is the caller's, as for every torch optimizer
(``submissions.optimizers.schedules``).

Curvature: ``fisher="mc"`` (default) samples targets from the model's predictive
distribution (categorical for cross-entropy, Bernoulli per output for sigmoid
cross-entropy, N(f, I) for MSE) ``mc_samples`` times;
``fisher="empirical"`` uses the true targets. Either way the backward pass is of the summed
per-example loss, so g = N dL/ds, matching ``factors.py``. Only the last forward pass of a
step is recorded. Caveat: the per-example loss here *sums* over positions (tokens, pixels),
so for a training loss that also averages over P positions the curvature is P times that
loss's GGN; damping and lr are relative to that.

Per-example ``weights`` (padding = 0, missing labels = 0) multiply the per-output losses of
the curvature pass, so padding never reaches G.

Reduce's blind spot: a layer whose output gradients sum to zero over the positions (the key
projection of softmax attention) has a zero reduce G although its curvature is not zero; on the
first factor step with non-zero gradients such a layer switches to expand
(``_Layer.settle_flavour``). Every other reduce layer stays reduce.

Graphs (``set_segments``): a Linear layer applied to a flat [M, D] node (or edge, or graph)
tensor of a packed batch gets the ``*_segments`` factors, with the batch's per-row graph
ids and padding mask: reduce then sums over each graph's nodes, as the paper's GNN case
needs. Layouts are matched to layers by their row count M (so the packed sizes of nodes,
edges and graphs must differ).

DDP: each process computes the factors of its slice of the global batch; the new factor
contributions are averaged over processes (one all-reduce per factor step) before the EMA,
which for equal slices is exactly the factor of the global batch. Every process then holds
the same factors and computes the same inverses. Gradients are DDP's, untouched.

State (``state_dict``): per weight ``A``, ``G``, their inverses or eigendecompositions,
``momentum_buffer``; NAdamW's ``exp_avg``/``exp_avg_sq``/``step`` for the rest; the global
``kfac_step`` and each layer's settled flavour. Loading continues the same trajectory.
"""
import math
from typing import Dict, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from submissions.optimizers.kfac import factors as kf
from submissions.optimizers.kfac import inverse as ki
from submissions.optimizers.nadamw import nadamw_step

FLAVOURS = {"expand": kf.expand_factors, "reduce": kf.reduce_factors}
SEGMENT_FLAVOURS = {"expand": kf.expand_factors_segments, "reduce": kf.reduce_factors_segments}
LOSS_TYPES = ("cross_entropy", "sigmoid_cross_entropy", "mse")


# A reduce layer whose output gradients sum to zero over positions (relative to their size,
# squared) has no reduce curvature: float32 round-off of an exact zero is ~1e-14 here, a real
# sum is O(1). See ``_Layer.settle_flavour``.
VANISHING_SUM = 1e-8


class _Layer:
    """A covered module: its flavour and what the last recorded forward pass saw."""

    def __init__(self, module: nn.Module, flavour: str):
        self.module, self.flavour = module, flavour
        # Reduce layers record full positions until ``settle_flavour`` has decided.
        self.settled = flavour != "reduce"
        self.a: Optional[torch.Tensor] = None       # [N, R, D_in(+1)], detached
        self.output: Optional[torch.Tensor] = None  # the module output, in the graph
        self.weight_decay: Optional[float] = None   # None: the group's (set_layer_weight_decays)

    @property
    def pooled(self) -> bool:
        """Whether positions are pooled as they are recorded (a settled reduce layer)."""
        return self.flavour == "reduce" and self.settled

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """[N, R, D_in(+1)]; for a settled reduce layer already averaged over R
        ([N, 1, D_in(+1)]): reduce's factors only use that mean, and the R-times larger patch
        matrix is never built."""
        m = self.module
        if isinstance(m, nn.Conv2d):
            patches = kf.conv2d_mean_patches if self.pooled else kf.conv2d_inputs
            a = patches(x, m.kernel_size, m.stride, m.padding, m.dilation)
        else:
            a = kf.linear_inputs(x)
            if self.pooled and a.shape[1] > 1:
                a = a.mean(dim=1, keepdim=True)
        return kf.append_ones(a) if m.bias is not None else a

    def output_grads(self, g: torch.Tensor) -> torch.Tensor:
        """[N, R, D_out], for a settled reduce layer summed over R ([N, 1, D_out]), matching
        ``inputs``."""
        if isinstance(self.module, nn.Conv2d):
            g = kf.conv2d_output_grads(g)
        else:
            g = kf.linear_output_grads(g)
        return g.sum(dim=1, keepdim=True) if self.pooled else g

    def settle_flavour(self, a: torch.Tensor, g: torch.Tensor):
        """A reduce layer's first recorded pass with non-zero gradients: keep reduce, or fall
        back to expand where reduce is blind. Returns (a, g) in the layout of the flavour.

        Reduce's G is built from gbar = sum_r g_r. Where the loss is invariant to shifting a
        layer's outputs equally at every position, that sum is identically zero and so is G,
        while the true curvature is not: the key projection of softmax attention (scores
        q . k_j shift by the same q . c for every key, which the softmax ignores), whose
        reduce preconditioner would be 1 / damping whatever the curvature. Such a layer
        (sum_{c,n} |gbar|^2 <= VANISHING_SUM * sum_{c,n,r} |g_r|^2) uses expand. Under DDP
        the two sums are added over processes first, so every process decides alike.
        a [N, R, D_in], g [C, N, R, D_out]; a layer without sharing (R = 1) is reduce as is.
        """
        self.settled = True
        if a.shape[1] > 1:
            sums = torch.stack([g.sum(dim=2).pow(2).sum(), g.pow(2).sum()]).double()
            if _distributed():
                dist.all_reduce(sums)
            pooled_norm, norm = sums.tolist()
            # All zero: nothing to tell from yet (e.g. a zero-initialised head above).
            self.settled = norm > 0
            if self.settled and pooled_norm <= VANISHING_SUM * norm:
                self.flavour = "expand"
                return a, g
        return a.mean(dim=1, keepdim=True), g.sum(dim=2, keepdim=True)

    def grad_matrix(self) -> torch.Tensor:
        """[D_out, D_in(+1)]: the weight gradient as a matrix, bias gradient appended."""
        w = self.module.weight
        grad = w.grad.reshape(w.shape[0], -1)
        if self.module.bias is not None:
            grad = torch.cat([grad, self.module.bias.grad[:, None]], dim=1)
        return grad

    def apply(self, direction: torch.Tensor, lr: float, weight_decay: float):
        """p <- p (1 - lr wd) - lr d for the weight and (last column of d) the bias."""
        w, b = self.module.weight, self.module.bias
        d_w = direction[:, :-1] if b is not None else direction
        w.mul_(1.0 - lr * weight_decay).add_(d_w.reshape(w.shape), alpha=-lr)
        if b is not None:
            b.mul_(1.0 - lr * weight_decay).add_(direction[:, -1], alpha=-lr)


def _distributed() -> bool:
    """Whether this process is one of several in a torch.distributed group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _average_over_processes(factors):
    """[(A, G)] -> the same, averaged over DDP processes with one all-reduce (a no-op in a
    single process)."""
    if not _distributed():
        return factors
    flat = torch.cat([t.reshape(-1) for pair in factors for t in pair])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    out, offset = [], 0
    for A, G in factors:
        pair = []
        for t in (A, G):
            pair.append(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()
        out.append(tuple(pair))
    return out


def _coverable(module: nn.Module, max_layer_size: int) -> bool:
    if not isinstance(module, (nn.Linear, nn.Conv2d)) or not module.weight.requires_grad:
        return False
    if isinstance(module, nn.Conv2d) and (module.groups != 1 or isinstance(module.padding, str)
                                          or module.padding_mode != "zeros"):
        return False
    return module.weight.numel() <= max_layer_size


class KFAC(torch.optim.Optimizer):
    """K-FAC with expand/reduce flavours (module docstring has the algorithm).

    Args:
      model: the network; its Linear/Conv2d layers get forward hooks.
      flavour: "expand" or "reduce" for every layer; ``layer_flavours`` maps module names
        (``model.named_modules()``) to a flavour to override it per layer.
      damping: lambda, added to the curvature of the mean loss (batch-size independent).
      damping_mode: "pi" (factor-wise pi-heuristic, Cholesky) or "exact" (eigh).
      factor_every, inverse_every: T and T_inv in steps.
      max_layer_size: layers with more weights go to the first-order rule.
      betas, eps: NAdamW's, for the parameters K-FAC does not cover.
    """

    def __init__(self, model: nn.Module, lr: float = 1e-3, *, flavour: str = "expand",
                 layer_flavours: Optional[Dict[str, str]] = None, damping: float = 1e-3,
                 damping_mode: str = "pi", momentum: float = 0.9, weight_decay: float = 0.0,
                 factor_decay: float = 0.95, factor_every: int = 1, inverse_every: int = 1,
                 kl_clip: Optional[float] = None, fisher: str = "mc", mc_samples: int = 1,
                 max_layer_size: int = 4096 * 4096, betas=(0.9, 0.999), eps: float = 1e-8):
        layer_flavours = dict(layer_flavours or {})
        for f in [flavour, *layer_flavours.values()]:
            if f not in FLAVOURS:
                raise ValueError(f"flavour must be one of {sorted(FLAVOURS)}, got {f!r}")
        if damping <= 0:
            raise ValueError("damping must be > 0 (it keeps zero factors invertible)")
        if damping_mode not in ("pi", "exact"):
            raise ValueError(f"damping_mode must be 'pi' or 'exact', got {damping_mode!r}")
        if fisher not in ("mc", "empirical"):
            raise ValueError(f"fisher must be 'mc' or 'empirical', got {fisher!r}")
        defaults = dict(lr=lr, damping=damping, momentum=momentum, weight_decay=weight_decay,
                        betas=tuple(betas), eps=eps)
        super().__init__([p for p in model.parameters() if p.requires_grad], defaults)
        self.damping_mode, self.factor_decay, self.kl_clip = damping_mode, factor_decay, kl_clip
        self.factor_every, self.inverse_every = factor_every, inverse_every
        self.fisher, self.mc_samples = fisher, mc_samples
        self.kfac_step = 0
        self._segments, self._num_segments = {}, 0
        self._layers = []
        self._handles = []
        for name, module in model.named_modules():
            if _coverable(module, max_layer_size):
                layer = _Layer(module, layer_flavours.pop(name, flavour))
                self._layers.append(layer)
                self._handles.append(module.register_forward_hook(self._hook(layer)))
        if layer_flavours:
            raise ValueError(f"layer_flavours names no covered layer: {sorted(layer_flavours)}")
        covered = {id(p) for layer in self._layers for p in layer.module.parameters()}
        self.first_order_params = [p for p in self.param_groups[0]["params"]
                                   if id(p) not in covered]

    # ------------------------------------------------------------------ curvature

    def _hook(self, layer: _Layer):
        def hook(module, inputs, output):
            # Record only when it is used: training-mode forward passes with autograd on, on
            # the steps that update factors (so other steps hold no extra memory).
            if (module.training and torch.is_grad_enabled() and output.requires_grad
                    and self.kfac_step % self.factor_every == 0):
                layer.a = layer.inputs(inputs[0].detach())
                layer.output = output
        return hook

    def _sampled_losses(self, outputs, loss_type, targets, weights):
        """Summed (weighted) per-output losses whose output gradients feed G (C of them)."""
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}: {loss_type!r}")
        if self.fisher == "empirical":
            if targets is None:
                raise ValueError("fisher='empirical' needs the targets")
            samples = [targets]
        else:
            with torch.no_grad():
                detached = outputs.detach().float()
                if loss_type == "cross_entropy":
                    probs = torch.softmax(detached, dim=-1).reshape(-1, detached.shape[-1])
                    samples = [torch.multinomial(probs, 1)[:, 0].reshape(detached.shape[:-1])
                               for _ in range(self.mc_samples)]
                elif loss_type == "sigmoid_cross_entropy":
                    probs = torch.sigmoid(detached)
                    samples = [torch.bernoulli(probs) for _ in range(self.mc_samples)]
                else:
                    samples = [detached + torch.randn_like(detached)
                               for _ in range(self.mc_samples)]
        for y in samples:
            if loss_type == "cross_entropy":
                losses = F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), y.reshape(-1),
                                         reduction="none").reshape(outputs.shape[:-1])
            elif loss_type == "sigmoid_cross_entropy":
                y = torch.nan_to_num(y.to(outputs.dtype))  # missing labels: masked by weights
                losses = F.binary_cross_entropy_with_logits(outputs, y, reduction="none")
            else:
                losses = 0.5 * (outputs - y).pow(2)
            if weights is not None:
                losses = losses * weights.to(losses.dtype)
            yield losses.sum()

    def set_segments(self, layouts, num_segments: int) -> None:
        """Graph layouts of the next forward pass: ``layouts`` is a sequence of
        ``(segment_ids [M], mask [M] bool or None)``, one per row kind (nodes, edges,
        graphs), ids in [0, num_segments). A covered Linear whose flat input has M rows uses
        that layout. ``set_segments([], 0)`` clears them."""
        by_rows = {}
        for ids, mask in layouts:
            rows = int(ids.shape[0])
            if rows in by_rows:
                raise ValueError(f"two segment layouts have {rows} rows: pad nodes, edges and "
                                 f"graphs to different sizes so layers can be told apart")
            if mask is not None and mask.shape != ids.shape:
                raise ValueError(f"mask {tuple(mask.shape)} must match segment ids "
                                 f"{tuple(ids.shape)}")
            by_rows[rows] = (ids, mask)
        self._segments, self._num_segments = by_rows, int(num_segments)

    def _layer_factors(self, layer: _Layer, g: torch.Tensor):
        """(A, G) of a layer from its recorded input and output grads g [C, N, R, D_out]."""
        a = layer.a
        if not layer.settled:
            a, g = layer.settle_flavour(a, g)
        layout = self._segments.get(a.shape[0]) if a.shape[1] == 1 else None
        if layout is not None and isinstance(layer.module, nn.Linear):
            ids, mask = layout
            return SEGMENT_FLAVOURS[layer.flavour](a[:, 0], g[:, :, 0], ids, self._num_segments,
                                                   mask)
        return FLAVOURS[layer.flavour](a, g)

    def update_curvature(self, outputs: torch.Tensor, loss_type: str = "cross_entropy",
                         targets: Optional[torch.Tensor] = None,
                         weights: Optional[torch.Tensor] = None) -> bool:
        """Update the factors from the recorded forward pass (a no-op off factor steps).

        outputs: the model's outputs [N, ..., K] (classes / regression dims last); loss_type
        one of ``LOSS_TYPES``; targets: needed for the empirical Fisher; weights: multiply the
        per-output losses ([N, ...] for cross-entropy, broadcastable to outputs otherwise;
        0 = padding or a missing label). Gradients
        go through ``torch.autograd.grad`` to the recorded layer outputs only, so ``.grad``
        is untouched and the graph is kept for the training backward. Returns whether the
        factors were updated.
        """
        layers = [layer for layer in self._layers if layer.output is not None]
        if not layers or self.kfac_step % self.factor_every != 0:
            return False
        losses = list(self._sampled_losses(outputs, loss_type, targets, weights))
        grads = [[] for _ in layers]
        for loss in losses:
            gs = torch.autograd.grad(loss, [layer.output for layer in layers],
                                     retain_graph=True, allow_unused=True)
            for i, (layer, g) in enumerate(zip(layers, gs)):
                if g is None:
                    g = torch.zeros_like(layer.output)
                grads[i].append(layer.output_grads(g.detach()))
        with torch.no_grad():
            new = []
            for layer, gs in zip(layers, grads):
                # C backward passes averaged: the sum over C of (g / sqrt(C)) (g / sqrt(C))^T.
                g = torch.stack(gs) / math.sqrt(len(gs))
                new.append(self._layer_factors(layer, g.to(layer.a.dtype)))
                layer.a = layer.output = None
            new = _average_over_processes(new)
            for layer, (A, G) in zip(layers, new):
                self._ema(layer.module.weight, A, G)
        return True

    def _ema(self, weight, A, G):
        state = self.state[weight]
        if "A" not in state:  # the first update sets the factors (no bias toward zero)
            state["A"], state["G"] = A, G
        else:
            state["A"].mul_(self.factor_decay).add_(A, alpha=1 - self.factor_decay)
            state["G"].mul_(self.factor_decay).add_(G, alpha=1 - self.factor_decay)

    # ------------------------------------------------- per-layer access (marglik)

    @property
    def covered_modules(self):
        """The Linear/Conv2d modules K-FAC preconditions, in ``model.named_modules()`` order."""
        return [layer.module for layer in self._layers]

    def factors(self, module: nn.Module):
        """(A, G) of a covered module (bias folded into A), or None before its first factor
        update."""
        state = self.state[module.weight]
        return (state["A"], state["G"]) if "A" in state else None

    def set_layer_weight_decays(self, decays) -> None:
        """One decoupled weight decay per covered module (``covered_modules`` order; None
        keeps the group's); the parameters K-FAC does not cover keep the group's."""
        decays = list(decays)
        if len(decays) != len(self._layers):
            raise ValueError(f"{len(decays)} weight decays for {len(self._layers)} layers")
        for layer, decay in zip(self._layers, decays):
            layer.weight_decay = None if decay is None else float(decay)

    # ----------------------------------------------------------------------- step

    def _refresh_inverses(self, state, damping):
        A, G = state["A"], state["G"]
        if self.damping_mode == "pi":
            d_a, d_g = ki.pi_split(A, G, damping)
            state["A_inv"], state["G_inv"] = ki.damped_inverse(A, d_a), ki.damped_inverse(G, d_g)
        else:
            (state["A_eigvals"], state["A_eigvecs"]), (state["G_eigvals"], state["G_eigvecs"]) = (
                ki.eigh(A), ki.eigh(G))

    def precondition(self, layer: _Layer, grad: torch.Tensor, damping: float) -> torch.Tensor:
        """grad [D_out, D_in(+1)] -> (A (x) G + damping)^{-1} grad (grad itself before any
        curvature exists)."""
        state = self.state[layer.module.weight]
        if self.damping_mode == "pi" and "A_inv" in state:
            return ki.precondition_pi(grad, state["A_inv"], state["G_inv"])
        if self.damping_mode == "exact" and "A_eigvals" in state:
            return ki.precondition_exact(grad, state["A_eigvals"], state["A_eigvecs"],
                                         state["G_eigvals"], state["G_eigvecs"], damping)
        return grad

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        lr, damping, wd = group["lr"], group["damping"], group["weight_decay"]
        refresh = self.kfac_step % self.inverse_every == 0
        updates = []
        for layer in self._layers:
            if layer.module.weight.grad is None:
                continue
            state = self.state[layer.module.weight]
            if "A" in state and (refresh or ("A_inv" not in state and "A_eigvals" not in state)):
                self._refresh_inverses(state, damping)
            grad = layer.grad_matrix()
            updates.append((layer, grad, self.precondition(layer, grad, damping)))
        scale = 1.0
        if self.kl_clip is not None and updates:
            vg = sum((d * g).sum().item() for _, g, d in updates) * lr ** 2
            if vg > 0:
                scale = min(1.0, math.sqrt(self.kl_clip / vg))
        for layer, _, direction in updates:
            state = self.state[layer.module.weight]
            if group["momentum"] > 0:
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(direction)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(direction, alpha=scale)
                direction, scale_now = buf, 1.0
            else:
                scale_now = scale
            layer.apply(direction * scale_now, lr,
                        wd if layer.weight_decay is None else layer.weight_decay)
        self._first_order_step(group)
        self.kfac_step += 1
        return loss

    def _first_order_step(self, group):
        nadamw_step(self.first_order_params, self.state, group)

    # ---------------------------------------------------------------- checkpoints

    def state_dict(self):
        sd = super().state_dict()
        sd["kfac_step"] = self.kfac_step
        sd["kfac_layer_flavours"] = [(layer.flavour, layer.settled) for layer in self._layers]
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        self.kfac_step = int(state_dict.pop("kfac_step", 0))
        flavours = state_dict.pop("kfac_layer_flavours", None)
        if flavours is not None:
            if len(flavours) != len(self._layers):
                raise ValueError(f"the checkpoint has {len(flavours)} K-FAC layers, the model "
                                 f"{len(self._layers)}")
            for layer, (flavour, settled) in zip(self._layers, flavours):
                layer.flavour, layer.settled = flavour, bool(settled)
        super().load_state_dict(state_dict)

    def remove_hooks(self):
        """Detach from the model (the optimizer can no longer update factors)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
