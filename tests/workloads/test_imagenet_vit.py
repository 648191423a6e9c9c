"""imagenet_vit: ImageNet prepare from fake ILSVRC2012 tars, JPEG-shard loader, workloads."""
import io
import tarfile

import numpy as np
import pytest
import torch

from algoperf import random_utils, spec
from workloads import data_cli, registry
from workloads.datasets import image_transforms as T
from workloads.datasets import imagenet
from workloads.datasets.prepared import DatasetError
from workloads.imagenet_vit import data as vit_data

SYNSETS = ["n01440764", "n01443537", "n02102040"]


def jpeg_bytes(seed, size=(40, 48)):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
    return imagenet.encode_jpeg(a, quality=90)


def tar_bytes(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_fake_ilsvrc(folder, per_class=3, num_val=5, label_file="validation_labels.txt"):
    """ILSVRC2012 archives in the official layout: a train tar of per-class tars, a val tar
    of ILSVRC2012_val_########.JPEG and a labels file. Returns (train, val) expectations."""
    folder.mkdir(parents=True, exist_ok=True)
    train, inner_tars = [], []
    for c, synset in enumerate(SYNSETS[::-1]):  # stored out of order: labels follow sorting
        files = [(f"{synset}_{k}.JPEG", jpeg_bytes(100 * c + k)) for k in range(per_class)]
        inner_tars.append((f"{synset}.tar", tar_bytes(files)))
        train += [(data, SYNSETS.index(synset)) for _, data in files]
    (folder / imagenet.TRAIN_TAR).write_bytes(tar_bytes(inner_tars))
    val_files, val_labels = [], []
    for i in range(num_val):
        val_files.append((f"ILSVRC2012_val_{i + 1:08d}.JPEG", jpeg_bytes(1000 + i)))
        val_labels.append(SYNSETS[i % len(SYNSETS)])
    (folder / imagenet.VAL_TAR).write_bytes(tar_bytes(val_files[::-1]))  # out of order too
    if label_file.endswith(".csv"):
        rows = [f"ILSVRC2012_val_{i + 1:08d},{s} 1 2 3 4" for i, s in enumerate(val_labels)]
        (folder / label_file).write_text("ImageId,PredictionString\n" + "\n".join(rows))
    else:
        (folder / label_file).write_text("\n".join(val_labels) + "\n")
    val = [(data, SYNSETS.index(s)) for (_, data), s in zip(val_files, val_labels)]
    return train, val


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    train, val = write_fake_ilsvrc(root / "src")
    imagenet.prepare_imagenet(root / "data", root / "src", check_sizes=False, shard_size=4)
    v2 = [(jpeg_bytes(2000 + i, (30, 30)), i % 3) for i in range(3)]
    imagenet.write_jpeg_splits(root / "data", imagenet.V2_NAME, {"test": v2})
    return root / "data", train, val, v2


# --- prepare + reading ------------------------------------------------------------------
def test_prepare_round_trips_every_jpeg_and_label(prepared):
    data, train, val, v2 = prepared
    for split, expected in (("train", train), ("validation", val)):
        s = imagenet.load_jpeg_split(data, "imagenet", split)
        assert len(s) == len(expected)
        assert [bytes(s.jpeg(i)) for i in range(len(s))] == [b for b, _ in expected]
        np.testing.assert_array_equal(s.labels, [lab for _, lab in expected])
    # 9 train images in shards of 4: three shard files.
    assert sorted(p.name for p in (data / "imagenet" / "train").glob("jpeg_*")) == \
        ["jpeg_00000.npy", "jpeg_00001.npy", "jpeg_00002.npy"]
    s = imagenet.load_jpeg_split(data / "imagenet", imagenet.V2_NAME, "test")  # sibling lookup
    assert [bytes(s.jpeg(i)) for i in range(3)] == [b for b, _ in v2]


def test_labels_are_the_sorted_synset_index(prepared):
    data, train, _, _ = prepared
    labels = imagenet.load_jpeg_split(data, "imagenet", "train").labels
    # The train tar stored classes in reverse order; labels count from the sorted synsets.
    np.testing.assert_array_equal(labels, [2, 2, 2, 1, 1, 1, 0, 0, 0])


def test_kaggle_csv_labels_give_the_same_dataset(tmp_path, prepared):
    _, _, val, _ = prepared
    write_fake_ilsvrc(tmp_path / "src", label_file="LOC_val_solution.csv")
    imagenet.prepare_imagenet(tmp_path / "d", tmp_path / "src", check_sizes=False)
    s = imagenet.load_jpeg_split(tmp_path / "d", "imagenet", "validation")
    np.testing.assert_array_equal(s.labels, [lab for _, lab in val])


def test_prepare_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="--source_dir"):
        imagenet.prepare_imagenet(tmp_path / "d", None)
    write_fake_ilsvrc(tmp_path / "src")
    with pytest.raises(DatasetError, match="expected 1000"):
        imagenet.prepare_imagenet(tmp_path / "d", tmp_path / "src")  # 3 classes, full check
    (tmp_path / "src" / "validation_labels.txt").write_text("n01440764\nbogus\n")
    with pytest.raises(DatasetError, match="entry 2 is 'bogus'"):
        imagenet.prepare_imagenet(tmp_path / "d", tmp_path / "src", check_sizes=False)
    (tmp_path / "src" / "validation_labels.txt").unlink()
    with pytest.raises(DatasetError, match="no validation labels"):
        imagenet.prepare_imagenet(tmp_path / "d", tmp_path / "src", check_sizes=False)
    (tmp_path / "src2").mkdir()
    (tmp_path / "src2" / "validation_labels.txt").write_text("n01440764\n")
    with pytest.raises(DatasetError, match="ILSVRC2012_img_train.tar is missing"):
        imagenet.prepare_imagenet(tmp_path / "d", tmp_path / "src2", check_sizes=False)
    assert not (tmp_path / "d" / "imagenet").exists()  # nothing half-written


