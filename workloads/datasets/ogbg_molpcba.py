"""ogbg-molpcba for the ogbg workloads, its batching, and ``ogbg_molpcba_tiny`` (generated).

Prepared form (``workloads.datasets.prepared``), one folder per split, G graphs, N nodes and
E edges in the split (each undirected bond stored once, as in the source data)::

    node_feat.npy     uint8   [N, 9]     OGB atom features (categorical indices)
    edge_feat.npy     uint8   [E, 3]     OGB bond features (categorical indices)
    edge_index.npy    int32   [E, 2]     (sender, receiver), local to the edge's own graph
    node_offsets.npy  int64   [G + 1]    graph g's nodes are rows node_offsets[g]:[g + 1]
    edge_offsets.npy  int64   [G + 1]    graph g's edges are rows edge_offsets[g]:[g + 1]
    labels.npy        float32 [G, 128]   1 / 0, NaN = not measured (masked)

Everything is memory-mapped at training time; a batch is a few vectorised gathers.

Splits: TFDS ``ogbg_molpcba`` train / validation / test = 350,343 / 43,793 / 43,793 graphs
(OGB's scaffold split), stored in TFDS order. The OGB features are small non-negative integers
(atomic number - 1 < 119, etc.); TFDS stores them as float32, prepare checks they are integers
in [0, 255] and stores uint8 (4x less to read). The model sees them as floats, as AlgoPerf's.

Batches (``pack_graphs``)
------------------------
A batch of b graphs becomes one disjoint graph with fixed capacities (``Capacity``): b + 1
graph slots, ``nodes`` node rows and ``edges`` edge rows. Graph i's node and edge ids are
shifted by the nodes and edges before it. **Reverse edges** are added here, as AlgoPerf's
input pipeline does (``senders + receivers, receivers + senders`` with the bond features
repeated): every stored bond becomes two directed edges, so messages flow both ways. All
padding (unused node and edge rows, unused graph slots) belongs to padding graphs: padding
nodes get graph id b (the last real slot + 1 or later), padding edges join padding node to
padding node, and ``graph_mask`` / ``label_mask`` are 0 there. Sum aggregations over a real
node or graph therefore never see padding, and padding graphs never reach loss or metric.

The capacities are ``capacity_for(stats, b)``: b + 1 graphs and the mean plus six standard
deviations of the total node / directed-edge count of b random graphs (rounded up to 64), so
one shape repeats for every batch in practice; a batch that would overflow gets the next
multiple of 64 that fits (a rare new shape, never a dropped graph). The three row counts
always differ (K-FAC tells node, edge and graph layers apart by them). A difference from
AlgoPerf's JAX pipeline, which packs graphs greedily into fixed node/edge budgets
(``jraph.dynamically_batch``) and so may put fewer graphs than the batch size in a batch:
here every training batch holds exactly the batch size in graphs.
"""
import dataclasses
import math
from pathlib import Path
from typing import Dict, Iterable, Iterator, Mapping, Optional, Tuple, Sequence

import numpy as np

from workloads.datasets.prepared import (DatasetError, PathLike, PreparedWriter, dataset_dir,
                                         ensure_generated, generated_name, read_prepared)

NAME = "ogbg_molpcba"
TINY_NAME = "ogbg_molpcba_tiny"
SPLITS = ("train", "validation", "test")
SIZES = {"train": 350_343, "validation": 43_793, "test": 43_793}
NUM_TASKS = 128
NODE_FEATURES = 9   # OGB atom features
EDGE_FEATURES = 3   # OGB bond features
ROUND = 64          # capacities are multiples of this
SIGMAS = 6.0        # capacity head-room over the mean total, in standard deviations

# Ragged split arrays, and their (dtype, trailing shape).
ARRAYS = {"node_feat": (np.uint8, (NODE_FEATURES,)), "edge_feat": (np.uint8, (EDGE_FEATURES,)),
          "edge_index": (np.int32, (2,)), "node_offsets": (np.int64, ()),
          "edge_offsets": (np.int64, ()), "labels": (np.float32, (NUM_TASKS,))}


