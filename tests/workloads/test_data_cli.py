"""``algoperf data``, run as a user runs it: a subprocess through the one console entry point."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.workloads.mnist_files import write_mnist_idx
from workloads.datasets import mnist, prepared

ROOT = Path(__file__).resolve().parents[2]


def algoperf_data(*args):
    return run_cli("data", *map(str, args), timeout=120)


def _write_idx_files(folder, n_train=12, n_test=4, seed=0):
    return write_mnist_idx(folder, n_train=n_train, n_test=n_test, compress=True, seed=seed)



def test_prepare_mnist_from_idx_files(tmp_path):
    src = _write_idx_files(tmp_path / "src")
    result = algoperf_data("--dataset", "mnist", "--source_dir", tmp_path / "src",
                           "--data_dir", tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert "mnist: prepared at" in result.stdout and "train 10, validation 2, test 4" in \
        result.stdout
    got = mnist.load_mnist(tmp_path / "data", "train", check_sizes=False)
    assert got["images"].tobytes() == src["train_images"][:10].tobytes()
    np.testing.assert_array_equal(got["labels"], src["train_labels"][:10])
    got = mnist.load_mnist(tmp_path / "data", "validation", check_sizes=False)
    assert got["images"].tobytes() == src["train_images"][10:].tobytes()
    got = mnist.load_mnist(tmp_path / "data", "test", check_sizes=False)
    assert got["images"].tobytes() == src["test_images"].tobytes()

    # Again: nothing to do. With --overwrite: rebuilt from the new files.
    new = _write_idx_files(tmp_path / "src2", seed=1)
    again = algoperf_data("--dataset", "mnist", "--source_dir", tmp_path / "src2",
                          "--data_dir", tmp_path / "data")
    assert again.returncode == 0 and "already prepared" in again.stdout
    assert mnist.load_mnist(tmp_path / "data", "test", check_sizes=False)["images"].tobytes() \
        == src["test_images"].tobytes()
    rebuilt = algoperf_data("--dataset", "mnist", "--source_dir", tmp_path / "src2",
                            "--data_dir", tmp_path / "data", "--overwrite")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert mnist.load_mnist(tmp_path / "data", "test", check_sizes=False)["images"].tobytes() \
        == new["test_images"].tobytes()


def test_prepare_mnist_tiny(tmp_path):
    result = algoperf_data("--dataset", "mnist_tiny", "--data_dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "train 10,000, validation 2,000, test 2,000" in result.stdout
    got = mnist.load_mnist_tiny(tmp_path, "validation")
    assert got["images"].shape == (2000, 28, 28)
    assert prepared.read_meta(tmp_path, "mnist_tiny")["extra"]["generator"]["seed"] == 0


@pytest.mark.parametrize("args, words", [
    (["--dataset", "cifar100"], ["unknown dataset 'cifar100'", "mnist", "mnist_tiny"]),
    ([], ["--dataset is required", "mnist_tiny"]),
    (["--dataset", "mnist", "extra_arg"], ["unexpected arguments"]),
])
def test_bad_dataset_flags_fail_with_the_known_list(tmp_path, args, words):
    result = algoperf_data(*args, "--data_dir", tmp_path)
    assert result.returncode != 0
    for word in words:
        assert word in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_unknown_flag_fails(tmp_path):
    result = algoperf_data("--dataset", "mnist_tiny", "--no_such_flag=1")
    assert result.returncode != 0 and "no_such_flag" in result.stderr


def test_missing_idx_file_is_named(tmp_path):
    _write_idx_files(tmp_path / "src")
    (tmp_path / "src" / "train-labels-idx1-ubyte.gz").unlink()
    result = algoperf_data("--dataset", "mnist", "--source_dir", tmp_path / "src",
                           "--data_dir", tmp_path / "data")
    assert result.returncode == 1
    assert "train-labels-idx1-ubyte" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "mnist").exists()


def test_damaged_dataset_is_reported_not_called_prepared(tmp_path):
    (tmp_path / "mnist").mkdir()
    result = algoperf_data("--dataset", "mnist", "--data_dir", tmp_path,
                           "--source_dir", tmp_path / "src")
    assert result.returncode == 1 and "--overwrite" in result.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorflow_datasets") is not None,
                    reason="tensorflow-datasets is installed")
def test_mnist_without_tfds_or_source_dir_says_what_to_do(tmp_path):
    result = algoperf_data("--dataset", "mnist", "--data_dir", tmp_path)
    assert result.returncode == 1
    assert "--source_dir" in result.stderr and "algoperf[data]" in result.stderr
