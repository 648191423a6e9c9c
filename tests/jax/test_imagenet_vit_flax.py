"""Flax ViT (``workloads/imagenet_vit/flax_models.py``) against our PyTorch ViT (``models.py``).

Parity: the same weights, copied PyTorch -> Flax with ``params_from_torch``, give eval-mode
logits within 1e-5 (float32, CPU) for the tiny config, full ViT-S/16 (depth 12, batch 2) and the
glu / post_ln / map variants at full width, heads, MLP and 224 px with depth 2 (full depth is the
same code: measured once at depth 12, glu 1.4e-6, post_ln 1.3e-6, map 2.4e-6; at depth 2 the
file stays near 30 s of CPU). The weights are randomised first (biases, LayerNorms, head, MAP
probe, position embedding all away from their init), so no path is compared through a zero.
Also: AlgoPerf's Flax parameter tree and our documented departures from it, parameter counts,
init, dropout placement, and a deliberate mismatch being caught.
"""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
flax_linen = pytest.importorskip("flax.linen")
torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402

from workloads.flax_dropout import Dropout  # noqa: E402
from workloads.imagenet_vit import definition, models  # noqa: E402
from workloads.imagenet_vit import flax_models as fm  # noqa: E402

TOL = 1e-5
TINY = definition.ImagenetVitTinyDefinition
BASE = definition.ImagenetVitDefinition
VARIANTS = {"glu": definition.ImagenetVitGluDefinition,
            "post_ln": definition.ImagenetVitPostLnDefinition,
            "map": definition.ImagenetVitMapDefinition}


def torch_vit(defn, depth=None, seed=0):
    """``models.ViT`` for a definition (the fields ``build_model`` reads), weights randomised:
    biases N(0, 0.1^2), LayerNorm scales 1 + N(0, 0.1^2), head N(0, 1/D), probe N(0, 1),
    position embedding sin-cos + N(0, 0.1^2); other Linear weights keep their Xavier init, so
    activations and logits stay O(1) through 12 blocks and 1e-5 is a tight, absolute bound."""
    torch.manual_seed(seed)
    model = models.ViT(image_size=defn.center_crop_size, patch=defn.patch, width=defn.width,
                       depth=depth or defn.depth, mlp_dim=defn.mlp_dim, num_heads=defn.num_heads,
                       num_classes=defn.num_classes, glu=defn.use_glu,
                       post_ln=defn.use_post_layer_norm, map_head=defn.use_map)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            module = name.rsplit(".", 2)[-2] if "." in name else name
            if name == "pos_embedding":
                p.add_(0.1 * r)
            elif name == "pool.probe":
                p.copy_(r)
            elif name.endswith("bias"):
                p.copy_(0.1 * r)
            elif module in ("ln1", "ln2", "ln", "encoder_norm"):
                p.copy_(1 + 0.1 * r)
            elif name == "head.weight":
                p.copy_(r / p.shape[1] ** 0.5)
    return model.eval()


def flax_vit(defn, depth=None, **changes):
    vit = fm.from_definition(defn)
    return vit.clone(depth=depth or defn.depth, **changes)


def images(defn, n, seed=1):
    """Standardised images: torch NCHW and the same values NHWC for Flax."""
    s = defn.center_crop_size
    x = torch.randn(n, 3, s, s, generator=torch.Generator().manual_seed(seed))
    return x, jnp.asarray(x.numpy().transpose(0, 2, 3, 1))