# ----------------------------------------------------------------------------------------
# A split in memory
# ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class GraphSplit:
    """One split's arrays (see the module docstring) plus per-graph counts."""
    node_feat: np.ndarray
    edge_feat: np.ndarray
    edge_index: np.ndarray
    node_offsets: np.ndarray
    edge_offsets: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        self.num_nodes = np.diff(self.node_offsets)   # int64 [G]
        self.num_edges = np.diff(self.edge_offsets)   # int64 [G], undirected (stored once)

    def __len__(self) -> int:
        return len(self.labels)

    def graph(self, g: int) -> Dict[str, np.ndarray]:
        """Graph g as stored: node_feat [n, 9], edge_feat [e, 3], edge_index [e, 2], labels."""
        n0, n1 = self.node_offsets[g], self.node_offsets[g + 1]
        e0, e1 = self.edge_offsets[g], self.edge_offsets[g + 1]
        return {"node_feat": np.asarray(self.node_feat[n0:n1]),
                "edge_feat": np.asarray(self.edge_feat[e0:e1]),
                "edge_index": np.asarray(self.edge_index[e0:e1]),
                "labels": np.asarray(self.labels[g])}


@dataclasses.dataclass(frozen=True)
class SizeStats:
    """Per-graph mean and standard deviation of node and directed-edge counts, and maxima."""
    nodes_mean: float
    nodes_std: float
    edges_mean: float
    edges_std: float
    nodes_max: int
    edges_max: int

    @classmethod
    def of(cls, split: GraphSplit) -> "SizeStats":
        n, e = split.num_nodes.astype(np.float64), 2.0 * split.num_edges
        if len(n) == 0:
            return cls(0.0, 0.0, 0.0, 0.0, 0, 0)
        return cls(float(n.mean()), float(n.std()), float(e.mean()), float(e.std()),
                   int(n.max()), int(e.max()))


@dataclasses.dataclass(frozen=True)
class Capacity:
    graphs: int  # graph slots, >= real graphs + 1 (the last slot(s) hold the padding)
    nodes: int
    edges: int   # directed edges


def _round_up(x: float, quantum: int = ROUND) -> int:
    return int(math.ceil(x / quantum)) * quantum


def capacity_for(stats: SizeStats, num_graphs: int) -> Capacity:
    """Capacities for batches of ``num_graphs`` random graphs (module docstring)."""
    root = math.sqrt(num_graphs)
    nodes = num_graphs * stats.nodes_mean + SIGMAS * stats.nodes_std * root
    edges = num_graphs * stats.edges_mean + SIGMAS * stats.edges_std * root
    # + 1: there is always at least one padding node, for the padding edges to point at.
    return _untied(num_graphs + 1, _round_up(nodes + 1), _round_up(edges))


def _untied(graphs: int, nodes: int, edges: int) -> Capacity:
    """Capacities with three different row counts: K-FAC tells a layer's row kind (nodes,
    edges, graphs) by its row count, so no two may be equal."""
    while nodes == graphs:
        nodes += ROUND
    while edges in (nodes, graphs):
        edges += ROUND
    return Capacity(graphs, nodes, edges)


