"""The prepared format, the iterators, the IDX reader, MNIST and mnist_tiny.

Everything runs on small files that the tests write in exactly the prepared (or IDX) format.
"""
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.workloads.mnist_files import write_mnist_idx as _write_mnist_idx
from workloads.datasets import idx, iterators, mnist, prepared
from workloads.datasets.prepared import DatasetError

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------
# prepared format
# ----------------------------------------------------------------------------------------

def _splits(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train": {"images": rng.integers(0, 256, (n_train, 4, 3), dtype=np.uint8),
                  "labels": rng.integers(0, 10, n_train).astype(np.int64),
                  "floats": rng.standard_normal((n_train, 2)).astype(np.float32),
                  "flags": rng.random(n_train) < 0.5},
        "test": {"images": rng.integers(0, 256, (n_test, 4, 3), dtype=np.uint8),
                 "labels": rng.integers(0, 10, n_test).astype(np.int64),
                 "floats": rng.standard_normal((n_test, 2)).astype(np.float32),
                 "flags": rng.random(n_test) < 0.5}}


@pytest.fixture
def written(tmp_path):
    splits = _splits()
    folder = prepared.write_prepared(tmp_path, "toy", splits, extra_meta={"source": "test"})
    return tmp_path, folder, splits


def test_round_trip_is_exact(written):
    root, folder, splits = written
    assert folder == root / "toy"
    for split, arrays in splits.items():
        got = prepared.read_prepared(root, "toy", split)
        assert set(got) == set(arrays)
        for name, want in arrays.items():
            assert got[name].dtype == want.dtype and got[name].shape == want.shape
            assert got[name].tobytes() == want.tobytes()
            assert isinstance(got[name], np.memmap)
            with pytest.raises(ValueError):  # read-only memory map
                got[name][0] = got[name][0]


def test_meta_records_format_sizes_and_specs(written):
    root, folder, _ = written
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["format"] == "algoperf-prepared"
    assert meta["format_version"] == prepared.FORMAT_VERSION
    assert meta["name"] == "toy"
    assert meta["extra"] == {"source": "test"}
    assert meta["splits"]["train"]["num_examples"] == 12
    assert meta["splits"]["test"]["num_examples"] == 5
    assert meta["splits"]["train"]["arrays"]["images"] == {
        "shape": [12, 4, 3], "dtype": "uint8", "per_example": True}
    assert meta["splits"]["test"]["arrays"]["labels"]["dtype"] == "int64"
    assert prepared.read_meta(root, "toy") == meta
    # Nothing but the dataset folder is left in the data root.
    assert [p.name for p in root.iterdir()] == ["toy"]


def test_dataset_folder_itself_can_be_the_data_dir(written):
    root, folder, splits = written
    got = prepared.read_prepared(folder, "toy", "test")
    assert got["labels"].tobytes() == splits["test"]["labels"].tobytes()


def test_streaming_writer_creates_memmaps(tmp_path):
    with prepared.PreparedWriter(tmp_path, "big") as w:
        mm = w.create("train", "x", (7, 3), np.float64)
        mm[:] = np.arange(21).reshape(7, 3)
        w.add("train", "y", np.arange(7))
    got = prepared.read_prepared(tmp_path, "big", "train")
    np.testing.assert_array_equal(got["x"], np.arange(21).reshape(7, 3))
    assert got["x"].dtype == np.float64


def test_ragged_split_with_explicit_size(tmp_path):
    # A graph-like layout: 3 graphs, 7 nodes in total.
    splits = {"train": {"n_node": np.array([2, 4, 1]), "nodes": np.arange(7.0)}}
    prepared.write_prepared(tmp_path, "graphs", splits, num_examples={"train": 3})
    meta = prepared.read_meta(tmp_path, "graphs")
    assert meta["splits"]["train"]["num_examples"] == 3
    assert meta["splits"]["train"]["arrays"]["nodes"]["per_example"] is False
    got = prepared.read_prepared(tmp_path, "graphs", "train", expected_num_examples=3)
    np.testing.assert_array_equal(got["nodes"], np.arange(7.0))
    with pytest.raises(ValueError, match="set_num_examples"):
        prepared.write_prepared(tmp_path, "graphs2", splits)


