"""Flax GNN (workloads/ogbg/flax_models.py): exact parity with our PyTorch GNN, padding, the
AlgoPerf parameter tree, dropout, and that a deliberate mismatch is caught (CPU, float32)."""
import functools

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jraph = pytest.importorskip("jraph")
pytest.importorskip("flax")
import torch  # noqa: E402

from workloads.datasets import ogbg_molpcba as data  # noqa: E402
from workloads.ogbg import flax_models as fm  # noqa: E402
from workloads.ogbg.models import GNN as TorchGNN  # noqa: E402
from workloads.ogbg.models import GraphBatch  # noqa: E402

TOL = 1e-5  # float32 parity
TINY = dict(latent_dim=32, hidden_dims=(32,), num_message_passing_steps=3)  # ogbg_tiny's GNN
FULL = dict()  # ogbg: L 256, hidden (256,), 5 steps, ReLU (the modules' defaults)
MODEL_SIZE = dict(latent_dim=128, hidden_dims=(256, 256), num_message_passing_steps=3)


def hand_graph(rng, num_nodes, bonds):
    """One graph in TFDS ogbg_molpcba's layout: OGB-range integer features, NaN labels."""
    labels = rng.integers(0, 2, data.NUM_TASKS).astype(np.float32)
    labels[rng.random(data.NUM_TASKS) < 0.3] = np.nan
    return {"node_feat": rng.integers(0, 120, (num_nodes, 9)),
            "edge_feat": rng.integers(0, 5, (len(bonds), 3)),
            "edge_index": np.asarray(bonds, np.int64).reshape(-1, 2), "labels": labels}


@pytest.fixture(scope="module")
def split():
    """Graphs 0-4 by hand (a chain, a lone atom, two atoms without a bond, an empty graph, a
    ring), then 10 from the ogbg_molpcba_tiny generator."""
    rng = np.random.default_rng(0)
    graphs = [hand_graph(rng, 3, [(0, 1), (1, 2)]), hand_graph(rng, 1, []),
              hand_graph(rng, 2, []), hand_graph(rng, 0, []),
              hand_graph(rng, 4, [(0, 1), (1, 2), (2, 3), (3, 0)])]
    gen = data.GraphSplit(**data.generate_molpcba_tiny(0, {"train": 24, "validation": 2,
                                                           "test": 2})["train"])
    graphs += [gen.graph(g) for g in range(10)]
    return data.GraphSplit(**data.split_arrays(graphs))


def pack(split, ids, extra_graphs=3, extra_nodes=64, extra_edges=128):
    """``pack_graphs`` with room to spare: several padding graphs, padding nodes and edges."""
    cap = data.capacity_for(data.SizeStats.of(split), len(ids))
    return data.pack_graphs(split, np.asarray(ids), data.Capacity(
        cap.graphs + extra_graphs, cap.nodes + extra_nodes, cap.edges + extra_edges))


def torch_model(config, seed=0):
    """Our PyTorch GNN in eval mode, with every bias and LayerNorm parameter moved off its
    init (0 / 1), so a swapped or dropped tensor in the conversion shows in the logits."""
    torch.manual_seed(seed)
    model = TorchGNN(**config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif ".norms." in name:
                p.normal_(1.0, 0.2)
    return model


@functools.lru_cache(maxsize=None)
def jitted_apply(model):
    """One jit per model (and shapes, train, rate). Compiling dominates this file: one XLA
    compile (~1.5-2.5 s CPU here) is far cheaper than eager mode's compile of every op for
    new shapes (~7-11 s), and LLVM's optimisation level 0 takes ~40% off it (it changes how
    fast the code runs, not the HLO program or float semantics)."""
    return jax.jit(model.apply, static_argnames=("train", "dropout_rate"),
                   compiler_options={"xla_backend_optimization_level": 0})


def flax_logits(model, params, graph, train=False, dropout_rate=0.0, rngs=None):
    return np.asarray(jitted_apply(model)({"params": params}, graph, train=train,
                                          dropout_rate=dropout_rate, rngs=rngs))


def init_shapes(model):
    """The model's parameter shapes from ``init`` on AlgoPerf's one-node fake batch."""
    fake = jraph.GraphsTuple(nodes=np.ones((1, 9), np.float32),
                             edges=np.ones((1, 3), np.float32),
                             senders=np.zeros(1, np.int32), receivers=np.zeros(1, np.int32),
                             n_node=np.ones(1, np.int32), n_edge=np.ones(1, np.int32),
                             globals=np.zeros((1, 128), np.float32))
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), fake, train=False))["params"]