def test_data_cli_rows():
    for name in ("imagenet", "imagenet_v2", "imagenet_tiny"):
        assert name in data_cli.DATASETS
    assert data_cli.DATASETS["imagenet_tiny"].idempotent


# --- loader ---------------------------------------------------------------------------------
def test_eval_loader_is_each_example_once_center_cropped_and_padded(prepared):
    data = prepared[0]
    split = imagenet.load_jpeg_split(data, "imagenet", "validation")
    batches = list(imagenet.ImageLoader(split, 4, 16, train=False, resize_size=16))
    assert len(batches) == 2
    images = np.concatenate([b["images"] for b in batches])
    weights = np.concatenate([b["weights"] for b in batches])
    np.testing.assert_array_equal(weights, [1, 1, 1, 1, 1, 0, 0, 0])
    assert (images[5:] == 0).all()
    for i in range(5):
        expected = T.center_crop_resize(imagenet.decode(split.jpeg(i)), 16, 16)
        np.testing.assert_array_equal(images[i], np.asarray(expected))
    np.testing.assert_array_equal(np.concatenate([b["labels"] for b in batches])[:5],
                                  split.labels)


def test_train_loader_follows_the_epoch_permutation_and_is_deterministic(prepared):
    data = prepared[0]
    split = imagenet.load_jpeg_split(data, "imagenet", "train")
    aug = imagenet.AugmentConfig()

    def take(n, **kw):
        loader = imagenet.ImageLoader(split, 4, 16, seed=7, aug=aug, **kw)
        return [next(loader) for _ in range(n)]

    a, b = take(3), take(3, chunk=3)   # another chunking: the same batches
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["images"], y["images"])
    # 9 examples, batch 4 -> 2 batches an epoch; batch 2 starts epoch 1.
    perm0 = imagenet.iterators.epoch_permutation(9, 7, 0)
    perm1 = imagenet.iterators.epoch_permutation(9, 7, 1)
    np.testing.assert_array_equal(a[1]["labels"], split.labels[perm0[4:8]])
    np.testing.assert_array_equal(a[2]["labels"], split.labels[perm1[0:4]])
    # Example j of batch b is augmented with example_rng(seed, b, j).
    i = perm0[4 + 2]
    expected = imagenet.augment_train(imagenet.decode(split.jpeg(i)),
                                      imagenet.example_rng(7, 1, 2), 16, aug)
    np.testing.assert_array_equal(a[1]["images"][2], expected)
    # Another seed, other crops.
    other = next(imagenet.ImageLoader(split, 4, 16, seed=8, aug=aug))
    assert not np.array_equal(other["images"], a[0]["images"])