def pack_graphs(split: GraphSplit, ids: np.ndarray, capacity: Capacity) -> Dict[str, np.ndarray]:
    """Graphs ``ids`` of ``split`` as one padded disjoint graph (b = len(ids)).

    Returns (Gc, Nc, Ec = capacity, grown to fit if this batch overflows):
      node_feat  uint8 [Nc, 9], edge_feat uint8 [Ec, 3],
      senders, receivers int64 [Ec]: node rows (bonds of the batch, then the same reversed),
      node_graph int64 [Nc], edge_graph int64 [Ec]: graph slot of each row (padding -> b),
      node_mask, edge_mask float32 [Nc] / [Ec]: 1 real, 0 padding,
      graph_mask float32 [Gc]: 1 for slots 0..b-1,
      labels float32 [Gc, 128] (0 where missing), label_mask float32 [Gc, 128]: 1 where the
      label is measured and the graph is real.
    """
    ids = np.asarray(ids, dtype=np.int64)
    b = len(ids)
    if capacity.graphs < b + 1:
        raise ValueError(f"capacity for {capacity.graphs} graph slots, need {b} + 1 (padding)")
    n_counts, e_counts = split.num_nodes[ids], split.num_edges[ids]
    n_total, e_total = int(n_counts.sum()), int(e_counts.sum())
    grown = _untied(capacity.graphs, max(capacity.nodes, _round_up(n_total + 1)),
                    max(capacity.edges, _round_up(2 * e_total)))
    n_cap, e_cap = grown.nodes, grown.edges

    # Rows of the split for this batch: graph i's rows are offset[i] + 0..count[i]-1.
    node_rows = _ranges(split.node_offsets[ids], n_counts, n_total)
    edge_rows = _ranges(split.edge_offsets[ids], e_counts, e_total)
    node_graph = np.full(n_cap, b, dtype=np.int64)
    node_graph[:n_total] = np.repeat(np.arange(b), n_counts)
    edge_graph_half = np.repeat(np.arange(b), e_counts)
    # Batch-local node id of a graph's first node: the nodes of the graphs before it.
    first_node = np.cumsum(n_counts) - n_counts
    local = np.asarray(split.edge_index[edge_rows], dtype=np.int64)        # [e_total, 2]
    shift = np.repeat(first_node, e_counts)
    s, r = local[:, 0] + shift, local[:, 1] + shift

    node_feat = np.zeros((n_cap, NODE_FEATURES), np.uint8)
    node_feat[:n_total] = split.node_feat[node_rows]
    bond_feat = split.edge_feat[edge_rows]
    edge_feat = np.zeros((e_cap, EDGE_FEATURES), np.uint8)
    edge_feat[:e_total], edge_feat[e_total:2 * e_total] = bond_feat, bond_feat
    pad_node = n_total  # padding edges join the first padding node to itself
    senders = np.full(e_cap, pad_node, dtype=np.int64)
    receivers = np.full(e_cap, pad_node, dtype=np.int64)
    senders[:2 * e_total] = np.concatenate([s, r])
    receivers[:2 * e_total] = np.concatenate([r, s])
    edge_graph = np.full(e_cap, b, dtype=np.int64)
    edge_graph[:2 * e_total] = np.concatenate([edge_graph_half, edge_graph_half])

    node_mask = np.zeros(n_cap, np.float32)
    node_mask[:n_total] = 1.0
    edge_mask = np.zeros(e_cap, np.float32)
    edge_mask[:2 * e_total] = 1.0
    graph_mask = np.zeros(capacity.graphs, np.float32)
    graph_mask[:b] = 1.0
    raw = np.asarray(split.labels[ids], dtype=np.float32)
    labels = np.zeros((capacity.graphs, NUM_TASKS), np.float32)
    label_mask = np.zeros((capacity.graphs, NUM_TASKS), np.float32)
    measured = ~np.isnan(raw)
    labels[:b] = np.where(measured, raw, 0.0)
    label_mask[:b] = measured
    return {"node_feat": node_feat, "edge_feat": edge_feat, "senders": senders,
            "receivers": receivers, "node_graph": node_graph, "edge_graph": edge_graph,
            "node_mask": node_mask, "edge_mask": edge_mask, "graph_mask": graph_mask,
            "labels": labels, "label_mask": label_mask}


def pack_graph_pieces(split: GraphSplit, pieces: Sequence[np.ndarray], capacity: Capacity
                      ) -> Dict[str, np.ndarray]:
    """Each id array of ``pieces`` packed as by ``pack_graphs``, all with one capacity (grown
    to fit the fullest piece), stacked along a new leading axis: [len(pieces), ...]."""
    nodes = max(_round_up(int(split.num_nodes[np.asarray(p, np.int64)].sum()) + 1)
                for p in pieces)
    edges = max(_round_up(2 * int(split.num_edges[np.asarray(p, np.int64)].sum()))
                for p in pieces)
    common = _untied(capacity.graphs, max(capacity.nodes, nodes), max(capacity.edges, edges))
    packs = [pack_graphs(split, p, common) for p in pieces]
    return {k: np.stack([p[k] for p in packs]) for k in packs[0]}


def _ranges(starts: np.ndarray, counts: np.ndarray, total: int) -> np.ndarray:
    """Concatenation of arange(starts[i], starts[i] + counts[i]) over i: int64 [total]."""
    before = np.cumsum(counts) - counts  # position of range i in the output
    return np.arange(total, dtype=np.int64) + np.repeat(starts - before, counts)


