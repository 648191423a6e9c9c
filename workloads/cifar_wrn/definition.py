"""cifar_wrn: Wide ResNet 16-4 on CIFAR-10, softmax cross-entropy, accuracy; variants; tiny tier.

PROVISIONAL full-size targets and budgets. No real CIFAR-10 run can be made where this was
written (no GPU, no dataset download); the numbers below are reasoned estimates, to be replaced
by the target-setting procedure (DESIGN.md: tune the first-order baselines, rerun the best
point over seeds, validation target = median best validation accuracy, test target = worst
test accuracy among runs that reach it) once a run on real data exists.

* Targets: WRN-16-4 reaches 95.0% test accuracy (4.97% error, Zagoruyko & Komodakis 2016,
  Table 4) after 200 epochs on all 50,000 training images with SGD + Nesterov and flip/crop
  augmentation. Here the model sees 45,000 images (10% fewer: about +0.3-0.5% error by the
  usual data-scaling of CIFAR ResNets) for about 100 epochs (``step_hint``; AlgoPerf's
  target-setting runs also stop at 0.75 of it), and AlgoPerf targets are the *median* of tuned
  runs, not the best: validation 0.94. Validation and test are draws from the same
  distribution, so the test target sits only a little lower: 0.935.
* step_hint: 100 epochs of 45,000 images at the baseline batch 128 = 100 * 352 = 35,200 steps.
* Budget: WRN-16-4 costs about 0.43 GMAC per 32x32 image forward (~2.6 GFLOP forward and
  backward), 330 GFLOP per batch of 128; at an effective 6-10 TFLOP/s on an A100-class GPU
  that is 35-55 ms a step, so step_hint takes 20-32 minutes. Budget 3,600 s leaves room for
  slower optimizers (K-FAC, Shampoo) as AlgoPerf's budgets do (~1.5-2x the baseline's time).
* Eval every 120 s: about 30 evals in a budget; an eval (25,000 images forward) takes a few s.

Variants (same budgets and step_hint as the base; targets provisional like the base):
* ``cifar_wrn_silu``: SiLU instead of ReLU everywhere. Smooth activations change the
  curvature optimizers see; AlgoPerf's imagenet_resnet_silu/gelu variants land within ~1% of
  the base, slightly lower: 0.935 / 0.93.
* ``cifar_wrn_groupnorm``: GroupNorm (16 groups) instead of BatchNorm: no batch statistics,
  so no running averages, per-example normalisation, and a different loss landscape (Wu & He
  2018 report GN ~0.5-1% worse than BN on CIFAR-size batches): 0.93 / 0.925.
"""
from algoperf import spec
from workloads.datasets import cifar10
from workloads.definition import TinyTier, WorkloadDefinition


class CifarWrnDefinition(WorkloadDefinition):
    name = "cifar_wrn"
    base_workload_name = "cifar_wrn"
    dataset = "cifar10"
    data_layer = "workloads.cifar_wrn.data:CifarWrnData"
    models = {"pytorch": "workloads.cifar_wrn.pytorch:CifarWrnPyTorch",
              "jax": "workloads.cifar_wrn.jax:CifarWrnJax"}
    target_metric_name = "accuracy"
    validation_target_value = 0.94   # PROVISIONAL (see the module docstring)
    test_target_value = 0.935        # PROVISIONAL
    loss_type = spec.LossType.SOFTMAX_CROSS_ENTROPY
    num_train_examples = cifar10.NUM_TRAIN_EXAMPLES          # 45,000
    num_eval_train_examples = 10_000  # the first 10,000 train images, unaugmented
    num_validation_examples = cifar10.NUM_VALIDATION_EXAMPLES  # 5,000
    num_test_examples = cifar10.NUM_TEST_EXAMPLES            # 10,000
    eval_batch_size = 1024            # the last batch of every split is partial (padded)
    train_mean = cifar10.CIFAR10_MEAN
    train_stddev = cifar10.CIFAR10_STD
    max_allowed_runtime_sec = 3600    # PROVISIONAL
    eval_period_time_sec = 120
    step_hint = 35_200
    # Architecture: WRN-depth-widen with this activation and normalisation.
    depth = 16
    widen = 4
    activation = "relu"
    norm = "batch"


class CifarWrnSiluDefinition(CifarWrnDefinition):
    name = "cifar_wrn_silu"
    activation = "silu"
    validation_target_value = 0.935  # PROVISIONAL
    test_target_value = 0.93         # PROVISIONAL


class CifarWrnGroupNormDefinition(CifarWrnDefinition):
    name = "cifar_wrn_groupnorm"
    norm = "group"
    validation_target_value = 0.93   # PROVISIONAL
    test_target_value = 0.925        # PROVISIONAL


class CifarWrnTinyDefinition(TinyTier, CifarWrnDefinition):
    """WRN-10-1 (77,850 parameters) on generated cifar10_tiny (``workloads.datasets.cifar10``):
    5,000 train / 1,000 validation / 1,000 test images, 32x32x3 like CIFAR-10.

    Targets from ``python -m workloads.target_setting --workload cifar_wrn_tiny --seeds 3
    --out workloads/cifar_wrn/tiny_targets.json`` (results in that file): the NAdamW
    baseline at its fixed point, batch 128, 3 seeds, 250 steps each, never stopping. Best
    validation accuracy 0.964-0.966 (median 0.965) -> validation target 0.96 - 0.02 = 0.94,
    first reached at steps 114 / 154 / 130 (42-58 s of submission time on two busy CPU cores,
    one torch thread, ~0.37 s a step); test accuracy there 0.94-0.952 -> test target 0.94.
    For scale: a linear classifier on the pixels plateaus at ~0.86 validation accuracy.
    Budget 240 s: one budget for both frameworks, and JAX's step is the slower one on a CPU
    (XLA's convolution backward; ``benchmarks/results/jax_vs_pytorch.json``): the JAX NAdamW
    baseline needs about 2.2x the PyTorch time to target (120 s, 2-3x PyTorch's, had been
    the budget). step_hint 250: the calibration's schedule length (cosine to zero at step
    250).
    """

    name = "cifar_wrn_tiny"
    dataset = "cifar10_tiny"
    depth = 10
    widen = 1
    num_train_examples = cifar10.TINY_SIZES["train"]
    num_eval_train_examples = 1_000
    num_validation_examples = cifar10.TINY_SIZES["validation"]
    num_test_examples = cifar10.TINY_SIZES["test"]
    # 1,000 = 7 x 128 + a padded partial batch of 104. Batches of 128 take 0.64x the CPU time
    # of batches of 512 per image here (one core: the activations stay in cache).
    eval_batch_size = 128
    validation_target_value = 0.94
    test_target_value = 0.94
    max_allowed_runtime_sec = 240
    # 5% of NAdamW's median time / steps to target (tiny_targets.json); evals use the steps.
    eval_period_time_sec = 0.95
    eval_period_steps = 4
    step_hint = 250