def test_cached_decodes_give_the_same_batches_and_decode_each_image_once(prepared,
                                                                          monkeypatch):
    split = imagenet.load_jpeg_split(prepared[0], "imagenet", "train")
    aug = imagenet.AugmentConfig()
    decoded = []
    real_decode = imagenet.decode
    monkeypatch.setattr(imagenet, "decode", lambda b: decoded.append(1) or real_decode(b))

    def take(**kw):   # 6 batches of 4 from 9 examples: 3 epochs
        loader = imagenet.ImageLoader(split, 4, 16, seed=5, aug=aug, **kw)
        return [next(loader)["images"] for _ in range(6)]

    plain = take()
    assert len(decoded) == 24
    decoded.clear()
    cached = take(cache_decoded=True)
    assert len(decoded) == 9          # every example once, in the first epoch
    for x, y in zip(plain, cached):   # the crops still differ epoch to epoch, as uncached
        np.testing.assert_array_equal(x, y)
    for x, y in zip(plain, take(cache_decoded=True, num_workers=2, chunk=2)):
        np.testing.assert_array_equal(x, y)


def test_skip_resumes_at_the_same_batch_and_workers_agree(prepared):
    data = prepared[0]
    split = imagenet.load_jpeg_split(data, "imagenet", "train")
    straight = imagenet.ImageLoader(split, 4, 16, seed=3)
    want = [next(straight) for _ in range(3)][2]
    resumed = imagenet.ImageLoader(split, 4, 16, seed=3, num_workers=2, chunk=2)
    resumed.skip(2)
    got = next(resumed)
    assert got["batch"] == 2
    np.testing.assert_array_equal(got["images"], want["images"])
    np.testing.assert_array_equal(got["labels"], want["labels"])


def test_ddp_parts_concatenate_to_the_global_batch(prepared):
    data = prepared[0]
    split = imagenet.load_jpeg_split(data, "imagenet", "validation")
    whole = next(imagenet.ImageLoader(split, 4, 16, train=False))
    halves = [next(imagenet.ImageLoader(split, 4, 16, train=False, part=p))
              for p in ((0, 2), (2, 4))]
    np.testing.assert_array_equal(np.concatenate([h["images"] for h in halves]),
                                  whole["images"])


def test_split_pickles_as_its_location(prepared):
    import pickle
    data = prepared[0]
    split = imagenet.load_jpeg_split(data, "imagenet", "train").subset(np.array([4, 1]))
    blob = pickle.dumps(split)
    assert len(blob) < 2000
    again = pickle.loads(blob)
    assert bytes(again.jpeg(0)) == bytes(split.jpeg(0))
    np.testing.assert_array_equal(again.labels, split.labels)


# --- the workloads at full size -----------------------------------------------------------------
def full_size(name):
    workload = registry.get_workload(name)
    # The fake dataset is small: check sizes against it, keep the model full-size at 224x224.
    workload.num_train_examples, workload.num_eval_train_examples = 9, 3
    workload.num_validation_examples, workload.num_test_examples = 5, 3
    return workload


@pytest.mark.parametrize("name", ["imagenet_vit", "imagenet_vit_glu", "imagenet_vit_post_ln",
                                  "imagenet_vit_map"])