def unpack_graph(batch: Mapping[str, np.ndarray], i: int) -> Dict[str, np.ndarray]:
    """Graph slot i of a packed batch back in the stored form (forward edges only), labels
    with NaN where missing. The inverse of ``pack_graphs`` for one real graph (for tests)."""
    nodes = np.flatnonzero(batch["node_graph"] == i)
    edges = np.flatnonzero((batch["edge_graph"] == i) & (batch["edge_mask"] > 0))
    forward = edges[:len(edges) // 2]  # the batch's bonds come before their reverses
    first = nodes[0] if len(nodes) else 0
    labels = np.where(batch["label_mask"][i] > 0, batch["labels"][i], np.nan)
    return {"node_feat": batch["node_feat"][nodes], "edge_feat": batch["edge_feat"][forward],
            "edge_index": np.stack([batch["senders"][forward] - first,
                                    batch["receivers"][forward] - first], 1).astype(np.int32),
            "labels": labels.astype(np.float32)}


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------

def load_split(data_dir: PathLike, name: str, split: str, expected: Optional[int] = None,
               prepare_hint: Optional[str] = None) -> GraphSplit:
    """One prepared split, memory-mapped and checked: one ``DatasetError`` per problem."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; {name} has {SPLITS}")
    arrays = read_prepared(data_dir, name, split, expected_num_examples=expected,
                           prepare_hint=prepare_hint)
    where = dataset_dir(data_dir, name) / split
    for key, (dtype, trailing) in ARRAYS.items():
        if key not in arrays:
            raise DatasetError(f"{where}: no {key}.npy")
        a = arrays[key]
        if a.dtype != dtype or a.shape[1:] != trailing:
            raise DatasetError(f"{where}/{key}.npy: {a.dtype} {list(a.shape)}, expected "
                               f"{np.dtype(dtype).name} [*, {', '.join(map(str, trailing))}]")
    g = len(arrays["labels"])
    for key, rows in (("node_offsets", len(arrays["node_feat"])),
                      ("edge_offsets", len(arrays["edge_index"]))):
        off = np.asarray(arrays[key])
        if len(off) != g + 1 or off[0] != 0 or off[-1] != rows or np.any(np.diff(off) < 0):
            raise DatasetError(f"{where}/{key}.npy: must rise from 0 to {rows} over {g + 1} "
                               f"entries")
    if len(arrays["edge_feat"]) != len(arrays["edge_index"]):
        raise DatasetError(f"{where}: edge_feat and edge_index differ in length")
    out = GraphSplit(**{k: arrays[k] for k in ARRAYS})
    local_max = np.asarray(out.edge_index).max(axis=1) if len(out.edge_index) else None
    if local_max is not None and np.any(
            (local_max >= np.repeat(out.num_nodes, out.num_edges))
            | (np.asarray(out.edge_index).min(axis=1) < 0)):
        raise DatasetError(f"{where}/edge_index.npy: a node index outside its graph")
    return out


def load_molpcba(data_dir: PathLike, split: str, check_sizes: bool = True) -> GraphSplit:
    """A split of prepared ogbg-molpcba (sizes checked unless ``check_sizes`` is False)."""
    return load_split(data_dir, NAME, split, SIZES[split] if check_sizes else None)


# ----------------------------------------------------------------------------------------
# Writing (real data and generated data)
# ----------------------------------------------------------------------------------------

def _as_uint8_features(x, what: str, width: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != width:
        raise DatasetError(f"{what}: shape {list(x.shape)}, expected [*, {width}]")
    if x.size and (np.any(x != np.round(x)) or x.min() < 0 or x.max() > 255):
        raise DatasetError(f"{what}: features must be integers in [0, 255]")
    return x.astype(np.uint8)


def split_arrays(graphs: Iterable[Mapping[str, np.ndarray]], what: str = "graphs"
                 ) -> Dict[str, np.ndarray]:
    """Graphs in TFDS's ``ogbg_molpcba`` layout (``node_feat`` [n, 9], ``edge_feat`` [e, 3],
    ``edge_index`` [e, 2], ``labels`` [128] with NaN, optional ``num_nodes``) -> the arrays
    of one prepared split."""
    parts = {k: [] for k in ("node_feat", "edge_feat", "edge_index", "labels")}
    n_counts, e_counts = [], []
    for i, g in enumerate(graphs):
        nf = _as_uint8_features(g["node_feat"], f"{what}[{i}].node_feat", NODE_FEATURES)
        ef = _as_uint8_features(g["edge_feat"], f"{what}[{i}].edge_feat", EDGE_FEATURES)
        ei = np.asarray(g["edge_index"], dtype=np.int64).reshape(-1, 2)
        n = len(nf)
        if "num_nodes" in g and int(np.ravel(g["num_nodes"])[0]) != n:
            raise DatasetError(f"{what}[{i}]: num_nodes {np.ravel(g['num_nodes'])[0]} but "
                               f"{n} node_feat rows")
        if len(ei) != len(ef) or (len(ei) and (ei.min() < 0 or ei.max() >= n)):
            raise DatasetError(f"{what}[{i}]: edge_index does not match edge_feat or nodes")
        labels = np.asarray(g["labels"], dtype=np.float32).reshape(-1)
        if labels.shape != (NUM_TASKS,):
            raise DatasetError(f"{what}[{i}].labels: {labels.shape[0]} tasks, expected "
                               f"{NUM_TASKS}")
        parts["node_feat"].append(nf)
        parts["edge_feat"].append(ef)
        parts["edge_index"].append(ei.astype(np.int32))
        parts["labels"].append(labels)
        n_counts.append(n)
        e_counts.append(len(ei))
    empty = {"node_feat": (0, NODE_FEATURES), "edge_feat": (0, EDGE_FEATURES),
             "edge_index": (0, 2), "labels": (0, NUM_TASKS)}
    out = {k: (np.concatenate(v) if v else np.zeros(empty[k], ARRAYS[k][0]))
           for k, v in parts.items()}
    if parts["labels"]:
        out["labels"] = np.stack(parts["labels"])
    out["node_offsets"] = np.concatenate([[0], np.cumsum(n_counts, dtype=np.int64)])
    out["edge_offsets"] = np.concatenate([[0], np.cumsum(e_counts, dtype=np.int64)])
    return out


def write_graph_dataset(out_dir: PathLike, name: str,
                        splits: Mapping[str, Mapping[str, np.ndarray]],
                        extra_meta: Optional[Mapping] = None, overwrite: bool = False) -> Path:
    """Write ``{split: split_arrays(...)}`` as prepared dataset ``<out_dir>/<name>``."""
    with PreparedWriter(out_dir, name, extra_meta, overwrite) as writer:
        for split, arrays in splits.items():
            for key in ARRAYS:
                writer.add(split, key, np.asarray(arrays[key], dtype=ARRAYS[key][0]))
            writer.set_num_examples(split, len(arrays["labels"]))
    return writer.final_dir


def tfds_graphs(tfds, split: str, tfds_data_dir: Optional[PathLike] = None
                ) -> Iterator[Dict[str, np.ndarray]]:
    """The graphs of TFDS ``ogbg_molpcba`` split ``split`` as numpy dicts, in stored order."""
    kwargs = {"data_dir": str(tfds_data_dir)} if tfds_data_dir is not None else {}
    ds = tfds.load(NAME, split=split, shuffle_files=False, **kwargs)
    return iter(tfds.as_numpy(ds))


def prepare_molpcba(out_dir: PathLike, tfds_data_dir: Optional[PathLike] = None,
                    overwrite: bool = False, source=None, check_sizes: bool = True) -> Path:
    """Write prepared ogbg-molpcba to ``<out_dir>/ogbg_molpcba``.

    Args:
      source: ``split -> iterable of graphs`` (TFDS layout); default: tensorflow-datasets'
        ``ogbg_molpcba`` (tests pass a small fake).
      check_sizes: require 350,343 / 43,793 / 43,793 graphs.
    """
    tfds_version = "n/a"
    if source is None:
        try:
            import tensorflow_datasets as tfds  # optional: only needed to prepare
        except ImportError as e:
            raise DatasetError("preparing ogbg_molpcba needs tensorflow-datasets "
                               f"(pip install 'algoperf[data]') ({e})")
        tfds_version = getattr(tfds, "__version__", "unknown")

        def source(split):
            return tfds_graphs(tfds, split, tfds_data_dir)
    splits = {}
    for split in SPLITS:
        splits[split] = split_arrays(source(split), f"tfds {NAME} {split}")
        got = len(splits[split]["labels"])
        if check_sizes and got != SIZES[split]:
            raise DatasetError(f"tfds {NAME} {split}: {got} graphs, expected {SIZES[split]}")
    extra = {"source": "tfds", "tfds_version": tfds_version,
             "split_rule": "train / validation / test = TFDS ogbg_molpcba splits (OGB scaffold "
                           "split), stored order",
             "edges": "each bond once; the loader adds the reverse edges"}
    return write_graph_dataset(out_dir, NAME, splits, extra, overwrite)


# ----------------------------------------------------------------------------------------
# ogbg_molpcba_tiny: generated molecule-like graphs
# ----------------------------------------------------------------------------------------

TINY_SIZES = {"train": 8_192, "validation": 1_024, "test": 1_024}
TINY_GENERATOR_VERSION = 2  # 2: the learnable rule of d9e84af (1 was its first draft)
# OGB atom index (atomic number - 1) and frequency: C, N, O, F, P, S, Cl, Br.
_ATOMS = np.array([5, 6, 7, 8, 14, 15, 16, 34])
_ATOM_P = np.array([0.62, 0.12, 0.12, 0.03, 0.02, 0.05, 0.03, 0.01])
_VALENCE = np.array([4, 3, 2, 1, 3, 2, 1, 1])
_NODES = (5, 18)          # nodes per graph, uniform
_RING_CLOSURES = (0, 3)   # extra bonds that close rings, uniform
_MISSING = (0.1, 0.6)     # per-task fraction of missing labels, uniform
_FLIP = 0.02              # label noise
_POSITIVE_RATE = (0.1, 0.5)


def _molecule(rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One random molecule-like graph: (atom type index [n], bonds [e, 2], bond type [e],
    in_ring [n]): a random tree (each atom bonds to an earlier one with a free valence)
    plus a few ring-closing bonds."""
    n = int(rng.integers(_NODES[0], _NODES[1] + 1))
    types = rng.choice(len(_ATOMS), size=n, p=_ATOM_P)
    types[0] = 0  # a carbon backbone start, so the tree can grow
    # Plain Python lists and pre-drawn uniforms: numpy calls per atom would dominate.
    valence = _VALENCE[types].tolist()
    pick = rng.random(n).tolist()
    degree, parent, bonds = [0] * n, [-1] * n, []
    for i in range(1, n):
        free = [j for j in range(i) if degree[j] < valence[j]] or list(range(i))
        j = free[int(pick[i] * len(free))]
        parent[i] = j
        bonds.append((j, i))
        degree[i] += 1
        degree[j] += 1
    in_ring = np.zeros(n, bool)
    bonded = {(j, i) for j, i in bonds}
    closures = int(rng.integers(_RING_CLOSURES[0], _RING_CLOSURES[1] + 1))
    for u, v in rng.integers(0, n, size=(closures, 2)).tolist():
        u, v = min(u, v), max(u, v)
        if u == v or (u, v) in bonded:
            continue
        # The ring is the tree path u .. v: walk both up to their lowest common ancestor.
        up_u, x = [u], u
        while parent[x] >= 0:
            x = parent[x]
            up_u.append(x)
        path_v, x = [v], v
        while x not in up_u:
            x = parent[x]
            path_v.append(x)
        in_ring[up_u[:up_u.index(x) + 1]] = True
        in_ring[path_v] = True
        bonds.append((u, v))
        bonded.add((u, v))
    bonds = np.array(bonds, dtype=np.int64).reshape(-1, 2)
    ring_bond = in_ring[bonds[:, 0]] & in_ring[bonds[:, 1]]
    # Bond type: 0 single, 1 double, 2 triple, 3 aromatic (half the ring bonds).
    bond_type = rng.choice(3, size=len(bonds), p=[0.8, 0.17, 0.03])
    bond_type[ring_bond & (rng.random(len(bonds)) < 0.5)] = 3
    return types, bonds, bond_type, in_ring


