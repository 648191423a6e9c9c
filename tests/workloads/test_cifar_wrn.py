"""cifar_wrn: the WRN model, the CIFAR-10 loader and augmentation, and the workloads (fast)."""
import sys

import numpy as np
import pytest
import torch
from torch import nn

from algoperf import random_utils, spec
from tests.conftest import run_cli
from workloads import data_cli, registry
from workloads.cifar_wrn.models import WideResNet
from workloads.datasets import cifar10
from workloads.datasets.prepared import DatasetError, write_prepared

SMALL_SIZES = {"train": 24, "validation": 7, "test": 9}


def small_cifar10(seed=0):
    """Random arrays in exactly the prepared CIFAR-10 layout, with small splits."""
    rng = np.random.default_rng(seed)
    return {split: {"images": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                    "labels": rng.integers(0, 10, n).astype(np.int64)}
            for split, n in SMALL_SIZES.items()}


@pytest.fixture
def prepared(tmp_path):
    splits = small_cifar10()
    write_prepared(tmp_path, "cifar10", splits, extra_meta={"source": "test"})
    return tmp_path, splits


# --- model -----------------------------------------------------------------------------------
def num_params(model):
    return sum(p.numel() for p in model.parameters())


def test_wrn_16_4_has_the_published_parameter_count():
    # Zagoruyko & Komodakis (2016) list WRN-16-4 as 2.7M parameters.
    model = WideResNet(depth=16, widen=4)
    assert num_params(model) == 2_748_890
    assert 2_700_000 <= num_params(model) <= 2_800_000
    assert len(model.blocks) == 6  # (16 - 4) / 6 = 2 blocks in each of 3 groups
    assert num_params(WideResNet(depth=10, widen=1)) == 77_850  # the tiny tier


def test_shapes_and_variants():
    x = torch.randn(2, 3, 32, 32)
    for kwargs in ({}, {"activation": "silu"}, {"norm": "group"}, {"activation": "gelu"}):
        model = WideResNet(depth=10, widen=1, **kwargs)
        assert model(x).shape == (2, 10)
    silu = WideResNet(depth=10, widen=1, activation="silu")
    assert any(isinstance(m, nn.SiLU) for m in silu.modules())
    assert not any(isinstance(m, nn.ReLU) for m in silu.modules())
    group = WideResNet(depth=10, widen=1, norm="group")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in group.modules())
    assert not list(group.buffers())  # no batch statistics
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNet(depth=12)
    with pytest.raises(ValueError, match="activation"):
        WideResNet(activation="tanh")


def test_he_init_and_dropout_only_in_training():
    torch.manual_seed(0)
    model = WideResNet(depth=10, widen=2)
    conv = model.blocks[1].conv1  # 32 -> 64 channels, 3x3: fan_out = 64 * 9
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)
    x = torch.randn(4, 3, 32, 32)
    model.train()
    torch.manual_seed(1)
    a = model(x, dropout_rate=0.5)
    torch.manual_seed(1)
    b = model(x, dropout_rate=0.0)
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.equal(model(x, dropout_rate=0.5), model(x, dropout_rate=0.0))


# --- data --------------------------------------------------------------------------------------
def test_loader_round_trips_prepared_files_exactly(prepared):
    data_dir, splits = prepared
    for split, arrays in splits.items():
        got = cifar10.load_cifar10(data_dir, split, check_sizes=False)
        assert got["images"].dtype == np.uint8 and got["images"].shape[1:] == (32, 32, 3)
        np.testing.assert_array_equal(got["images"], arrays["images"])
        np.testing.assert_array_equal(got["labels"], arrays["labels"])


def test_loader_errors_are_clear(prepared, tmp_path):
    data_dir, _ = prepared
    with pytest.raises(DatasetError, match="45000"):  # AlgoPerf's sizes are checked
        cifar10.load_cifar10(data_dir, "train")
    with pytest.raises(DatasetError, match="algoperf data --dataset cifar10"):
        cifar10.load_cifar10(tmp_path / "nowhere", "train")
    with pytest.raises(ValueError, match="unknown split"):
        cifar10.load_cifar10(data_dir, "dev", check_sizes=False)
    write_prepared(tmp_path / "bad", "cifar10",
                   {"train": {"images": np.zeros((3, 28, 28), np.uint8),
                              "labels": np.zeros(3, np.int64)}})
    with pytest.raises(DatasetError, match=r"images.npy: uint8 \[3, 28, 28\], expected uint8 "
                                           r"\[N, 32, 32, 3\]"):
        cifar10.load_cifar10(tmp_path / "bad", "train", check_sizes=False)