def test_full_size_train_step_and_eval(prepared, name):
    data = str(prepared[0])
    workload = full_size(name)
    rng = random_utils.PRNGKey(0)
    model, state = workload.init_model_fn(rng)
    queue = workload._build_input_queue(rng, "train", data, 2)
    batch = next(queue)
    assert batch["inputs"].shape == (2, 3, 224, 224)
    assert batch["targets"].shape == (2, 1000)   # mixup: mixed one-hot targets
    torch.testing.assert_close(batch["targets"].sum(1), torch.ones(2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    logits, _ = workload.model_fn(model, batch, state, spec.ForwardPassMode.TRAIN, rng, True,
                                  dropout_rate=0.1)
    loss = workload.loss_fn(batch["targets"], logits, label_smoothing=0.1)
    assert loss["per_example"].shape == (2,)
    loss["summed"].backward()
    optimizer.step()
    assert model.head.weight.abs().sum() > 0  # zero-initialised head moved
    # One padded eval batch per split (the model stays full-size: 224x224, 196 tokens).
    if name == "imagenet_vit":
        results = workload.eval_model(5, model, state, rng, data, None, 1)
        assert results["validation/num_examples"] == 5 and results["test/num_examples"] == 3
        assert np.isfinite(results["train/loss"])
    else:
        results = {f"validation/{k}": v for k, v in workload._eval_model_on_split(
            "validation", 5, 5, model, state, rng, data).items()}
    assert 0.0 <= results["validation/accuracy"] <= 1.0
    assert np.isfinite(results["validation/loss"])
    # Eval-mode forward is deterministic.
    x = batch["inputs"][:1]
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_variant_definitions():
    targets = {n: (registry.get_definition(n).validation_target_value,
                   registry.get_definition(n).test_target_value)
               for n in ("imagenet_vit", "imagenet_vit_glu", "imagenet_vit_post_ln",
                         "imagenet_vit_map")}
    assert targets == {"imagenet_vit": (0.77309, 0.6519), "imagenet_vit_glu": (0.75738, 0.6359),
                       "imagenet_vit_post_ln": (0.75312, 0.6286),
                       "imagenet_vit_map": (0.77113, 0.6523)}
    d = registry.get_definition("imagenet_vit")
    assert (d.max_allowed_runtime_sec, d.step_hint, d.eval_period_time_sec,
            d.eval_batch_size) == (69_768, 167_999, 420, 2048)
    for n in ("imagenet_vit_glu", "imagenet_vit_post_ln", "imagenet_vit_map",
              "imagenet_vit_tiny"):
        assert registry.get_definition(n).base_workload_name == "imagenet_vit"


def test_loader_workers_env(monkeypatch):
    monkeypatch.setenv("ALGOPERF_LOADER_WORKERS", "3")
    assert vit_data.loader_workers(on_accelerator=False) == 3
    monkeypatch.setenv("ALGOPERF_LOADER_WORKERS", "many")
    with pytest.raises(ValueError, match="ALGOPERF_LOADER_WORKERS"):
        vit_data.loader_workers(on_accelerator=False)
    monkeypatch.delenv("ALGOPERF_LOADER_WORKERS")
    assert vit_data.loader_workers(on_accelerator=False) == 0
    assert vit_data.loader_workers(on_accelerator=False, cpu_default=1) == 1
    assert vit_data.loader_workers(on_accelerator=True) >= 1


# --- tiny data ------------------------------------------------------------------------------------
def test_tiny_data_is_deterministic_and_the_label_is_the_relation():
    sizes = {"train": 96, "validation": 16, "test": 16}
    a = imagenet.generate_imagenet_tiny(0, sizes)
    b = imagenet.generate_imagenet_tiny(0, sizes)
    c = imagenet.generate_imagenet_tiny(1, sizes)
    np.testing.assert_array_equal(a["train"]["images"], b["train"]["images"])
    assert not np.array_equal(a["train"]["images"], c["train"]["images"])
    for image, label in zip(a["train"]["images"], a["train"]["labels"]):
        red = (image[..., 0] > 180) & (image[..., 2] < 90)
        blue = (image[..., 2] > 180) & (image[..., 0] < 90)
        assert red.sum() == blue.sum() == 36   # two whole 6x6 squares
        (ay, ax), (by, bx) = (np.argwhere(m).mean(0) for m in (red, blue))
        # Pixel-rounded centres: at most 0.5 px off the drawn ones, inside the class region
        # or within a pixel of its border.
        near = {imagenet.tiny_class_of(by - ay + ey, bx - ax + ex)
                for ey in (-1, 0, 1) for ex in (-1, 0, 1)}
        assert label in near
    assert np.bincount(a["train"]["labels"], minlength=16).tolist() == [6] * 16
    # The class regions: east near, south-east near, north far; outside every band or
    # between two directions: -1.
    assert imagenet.tiny_class_of(0, 10) == 0
    assert imagenet.tiny_class_of(7, 7) == 1
    assert imagenet.tiny_class_of(-19, 0) == 8 + 6
    assert imagenet.tiny_class_of(0, 14) == -1
    r = 10 * np.array([np.sin(np.radians(22.5)), np.cos(np.radians(22.5))])
    assert imagenet.tiny_class_of(*r) == -1


def test_tiny_workload_reads_its_generated_jpegs(tmp_path):
    workload = registry.get_workload("imagenet_vit_tiny")
    sizes = {"train": 48, "validation": 16, "test": 16}
    imagenet.ensure_imagenet_tiny(tmp_path, sizes=sizes)
    split = imagenet.load_imagenet_tiny(tmp_path, "validation", sizes=sizes)
    raw = imagenet.generate_imagenet_tiny(0, sizes)["validation"]
    decoded = np.stack([np.asarray(imagenet.decode(split.jpeg(i))) for i in range(16)])
    assert np.abs(decoded.astype(int) - raw["images"]).mean() < 4  # JPEG q95, 4:4:4
    np.testing.assert_array_equal(split.labels, raw["labels"])
    assert workload.build_model()(torch.zeros(1, 3, 32, 32)).shape == (1, 16)
