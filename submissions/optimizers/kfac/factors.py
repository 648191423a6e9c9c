"""Kronecker factors of K-FAC-expand and K-FAC-reduce (Eschenhagen et al., arXiv:2311.00636).

Pure functions, no hooks, no state: they turn one layer's inputs ``a`` and output gradients
``g`` into the two factors ``A`` [D_in, D_in] and ``G`` [D_out, D_out] with

    GGN(L)[W]  ~=  A (x) G        (Kronecker product, for vec(W) stacking the *columns* of W;
                                   for torch's row-major ``W.flatten()`` it is ``kron(G, A)``)

Shapes: ``a`` [N, R, D_in], ``g`` [N, R, D_out] or [C, N, R, D_out]. N = examples (the ones
the loss averages over), R = weight-sharing positions (tokens, output pixels, nodes),
C = backward passes per example (Monte-Carlo label samples, or the columns of a symmetric
factor of the loss Hessian for the exact GGN) that are *summed*: pass ``g / sqrt(M)`` for M
Monte-Carlo samples. The bias is folded in by ``append_ones``: W~ = [W, b], a~ = [a, 1].

Loss-scale convention (the same for both flavours):
    The loss is the *mean* over examples, L = 1/N sum_n l_n (l_n may sum or average over
    positions). ``g`` are the output gradients of the per-example losses l_n, i.e. the
    gradients of the *summed* loss N * L, so ``g`` = N * dL/ds. Then

        expand:  A = 1/(N R) sum_{n,r} a a^T          G = 1/N sum_{c,n,r} g g^T
        reduce:  A = 1/N sum_n abar abar^T           G = 1/N sum_{c,n} gbar gbar^T
                 abar_n = 1/R sum_r a_{n,r}          gbar_{c,n} = sum_r g_{c,n,r}

    and A (x) G approximates GGN(L), the curvature of the *mean* loss. A and G are both
    O(1) in N (averages, not sums), so a damping lambda added to the curvature means the
    same for every batch size and for both flavours. (The paper writes G = sum g g^T with g
    the gradient of the mean loss; that G is 1/N of ours, and would need damping
    proportional to 1/N.)

Which backward passes ``g`` carries (the scale of reduce's G with a per-position loss):
    The GGN is 1/N sum_n J_n^T Lambda_n J_n with Lambda_n the Hessian of l_n with respect to
    *all* of example n's outputs. The C backward passes of example n are the columns of a
    square root of Lambda_n (or Monte-Carlo samples whose outer products average to it).
    With a per-position loss, l_n = sum_r l(f_{n,r}), Lambda_n is block diagonal over the R
    positions, so its square root has R x C_out columns, each non-zero at one position only;
    Monte-Carlo draws every position's label independently, with the same expectation.
    Then reduce's gbar_{c,n} = sum_r g_{c,n,r} holds one position's term per pass, and

        G_reduce = 1/N sum_n sum_r sum_c g_{c,n,r} g_{c,n,r}^T     (no cross-position terms)

    which is the paper's B = sum_n (sum_r b_{n,r})(sum_r b_{n,r})^T with b the backward
    passes of Lambda_n^(1/2) (up to our 1/N). curvlinops' ``KFACLinearOperator`` with
    ``fisher_type="type-2"`` instead backpropagates C_out passes that are non-zero at every
    position at once (each position's square-root columns stacked). For expand that changes
    nothing (each outer product stays at one position), but reduce's sum over r then also
    collects the cross-position products sum_{r != r'} g_{c,n,r} g_{c,n,r'}^T: a matrix that
    is not the loss Hessian's. Where every position back-propagates alike (a deep linear
    network, a 1x1 head per pixel) that G is exactly R times ours; curvlinops' own
    Monte-Carlo estimate converges to ours, not to its type-2 factor. Where R is pooled
    before the loss (one Lambda_n per example, C_out columns) both definitions coincide.
    All of this is checked against curvlinops in tests/kfac/test_curvlinops_crosscheck.py.

Exactness (verified in tests/kfac/test_factors_exact.py): for deep *linear* networks,
expand is exact when the loss keeps R (per-position loss, a batch of N*R independent
examples); reduce is exact when R is pooled (mean over r) before the loss. When R = 1 the
two coincide with plain K-FAC.

Ragged R (graphs): ``mask`` [N, R] marks real positions (padding never contributes), and
the ``*_segments`` functions take a flat node layout [M, D] with per-node graph ids.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


# ---------------------------------------------------------------------------- layout helpers

def append_ones(a: Tensor) -> Tensor:
    """[..., D_in] -> [..., D_in + 1]: fold the bias into the weight (W~ = [W, b])."""
    return torch.cat([a, torch.ones_like(a[..., :1])], dim=-1)


def linear_inputs(x: Tensor) -> Tensor:
    """nn.Linear input [N, *R, D] -> [N, R, D] (R = product of the sharing dims, 1 if none)."""
    if x.dim() == 1:
        raise ValueError("a Linear input needs a batch dimension")
    return x.reshape(x.shape[0], -1, x.shape[-1])


def linear_output_grads(g: Tensor) -> Tensor:
    """nn.Linear output gradient [N, *R, D_out] -> [N, R, D_out] (same layout as the input)."""
    return linear_inputs(g)


def conv2d_inputs(x: Tensor, kernel_size, stride=1, padding=0, dilation=1) -> Tensor:
    """Conv2d input [N, C_in, H, W] -> im2col patches [N, R, C_in*kh*kw], R = output pixels.

    The patch vector is ordered (C_in, kh, kw), matching ``weight.reshape(C_out, -1)``, the
    [C_out, C_in*kh*kw] matrix view of the kernel under which conv2d is a linear layer
    applied at every output pixel. (groups > 1 is not a single shared matrix; not handled.)
    """
    if isinstance(padding, str):
        raise ValueError("string padding ('same'/'valid'): pass the explicit numbers")
    patches = F.unfold(x, kernel_size, dilation=dilation, padding=padding, stride=stride)
    return patches.transpose(1, 2)  # [N, C_in*kh*kw, R] -> [N, R, C_in*kh*kw]


def conv2d_mean_patches(x: Tensor, kernel_size, stride=1, padding=0, dilation=1) -> Tensor:
    """Conv2d input [N, C_in, H, W] -> the mean im2col patch over output pixels [N, 1, D_in].

    Equals ``conv2d_inputs(...).mean(dim=1, keepdim=True)`` (ordered (C_in, kh, kw)) without
    building the [N, R, D_in] patch matrix: entry (c, i, j) is the mean of the padded input
    over the strided window that kernel tap (i, j) visits. This is all K-FAC-reduce needs.
    """
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    x = F.pad(x, (pw, pw, ph, ph))
    h_out = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    w_out = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    taps = [x[:, :, i * dh:i * dh + sh * (h_out - 1) + 1:sh,
              j * dw:j * dw + sw * (w_out - 1) + 1:sw].mean(dim=(2, 3))
            for i in range(kh) for j in range(kw)]
    return torch.stack(taps, dim=-1).reshape(x.shape[0], 1, -1)  # [N, 1, C_in*kh*kw]


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def conv2d_output_grads(g: Tensor) -> Tensor:
    """Conv2d output gradient [N, C_out, H_out, W_out] -> [N, R, C_out], pixels row-major
    (the same order as ``F.unfold``'s columns)."""
    return g.flatten(2).transpose(1, 2)


# ------------------------------------------------------------------------------- the factors

def _with_c(g: Tensor) -> Tensor:
    """[N, R, D] -> [1, N, R, D]; [C, N, R, D] unchanged."""
    if g.dim() == 3:
        return g.unsqueeze(0)
    if g.dim() == 4:
        return g
    raise ValueError(f"g must be [N, R, D_out] or [C, N, R, D_out], got {tuple(g.shape)}")


def _check(a: Tensor, g: Tensor, mask: Optional[Tensor]) -> None:
    if a.dim() != 3:
        raise ValueError(f"a must be [N, R, D_in], got {tuple(a.shape)}")
    if g.shape[-3:-1] != a.shape[:2]:
        raise ValueError(f"a {tuple(a.shape)} and g {tuple(g.shape)} disagree on [N, R]")
    if mask is not None and mask.shape != a.shape[:2]:
        raise ValueError(f"mask must be [N, R] = {tuple(a.shape[:2])}, got {tuple(mask.shape)}")


def _num_examples(a: Tensor, mask: Optional[Tensor]) -> Tensor:
    """N: examples with at least one real position (a fully padded example is no example)."""
    if mask is None:
        return torch.tensor(float(a.shape[0]), dtype=a.dtype, device=a.device)
    return mask.any(dim=1).sum().to(a.dtype)


def expand_factors(a: Tensor, g: Tensor, mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """K-FAC-expand: R is treated like more batch.

    a [N, R, D_in], g [(C,) N, R, D_out], mask [N, R] (bool, optional) ->
        A = 1/(sum of mask) sum_{n,r} mask a a^T      [D_in, D_in]   (1/(N R) without mask)
        G = 1/N sum_{c,n,r} mask g g^T                [D_out, D_out]
    N counts the examples with a real position. With ragged R the normaliser of A is the
    number of real positions, which keeps A (x) G = 1/N sum_{n,r} a a^T (x) K exact for
    deep linear networks (K = the constant per-position output curvature).
    """
    _check(a, g, mask)
    g = _with_c(g)
    num_examples = _num_examples(a, mask)
    if mask is not None:
        m = mask.to(a.dtype)
        a = a * m.unsqueeze(-1)
        g = g * m.unsqueeze(-1)
        num_positions = m.sum()
    else:
        num_positions = torch.tensor(float(a.shape[0] * a.shape[1]), dtype=a.dtype,
                                     device=a.device)
    a_flat = a.reshape(-1, a.shape[-1])
    g_flat = g.reshape(-1, g.shape[-1])
    A = a_flat.T @ a_flat / num_positions.clamp(min=1)
    G = g_flat.T @ g_flat / num_examples.clamp(min=1)
    return A, G


def reduce_factors(a: Tensor, g: Tensor, mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """K-FAC-reduce: R is summed out per example before the outer products.

    a [N, R, D_in], g [(C,) N, R, D_out], mask [N, R] (bool, optional) ->
        abar_n = mean over the real positions of a_{n,r}      [N, D_in]
        gbar   = sum over the real positions of g_{c,n,r}     [C, N, D_out]
        A = 1/N sum_n abar abar^T,   G = 1/N sum_{c,n} gbar gbar^T
    Cost: the outer products are over N, not N*R, vectors, hence R times cheaper than expand.
    """
    _check(a, g, mask)
    g = _with_c(g)
    num_examples = _num_examples(a, mask)
    if mask is None:
        a_bar = a.mean(dim=1)
        g_bar = g.sum(dim=2)
    else:
        m = mask.to(a.dtype)
        counts = m.sum(dim=1, keepdim=True).clamp(min=1)  # an empty example gives abar = 0
        a_bar = (a * m.unsqueeze(-1)).sum(dim=1) / counts
        g_bar = (g * m.unsqueeze(-1)).sum(dim=2)
    g_bar = g_bar.reshape(-1, g_bar.shape[-1])
    A = a_bar.T @ a_bar / num_examples.clamp(min=1)
    G = g_bar.T @ g_bar / num_examples.clamp(min=1)
    return A, G


# --------------------------------------------------------------- flat (graph) node layout

def _segment_sum(x: Tensor, segment_ids: Tensor, num_segments: int) -> Tensor:
    """x [..., M, D], segment_ids [M] -> [..., num_segments, D] (sums per segment)."""
    out = x.new_zeros(*x.shape[:-2], num_segments, x.shape[-1])
    return out.index_add_(x.dim() - 2, segment_ids, x)


def _flat_mask(a: Tensor, mask: Optional[Tensor]) -> Tensor:
    if mask is None:
        return torch.ones(a.shape[0], dtype=a.dtype, device=a.device)
    return mask.to(a.dtype)


def reduce_factors_segments(a: Tensor, g: Tensor, segment_ids: Tensor, num_segments: int,
                            mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """K-FAC-reduce for a batch of graphs in the flat (jraph-style padded) node layout.

    a [M, D_in], g [(C,) M, D_out], segment_ids [M] (graph of each node, in
    [0, num_segments)), mask [M] (bool; False = padding node, never contributes) ->
    A, G as in ``reduce_factors`` with R_n = the real nodes of graph n, and N = the graphs
    with at least one real node (a padding graph is no example).
    """
    m = _flat_mask(a, mask)
    counts = _segment_sum(m.unsqueeze(-1), segment_ids, num_segments)[:, 0]  # [S]
    num_examples = (counts > 0).sum().to(a.dtype).clamp(min=1)
    a_bar = _segment_sum(a * m.unsqueeze(-1), segment_ids, num_segments)
    a_bar = a_bar / counts.clamp(min=1).unsqueeze(-1)
    g_bar = _segment_sum(g * m.unsqueeze(-1), segment_ids, num_segments)
    g_bar = g_bar.reshape(-1, g_bar.shape[-1])
    return a_bar.T @ a_bar / num_examples, g_bar.T @ g_bar / num_examples


def expand_factors_segments(a: Tensor, g: Tensor, segment_ids: Tensor, num_segments: int,
                            mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """K-FAC-expand in the flat node layout: a [M, D_in], g [(C,) M, D_out], segment ids and
    mask as in ``reduce_factors_segments``. A averages over the real nodes, G sums over them
    and divides by N = graphs with a real node (the same convention as ``expand_factors``)."""
    m = _flat_mask(a, mask)
    counts = _segment_sum(m.unsqueeze(-1), segment_ids, num_segments)[:, 0]
    num_examples = (counts > 0).sum().to(a.dtype).clamp(min=1)
    a_m = a * m.unsqueeze(-1)
    g_m = (g * m.unsqueeze(-1)).reshape(-1, g.shape[-1])
    return a_m.T @ a_m / m.sum().clamp(min=1), g_m.T @ g_m / num_examples