def test_crop_is_a_window_of_the_zero_padded_image_and_flip_is_exact():
    images = np.random.default_rng(0).integers(1, 256, (64, 32, 32, 3), dtype=np.uint8)
    out = cifar10.random_crop_flip(images, np.random.default_rng(5))
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    # Re-draw the same offsets and flips: the documented draw order.
    rng = np.random.default_rng(5)
    dy, dx = rng.integers(0, 9, 64), rng.integers(0, 9, 64)
    flip = rng.random(64) < 0.5
    for n in range(64):
        window = padded[n, dy[n]:dy[n] + 32, dx[n]:dx[n] + 32]
        np.testing.assert_array_equal(out[n], window[:, ::-1] if flip[n] else window)
    assert 0 < flip.sum() < 64 and len(set(zip(dy, dx))) > 10
    # Shifted windows bring in zero padding (images here have no zero pixels).
    assert ((out == 0).all(axis=-1).any(axis=(1, 2)) == ((dy != 4) | (dx != 4))).all()


def test_augmentation_is_deterministic_per_seed_and_eval_is_untouched():
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    a = cifar10.preprocess_batch(images, True, np.random.default_rng(3))
    b = cifar10.preprocess_batch(images, True, np.random.default_rng(3))
    c = cifar10.preprocess_batch(images, True, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    evaluated = cifar10.preprocess_batch(images, False, None)
    assert evaluated.shape == (16, 32, 32, 3) and evaluated.dtype == np.float32  # NHWC
    mean, std = np.asarray(cifar10.CIFAR10_MEAN), np.asarray(cifar10.CIFAR10_STD)
    np.testing.assert_allclose(evaluated, (images / 255 - mean) / std, rtol=1e-5, atol=1e-5)


def test_generated_tiny_data_is_deterministic_balanced_and_cifar_shaped():
    sizes = {"train": 50, "validation": 20, "test": 20}
    a = cifar10.generate_cifar10_tiny(0, sizes)
    b = cifar10.generate_cifar10_tiny(0, sizes)
    c = cifar10.generate_cifar10_tiny(1, sizes)
    for split, n in sizes.items():
        assert a[split]["images"].shape == (n, 32, 32, 3)
        assert a[split]["images"].dtype == np.uint8 and a[split]["labels"].dtype == np.int64
        np.testing.assert_array_equal(a[split]["images"], b[split]["images"])
        assert np.bincount(a[split]["labels"], minlength=10).tolist() == [n // 10] * 10
    assert not np.array_equal(a["train"]["images"], c["train"]["images"])


def test_tiny_data_is_generated_once_and_read_back(tmp_path):
    sizes = {"train": 30, "validation": 10, "test": 10}
    folder = cifar10.ensure_cifar10_tiny(tmp_path, seed=2, sizes=sizes)
    again = cifar10.ensure_cifar10_tiny(tmp_path, seed=2, sizes=sizes)
    assert folder == again
    got = cifar10.load_cifar10_tiny(tmp_path, "validation", seed=2, sizes=sizes)
    np.testing.assert_array_equal(
        got["images"], cifar10.generate_cifar10_tiny(2, sizes)["validation"]["images"])


# --- workloads --------------------------------------------------------------------------------
class SmallCifarWrn(registry.workload_class("cifar_wrn", "pytorch")):
    """The full-size WRN-16-4 workload on small prepared-format files."""
    num_train_examples = SMALL_SIZES["train"]
    num_eval_train_examples = 10
    num_validation_examples = SMALL_SIZES["validation"]
    num_test_examples = SMALL_SIZES["test"]
    check_sizes = False


def test_full_size_model_trains_one_step_and_evaluates_every_example_once(prepared):
    data_dir, splits = prepared
    workload = SmallCifarWrn()
    model, state = workload.init_model_fn(random_utils.PRNGKey(0))
    assert sum(p.numel() for p in model.parameters()) == 2_748_890
    assert workload.param_shapes["head.weight"] == spec.ShapeTuple((10, 256))
    assert workload.model_params_types["blocks.0.norm1.weight"] == \
        spec.ParameterType.BATCH_NORM_SCALE
    batch = next(workload._build_input_queue(random_utils.PRNGKey(1), "train", data_dir, 8))
    assert batch["inputs"].shape == (8, 3, 32, 32) and batch["targets"].shape == (8,)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    logits, _ = workload.model_fn(model, batch, state, spec.ForwardPassMode.TRAIN, None,
                                  update_batch_norm=True, dropout_rate=0.1)
    loss = workload.loss_fn(batch["targets"], logits, label_smoothing=0.1)
    (loss["summed"] / loss["n_valid_examples"]).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    after = model.state_dict()
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert not torch.equal(before["blocks.0.norm1.running_mean"],
                           after["blocks.0.norm1.running_mean"])
    # Eval with batch 4: every split ends with a padded partial batch (10, 7, 9 examples).
    results = workload.eval_model(4, model, state, None, data_dir, None, 1)
    assert results["validation/num_examples"] == 7 and results["test/num_examples"] == 9
    model.eval()
    for prefix, split, n in (("train", "train", 10), ("validation", "validation", 7),
                             ("test", "test", 9)):
        images = cifar10.normalize_images(splits[split]["images"][:n])
        inputs = torch.from_numpy(images).permute(0, 3, 1, 2)
        with torch.no_grad():
            predictions = model(inputs).argmax(-1).numpy()
        expected = (predictions == splits[split]["labels"][:n]).mean()
        assert results[f"{prefix}/accuracy"] == pytest.approx(expected)
        assert np.isfinite(results[f"{prefix}/loss"])


def test_registry_and_data_command_know_every_cifar_workload():
    names = ("cifar_wrn", "cifar_wrn_silu", "cifar_wrn_groupnorm", "cifar_wrn_tiny")
    table = registry.targets_table(list(names))
    assert table["base_workloads"] == ["cifar_wrn"]
    for name in names:
        definition = registry.get_definition(name)
        assert definition.base_workload_name == "cifar_wrn"
        assert table["workloads"][name]["target_metric_name"] == "accuracy"
        assert 0 < definition.validation_target_value < 1
    assert registry.get_definition("cifar_wrn_tiny").generated_data
    assert registry.get_workload("cifar_wrn_silu").activation == "silu"
    assert registry.get_workload("cifar_wrn_groupnorm").norm == "group"
    assert {"cifar10", "cifar10_tiny"} <= set(data_cli.DATASETS)


# --- preparing -------------------------------------------------------------------------------
class FakeTfds:
    """Stands in for tensorflow_datasets: ``load('cifar10', split='train[a:b]', ...)``."""

    def __init__(self, train, test):
        self.data = {"train": train, "test": test}
        self.__version__ = "fake"

    def load(self, name, split, as_supervised, shuffle_files, batch_size, **kwargs):
        assert name == "cifar10" and as_supervised and not shuffle_files and batch_size == -1
        base, _, rest = split.partition("[")
        arrays = self.data[base]
        if rest:
            lo, _, hi = rest.rstrip("]").partition(":")
            arrays = {k: v[int(lo or 0):int(hi) if hi else None] for k, v in arrays.items()}
        return arrays["images"], arrays["labels"]

    def as_numpy(self, ds):
        return ds


def test_prepare_holds_out_the_last_train_images_as_validation(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    train = {"images": rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8),
             "labels": rng.integers(0, 10, 50)}
    test = {"images": rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
            "labels": rng.integers(0, 10, 10)}
    monkeypatch.setitem(sys.modules, "tensorflow_datasets",
                        FakeTfds(train, test))
    monkeypatch.setattr(cifar10, "NUM_TRAIN_EXAMPLES", 45)
    monkeypatch.setattr(cifar10, "SIZES", {"train": 45, "validation": 5, "test": 10})
    cifar10.prepare_cifar10(tmp_path)
    got = {s: cifar10.load_cifar10(tmp_path, s) for s in ("train", "validation", "test")}
    np.testing.assert_array_equal(got["train"]["images"], train["images"][:45])
    np.testing.assert_array_equal(got["validation"]["images"], train["images"][45:])
    np.testing.assert_array_equal(got["validation"]["labels"], train["labels"][45:])
    np.testing.assert_array_equal(got["test"]["labels"], test["labels"])


def test_data_command_without_tensorflow_datasets_says_what_to_install(tmp_path):
    out = run_cli("data", "--dataset=cifar10", f"--data_dir={tmp_path}", timeout=120)
    if out.returncode == 0:
        pytest.skip("tensorflow-datasets is installed here")
    assert "tensorflow-datasets" in out.stderr and not (tmp_path / "cifar10").exists()