def test_empty_split_reads_back(tmp_path):
    prepared.write_prepared(tmp_path, "e", {"test": {"x": np.zeros((0, 3), np.uint8)}})
    assert prepared.read_prepared(tmp_path, "e", "test")["x"].shape == (0, 3)


@pytest.mark.parametrize("kwargs, error", [
    (dict(splits={"../up": {"x": np.zeros(2)}}), "invalid split name"),
    (dict(splits={"train": {"a/b": np.zeros(2)}}), "invalid array name"),
    (dict(splits={"train": {"x": np.array([object()])}}), "numeric"),
    (dict(splits={"train": {"x": np.zeros(2)}}, extra_meta={"bad": object()}), "serializable"),
    (dict(splits={}), "no arrays"),
])
def test_writer_rejects_bad_input_and_leaves_nothing(tmp_path, kwargs, error):
    with pytest.raises((ValueError, TypeError), match=error):
        prepared.write_prepared(tmp_path, "bad", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_dataset_and_no_temp(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with prepared.PreparedWriter(tmp_path, "half") as w:
            w.add("train", "x", np.arange(10))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_killed_writer_never_leaves_a_readable_half_dataset(tmp_path):
    # A process killed (no cleanup at all) after writing some arrays.
    code = textwrap.dedent(f"""
        import os, numpy as np
        from workloads.datasets import prepared
        with prepared.PreparedWriter({str(tmp_path)!r}, "half") as w:
            w.add("train", "x", np.arange(10))
            os._exit(9)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 9
    assert not (tmp_path / "half").exists()
    with pytest.raises(DatasetError, match="does not exist.*algoperf data --dataset half"):
        prepared.read_prepared(tmp_path, "half", "train")


def test_existing_dataset_needs_overwrite(written):
    root, folder, splits = written
    new = _splits(seed=1)
    with pytest.raises(FileExistsError, match="overwrite"):
        prepared.write_prepared(root, "toy", new)
    assert prepared.read_prepared(root, "toy", "train")["images"].tobytes() == \
        splits["train"]["images"].tobytes()
    prepared.write_prepared(root, "toy", new, overwrite=True)
    assert prepared.read_prepared(root, "toy", "train")["images"].tobytes() == \
        new["train"]["images"].tobytes()
    assert [p.name for p in root.iterdir()] == ["toy"]  # old copy removed


def test_concurrent_writers_first_rename_wins(tmp_path):
    with pytest.raises(FileExistsError, match="another process"):
        with prepared.PreparedWriter(tmp_path, "race") as slow:
            slow.add("train", "x", np.zeros(3))
            prepared.write_prepared(tmp_path, "race", {"train": {"x": np.ones(3)}})  # wins
    np.testing.assert_array_equal(prepared.read_prepared(tmp_path, "race", "train")["x"], 1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["race"]


# Each way a prepared dataset can be broken, and the words its error must contain.
def _edit_meta(folder, fn):
    meta = json.loads((folder / "meta.json").read_text())
    fn(meta)
    (folder / "meta.json").write_text(json.dumps(meta))


def _truncate(path, nbytes):
    data = path.read_bytes()
    path.write_bytes(data[:-nbytes])


BREAKAGES = {
    "missing folder": (lambda f: __import__("shutil").rmtree(f),
                       r"toy does not exist: prepare it with `algoperf data --dataset toy"),
    "missing meta": (lambda f: (f / "meta.json").unlink(), r"meta.json is missing"),
    "meta not json": (lambda f: (f / "meta.json").write_text("{oops"), r"meta.json is not valid"),
    "not our meta": (lambda f: (f / "meta.json").write_text("{}"), r"not an algoperf-prepared"),
    "old version": (lambda f: _edit_meta(f, lambda m: m.update(format_version=0)),
                    r"format_version 0"),
    "other dataset": (lambda f: _edit_meta(f, lambda m: m.update(name="other")),
                      r"holds dataset 'other', expected 'toy'"),
    "malformed splits": (lambda f: _edit_meta(f, lambda m: m.update(splits=[1])),
                         r"malformed 'splits'"),
    "missing array": (lambda f: (f / "train" / "labels.npy").unlink(),
                      r"train/labels.npy is missing"),
    "shape mismatch": (lambda f: np.save(f / "train" / "labels.npy", np.zeros(11, np.int64)),
                       r"labels.npy: shape \[11\], meta.json says \[12\]"),
    "dtype mismatch": (lambda f: np.save(f / "train" / "labels.npy", np.zeros(12, np.int32)),
                       r"labels.npy: dtype int32, meta.json says int64"),
    "split size mismatch": (
        lambda f: _edit_meta(f, lambda m: m["splits"]["train"].update(num_examples=13)),
        r".npy: per-example array with 12 rows, but split 'train' has num_examples=13"),
    "truncated": (lambda f: _truncate(f / "train" / "images.npy", 5),
                  r"images.npy: truncated"),
    "trailing bytes": (lambda f: open(f / "train" / "floats.npy", "ab").write(b"xx"),
                       r"floats.npy: has trailing bytes"),
    "not npy": (lambda f: (f / "train" / "flags.npy").write_bytes(b"garbage"),
                r"flags.npy: not a readable .npy file"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_breakage_gives_one_clear_error(written, breakage):
    root, folder, _ = written
    prepared.read_prepared(root, "toy", "train")  # fine before
    damage, message = BREAKAGES[breakage]
    damage(folder)
    with pytest.raises(DatasetError, match=message):
        prepared.read_prepared(root, "toy", "train")


def test_unknown_split_and_expected_size(written):
    root, _, _ = written
    with pytest.raises(DatasetError, match=r"no split 'validation' \(has \['test', 'train'\]\)"):
        prepared.read_prepared(root, "toy", "validation")
    with pytest.raises(DatasetError, match=r"split 'train' has 12 examples, expected 50000"):
        prepared.read_prepared(root, "toy", "train", expected_num_examples=50000)


def test_dataset_error_is_a_value_error():
    assert issubclass(DatasetError, ValueError)


# ----------------------------------------------------------------------------------------
# iterators
# ----------------------------------------------------------------------------------------

def _indexed(n):
    """Arrays whose rows say which example they are, to check alignment and coverage."""
    return {"x": np.arange(n * 2).reshape(n, 2), "y": np.arange(n)}


def test_batch_iterator_epochs_are_permutations_with_aligned_rows():
    it = iterators.batch_iterator(_indexed(12), 4, rng_seed=3)
    epochs = []
    for _ in range(3):
        ys = []
        for _ in range(3):
            b = next(it)
            assert b["x"].shape == (4, 2) and b["y"].shape == (4,)
            np.testing.assert_array_equal(b["x"][:, 0], 2 * b["y"])  # rows stay aligned
            ys.append(b["y"])
        epoch = np.concatenate(ys)
        assert sorted(epoch) == list(range(12))  # every example once per epoch
        epochs.append(epoch)
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled each epoch
    assert not np.array_equal(epochs[0], np.arange(12))


def test_batch_iterator_is_deterministic_in_the_seed():
    def take(seed, k=7):
        it = iterators.batch_iterator(_indexed(10), 3, seed)
        return [next(it)["y"] for _ in range(k)]
    a, b, c = take(5), take(5), take(6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    key = np.array([0, 5], dtype=np.uint32)  # a PRNG key works as a seed too
    d = [next(it)["y"] for it in [iterators.batch_iterator(_indexed(10), 3, key)]
         for _ in range(7)]
    assert len(d) == 7


def test_batch_iterator_start_batch_resumes_the_same_stream():
    full = iterators.batch_iterator(_indexed(10), 3, rng_seed=1)
    stream = [next(full)["y"] for _ in range(11)]
    resumed = iterators.batch_iterator(_indexed(10), 3, rng_seed=1, start_batch=4)
    for want in stream[4:]:
        np.testing.assert_array_equal(next(resumed)["y"], want)


def test_batch_iterator_drop_last_repeat_and_order():
    # drop_last: 10 examples, batch 4 -> 2 batches per epoch, always full.
    one_epoch = list(iterators.batch_iterator(_indexed(10), 4, 0, repeat=False))
    assert [len(b["y"]) for b in one_epoch] == [4, 4]
    partial = list(iterators.batch_iterator(_indexed(10), 4, 0, repeat=False, drop_last=False))
    assert [len(b["y"]) for b in partial] == [4, 4, 2]
    assert sorted(np.concatenate([b["y"] for b in partial])) == list(range(10))
    ordered = list(iterators.batch_iterator(_indexed(5), 2, 0, shuffle=False, repeat=False,
                                            drop_last=False))
    np.testing.assert_array_equal(np.concatenate([b["y"] for b in ordered]), np.arange(5))


def test_batch_iterator_reads_memmaps_and_returns_copies(written):
    root, _, splits = written
    arrays = prepared.read_prepared(root, "toy", "train")
    b = next(iterators.batch_iterator(arrays, 12, 0, shuffle=False))
    assert type(b["images"]) is np.ndarray and b["images"].flags.writeable
    assert b["images"].tobytes() == splits["train"]["images"].tobytes()


@pytest.mark.parametrize("arrays, batch, kwargs, error", [
    ({"x": np.zeros(4), "y": np.zeros(5)}, 2, {}, "share their leading"),
    ({}, 2, {}, "empty"),
    ({"x": np.zeros(4)}, 0, {}, "positive integer"),
    ({"x": np.zeros(4)}, 2.5, {}, "positive integer"),
    ({"x": np.zeros(3)}, 4, {}, "fewer than one batch"),
    ({"x": np.zeros(4)}, 2, {"start_batch": -1}, "start_batch"),
])
def test_batch_iterator_errors_at_call_time(arrays, batch, kwargs, error):
    with pytest.raises(ValueError, match=error):
        iterators.batch_iterator(arrays, batch, 0, **kwargs)


def test_eval_iterator_visits_each_example_once_with_padding():
    arrays = {"x": np.arange(1, 11).reshape(10, 1).astype(np.float32), "y": np.arange(1, 11)}
    batches = list(iterators.eval_iterator(arrays, 4))
    assert len(batches) == iterators.num_eval_batches(10, 4) == 3
    for b in batches:
        assert b["x"].shape == (4, 1) and b["y"].shape == (4,) and b["weights"].shape == (4,)
        assert b["weights"].dtype == np.float32 and b["x"].dtype == np.float32
    weights = np.concatenate([b["weights"] for b in batches])
    ys = np.concatenate([b["y"] for b in batches])
    np.testing.assert_array_equal(weights, [1] * 10 + [0] * 2)
    np.testing.assert_array_equal(ys, list(range(1, 11)) + [0, 0])  # in order, zero padding
    assert weights.sum() == 10
    # Exact fit: no padding batch.
    exact = list(iterators.eval_iterator(arrays, 5))
    assert len(exact) == 2 and all(b["weights"].all() for b in exact)
    # A prefix only (the train-eval subset).
    sub = list(iterators.eval_iterator(arrays, 4, num_examples=5))
    assert np.concatenate([b["weights"] for b in sub]).sum() == 5 and len(sub) == 2


def test_eval_iterator_errors():
    with pytest.raises(ValueError, match="weights"):
        iterators.eval_iterator({"weights": np.ones(3)}, 2)
    with pytest.raises(ValueError, match="outside"):
        iterators.eval_iterator({"x": np.ones(3)}, 2, num_examples=4)


def test_shard_batch_slices_cover_the_global_batch():
    batch = {"x": np.arange(24).reshape(8, 3), "w": np.arange(8.0)}
    shards = [iterators.shard_batch(batch, r, 4) for r in range(4)]
    for name in batch:
        np.testing.assert_array_equal(np.concatenate([s[name] for s in shards]), batch[name])
    np.testing.assert_array_equal(shards[1]["w"], [2.0, 3.0])
    torch = pytest.importorskip("torch")
    t = iterators.shard_batch({"x": torch.arange(6)}, 2, 3)
    assert t["x"].tolist() == [4, 5]


@pytest.mark.parametrize("batch, rank, world, error", [
    ({"x": np.zeros(6)}, 0, 4, "not divisible by world_size 4"),
    ({"x": np.zeros(4)}, 4, 4, "rank"),
    ({"x": np.zeros(4)}, 0, 0, "rank"),
    ({"x": np.zeros(4), "y": np.zeros(2)}, 0, 2, "share their leading"),
])
def test_shard_batch_errors(batch, rank, world, error):
    with pytest.raises(ValueError, match=error):
        iterators.shard_batch(batch, rank, world)


# ----------------------------------------------------------------------------------------
# IDX
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_idx_round_trip(tmp_path, compress, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    a = a if dtype is not np.uint8 else np.abs(a).astype(np.uint8)
    idx.write_idx(tmp_path / "a", a, compress=compress)
    got = idx.read_idx(tmp_path / "a", expected_ndim=3, expected_trailing_shape=(3, 4))
    assert got.dtype == np.dtype(dtype) and got.tobytes() == a.tobytes()


def test_idx_header_is_the_classic_one(tmp_path):
    idx.write_idx(tmp_path / "l", np.array([7, 2, 1], np.uint8))
    assert (tmp_path / "l").read_bytes() == bytes.fromhex("00000801 00000003 070201")


@pytest.mark.parametrize("raw, kwargs, error", [
    (bytes.fromhex("08030000"), {}, "not an IDX file"),
    (b"", {}, "not an IDX file"),
    (bytes.fromhex("00000f01 00000001 00"), {}, "unknown IDX data type 0x0f"),
    (bytes.fromhex("00000801 00000002 0102"), {"expected_ndim": 3}, "1 dimensions, expected 3"),
    (bytes.fromhex("00000802 00000002 00000002 010203"), {}, "truncated"),
    (bytes.fromhex("00000801 00000002 010203"), {}, "trailing bytes"),
    (bytes.fromhex("00000802 00000001 00000003 010203"), {"expected_trailing_shape": (2,)},
     r"shape \[1, 3\], expected \[N, 2\]"),
    (bytes.fromhex("000008"), {}, "not an IDX file"),
])
def test_idx_errors(tmp_path, raw, kwargs, error):
    path = tmp_path / "bad-idx"
    path.write_bytes(raw)
    with pytest.raises(DatasetError, match=f"bad-idx.*{error}"):
        idx.read_idx(path, **kwargs)


# ----------------------------------------------------------------------------------------
# MNIST
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("compress, dotted", [(False, False), (True, True)])
def test_prepare_mnist_from_idx_round_trip(tmp_path, compress, dotted):
    src = _write_mnist_idx(tmp_path / "src", compress=compress, dotted=dotted)
    folder = mnist.prepare_mnist(tmp_path / "data", source_dir=tmp_path / "src")
    assert folder == tmp_path / "data" / "mnist"
    # train = first 5/6 of the official train file, validation = last 1/6, in file order.
    want = {"train": (src["train_images"][:50], src["train_labels"][:50]),
            "validation": (src["train_images"][50:], src["train_labels"][50:]),
            "test": (src["test_images"], src["test_labels"])}
    for split, (images, labels) in want.items():
        got = mnist.load_mnist(tmp_path / "data", split, check_sizes=False)
        assert got["images"].dtype == np.uint8 and got["images"].shape[1:] == (28, 28)
        assert got["labels"].dtype == np.int64
        assert got["images"].tobytes() == images.tobytes()
        np.testing.assert_array_equal(got["labels"], labels)
    meta = prepared.read_meta(tmp_path / "data", "mnist")
    assert meta["extra"]["source"] == "idx"
    assert "last 1/6" in meta["extra"]["split_rule"]


def test_load_mnist_checks_algoperf_sizes(tmp_path):
    _write_mnist_idx(tmp_path / "src")
    mnist.prepare_mnist(tmp_path, source_dir=tmp_path / "src")
    with pytest.raises(DatasetError, match="split 'train' has 50 examples, expected 50000"):
        mnist.load_mnist(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split"):
        mnist.load_mnist(tmp_path, "eval_train", check_sizes=False)
    with pytest.raises(DatasetError, match="algoperf data --dataset mnist"):
        mnist.load_mnist(tmp_path / "elsewhere", "train")


def test_load_mnist_rejects_wrong_layout(tmp_path):
    # A valid prepared dataset named mnist, but with images of the wrong size.
    prepared.write_prepared(tmp_path, "mnist", {"train": {
        "images": np.zeros((3, 8, 8), np.uint8), "labels": np.zeros(3, np.int64)}})
    with pytest.raises(DatasetError, match=r"images.npy: uint8 \[3, 8, 8\], expected uint8"):
        mnist.load_mnist(tmp_path, "train", check_sizes=False)


def test_prepare_mnist_idx_errors(tmp_path):
    src = tmp_path / "src"
    _write_mnist_idx(src)
    (src / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="no t10k-labels-idx1-ubyte"):
        mnist.prepare_mnist(tmp_path / "data", source_dir=src)
    idx.write_idx(src / "t10k-labels-idx1-ubyte", np.zeros(9, np.uint8))  # 10 images
    with pytest.raises(DatasetError, match="has 10 images but .* has 9 labels"):
        mnist.prepare_mnist(tmp_path / "data", source_dir=src)
    idx.write_idx(src / "t10k-labels-idx1-ubyte", np.full(10, 10, np.uint8))
    with pytest.raises(DatasetError, match="label 10 outside 0..9"):
        mnist.prepare_mnist(tmp_path / "data", source_dir=src)
    # Images and labels swapped.
    labels = (src / "train-labels-idx1-ubyte").read_bytes()
    (src / "train-labels-idx1-ubyte").write_bytes((src / "train-images-idx3-ubyte").read_bytes())
    (src / "train-images-idx3-ubyte").write_bytes(labels)
    with pytest.raises(DatasetError, match="1 dimensions, expected 3"):
        mnist.prepare_mnist(tmp_path / "data", source_dir=src)
    with pytest.raises(DatasetError, match="is not a folder"):
        mnist.prepare_mnist(tmp_path / "data", source_dir=tmp_path / "nowhere")
    assert not (tmp_path / "data" / "mnist").exists()


class _FakeTfds:
    """Stands in for tensorflow_datasets: records calls, returns small arrays per split."""
    __version__ = "fake"

    def __init__(self):
        rng = np.random.default_rng(0)
        self.data = {"train": (rng.integers(0, 256, (60, 28, 28, 1), dtype=np.uint8),
                               rng.integers(0, 10, 60)),
                     "test": (rng.integers(0, 256, (10, 28, 28, 1), dtype=np.uint8),
                              rng.integers(0, 10, 10))}
        self.calls = []

    def load(self, name, split, **kwargs):
        self.calls.append((name, split, kwargs))
        images, labels = self.data["test" if split == "test" else "train"]
        part = {"train[:50000]": slice(0, 50), "train[50000:]": slice(50, 60),
                "test": slice(None)}[split]
        return images[part], labels[part]

    def as_numpy(self, ds):
        return ds


def test_prepare_mnist_from_tfds_uses_algoperf_slices(tmp_path, monkeypatch):
    fake = _FakeTfds()
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    mnist.prepare_mnist(tmp_path, tfds_data_dir=tmp_path / "tfds")
    assert [c[1] for c in fake.calls] == ["train[:50000]", "train[50000:]", "test"]
    for name, _, kwargs in fake.calls:
        assert name == "mnist" and kwargs["as_supervised"] is True
        assert kwargs["data_dir"] == str(tmp_path / "tfds")
    got = mnist.load_mnist(tmp_path, "validation", check_sizes=False)
    assert got["images"].tobytes() == fake.data["train"][0][50:, :, :, 0].tobytes()
    np.testing.assert_array_equal(got["labels"], fake.data["train"][1][50:])
    assert prepared.read_meta(tmp_path, "mnist")["extra"]["source"] == "tfds"


def test_prepare_mnist_without_tfds_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(DatasetError, match=r"algoperf\[data\].*--source_dir"):
        mnist.prepare_mnist(tmp_path)


def test_normalize_images():
    images = np.array([[[0, 255]]], dtype=np.uint8)
    unit = mnist.normalize_images(images)
    assert unit.shape == (1, 1, 2, 1) and unit.dtype == np.float32
    np.testing.assert_allclose(unit[0, 0, :, 0], [(0 - 0.1307) / 0.3081, (1 - 0.1307) / 0.3081],
                               rtol=1e-6)
    raw = mnist.normalize_images(images, divide_by_255=False)  # AlgoPerf's reference pipeline
    np.testing.assert_allclose(raw[0, 0, :, 0], [(0 - 0.1307) / 0.3081, (255 - 0.1307) / 0.3081],
                               rtol=1e-6)


# ----------------------------------------------------------------------------------------
# mnist_tiny
# ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    return mnist.generate_mnist_tiny(0)


def test_mnist_tiny_layout_and_balance(tiny):
    assert set(tiny) == {"train", "validation", "test"}
    for split, n in mnist.TINY_SIZES.items():
        images, labels = tiny[split]["images"], tiny[split]["labels"]
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [n // 10] * 10)
    images = tiny["train"]["images"]
    # Looks like MNIST: dark background, white strokes.
    assert 0.05 < images.mean() / 255 < 0.2
    assert images.max() == 255 and np.median(images) == 0


def test_mnist_tiny_is_deterministic_and_seeded(tiny):
    again = mnist.generate_mnist_tiny(0)
    for split in tiny:
        for name in ("images", "labels"):
            assert again[split][name].tobytes() == tiny[split][name].tobytes()
    other = mnist.generate_mnist_tiny(1, 100, 20, 20)
    assert other["train"]["images"].tobytes() != tiny["train"]["images"][:100].tobytes()


def test_mnist_tiny_does_not_depend_on_render_chunking(monkeypatch):
    want = mnist.generate_mnist_tiny(3, 50, 10, 10)
    monkeypatch.setattr(mnist, "_RENDER_CHUNK", 7)
    got = mnist.generate_mnist_tiny(3, 50, 10, 10)
    assert got["train"]["images"].tobytes() == want["train"]["images"].tobytes()


def test_mnist_tiny_splits_are_fresh_draws(tiny):
    train = {x.tobytes() for x in tiny["train"]["images"]}
    assert not any(x.tobytes() in train for x in tiny["validation"]["images"])
    assert not any(x.tobytes() in train for x in tiny["test"]["images"])


def test_mnist_tiny_is_learnable_by_an_mlp_but_not_by_a_linear_model(tiny):
    """The module docstring's figures, shortened: AlgoPerf's MLP 784-128-10 (sigmoid) with Adam
    reaches ~0.97 validation accuracy by 1,000 steps at batch 64; 50 steps and a linear model
    (0.936 at 1,000 steps) do not."""
    torch = pytest.importorskip("torch")

    def train(hidden, steps, checkpoints):
        torch.manual_seed(0)
        x = torch.from_numpy(mnist.normalize_images(tiny["train"]["images"]).reshape(-1, 784))
        y = torch.from_numpy(tiny["train"]["labels"])
        xv = torch.from_numpy(mnist.normalize_images(tiny["validation"]["images"])
                              .reshape(-1, 784))
        yv = torch.from_numpy(tiny["validation"]["labels"])
        if hidden:
            model = torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.Sigmoid(),
                                        torch.nn.Linear(hidden, 10))
        else:
            model = torch.nn.Linear(784, 10)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batches = iterators.batch_iterator({"i": np.arange(len(y))}, 64, rng_seed=0)
        acc = {}
        for step in range(1, steps + 1):
            i = torch.from_numpy(next(batches)["i"])
            loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step in checkpoints:
                with torch.no_grad():
                    acc[step] = (model(xv).argmax(1) == yv).float().mean().item()
        return acc

    mlp = train(128, 1000, (50, 1000))
    assert mlp[50] < 0.9, mlp
    assert mlp[1000] >= 0.96, mlp
    linear = train(0, 1000, (1000,))
    assert linear[1000] < 0.955, linear


def test_ensure_mnist_tiny_generates_once_and_reuses(tmp_path, tiny):
    folder = mnist.ensure_mnist_tiny(tmp_path)
    assert folder == tmp_path / "mnist_tiny"
    stamp = (folder / "meta.json").stat().st_mtime_ns
    assert mnist.ensure_mnist_tiny(tmp_path) == folder
    assert (folder / "meta.json").stat().st_mtime_ns == stamp  # not rewritten
    for split in tiny:
        got = mnist.load_mnist_tiny(tmp_path, split)
        assert got["images"].tobytes() == tiny[split]["images"].tobytes()
        assert got["labels"].tobytes() == tiny[split]["labels"].tobytes()
    meta = prepared.read_meta(tmp_path, "mnist_tiny")
    assert meta["extra"]["generator"] == {
        "generator_version": mnist.TINY_GENERATOR_VERSION, "seed": 0,
        "sizes": {"train": 10000, "validation": 2000, "test": 2000}}


def test_ensure_mnist_tiny_regenerates_stale_or_damaged_copies(tmp_path):
    sizes = {"train": 30, "validation": 10, "test": 10}
    folder = mnist.ensure_mnist_tiny(tmp_path, seed=2, sizes=sizes)
    assert folder.name == "mnist_tiny-seed2-30-10-10"
    want = mnist.load_mnist_tiny(tmp_path, "train", seed=2, sizes=sizes)["images"].tobytes()
    _edit_meta(folder, lambda m: m["extra"]["generator"].update(generator_version=0))
    mnist.ensure_mnist_tiny(tmp_path, seed=2, sizes=sizes)
    assert prepared.read_meta(tmp_path, folder.name)["extra"]["generator"][
        "generator_version"] == mnist.TINY_GENERATOR_VERSION
    (folder / "meta.json").unlink()
    got = mnist.load_mnist_tiny(tmp_path, "train", seed=2, sizes=sizes)
    assert got["images"].tobytes() == want


def test_ensure_mnist_tiny_is_safe_concurrently(tmp_path):
    sizes = {"train": 200, "validation": 20, "test": 20}
    results, errors = [], []

    def worker():
        try:
            results.append(mnist.ensure_mnist_tiny(tmp_path, seed=1, sizes=sizes))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [results[0].name]
    mnist.load_mnist_tiny(tmp_path, "test", seed=1, sizes=sizes)