def _features(rng, types, bonds, bond_type, in_ring) -> Tuple[np.ndarray, np.ndarray]:
    """OGB-layout features: atoms [n, 9] = (atomic number - 1, chirality, degree, formal charge
    index, H count, radical electrons, hybridisation, aromatic, in ring); bonds [e, 3] =
    (bond type, stereo, conjugated)."""
    n = len(types)
    degree = np.bincount(bonds.ravel(), minlength=n)
    aromatic = np.zeros(n, bool)
    aromatic[bonds[bond_type == 3].ravel()] = True
    atoms = np.zeros((n, NODE_FEATURES), np.uint8)
    atoms[:, 0] = _ATOMS[types]
    atoms[:, 1] = rng.random(n) < 0.05
    atoms[:, 2] = degree
    atoms[:, 3] = 5 + (rng.random(n) < 0.02)  # OGB's index of charge 0 is 5
    atoms[:, 4] = np.clip(_VALENCE[types] - degree, 0, 8)
    atoms[:, 6] = np.where(aromatic, 3, np.clip(4 - degree, 1, 4))
    atoms[:, 7] = aromatic
    atoms[:, 8] = in_ring
    edges = np.zeros((len(bonds), EDGE_FEATURES), np.uint8)
    edges[:, 0] = bond_type
    edges[:, 2] = (bond_type == 3) | ((bond_type == 1) & (rng.random(len(bonds)) < 0.5))
    return atoms, edges


