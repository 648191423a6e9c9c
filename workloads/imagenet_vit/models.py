"""Vision Transformer (Dosovitskiy et al. 2021, arXiv:2010.11929) as AlgoPerf's imagenet_vit.

ViT-S/16 (``ViT()`` defaults): width D = 384, depth 12, MLP 1536, 6 heads, 16x16 patches,
learned position embeddings (initialised with the 2-D sin-cos code), pre-LayerNorm blocks,
global average pooling (no class token), 1000 classes. Shapes for N images [N, 3, 224, 224]:

    patchify     [N, 3, 224, 224] -> [N, T, 3*16*16]       T = (224/16)^2 = 196 tokens
    embed        nn.Linear(768, D) + pos_embedding [1, T, D]
    blocks x12   [N, T, D] -> [N, T, D]
    encoder_norm LayerNorm(D)                   (absent with post-LN, see below)
    pool         mean over T -> [N, D]           (or the MAP head, see below)
    head         nn.Linear(D, 1000) -> logits [N, 1000]

Pre-LN block (the default)::

    x = x + drop(attn(ln1(x)))        attn: q, k, v, out = four nn.Linear(D, D)
    x = x + drop(mlp(ln2(x)))         mlp: fc1 D -> M, GELU, drop, fc2 M -> D

Every Linear acts on [N, T, D] token tensors (the patch embedding too, on flattened patches,
instead of a stride-16 conv with the same parameters), so K-FAC sees weight sharing over the
T tokens. Attention is ``torch.nn.functional.scaled_dot_product_attention``.

Parameter count of ViT-S/16 (tested against ``closed_form_num_params``): 22,049,896,
the published "22M" of ViT-S.

The three AlgoPerf variant switches and how each changes the parameter tree:

* ``glu=True`` (imagenet_vit_glu): the MLP becomes ``fc2(gelu(fc1(h)) * glu(h))``; each block
  gains ``blocks.<i>.mlp.glu.{weight [M, D], bias [M]}`` (+12 * (D*M + M) = +7,096,320
  parameters for ViT-S/16); nothing disappears.
* ``post_ln=True`` (imagenet_vit_post_ln): LayerNorm after each residual sum,
  ``x = ln1(x + attn(x)); x = ln2(x + mlp(x))``; the blocks keep ``ln1``/``ln2`` (same names
  and shapes, new position) and ``encoder_norm.{weight, bias}`` disappears (the last block
  already ends in a LayerNorm), -2D parameters.
* ``map_head=True`` (imagenet_vit_map): multi-head attention pooling (Lee et al. 2019; big_vision
  "MAP") replaces the mean: a learned probe [1, 1, D] attends over the T tokens, then
  ``y = y + mlp(ln(y))``. New parameters ``pool.probe [1, 1, D]``, ``pool.attn.{q,k,v,out}``,
  ``pool.ln``, ``pool.mlp.{fc1, fc2}`` (+ D + 4(D^2 + D) + 2D + 2DM + M + D); nothing
  disappears.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, (H/p)*(W/p), C*p*p]; token t = row-major patch (i, j), features in
    (C, p_y, p_x) order, i.e. the flattening of a Conv2d(C, D, p, stride=p) weight."""
    n, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {patch}")
    x = images.reshape(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(n, (h // patch) * (w // patch), c * patch * patch)


def sincos_2d(grid: int, width: int, temperature: float = 10_000.0) -> torch.Tensor:
    """[1, grid*grid, width] 2-D sin-cos position code (big_vision's ``posemb_sincos_2d``):
    token (y, x) = [sin(x w), cos(x w), sin(y w), cos(y w)] with width/4 frequencies
    w_k = temperature^(-k / (width/4 - 1))."""
    if width % 4:
        raise ValueError(f"width {width} must be a multiple of 4 for the 2-D sin-cos code")
    y, x = torch.meshgrid(torch.arange(grid, dtype=torch.float32),
                          torch.arange(grid, dtype=torch.float32), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(width // 4) / max(width // 4 - 1, 1))
    x, y = x.reshape(-1, 1) * omega, y.reshape(-1, 1) * omega
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)[None]


class Attention(nn.Module):
    """Multi-head self- (or probe-) attention: q from ``x_q`` [N, Tq, D], k/v from ``x_kv``
    [N, T, D]; heads H with d = D / H; softmax(q k^T / sqrt(d)) v; out-projection."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [N, T, D] -> [N, H, T, d]
        n, t, d = x.shape
        return x.reshape(n, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, x_q: torch.Tensor, x_kv: Optional[torch.Tensor] = None) -> torch.Tensor:
        x_kv = x_q if x_kv is None else x_kv
        q, k, v = self._heads(self.q(x_q)), self._heads(self.k(x_kv)), self._heads(self.v(x_kv))
        y = F.scaled_dot_product_attention(q, k, v)           # [N, H, Tq, d]
        n, _, tq, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(n, tq, -1))  # [N, Tq, D]


class Mlp(nn.Module):
    """[N, T, D] -> [N, T, D]: fc2(drop(gelu(fc1(x)) [* glu(x)]))."""

    def __init__(self, width: int, mlp_dim: int, glu: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(width, mlp_dim)
        self.glu = nn.Linear(width, mlp_dim) if glu else None
        self.fc2 = nn.Linear(mlp_dim, width)

    def forward(self, x: torch.Tensor, dropout_rate: float = 0.0) -> torch.Tensor:
        h = F.gelu(self.fc1(x))
        if self.glu is not None:
            h = h * self.glu(x)
        h = F.dropout(h, dropout_rate, self.training)
        return self.fc2(h)


class Block(nn.Module):
    """One encoder block, pre-LN (default) or post-LN; [N, T, D] -> [N, T, D]."""

    def __init__(self, width: int, mlp_dim: int, num_heads: int, glu: bool, post_ln: bool):
        super().__init__()
        self.post_ln = post_ln
        self.ln1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, num_heads)
        self.ln2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, mlp_dim, glu)

    def forward(self, x: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        def drop(y):
            return F.dropout(y, dropout_rate, self.training)

        if self.post_ln:
            x = self.ln1(x + drop(self.attn(x)))
            return self.ln2(x + drop(self.mlp(x, dropout_rate)))
        x = x + drop(self.attn(self.ln1(x)))
        return x + drop(self.mlp(self.ln2(x), dropout_rate))


class MapHead(nn.Module):
    """Multi-head attention pooling: [N, T, D] -> [N, D]. A learned probe [1, 1, D] queries
    the tokens; then a residual MLP on the pooled vector, as in big_vision's MAPHead."""

    def __init__(self, width: int, mlp_dim: int, num_heads: int):
        super().__init__()
        self.probe = nn.Parameter(torch.empty(1, 1, width))
        self.attn = Attention(width, num_heads)
        self.ln = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, mlp_dim)

    def forward(self, x: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        y = self.attn(self.probe.expand(x.shape[0], -1, -1), x)   # [N, 1, D]
        y = y + self.mlp(self.ln(y), dropout_rate)
        return y[:, 0]


class ViT(nn.Module):
    """[N, 3, image_size, image_size] normalised images -> [N, num_classes] logits.

    Defaults are ViT-S/16 for 224x224 ImageNet. ``glu``, ``post_ln`` and ``map_head`` are the
    AlgoPerf variant switches (module docstring).
    """

    def __init__(self, image_size: int = 224, patch: int = 16, width: int = 384,
                 depth: int = 12, mlp_dim: int = 1536, num_heads: int = 6,
                 num_classes: int = 1000, in_channels: int = 3, glu: bool = False,
                 post_ln: bool = False, map_head: bool = False):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not divisible by patch {patch}")
        self.patch = patch
        num_tokens = (image_size // patch) ** 2
        self.embed = nn.Linear(in_channels * patch * patch, width)
        self.pos_embedding = nn.Parameter(torch.empty(1, num_tokens, width))
        self.blocks = nn.ModuleList(Block(width, mlp_dim, num_heads, glu, post_ln)
                                    for _ in range(depth))
        # Post-LN blocks already end in a LayerNorm; a second one would be redundant.
        self.encoder_norm = None if post_ln else nn.LayerNorm(width, eps=1e-6)
        self.pool = MapHead(width, mlp_dim, num_heads) if map_head else None
        self.head = nn.Linear(width, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform Linear weights, zero biases; position embeddings start as the 2-D
        sin-cos table (``sincos_2d``, AlgoPerf's ViT position code, here learned from there
        on: a position signal as strong as the patch content from step 0), the MAP probe as
        N(0, 0.02^2); the head starts at zero (AlgoPerf's ``head_zeroinit``), so initial logits
        are 0 and the initial loss is exactly log(num_classes)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.pos_embedding.copy_(sincos_2d(int(self.pos_embedding.shape[1] ** 0.5),
                                               self.pos_embedding.shape[2]))
        if self.pool is not None:
            nn.init.normal_(self.pool.probe, std=0.02)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor, dropout_rate: float = 0.0) -> torch.Tensor:
        x = self.embed(patchify(images, self.patch)) + self.pos_embedding   # [N, T, D]
        x = F.dropout(x, dropout_rate, self.training)
        for block in self.blocks:
            x = block(x, dropout_rate)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        x = x.mean(dim=1) if self.pool is None else self.pool(x, dropout_rate)   # [N, D]
        return self.head(x)


def closed_form_num_params(image_size: int = 224, patch: int = 16, width: int = 384,
                           depth: int = 12, mlp_dim: int = 1536, num_classes: int = 1000,
                           in_channels: int = 3, glu: bool = False, post_ln: bool = False,
                           map_head: bool = False) -> int:
    """The parameter count by formula, written independently of the module code."""
    d, m = width, mlp_dim
    tokens = (image_size // patch) ** 2
    linear = lambda i, o: i * o + o  # noqa: E731
    attention = 4 * linear(d, d)
    mlp = linear(d, m) + linear(m, d)
    block = 2 * (2 * d) + attention + mlp + (linear(d, m) if glu else 0)
    total = linear(in_channels * patch * patch, d) + tokens * d + depth * block
    total += 0 if post_ln else 2 * d
    if map_head:
        total += d + attention + 2 * d + mlp
    return total + linear(d, num_classes)