def flat_shapes(params):
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {"/".join(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def max_diff(defn, depth=None, n=2, tree=None, **changes):
    """(max |logits_torch - logits_flax|, max |logits_torch|) in eval mode, same weights.
    ``tree``: {path: shape} the converted params must have exactly (apply would not notice a
    converted parameter that the model never reads)."""
    model = torch_vit(defn, depth)
    x, x_nhwc = images(defn, n)
    with torch.no_grad():
        want = model(x).numpy()
    vit = flax_vit(defn, depth, **changes)
    # Jitted: also checks the model traces; and on CPU one compile of a small model is far
    # cheaper than compiling its eager ops one by one (seconds for each new shape).
    apply = jax.jit(lambda params, x: vit.apply({"params": params}, x, train=False))
    params = fm.params_from_torch(model.state_dict(), vit)
    if tree is not None:
        assert flat_shapes(params) == tree
    got = np.asarray(apply(params, x_nhwc))
    assert got.shape == want.shape == (n, defn.num_classes)
    return float(np.abs(got - want).max()), float(np.abs(want).max())


# --- parity ----------------------------------------------------------------------------------
def test_tiny_logits_match_pytorch():
    diff, scale = max_diff(TINY, n=4)
    assert scale > 0.5        # logits are O(1): an absolute 1e-5 means something
    assert diff <= TOL, diff  # measured 4.2e-7


def test_vit_s16_full_depth_logits_match_pytorch():
    # Depth 12, 224 px, 1000 classes; the tree as test_full_size_tree_... states it.
    diff, scale = max_diff(BASE, n=2, tree=our_full_size_tree(BASE))
    assert scale > 0.5
    assert diff <= TOL, diff   # measured 1.1e-6


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_logits_match_pytorch_at_full_width_depth_2(variant):
    diff, scale = max_diff(VARIANTS[variant], depth=2, n=2)
    assert scale > 0.5
    assert diff <= TOL, (variant, diff)  # measured glu 8.3e-7, post_ln 1.0e-6, map 1.9e-6


def test_tiny_with_every_switch_on_matches_pytorch():
    class AllOn(TINY):
        use_glu = use_post_layer_norm = use_map = True
    diff, _ = max_diff(AllOn, n=4, tree=fm.param_shapes(flax_vit(AllOn), 32))
    assert diff <= TOL, diff


# --- a deliberate mismatch is caught -----------------------------------------------------------
@pytest.mark.parametrize("defn, depth, eps", [
    (TINY, None, 1e-4),
    # torch.nn.LayerNorm's default 1e-5 instead of our 1e-6: caught where a LayerNorm sees a
    # low-variance input (the MAP head's pooled vector). On the base ViT-S/16 the same slip
    # moves the logits by only 6.9e-6 (tiny: 6.8e-6), under the tolerance: 1e-5 cannot see it.
    (VARIANTS["map"], 2, 1e-5),
])
def test_a_different_layer_norm_epsilon_is_not_within_tolerance(defn, depth, eps):
    diff, _ = max_diff(defn, depth, n=4 if defn is TINY else 2, layer_norm_epsilon=eps)
    assert diff > TOL, diff   # measured: tiny eps 1e-4 6.9e-5; map eps 1e-5 3.1e-5


# --- parameter trees -------------------------------------------------------------------------
# AlgoPerf's Flax ViT-S/16 (``imagenet_jax/models.py`` with ``decode_variant('S/16')``, its
# defaults rep_size=True and head_zeroinit), read off its module code: path -> shape.
ALGOPERF_TOP = {
    "conv_patch_extract/kernel": (16, 16, 3, 384), "conv_patch_extract/bias": (384,),
    "Transformer/encoder_layernorm/scale": (384,),        # absent with post-LN
    "Transformer/encoder_layernorm/bias": (384,),
    "pre_logits/kernel": (384, 384), "pre_logits/bias": (384,),
    "head/kernel": (384, 1000), "head/bias": (1000,),
}
ALGOPERF_BLOCK = {    # under Transformer/encoderblock_<i>, i = 0..11
    "LayerNorm_0/scale": (384,), "LayerNorm_0/bias": (384,),
    "MultiHeadDotProductAttention_1/query/kernel": (384, 6, 64),
    "MultiHeadDotProductAttention_1/query/bias": (6, 64),
    "MultiHeadDotProductAttention_1/key/kernel": (384, 6, 64),
    "MultiHeadDotProductAttention_1/key/bias": (6, 64),
    "MultiHeadDotProductAttention_1/value/kernel": (384, 6, 64),
    "MultiHeadDotProductAttention_1/value/bias": (6, 64),
    "MultiHeadDotProductAttention_1/out/kernel": (6, 64, 384),
    "MultiHeadDotProductAttention_1/out/bias": (384,),
    "LayerNorm_2/scale": (384,), "LayerNorm_2/bias": (384,),
    "MlpBlock_3/Dense_0/kernel": (384, 1536), "MlpBlock_3/Dense_0/bias": (1536,),
    "MlpBlock_3/Dense_1/kernel": (1536, 384), "MlpBlock_3/Dense_1/bias": (384,),
}
ALGOPERF_GLU_MLP = {  # replaces the two MlpBlock_3 Denses: gate Dense_1 on gelu(Dense_0(h))
    "MlpBlock_3/Dense_0/kernel": (384, 1536), "MlpBlock_3/Dense_0/bias": (1536,),
    "MlpBlock_3/Dense_1/kernel": (1536, 1536), "MlpBlock_3/Dense_1/bias": (1536,),
    "MlpBlock_3/Dense_2/kernel": (1536, 384), "MlpBlock_3/Dense_2/bias": (384,),
}
ALGOPERF_MAP = {
    "MAPHead_0/probe": (1, 1, 384),
    "MAPHead_0/MultiHeadDotProductAttention_0/query/kernel": (384, 6, 64),
    "MAPHead_0/MultiHeadDotProductAttention_0/query/bias": (6, 64),
    "MAPHead_0/MultiHeadDotProductAttention_0/key/kernel": (384, 6, 64),
    "MAPHead_0/MultiHeadDotProductAttention_0/key/bias": (6, 64),
    "MAPHead_0/MultiHeadDotProductAttention_0/value/kernel": (384, 6, 64),
    "MAPHead_0/MultiHeadDotProductAttention_0/value/bias": (6, 64),
    "MAPHead_0/MultiHeadDotProductAttention_0/out/kernel": (6, 64, 384),
    "MAPHead_0/MultiHeadDotProductAttention_0/out/bias": (384,),
    "MAPHead_0/LayerNorm_0/scale": (384,), "MAPHead_0/LayerNorm_0/bias": (384,),
    "MAPHead_0/MlpBlock_0/Dense_0/kernel": (384, 1536),
    "MAPHead_0/MlpBlock_0/Dense_0/bias": (1536,),
    "MAPHead_0/MlpBlock_0/Dense_1/kernel": (1536, 384),
    "MAPHead_0/MlpBlock_0/Dense_1/bias": (384,),
}


def algoperf_tree(glu=False, post_ln=False, map_head=False):
    tree = dict(ALGOPERF_TOP)
    if post_ln:
        del tree["Transformer/encoder_layernorm/scale"], tree["Transformer/encoder_layernorm/bias"]
    block = dict(ALGOPERF_BLOCK)
    if glu:
        block = {k: v for k, v in block.items() if not k.startswith("MlpBlock_3/")}
        block.update(ALGOPERF_GLU_MLP)
    tree.update({f"Transformer/encoderblock_{i}/{k}": v
                 for i in range(12) for k, v in block.items()})
    if map_head:
        tree.update(ALGOPERF_MAP)
    return tree


# Ours = AlgoPerf's names, with these departures (flax_models' docstring): a learned
# pos_embedding [1, 196, 384]; no pre_logits; the GLU gate on the block input, [D, M].
OUR_ADDED = {"pos_embedding": (1, 196, 384)}
OUR_REMOVED = {"pre_logits/kernel", "pre_logits/bias"}
OUR_GLU_GATE = {f"Transformer/encoderblock_{i}/MlpBlock_3/Dense_1/{k}": s
                for i in range(12) for k, s in (("kernel", (384, 1536)), ("bias", (1536,)))}

# The README's PyTorch counts (and models.closed_form_num_params).
COUNTS = {"imagenet_vit": 22_049_896, "imagenet_vit_glu": 29_146_216,
          "imagenet_vit_post_ln": 22_049_128, "imagenet_vit_map": 23_823_976}
ALGOPERF_COUNTS = {"imagenet_vit": 22_122_472, "imagenet_vit_glu": 50_452_456,
                   "imagenet_vit_post_ln": 22_121_704, "imagenet_vit_map": 23_896_552}


def our_full_size_tree(defn):
    theirs = algoperf_tree(glu=defn.use_glu, post_ln=defn.use_post_layer_norm,
                           map_head=defn.use_map)
    expected = {k: v for k, v in theirs.items() if k not in OUR_REMOVED}
    expected.update(OUR_ADDED)
    if defn.use_glu:
        expected.update(OUR_GLU_GATE)
    return expected


@pytest.mark.parametrize("defn", [BASE, *VARIANTS.values()], ids=lambda d: d.name)
def test_full_size_tree_is_algoperfs_with_the_documented_departures(defn):
    ours = fm.param_shapes(fm.from_definition(defn), defn.center_crop_size)
    assert ours == our_full_size_tree(defn)
    theirs = algoperf_tree(glu=defn.use_glu, post_ln=defn.use_post_layer_norm,
                           map_head=defn.use_map)
    count = sum(int(np.prod(s)) for s in ours.values())
    assert count == COUNTS[defn.name] == models.closed_form_num_params(
        glu=defn.use_glu, post_ln=defn.use_post_layer_norm, map_head=defn.use_map)
    assert sum(int(np.prod(s)) for s in theirs.values()) == ALGOPERF_COUNTS[defn.name]


TINY_TREE = {
    "conv_patch_extract/kernel": (8, 8, 3, 64), "conv_patch_extract/bias": (64,),
    "pos_embedding": (1, 16, 64),
    **{k: v for i in range(2) for k, v in {
        f"Transformer/encoderblock_{i}/LayerNorm_0/scale": (64,),
        f"Transformer/encoderblock_{i}/LayerNorm_0/bias": (64,),
        f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/query/kernel": (64, 4, 16),
        f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/query/bias": (4, 16),
        f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/key/kernel": (64, 4, 16),
        f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/key/bias": (4, 16),
        f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/value/kernel": (64, 4, 16),
        f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/value/bias": (4, 16),
        f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/out/kernel": (4, 16, 64),
        f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/out/bias": (64,),
        f"Transformer/encoderblock_{i}/LayerNorm_2/scale": (64,),
        f"Transformer/encoderblock_{i}/LayerNorm_2/bias": (64,),
        f"Transformer/encoderblock_{i}/MlpBlock_3/Dense_0/kernel": (64, 128),
        f"Transformer/encoderblock_{i}/MlpBlock_3/Dense_0/bias": (128,),
        f"Transformer/encoderblock_{i}/MlpBlock_3/Dense_1/kernel": (128, 64),
        f"Transformer/encoderblock_{i}/MlpBlock_3/Dense_1/bias": (64,),
    }.items()},
    "Transformer/encoder_layernorm/scale": (64,), "Transformer/encoder_layernorm/bias": (64,),
    "head/kernel": (64, 16), "head/bias": (16,),
}


def test_tiny_tree_and_count():
    shapes = fm.param_shapes(fm.from_definition(TINY), 32)
    assert shapes == TINY_TREE
    assert sum(int(np.prod(s)) for s in shapes.values()) == 81_488 == models.closed_form_num_params(
        image_size=32, patch=8, width=64, depth=2, mlp_dim=128, num_classes=16)


def test_params_from_torch_refuses_another_variant():
    glu_state = torch_vit(VARIANTS["glu"], depth=2).state_dict()
    with pytest.raises(ValueError, match="mlp.glu"):     # the gate would be silently dropped
        fm.params_from_torch(glu_state, flax_vit(BASE, depth=2))
    with pytest.raises(KeyError, match="pool.probe"):
        fm.params_from_torch(torch_vit(BASE, depth=2).state_dict(), flax_vit(VARIANTS["map"], 2))


# --- init ------------------------------------------------------------------------------------
def test_init_matches_pytorch_init_rules():
    # Depth 1, jit and an "rbg" key: the rules, not the stream, are under test, and on CPU
    # eager threefry draws compile one by one (~15 s here; ~3 s this way).
    vit = fm.from_definition(TINY).clone(use_map=True, depth=1)
    params = jax.jit(vit.init)(jax.random.key(0, impl="rbg"),
                               jnp.zeros((1, 32, 32, 3)))["params"]
    # Position embedding: the 2-D sin-cos table, as models.sincos_2d.
    np.testing.assert_allclose(params["pos_embedding"], models.sincos_2d(4, 64).numpy(),
                               atol=1e-6)
    # Zero head (so initial logits are 0, loss log C); zero biases; unit LayerNorm scales.
    assert not np.any(params["head"]["kernel"]) and not np.any(params["head"]["bias"])
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in flat:
        name = path[-1].key
        if name == "bias":
            assert not np.any(leaf), path
        if name == "scale":
            assert np.all(leaf == 1), path
    # Patch kernel: Xavier-uniform of the Linear(3*p*p, D) it is in PyTorch.
    bound = np.sqrt(6 / (3 * 8 * 8 + 64))
    kernel = np.asarray(params["conv_patch_extract"]["kernel"])
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.95 * bound
    # Attention projections: Xavier over (D, D), not over the [D, H, d] kernel's 3-D fans.
    q = np.asarray(params["Transformer"]["encoderblock_0"]["MultiHeadDotProductAttention_1"]
                   ["query"]["kernel"])
    assert 0.95 * np.sqrt(6 / 128) < np.abs(q).max() <= np.sqrt(6 / 128)
    assert 0.01 < float(np.std(params["MAPHead_0"]["probe"])) < 0.04      # N(0, 0.02^2)


# --- dropout ---------------------------------------------------------------------------------
@pytest.mark.parametrize("switches", [{}, {"use_glu": True, "use_post_layer_norm": True,
                                           "use_map": True}], ids=["base", "all_switches"])
def test_dropout_sites_match_pytorch(switches, monkeypatch):
    """Both models with every dropout replaced by the same deterministic op, x -> x * (1 + p):
    train-mode logits agree only if the sites sit at the same places (a scale on a residual
    branch, on the stream, or inside an MLP gives different functions) and are as many."""
    rate = 0.25

    class Defn(TINY):
        use_glu = switches.get("use_glu", False)
        use_post_layer_norm = switches.get("use_post_layer_norm", False)
        use_map = switches.get("use_map", False)

    model = torch_vit(Defn).train()
    torch_sites = []

    def fake_torch_dropout(x, p=0.5, training=True, inplace=False):
        torch_sites.append(p)
        return x * (1 + p) if training else x

    monkeypatch.setattr(torch.nn.functional, "dropout", fake_torch_dropout)
    x, x_nhwc = images(Defn, 4)
    with torch.no_grad():
        want = model(x, rate).numpy()

    flax_sites = []

    def fake_flax_dropout(next_fun, args, kwargs, context):
        if isinstance(context.module, Dropout) and context.method_name == "__call__":
            assert kwargs["deterministic"] is False
            flax_sites.append("/".join(context.module.scope.path))
            return args[0] * (1 + context.module.rate)
        return next_fun(*args, **kwargs)

    vit = flax_vit(Defn)
    params = fm.params_from_torch(model.state_dict(), vit)
    @jax.jit
    def apply_train(params, x):
        with flax_linen.intercept_methods(fake_flax_dropout):  # acts while tracing
            return vit.apply({"params": params}, x, train=True, dropout_rate=rate)

    got = np.asarray(apply_train(params, x_nhwc))
    expected_sites = ["Dropout_0"] + [
        f"Transformer/encoderblock_{i}/{s}" for i in range(2)
        for s in ("Dropout_0", "MlpBlock_3/Dropout_0", "Dropout_1")]
    if Defn.use_map:
        expected_sites.append("MAPHead_0/MlpBlock_0/Dropout_0")
    assert flax_sites == expected_sites
    assert len(torch_sites) == len(flax_sites) and set(torch_sites) == {rate}
    assert np.abs(got - want).max() <= TOL
    with torch.no_grad():
        unscaled = model(x, 0.0).numpy()
    assert np.abs(got - unscaled).max() > 100 * TOL   # the fake dropout did change the logits


def test_dropout_draws_from_the_dropout_rng_in_train_mode_only():
    vit = flax_vit(TINY, depth=1)
    x = jnp.asarray(images(TINY, 4)[1])
    v = {"params": fm.params_from_torch(torch_vit(TINY, depth=1).state_dict(), vit)}

    # One compile for every mode (on CPU each compile costs about a second here). "rbg" keys:
    # which rng is drawn from is under test, not the generator, and threefry's masks take
    # three times as long to compile.
    @jax.jit
    def logits(seed):
        key = jax.random.key(seed, impl="rbg")
        return {"eval": vit.apply(v, x, train=False),
                "eval_at_0.1": vit.apply(v, x, train=False, dropout_rate=0.1),
                "train_at_0": vit.apply(v, x, train=True, dropout_rate=0.0),  # needs no rng
                "train": vit.apply(v, x, train=True, dropout_rate=0.1, rngs={"dropout": key})}

    a, b, c = logits(0), logits(0), logits(1)
    np.testing.assert_array_equal(a["eval_at_0.1"], a["eval"])
    np.testing.assert_array_equal(a["train_at_0"], a["eval"])
    np.testing.assert_array_equal(a["train"], b["train"])        # the mask is the rng's
    assert np.abs(a["train"] - c["train"]).max() > 1e-3          # another rng, another mask
    assert np.abs(a["train"] - a["eval"]).max() > 1e-3
    with pytest.raises(Exception, match="dropout"):              # no silent default rng
        jax.eval_shape(lambda: vit.apply(v, x, train=True, dropout_rate=0.1))