# Per-atom yes/no properties the hidden rule is built from, each a threshold on one OGB atom
# feature (column, minimum): non-carbon, O or heavier, P or heavier (second row and below),
# degree >= 2, degree >= 3, >= 1 H, >= 2 H, aromatic, in a ring.
_ATOM_TESTS = ((0, 6), (0, 7), (0, 14), (2, 2), (2, 3), (4, 1), (4, 2), (7, 1), (8, 1))
# Per-bond properties (column, minimum): not single, aromatic, conjugated.
_BOND_TESTS = ((0, 1), (0, 3), (2, 1))
NUM_STATISTICS = 9 + 81 + 27 + 81


def structural_statistics(split: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per-graph counts the hidden labelling rule reads: float64 [G, 198], for ``split`` in
    the prepared layout (``split_arrays`` output). With atom tests a, b and bond tests q:

    [0:9]      atoms with a;
    [9:90]     bonds with a at one end and b at the other (both orientations count);
    [90:117]   bonds with q and a at either end (counted per end);
    [117:198]  atoms with a and at least two neighbours with b.

    All but the first block need messages along bonds to compute.
    """
    node_feat, edge_feat = split["node_feat"], split["edge_feat"]
    node_off, edge_off = split["node_offsets"], split["edge_offsets"]
    g = len(node_off) - 1
    n_counts, e_counts = np.diff(node_off), np.diff(edge_off)
    node_graph = np.repeat(np.arange(g), n_counts)
    edge_graph = np.repeat(np.arange(g), e_counts)
    # Split-wide node rows of each bond's two ends.
    ends = split["edge_index"].astype(np.int64) + np.repeat(node_off[:-1], e_counts)[:, None]
    atom = np.stack([node_feat[:, c] >= m for c, m in _ATOM_TESTS], 1).astype(np.float64)
    bond = np.stack([edge_feat[:, c] >= m for c, m in _BOND_TESTS], 1).astype(np.float64)

    def per_graph(values, graph):  # [R, K] -> [G, K] sums
        out = np.zeros((g, values.shape[1]))
        np.add.at(out, graph, values)
        return out

    a0, a1 = atom[ends[:, 0]], atom[ends[:, 1]]                        # [E, 9] each
    pairs = (a0[:, :, None] * a1[:, None, :] + a1[:, :, None] * a0[:, None, :]).reshape(-1, 81)
    bond_atom = (bond[:, :, None] * (a0 + a1)[:, None, :]).reshape(-1, 27)
    neighbours = np.zeros((len(atom), 9))                             # neighbours with b
    np.add.at(neighbours, ends[:, 0], a1)
    np.add.at(neighbours, ends[:, 1], a0)
    two = (atom[:, :, None] * (neighbours >= 2)[:, None, :]).reshape(-1, 81)
    return np.concatenate([per_graph(atom, node_graph), per_graph(pairs, edge_graph),
                           per_graph(bond_atom, edge_graph), per_graph(two, node_graph)], 1)


def generate_molpcba_tiny(seed: int = 0, sizes: Optional[Mapping[str, int]] = None
                          ) -> Dict[str, Dict[str, np.ndarray]]:
    """``{split: split_arrays(...)}`` of generated molecule-like graphs, deterministic in seed.

    Labels: 128 binary tasks from one hidden rule shared by all splits. Task j reads one
    count s_j of ``structural_statistics`` (atoms, bonds and neighbourhoods with given
    properties; most need message passing) and is positive when s_j >= k_j, the threshold
    chosen on the first 2,000 training graphs for a positive rate of about 10-50%. 2% of
    labels are flipped (noise: no task is perfectly learnable) and each task leaves 10-60% of
    its labels unmeasured (NaN), like ogbg-molpcba's sparse labels.
    """
    sizes = dict(TINY_SIZES, **(sizes or {}))
    rule_seed, *split_seeds = np.random.SeedSequence(int(seed)).spawn(1 + len(SPLITS))
    rule_rng = np.random.default_rng(rule_seed)
    out, stats = {}, {}
    for split, split_seed in zip(SPLITS, split_seeds):
        n = int(sizes[split])
        if n < 0:
            raise ValueError(f"{split} size must be >= 0, got {n}")
        rng = np.random.default_rng(split_seed)
        graphs = []
        for _ in range(n):
            types, bonds, bond_type, in_ring = _molecule(rng)
            atoms, edge_feat = _features(rng, types, bonds, bond_type, in_ring)
            graphs.append({"node_feat": atoms, "edge_feat": edge_feat, "edge_index": bonds,
                           "labels": np.zeros(NUM_TASKS, np.float32)})
        out[split] = split_arrays(graphs, f"{TINY_NAME} {split}")
        stats[split] = structural_statistics(out[split])
    # The hidden rule: counts that vary enough on the calibration graphs.
    calib = stats["train"][:2000]
    usable = [c for c in range(NUM_STATISTICS) if len(calib) and calib[:, c].std() > 0.3]
    if not usable:
        raise ValueError("ogbg_molpcba_tiny needs training graphs to draw its labelling rule")
    stat_of_task = rule_rng.choice(usable, size=NUM_TASKS, replace=len(usable) < NUM_TASKS)
    rate = rule_rng.uniform(*_POSITIVE_RATE, size=NUM_TASKS)
    threshold = np.array([max(np.quantile(calib[:, c], 1 - r, method="higher"), 0.5)
                          for c, r in zip(stat_of_task, rate)])
    missing = rule_rng.uniform(*_MISSING, size=NUM_TASKS)
    for split, split_seed in zip(SPLITS, split_seeds):
        rng = np.random.default_rng(split_seed.spawn(1)[0])
        labels = (stats[split][:, stat_of_task] >= threshold).astype(np.float32)
        flip = rng.random(labels.shape) < _FLIP
        labels[flip] = 1.0 - labels[flip]
        labels[rng.random(labels.shape) < missing] = np.nan
        out[split]["labels"] = labels
    return out


def tiny_name(seed: int = 0, sizes: Optional[Mapping[str, int]] = None) -> str:
    """Folder name of a generated copy: ``ogbg_molpcba_tiny`` for the defaults."""
    return generated_name(TINY_NAME, TINY_SIZES, seed, sizes)


def ensure_molpcba_tiny(data_dir: PathLike, seed: int = 0,
                        sizes: Optional[Mapping[str, int]] = None,
                        overwrite: bool = False) -> Path:
    """Generate into ``<data_dir>/<tiny_name(seed, sizes)>`` unless already there with the
    same generator version, seed and sizes. Safe for concurrent processes."""
    def write(name, sizes, extra, overwrite):
        return write_graph_dataset(data_dir, name, generate_molpcba_tiny(seed, sizes),
                                   extra_meta=extra, overwrite=overwrite)
    return ensure_generated(data_dir, TINY_NAME, TINY_SIZES, TINY_GENERATOR_VERSION, seed, sizes,
                            overwrite, write, "ogbg_molpcba_tiny: molecule-like graphs "
                            "generated by workloads.datasets.ogbg_molpcba")


def load_molpcba_tiny(data_dir: PathLike, split: str, seed: int = 0,
                      sizes: Optional[Mapping[str, int]] = None) -> GraphSplit:
    """One split of ogbg_molpcba_tiny, generated into ``data_dir`` first if needed."""
    sizes = dict(TINY_SIZES, **(sizes or {}))
    ensure_molpcba_tiny(data_dir, seed, sizes)
    return load_split(data_dir, tiny_name(seed, sizes), split, sizes[split],
                      f"algoperf data --dataset {TINY_NAME} --data_dir {data_dir}")
