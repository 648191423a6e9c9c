"""imagenet_vit model: ViT-S/16 parameter count, variant parameter trees, attention, dropout."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workloads.imagenet_vit.models import ViT, closed_form_num_params, patchify


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def shapes(model):
    return {k: tuple(p.shape) for k, p in model.named_parameters()}


@pytest.fixture(scope="module")
def vit_s16():
    torch.manual_seed(0)
    return ViT()


def test_vit_s16_parameter_count(vit_s16):
    # Independent closed form, and the published ViT-S size ("22M", Touvron et al. 2021).
    assert num_params(vit_s16) == closed_form_num_params() == 22_049_896
    assert 21_500_000 < num_params(vit_s16) < 22_500_000
    s = shapes(vit_s16)
    assert s["embed.weight"] == (384, 3 * 16 * 16)
    assert s["pos_embedding"] == (1, 196, 384)
    assert s["head.weight"] == (1000, 384)
    assert len(vit_s16.blocks) == 12
    assert s["blocks.0.mlp.fc1.weight"] == (1536, 384)
    assert vit_s16.blocks[0].attn.num_heads == 6
    # Every weight matrix is a plain nn.Linear (K-FAC hooks these).
    linears = [m for m in vit_s16.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1 + 12 * 6 + 1


@pytest.mark.parametrize("kwargs", [{}, {"glu": True}, {"post_ln": True}, {"map_head": True},
                                    {"glu": True, "post_ln": True, "map_head": True}])
def test_closed_form_matches_every_variant_at_full_size(kwargs):
    assert num_params(ViT(depth=2, **kwargs)) == closed_form_num_params(depth=2, **kwargs)


def test_glu_adds_one_linear_per_block_and_removes_nothing():
    base, glu = shapes(ViT(depth=2)), shapes(ViT(depth=2, glu=True))
    added = {k: v for k, v in glu.items() if k not in base}
    assert set(base) <= set(glu)
    assert added == {**{f"blocks.{i}.mlp.glu.weight": (1536, 384) for i in range(2)},
                     **{f"blocks.{i}.mlp.glu.bias": (1536,) for i in range(2)}}
    # At depth 12 (ViT-S/16): 12 * (384 * 1536 + 1536) more parameters.
    assert closed_form_num_params(glu=True) - closed_form_num_params() == 7_096_320


def test_post_ln_only_removes_the_encoder_norm():
    base, post = shapes(ViT(depth=2)), shapes(ViT(depth=2, post_ln=True))
    assert set(base) - set(post) == {"encoder_norm.weight", "encoder_norm.bias"}
    assert set(post) <= set(base)


def test_post_ln_puts_the_norm_after_the_residual_sum():
    torch.manual_seed(0)
    model = ViT(image_size=16, patch=4, width=32, depth=1, mlp_dim=64, num_heads=4,
                num_classes=5, post_ln=True).eval()
    x = torch.randn(3, 16, 32)
    block = model.blocks[0]
    h = block.ln1(x + block.attn(x))
    expected = block.ln2(h + block.mlp(h))
    torch.testing.assert_close(block(x, 0.0), expected)
    # Each token of a post-LN block output is normalised (LN weight 1, bias 0 at init).
    out = block(x, 0.0)
    torch.testing.assert_close(out.mean(-1), torch.zeros(3, 16), atol=1e-5, rtol=0)


def test_map_head_adds_the_pooling_parameters_only():
    base, mapped = shapes(ViT(depth=2)), shapes(ViT(depth=2, map_head=True))
    assert set(base) <= set(mapped)
    added = {k: v for k, v in mapped.items() if k not in base}
    d, m = 384, 1536
    assert added == {"pool.probe": (1, 1, d),
                     **{f"pool.attn.{n}.weight": (d, d) for n in "qkv"},
                     **{f"pool.attn.{n}.bias": (d,) for n in "qkv"},
                     "pool.attn.out.weight": (d, d), "pool.attn.out.bias": (d,),
                     "pool.ln.weight": (d,), "pool.ln.bias": (d,),
                     "pool.mlp.fc1.weight": (m, d), "pool.mlp.fc1.bias": (m,),
                     "pool.mlp.fc2.weight": (d, m), "pool.mlp.fc2.bias": (d,)}


def test_patchify_matches_a_stride_p_convolution():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 12)
    conv = nn.Conv2d(3, 5, 4, stride=4)
    tokens = patchify(x, 4) @ conv.weight.reshape(5, -1).T + conv.bias   # [2, 6, 5]
    expected = conv(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens, expected)
    with pytest.raises(ValueError, match="divisible"):
        patchify(torch.randn(1, 3, 10, 12), 4)


def test_attention_equals_the_explicit_softmax_formula():
    torch.manual_seed(0)
    model = ViT(image_size=8, patch=4, width=12, depth=1, mlp_dim=8, num_heads=3,
                num_classes=2)
    attn = model.blocks[0].attn
    x = torch.randn(2, 5, 12)
    q, k, v = (f(x).reshape(2, 5, 3, 4).transpose(1, 2) for f in (attn.q, attn.k, attn.v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)   # sqrt(d) = sqrt(4)
    expected = attn.out((weights @ v).transpose(1, 2).reshape(2, 5, 12))
    torch.testing.assert_close(attn(x), expected, atol=1e-6, rtol=1e-5)


def test_zero_head_gives_uniform_initial_predictions_and_a_gradient():
    torch.manual_seed(0)
    model = ViT(image_size=16, patch=4, width=32, depth=2, mlp_dim=64, num_heads=4,
                num_classes=7)
    x = torch.randn(4, 3, 16, 16)
    logits = model(x)
    assert torch.equal(logits, torch.zeros(4, 7))
    loss = F.cross_entropy(logits, torch.arange(4))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(7.0)).item())
    loss.backward()
    assert model.head.weight.grad.abs().sum() > 0


def test_dropout_only_in_training_and_eval_forward_deterministic():
    torch.manual_seed(0)
    model = ViT(image_size=16, patch=4, width=32, depth=2, mlp_dim=64, num_heads=4,
                num_classes=5)
    nn.init.normal_(model.head.weight)
    x = torch.randn(3, 3, 16, 16)
    model.train()
    assert not torch.allclose(model(x, 0.5), model(x, 0.0))
    model.eval()
    assert torch.equal(model(x, 0.5), model(x, 0.0))
    assert torch.equal(model(x), model(x))


def test_mean_pool_is_permutation_equivariant_without_position_embeddings():
    # Sanity of the pooling head: with zero position embeddings, shuffling patches (tokens)
    # leaves the logits unchanged; with the learned ones it does not.
    torch.manual_seed(0)
    model = ViT(image_size=8, patch=4, width=16, depth=1, mlp_dim=32, num_heads=2,
                num_classes=3).eval()
    nn.init.normal_(model.head.weight)
    x = torch.randn(2, 3, 8, 8)
    swapped = torch.cat([x[..., 4:], x[..., :4]], dim=-1)   # swap left/right patch columns
    assert not torch.allclose(model(x), model(swapped))
    with torch.no_grad():
        model.pos_embedding.zero_()
    torch.testing.assert_close(model(x), model(swapped), atol=1e-5, rtol=1e-5)


def test_position_embeddings_start_as_the_2d_sincos_code_and_are_learned():
    from workloads.imagenet_vit.models import sincos_2d
    table = sincos_2d(3, 8)                       # 9 tokens, 2 frequencies per quarter
    assert table.shape == (1, 9, 8)
    token = table[0, 3 * 1 + 2]                   # (y, x) = (1, 2); omegas (1, 1e-4)
    expected = [torch.sin(torch.tensor(2.0)), torch.sin(torch.tensor(2e-4)),
                torch.cos(torch.tensor(2.0)), torch.cos(torch.tensor(2e-4)),
                torch.sin(torch.tensor(1.0)), torch.sin(torch.tensor(1e-4)),
                torch.cos(torch.tensor(1.0)), torch.cos(torch.tensor(1e-4))]
    torch.testing.assert_close(token, torch.stack(expected))
    model = ViT(image_size=12, patch=4, width=8, depth=1, mlp_dim=8, num_heads=2,
                num_classes=2)
    torch.testing.assert_close(model.pos_embedding.data, table)
    assert model.pos_embedding.requires_grad
