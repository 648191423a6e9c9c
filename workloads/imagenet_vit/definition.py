"""imagenet_vit: ViT-S/16 on ImageNet-2012, softmax cross-entropy, accuracy; variants; tiny tier.

Full size (AlgoPerf's workload; numbers from DESIGN.md): targets 0.77309 validation /
0.6519 test accuracy (test = ImageNet-v2 matched-frequency), budget 69,768 s, step_hint
167,999, an eval every 420 s, eval batch 2048. Train: 1,281,167 images; eval_train: a fixed
50,000-image subset of train (``EVAL_TRAIN_SEED``), evaluated like validation.

Input pipeline (``workloads.datasets.imagenet`` / ``image_transforms``), AlgoPerf's ViT one:
random resized crop to 224 (area 8-100%, aspect 3/4-4/3), flip, RandAugment (2 layers,
magnitude 10), mixup (alpha 0.2) for training; center crop 224/256 + resize for evaluation;
standardisation with the ImageNet RGB mean/stddev.

Variants (same data and budgets; targets from DESIGN.md), switches of ``models.ViT``:
``imagenet_vit_glu`` (GLU MLP) 0.75738 / 0.6359, ``imagenet_vit_post_ln`` (post-LayerNorm)
0.75312 / 0.6286, ``imagenet_vit_map`` (multi-head attention pooling head) 0.77113 / 0.6523.
"""
import os

from algoperf import spec
from workloads.datasets import imagenet
from workloads.definition import TinyTier, WorkloadDefinition


class ImagenetVitDefinition(WorkloadDefinition):
    name = "imagenet_vit"
    base_workload_name = "imagenet_vit"
    dataset = "imagenet"
    data_layer = "workloads.imagenet_vit.data:ImagenetVitData"
    models = {"pytorch": "workloads.imagenet_vit.pytorch:ImagenetVitPyTorch",
              "jax": "workloads.imagenet_vit.jax:ImagenetVitJax"}
    target_metric_name = "accuracy"
    validation_target_value = 0.77309
    test_target_value = 0.6519
    loss_type = spec.LossType.SOFTMAX_CROSS_ENTROPY
    num_train_examples = imagenet.SIZES["train"]          # 1,281,167
    num_eval_train_examples = 50_000
    num_validation_examples = imagenet.SIZES["validation"]  # 50,000
    num_test_examples = imagenet.V2_SIZE                  # 10,000 (ImageNet-v2)
    eval_batch_size = 2048
    # ImageNet RGB statistics on the 0..255 scale (AlgoPerf's train_mean / train_stddev).
    train_mean = (0.485 * 255, 0.456 * 255, 0.406 * 255)
    train_stddev = (0.229 * 255, 0.224 * 255, 0.225 * 255)
    max_allowed_runtime_sec = 69_768
    eval_period_time_sec = 7 * 60
    step_hint = 167_999
    # Input pipeline.
    center_crop_size = 224
    resize_size = 256
    scale_ratio_range = (0.08, 1.0)
    aspect_ratio_range = (3 / 4, 4 / 3)
    flip = True
    randaug_layers = 2
    randaug_magnitude = 10
    mixup_alpha = 0.2
    num_classes = imagenet.NUM_CLASSES
    # Model (models.ViT arguments): ViT-S/16.
    patch = 16
    width = 384
    depth = 12
    mlp_dim = 1536
    num_heads = 6
    use_glu = False
    use_post_layer_norm = False
    use_map = False
    # Loader worker processes on a machine without an accelerator (0: the training step
    # needs the cores); on a GPU machine, see data.loader_workers.
    cpu_loader_workers = 0
    cache_eval = False  # 50,000 decoded validation images are 7.5 GB
    cache_decoded_train = False  # 1.28 M decoded train images would not fit in memory

    def held_out_folders(self, data_dir: str):
        """Validation, and the ImageNet-v2 test split beside it."""
        return super().held_out_folders(data_dir) + [
            os.path.join(data_dir, imagenet.V2_NAME, "test")]


class ImagenetVitGluDefinition(ImagenetVitDefinition):
    name = "imagenet_vit_glu"
    use_glu = True
    validation_target_value = 0.75738
    test_target_value = 0.6359