def flat_shapes(tree):
    return {"/".join(k.key for k in path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def parity(split, config, ids, **flax_overrides):
    """(max |logit difference| over real graphs, over all rows) of PyTorch vs Flax on the same
    packed batch, the weights copied PyTorch -> Flax."""
    packed = pack(split, ids)
    tm = torch_model(config)
    with torch.no_grad():
        want = tm(GraphBatch.from_numpy(packed)).numpy()
    model = fm.GNN(**{**config, **flax_overrides})
    params = fm.params_from_torch(tm.state_dict(), config)  # its tree: the tree test below
    got = flax_logits(model, params, fm.graphs_tuple_from_packed(packed))
    assert got.shape == want.shape == (len(packed["graph_mask"]), 128)
    diff = np.abs(got - want)
    return diff[packed["graph_mask"] > 0].max(), diff.max()


@pytest.mark.parametrize("config,ids", [
    (TINY, range(15)),                      # all hand-made graphs and 10 generated ones
    (FULL, [0, 1]),                          # ogbg at 2 graphs: with and without edges
    (dict(FULL, activation="gelu"), [4, 2]),
    (dict(FULL, activation="silu"), [0, 2]),
    (MODEL_SIZE, [4, 1]),
], ids=["ogbg_tiny", "ogbg", "ogbg_gelu", "ogbg_silu", "ogbg_model_size"])
def test_same_weights_same_eval_logits_as_pytorch(split, config, ids):
    real, everywhere = parity(split, config, list(ids))
    assert real <= TOL  # measured 1.2e-6 to 3.3e-6
    # Padding graphs' logits are meaningless, but both models compute them alike too (looser:
    # the padding node sums ~100 self-loop edges, in another order; measured up to 8e-6).
    assert everywhere <= 10 * TOL


@pytest.mark.parametrize("overrides", [dict(layer_norm_epsilon=1e-5),
                                       dict(activation="gelu_exact")],
                         ids=["layer_norm_epsilon", "gelu_exact"])
def test_a_deliberate_mismatch_is_caught(split, overrides):
    """torch's default LayerNorm epsilon (1e-5, not 1e-6) against our ReLU model: 1.3e-4,
    shown by the graphs whose LayerNorm inputs vary little (the empty graph's and lone atoms'
    globals); the exact GELU against the tanh one of both our models: 1.6e-3."""
    config = dict(TINY, activation="gelu" if "activation" in overrides else "relu")
    real, _ = parity(split, config, list(range(15)), **overrides)
    assert real > 10 * TOL


def test_padding_changes_no_real_logits_and_masks_are_jraphs(split):
    ids = list(range(15))
    model = fm.GNN(**TINY)
    params = fm.params_from_torch(torch_model(TINY).state_dict(), TINY)
    tight = pack(split, ids, extra_graphs=0, extra_nodes=0, extra_edges=0)
    loose = pack(split, ids)  # 3 more graph slots, 64 more nodes, 128 more edges
    assert len(loose["graph_mask"]) > len(tight["graph_mask"]) == len(ids) + 1
    a = flax_logits(model, params, fm.graphs_tuple_from_packed(tight))[:len(ids)]
    b = flax_logits(model, params, fm.graphs_tuple_from_packed(loose))[:len(ids)]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # jraph's padding convention holds: its masks are pack_graphs' masks (edges reordered).
    g = fm.graphs_tuple_from_packed(loose)
    np.testing.assert_array_equal(jraph.get_graph_padding_mask(g), loose["graph_mask"] > 0)
    np.testing.assert_array_equal(jraph.get_node_padding_mask(g), loose["node_mask"] > 0)
    order = np.argsort(loose["edge_graph"], kind="stable")
    np.testing.assert_array_equal(jraph.get_edge_padding_mask(g), loose["edge_mask"][order] > 0)
    assert g.n_node.sum() == len(g.nodes) and g.n_edge.sum() == len(g.senders)
    assert g.nodes.dtype == g.edges.dtype == np.float32 and g.senders.dtype == np.int32


def test_edges_must_be_sorted_by_graph_and_padding_must_stay_padding(split):
    packed = pack(split, range(15))
    tm = torch_model(TINY)
    with torch.no_grad():
        want = tm(GraphBatch.from_numpy(packed)).numpy()[:15]
    model, params = fm.GNN(**TINY), fm.params_from_torch(tm.state_dict(), TINY)
    # pack_graphs' own edge order (bonds, then reverses) read by jraph's position-based graph
    # ids gives wrong graphs to edges: the reordering in graphs_tuple_from_packed is needed.
    g = fm.graphs_tuple_from_packed(packed)
    unsorted = g._replace(edges=packed["edge_feat"].astype(np.float32),
                          senders=packed["senders"].astype(np.int32),
                          receivers=packed["receivers"].astype(np.int32))
    assert np.abs(flax_logits(model, params, unsorted)[:15] - want).max() > 1e-3
    # A padding edge into a real node, or a padding node in a real slot, is refused.
    leaky = dict(packed, senders=packed["senders"].copy())
    leaky["senders"][-1] = 0
    with pytest.raises(ValueError, match="another graph"):
        fm.graphs_tuple_from_packed(leaky)
    leaky = dict(packed, node_graph=packed["node_graph"].copy(),
                 edge_graph=packed["edge_graph"].copy())
    leaky["node_graph"][packed["node_mask"] == 0] = 14
    leaky["edge_graph"][packed["edge_mask"] == 0] = 14
    with pytest.raises(ValueError, match="padding node or edge"):
        fm.graphs_tuple_from_packed(leaky)


def test_dropout_draws_from_the_dropout_rng_in_train_mode_only(split):
    config = dict(latent_dim=16, hidden_dims=(16,), num_message_passing_steps=1)  # fast compile
    model = fm.GNN(**config)
    params = fm.params_from_torch(torch_model(config).state_dict(), config)
    g = fm.graphs_tuple_from_packed(pack(split, range(15)))
    key0, key1 = jax.random.PRNGKey(0), jax.random.PRNGKey(1)
    drop0 = flax_logits(model, params, g, train=True, dropout_rate=0.1, rngs={"dropout": key0})
    again = flax_logits(model, params, g, train=True, dropout_rate=0.1, rngs={"dropout": key0})
    drop1 = flax_logits(model, params, g, train=True, dropout_rate=0.1, rngs={"dropout": key1})
    np.testing.assert_array_equal(drop0, again)
    assert np.abs(drop0 - drop1).max() > 1e-3
    with pytest.raises(Exception, match="dropout"):  # train mode needs the rng (trace only)
        jax.make_jaxpr(lambda p: model.apply({"params": p}, g, train=True,
                                             dropout_rate=0.1))(params)

    # Eval mode ignores the rate, and rate 0 in train mode is eval mode: the same program
    # (compared as traced jaxprs: no compile needed).
    def program(train, rate):
        return str(jax.make_jaxpr(lambda p: model.apply(
            {"params": p}, g, train=train, dropout_rate=rate, rngs={"dropout": key0}))(params))
    assert program(False, 0.5) == program(True, 0.0) == program(False, 0.0)
    assert program(True, 0.1) != program(False, 0.0)


# AlgoPerf's Flax GNN (algoperf/workloads/ogbg/ogbg_jax/models.py) for its ogbg config: two
# named embeddings; per step the edge, node and global MLP's Dense_i + LayerNorm_i (hidden
# (256,): one each), in that order; the decoder Dense_15 last. Dense inputs: step 0 edges
# 3 L + O = 896, nodes L + 2 H + O = 896, globals 2 H + O = 640; later steps 4 H = 1024,
# 1024, 3 H = 768.
ALGOPERF_TREE = {
    "node_embedding/kernel": (9, 256), "node_embedding/bias": (256,),
    "edge_embedding/kernel": (3, 256), "edge_embedding/bias": (256,),
    "Dense_0/kernel": (896, 256), "Dense_0/bias": (256,),
    "Dense_1/kernel": (896, 256), "Dense_1/bias": (256,),
    "Dense_2/kernel": (640, 256), "Dense_2/bias": (256,),
    "Dense_3/kernel": (1024, 256), "Dense_3/bias": (256,),
    "Dense_4/kernel": (1024, 256), "Dense_4/bias": (256,),
    "Dense_5/kernel": (768, 256), "Dense_5/bias": (256,),
    "Dense_6/kernel": (1024, 256), "Dense_6/bias": (256,),
    "Dense_7/kernel": (1024, 256), "Dense_7/bias": (256,),
    "Dense_8/kernel": (768, 256), "Dense_8/bias": (256,),
    "Dense_9/kernel": (1024, 256), "Dense_9/bias": (256,),
    "Dense_10/kernel": (1024, 256), "Dense_10/bias": (256,),
    "Dense_11/kernel": (768, 256), "Dense_11/bias": (256,),
    "Dense_12/kernel": (1024, 256), "Dense_12/bias": (256,),
    "Dense_13/kernel": (1024, 256), "Dense_13/bias": (256,),
    "Dense_14/kernel": (768, 256), "Dense_14/bias": (256,),
    "Dense_15/kernel": (256, 128), "Dense_15/bias": (128,),
    **{f"LayerNorm_{i}/{p}": (256,) for i in range(15) for p in ("scale", "bias")},
}


def test_parameter_tree_is_algoperfs_and_counts_match_pytorch():
    full = flat_shapes(init_shapes(fm.GNN(**FULL)))
    assert full == ALGOPERF_TREE
    assert sum(np.prod(s) for s in full.values()) == 3_554_176
    torch_full = TorchGNN(**FULL)
    assert sum(p.numel() for p in torch_full.parameters()) == 3_554_176
    assert flat_shapes(fm.params_from_torch(torch_full.state_dict(), FULL)) == ALGOPERF_TREE
    size = flat_shapes(init_shapes(fm.GNN(**MODEL_SIZE)))
    assert size == flat_shapes(fm.params_from_torch(TorchGNN(**MODEL_SIZE).state_dict(),
                                                    MODEL_SIZE))
    assert sum(np.prod(s) for s in size.values()) == 2_571_648
    assert size["Dense_18/kernel"] == (256, 128) and "Dense_19/kernel" not in size  # decoder
    assert size["Dense_0/kernel"] == (3 * 128 + 128, 256) and size["Dense_1/kernel"] == (256,
                                                                                        256)
    tiny = flat_shapes(init_shapes(fm.GNN(**TINY)))
    assert sum(np.prod(s) for s in tiny.values()) == 48_544


def test_params_from_torch_refuses_another_config_and_reads_definitions():
    from workloads import registry
    state = TorchGNN(**TINY).state_dict()
    with pytest.raises(ValueError, match="different config"):
        fm.params_from_torch(state, dict(TINY, num_message_passing_steps=2))  # tensors left
    with pytest.raises(ValueError, match="different config"):
        fm.params_from_torch(state, dict(TINY, hidden_dims=(32, 32)))  # tensors missing
    tiny = registry.get_definition("ogbg_tiny")
    assert fm.GNN.from_config(tiny) == fm.GNN(**TINY)
    assert flat_shapes(fm.params_from_torch(state, tiny)) == flat_shapes(
        init_shapes(fm.GNN.from_config(tiny)))
    with pytest.raises(ValueError, match="activation"):
        init_shapes(fm.GNN(activation="tanh"))
