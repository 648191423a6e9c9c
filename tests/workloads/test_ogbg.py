"""ogbg: GNN, loss and metric, the molpcba prepared format and loader, the workload (fast)."""
import dataclasses
import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from algoperf import random_utils, spec
from workloads import data_cli, pytorch_losses, registry
from workloads.datasets import ogbg_molpcba as data
from workloads.datasets.prepared import DatasetError, read_meta
from workloads.ogbg import metrics
from workloads.ogbg.models import GNN, GraphBatch, num_parameters
from workloads.ogbg.pytorch import to_batch

SMALL = {"train": 40, "validation": 11, "test": 9}


def fake_graphs(n, seed=0):
    """Random graphs in TFDS ogbg_molpcba's layout (float features as TFDS stores them)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        nodes = int(rng.integers(1, 12))
        edges = int(rng.integers(0, 2 * nodes))
        labels = rng.integers(0, 2, data.NUM_TASKS).astype(np.float32)
        labels[rng.random(data.NUM_TASKS) < 0.4] = np.nan
        out.append({"node_feat": rng.integers(0, 120, (nodes, 9)).astype(np.float32),
                    "edge_feat": rng.integers(0, 5, (edges, 3)).astype(np.float32),
                    "edge_index": rng.integers(0, nodes, (edges, 2)),
                    "labels": labels, "num_nodes": np.array([nodes])})
    return out


@pytest.fixture
def prepared(tmp_path):
    """Small ogbg_molpcba written by the real prepare path from a fake TFDS source."""
    graphs = {s: fake_graphs(n, seed=i) for i, (s, n) in enumerate(SMALL.items())}
    folder = data.prepare_molpcba(tmp_path, source=lambda split: iter(graphs[split]),
                                  check_sizes=False)
    return tmp_path, graphs, folder


def same_graph(a, b):
    return (np.array_equal(a["node_feat"], b["node_feat"])
            and np.array_equal(a["edge_feat"], b["edge_feat"])
            and np.array_equal(a["edge_index"], b["edge_index"])
            and np.array_equal(a["labels"], b["labels"], equal_nan=True))


# --- model -----------------------------------------------------------------------------------
def count(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_closed_form():
    # Written out by hand for AlgoPerf's config (L = H = 256, O = 128, 5 steps):
    # embeddings (9+1)*256 + (3+1)*256; decoder 257*128; step 0 MLP inputs 3*256+128 (edges),
    # 256+2*256+128 (nodes), 2*256+128 (globals); steps 1-4 inputs 1024, 1024, 768; each MLP
    # layer in*256 + 256 (bias) + 512 (LayerNorm).
    mlp = lambda i: i * 256 + 256 + 512  # noqa: E731
    hand = (10 * 256 + 4 * 256 + 257 * 128 + mlp(896) + mlp(896) + mlp(640)
            + 4 * (mlp(1024) + mlp(1024) + mlp(768)))
    assert hand == 3_554_176
    assert count(GNN()) == num_parameters() == hand
    size = dict(latent_dim=128, hidden_dims=(256, 256), num_message_passing_steps=3)
    assert count(GNN(**size)) == num_parameters(**size) == 2_571_648
    assert count(GNN(activation="gelu")) == hand
    assert count(GNN(latent_dim=32, hidden_dims=(32,), num_message_passing_steps=3)) == 48_544


def test_model_layers_are_plain_linears_and_activation_is_configurable():
    model = GNN(latent_dim=16, hidden_dims=(16,), num_message_passing_steps=2,
                activation="silu")
    assert sum(isinstance(m, torch.nn.Linear) for m in model.modules()) == 2 + 2 * 3 + 1
    assert any(isinstance(m, torch.nn.SiLU) for m in model.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    with pytest.raises(ValueError, match="activation"):
        GNN(activation="tanh")


# --- loss and metric --------------------------------------------------------------------------
def test_masked_bce_hand_computed_nan_masked_and_smoothing():
    logits = torch.tensor([[2.0, -1.0, 0.5]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, float("nan")]])
    out = pytorch_losses.masked_bce(labels, logits)
    want = np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))  # -log s(2) - log(1 - s(-1))
    assert out["summed"].item() == pytest.approx(want, rel=1e-6)
    assert out["n_valid_examples"].item() == 2
    assert out["per_example"][0, 2].item() == 0.0
    out["summed"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 2] == 0
    # Explicit mask: the padding row counts nowhere.
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    assert pytorch_losses.masked_bce(labels, logits, mask)["n_valid_examples"].item() == 1
    # Smoothing: targets (1 - s) y + s / T with T = 3 tasks here.
    s = 0.3
    smooth = pytorch_losses.masked_bce(labels, logits, label_smoothing=s)["summed"].item()
    t1, t0 = 1 - s + s / 3, s / 3
    ref = (-(t1 * np.log(1 / (1 + np.exp(-2))) + (1 - t1) * np.log(1 / (1 + np.exp(2))))
           - (t0 * np.log(1 / (1 + np.exp(1))) + (1 - t0) * np.log(1 / (1 + np.exp(-1)))))
    assert smooth == pytest.approx(ref, rel=1e-6)
    assert smooth != pytest.approx(want)


def test_average_precision_hand_computed():
    # Scores 0.9 0.8 0.7 0.1, labels 1 0 1 0: precision at the positives 1 and 2/3, each
    # recall step 1/2: AP = (1 + 2/3) / 2.
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.1])
    assert metrics.average_precision(y, s) == pytest.approx(5 / 6)
    # Ties enter together: all scores equal -> AP = positive rate.
    assert metrics.average_precision(y, np.zeros(4)) == pytest.approx(0.5)
    # mAP skips tasks without a positive or a negative, and NaN labels.
    labels = np.array([[1, 0, 1], [0, 0, np.nan], [1, 0, 0], [0, 0, 1]], dtype=float)
    scores = np.array([[0.9, 0.1, 0.2], [0.8, 0.2, 5.0], [0.7, 0.3, 0.1], [0.1, 0.4, 0.3]])
    # task 0: 5/6; task 1: no positive, skipped; task 2 (3 labelled): 1 0 1 at 0.2 0.1 0.3
    # -> order 0.3(1) 0.2(1) 0.1(0): AP 1.
    assert metrics.mean_average_precision(labels, scores) == pytest.approx((5 / 6 + 1) / 2)
    assert np.isnan(metrics.mean_average_precision(np.zeros((3, 2)), np.zeros((3, 2))))


def test_mean_average_precision_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 20)) < 0.2).astype(float)
    labels[rng.random(labels.shape) < 0.3] = np.nan
    labels[:, 3] = 0.0  # no positive: skipped, as OGB does
    scores = np.round(rng.normal(size=labels.shape) + labels * 0.8, 1)  # with ties
    ref = []
    for t in range(20):
        ok = ~np.isnan(labels[:, t])
        y = labels[ok, t]
        if y.min() == 0 and y.max() == 1:
            ref.append(average_precision_score(y, scores[ok, t]))
    assert len(ref) == 19
    got = metrics.mean_average_precision(labels, scores)
    assert got == pytest.approx(np.mean(ref), abs=1e-12)
    assert got != pytest.approx(np.mean(ref[:-1]), abs=1e-6)


# --- data ------------------------------------------------------------------------------------
def test_prepare_and_loader_round_trip(prepared):
    root, graphs, folder = prepared
    assert folder == root / "ogbg_molpcba"
    split = data.load_split(root, data.NAME, "train", expected=SMALL["train"])
    assert split.node_feat.dtype == np.uint8 and isinstance(split.node_feat, np.memmap)
    for g in (0, 7, 39):
        src = graphs["train"][g]
        want = {"node_feat": src["node_feat"].astype(np.uint8),
                "edge_feat": src["edge_feat"].astype(np.uint8),
                "edge_index": src["edge_index"].astype(np.int32), "labels": src["labels"]}
        assert same_graph(split.graph(g), want)
    ids = np.array([5, 0, 39, 12, 5])
    cap = data.capacity_for(data.SizeStats.of(split), len(ids))
    packed = data.pack_graphs(split, ids, cap)
    for i, g in enumerate(ids):
        assert same_graph(data.unpack_graph(packed, i), split.graph(g))
    # Reverse edges: every stored bond is there both ways, features repeated.
    real = packed["edge_mask"] > 0
    assert real.sum() == 2 * split.num_edges[ids].sum()
    pairs = set(zip(packed["senders"][real], packed["receivers"][real]))
    assert all((r, s) in pairs for s, r in pairs)
    # Padding belongs to the padding slot only, and touches no real node.
    assert (packed["node_graph"][packed["node_mask"] == 0] == len(ids)).all()
    assert (packed["edge_graph"][~real] == len(ids)).all()
    pad_nodes = packed["node_mask"][packed["senders"][~real]]
    assert (pad_nodes == 0).all()
    assert packed["graph_mask"].tolist() == [1.0] * len(ids) + [0.0] * (cap.graphs - len(ids))
    assert packed["label_mask"][len(ids):].sum() == 0
    assert not np.isnan(packed["labels"]).any()


class FakeTfds:
    """Stands in for tensorflow_datasets: ``load('ogbg_molpcba', split=...)`` of dicts."""
    __version__ = "fake"

    def __init__(self, graphs):
        self.graphs = graphs

    def load(self, name, split, shuffle_files, **kwargs):
        assert name == "ogbg_molpcba" and not shuffle_files
        return self.graphs[split]

    def as_numpy(self, ds):
        return ds


def test_prepare_through_tensorflow_datasets(tmp_path, monkeypatch):
    graphs = {s: fake_graphs(n, seed=i) for i, (s, n) in enumerate(SMALL.items())}
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", FakeTfds(graphs))
    data.prepare_molpcba(tmp_path, check_sizes=False)
    test = data.load_molpcba(tmp_path, "test", check_sizes=False)
    assert len(test) == SMALL["test"]
    assert np.array_equal(test.graph(8)["labels"], graphs["test"][8]["labels"], equal_nan=True)
    meta = read_meta(tmp_path, data.NAME)
    assert meta["extra"]["tfds_version"] == "fake"
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(DatasetError, match="tensorflow-datasets"):
        data.prepare_molpcba(tmp_path / "other")


def test_pack_grows_capacity_instead_of_dropping_graphs(prepared):
    root, _, _ = prepared
    split = data.load_split(root, data.NAME, "train")
    ids = np.arange(len(split))
    small = data.Capacity(graphs=len(ids) + 1, nodes=64, edges=64)
    packed = data.pack_graphs(split, ids, small)
    assert packed["node_mask"].sum() == split.num_nodes.sum()
    assert len(packed["node_mask"]) % data.ROUND == 0
    with pytest.raises(ValueError, match="graph slots"):
        data.pack_graphs(split, ids, dataclasses.replace(small, graphs=len(ids)))


def test_bad_source_and_bad_files_give_one_clear_error(prepared, tmp_path):
    root, graphs, folder = prepared
    bad = [dict(graphs["train"][0], node_feat=graphs["train"][0]["node_feat"] + 0.5)]
    with pytest.raises(DatasetError, match=r"train\[0\].node_feat.*integers"):
        data.prepare_molpcba(tmp_path / "x", source=lambda s: iter(bad), check_sizes=False)
    with pytest.raises(DatasetError, match="350343 graphs|expected 350343"):
        data.prepare_molpcba(tmp_path / "y", source=lambda s: iter(graphs[s]))
    with pytest.raises(DatasetError, match="ogbg_molpcba"):
        data.load_molpcba(tmp_path / "nothing", "train")
    np.save(folder / "train" / "edge_index.npy",
            np.full_like(np.load(folder / "train" / "edge_index.npy"), 99))
    with pytest.raises(DatasetError, match="edge_index.npy: a node index outside"):
        data.load_split(root, data.NAME, "train")


def test_generated_tiny_data_is_deterministic_and_molecule_like():
    sizes = {"train": 64, "validation": 16, "test": 16}
    a = data.generate_molpcba_tiny(3, sizes)
    b = data.generate_molpcba_tiny(3, sizes)
    c = data.generate_molpcba_tiny(4, sizes)
    for split in data.SPLITS:
        for key in data.ARRAYS:
            np.testing.assert_array_equal(a[split][key], b[split][key])
    assert not np.array_equal(a["train"]["labels"], c["train"]["labels"], equal_nan=True)
    train = data.GraphSplit(**a["train"])
    assert len(train) == 64 and train.num_nodes.min() >= 5 and train.num_nodes.max() <= 18
    assert (train.num_edges >= train.num_nodes - 1).all()  # connected: a tree plus rings
    assert a["train"]["node_feat"].shape[1] == 9 and a["train"]["edge_feat"].shape[1] == 3
    labels = a["train"]["labels"]
    assert labels.shape == (64, 128)
    assert 0.1 < np.isnan(labels).mean() < 0.6
    assert 0.05 < np.nanmean(labels) < 0.5


def test_data_cli_has_the_ogbg_rows():
    assert {"ogbg_molpcba", "ogbg_molpcba_tiny"} <= set(data_cli.DATASETS)
    assert data_cli.DATASETS["ogbg_molpcba_tiny"].idempotent


# --- workload -------------------------------------------------------------------------------
class SmallOgbg(registry.workload_class("ogbg", "pytorch")):
    """Full-size ogbg (AlgoPerf's GNN) on the small prepared files of the tests."""
    num_eval_train_examples = 13
    num_validation_examples = SMALL["validation"]
    num_test_examples = SMALL["test"]
    eval_batch_size = 8  # validation: 8 + a partial batch of 3 padded graphs
    check_sizes = False


def test_full_size_train_step_and_eval(prepared):
    root, _, _ = prepared
    workload = SmallOgbg()
    queue = workload._build_input_queue(random_utils.PRNGKey(0), "train", str(root), 16)
    batch = next(queue)
    assert isinstance(batch["inputs"], GraphBatch)
    assert batch["targets"].shape == batch["weights"].shape == (17, 128)
    model, state = workload.init_model_fn(random_utils.PRNGKey(1))
    assert count(model) == 3_554_176
    assert workload.param_shapes["decoder.weight"].shape_tuple == (128, 256)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    logits, _ = workload.model_fn(model, batch, state, spec.ForwardPassMode.TRAIN, None, True)
    loss = workload.loss_fn(batch["targets"], logits, batch["weights"])
    (loss["summed"] / loss["n_valid_examples"]).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    results = workload.eval_model(8, model, state, None, str(root), None, 1)
    for prefix in ("train", "validation", "test"):
        assert 0 < results[f"{prefix}/mean_average_precision"] <= 1
        assert results[f"{prefix}/loss"] > 0
    assert results["validation/num_examples"] == 11
    # The whole split in one batch gives the same numbers: padding and batching change nothing.
    again = workload._eval_model_on_split("validation", 11, 1024, model, state, None, str(root))
    assert again["mean_average_precision"] == pytest.approx(
        results["validation/mean_average_precision"], abs=1e-6)
    assert again["loss"] == pytest.approx(results["validation/loss"], rel=1e-5)


def test_kfac_segment_layouts_and_untied_capacities(prepared):
    root, _, _ = prepared
    split = data.load_split(root, data.NAME, "train")
    # b = 63: 64 graph slots, and a node count that would round to 64 too.
    cap = data.capacity_for(data.SizeStats(0.1, 0.0, 0.1, 0.0, 1, 1), 63)
    assert len({cap.graphs, cap.nodes, cap.edges}) == 3
    batch = to_batch(data.pack_graphs(split, np.arange(5), data.capacity_for(
        data.SizeStats.of(split), 5)))
    layouts, num_graphs = SmallOgbg().kfac_segment_layouts(batch)
    g = batch["inputs"]
    assert num_graphs == 6 and len({ids.shape[0] for ids, _ in layouts}) == 3
    (node_ids, node_real), (edge_ids, edge_real), (graph_ids, graph_real) = layouts
    assert torch.equal(node_ids, g.node_graph) and torch.equal(edge_ids, g.edge_graph)
    assert node_real.sum() == split.num_nodes[:5].sum()
    assert edge_real.sum() == 2 * split.num_edges[:5].sum()
    assert graph_real.tolist() == [True] * 5 + [False]
    assert (node_ids[~node_real] == 5).all() and (edge_ids[~edge_real] == 5).all()


def test_padding_graphs_change_neither_loss_nor_metric(prepared):
    root, _, _ = prepared
    split = data.load_split(root, data.NAME, "validation")
    torch.manual_seed(0)
    model = GNN(latent_dim=32, hidden_dims=(32,), num_message_passing_steps=3).eval()
    ids = np.arange(len(split))
    tight = data.capacity_for(data.SizeStats.of(split), len(ids))
    loose = data.Capacity(tight.graphs + 9, tight.nodes + 5 * data.ROUND,
                          tight.edges + 7 * data.ROUND)
    results = []
    for cap in (tight, loose):
        batch = to_batch(data.pack_graphs(split, ids, cap))
        with torch.no_grad():
            logits = model(batch["inputs"])
        loss = pytorch_losses.masked_bce(batch["targets"], logits, batch["weights"])
        real = batch["inputs"].graph_mask > 0
        labels = torch.where(batch["weights"] > 0, batch["targets"], torch.nan)[real]
        results.append((logits[real], loss["summed"].item(), loss["n_valid_examples"].item(),
                        metrics.mean_average_precision(labels.numpy(), logits[real].numpy())))
    (a, sa, na, ma), (b, sb, nb, mb) = results
    assert torch.allclose(a, b, atol=1e-5)
    assert sa == pytest.approx(sb, rel=1e-6) and na == nb and ma == pytest.approx(mb)
    # Negative check: a padding graph that *did* count would change the loss.
    batch = to_batch(data.pack_graphs(split, ids, loose))
    with torch.no_grad():
        logits = model(batch["inputs"])
    leaky = pytorch_losses.masked_bce(batch["targets"], logits, torch.ones_like(batch["weights"]))
    assert leaky["n_valid_examples"].item() != na


def test_registry_targets_and_variants():
    want = {"ogbg": (0.28098, 0.268729), "ogbg_gelu": (0.27771, 0.262926),
            "ogbg_silu": (0.282178, 0.272144), "ogbg_model_size": (0.269446, 0.253051)}
    for name, (val, test) in want.items():
        d = registry.get_definition(name)
        assert (d.validation_target_value, d.test_target_value) == (val, test)
        assert (d.max_allowed_runtime_sec, d.step_hint, d.eval_period_time_sec) == (
            12_011, 52_000, 240)
        assert d.base_workload_name == "ogbg"
    assert registry.get_definition("ogbg_gelu").activation == "gelu"
    size = registry.get_definition("ogbg_model_size")
    assert (size.latent_dim, size.hidden_dims, size.num_message_passing_steps) == (
        128, (256, 256), 3)
    tiny = registry.get_definition("ogbg_tiny")
    assert tiny.generated_data and tiny.target_metric_name == "mean_average_precision"