class ImagenetVitPostLnDefinition(ImagenetVitDefinition):
    name = "imagenet_vit_post_ln"
    use_post_layer_norm = True
    validation_target_value = 0.75312
    test_target_value = 0.6286


class ImagenetVitMapDefinition(ImagenetVitDefinition):
    name = "imagenet_vit_map"
    use_map = True
    validation_target_value = 0.77113
    test_target_value = 0.6523


class ImagenetVitTinyDefinition(TinyTier, ImagenetVitDefinition):
    """A narrow, shallow ViT (width 64, depth 2, MLP 128, 4 heads, 8x8 patches: 16 tokens;
    81,488 parameters) on generated ``imagenet_tiny``: 32x32x3 JPEGs in the prepared
    ImageNet format (16,384 / 2,048 / 2,048), 16 classes given by where a bluish square lies
    relative to a reddish one (8 directions x 2 distances; ``datasets.imagenet``), read by the
    same loader as ImageNet. Augmentation: random resized crop (area 80-100%, aspect
    0.9-1.11) and mixup 0.2; no flip (it would swap east and west) and no RandAugment (its
    100-pixel translations exceed a 32-pixel image). Batch 1024 (the imagenet_vit baseline's).

    Targets from ``workloads.target_setting`` (runs and rule in ``tiny_targets.json``)::

        python -m workloads.target_setting --workload imagenet_vit_tiny \\
            --point workloads/imagenet_vit/tiny_point.json --seeds 5 --max_steps 150 \\
            --margin 0.07 --decimals 2 --out workloads/imagenet_vit/tiny_targets.json

    NAdamW at lr 0.01 (``tiny_point.json``), 5 seeds, 150 steps, never stopping: best
    validation accuracy 0.952 / 0.920 / 0.972 / 0.951 / 0.963 (median 0.952) -> validation
    target 0.952 - 0.07 = 0.88, first reached at steps 94 / 112 / 90 / 89 / 87, where test
    accuracy was 0.892 / 0.902 / 0.934 / 0.891 / 0.922 -> test target 0.8906 - 0.07 -> 0.82 (the
    margin moves the test target too: at 0.89 a run that had reached 0.88 validation at
    step 112 went on to the end of its budget, its test accuracy never quite 0.89). The margin is
    0.07, not 0.05, because runs spread widely: the slow test's run (experiment seed 0)
    plateaus at 0.900 validation / 0.894 test, and with 0.05 (targets 0.90 / 0.911) it
    missed. Time to target: 79-104 s of submission time at ~0.85 s a step on two CPU cores
    with load average ~3 (seeds 3-4); 228-287 s at load average ~7 (seeds 0-2). Budget 360
    s: above the contended time. step_hint 150: the target-setting schedule's length.
    """

    name = "imagenet_vit_tiny"
    dataset = imagenet.TINY_NAME
    num_classes = imagenet.TINY_NUM_CLASSES
    num_train_examples = imagenet.TINY_SIZES["train"]
    num_eval_train_examples = 2_048
    num_validation_examples = imagenet.TINY_SIZES["validation"]
    num_test_examples = imagenet.TINY_SIZES["test"]
    eval_batch_size = 1024
    train_mean = (127.5, 127.5, 127.5)
    train_stddev = (64.0, 64.0, 64.0)
    center_crop_size = 32
    resize_size = 32          # eval: the whole 32x32 image
    scale_ratio_range = (0.8, 1.0)
    aspect_ratio_range = (0.9, 1 / 0.9)
    flip = False              # a flip would swap east and west: the label would be wrong
    randaug_layers = 0
    mixup_alpha = 0.2
    patch = 8
    width = 64
    depth = 2
    mlp_dim = 128
    num_heads = 4
    cpu_loader_workers = 1    # decoding the next batch overlaps the step, on a second core
    cache_eval = True         # 3 x 2,048 images of 32x32x3: 18 MB
    # 16,384 decoded 32x32 train images (~60 MB a worker): a decode costs 2.5x the
    # augmentation after it, and a run to target reads 5-20 epochs.
    cache_decoded_train = True
    validation_target_value = 0.88
    test_target_value = 0.82
    max_allowed_runtime_sec = 360
    # 5% of NAdamW's median time / steps to target (tiny_targets.json); evals use the steps.
    eval_period_time_sec = 1.1
    eval_period_steps = 6
    step_hint = 150
