"""ogbg: graph network on ogbg-molpcba, masked binary cross-entropy, mean average precision.

Full-size workload and variants: AlgoPerf's (DESIGN.md): targets validation / test mAP
0.28098 / 0.268729, budget 12,011 s, step_hint 52,000, eval every 240 s, baseline batch 512
graphs. Variants keep the base budget:

* ``ogbg_gelu``: GELU activations, 0.27771 / 0.262926.
* ``ogbg_silu``: SiLU activations, 0.282178 / 0.272144.
* ``ogbg_model_size``: latent 128, hidden (256, 256), 3 message-passing steps,
  0.269446 / 0.253051.

Data as AlgoPerf: reverse edges added by the loader (each bond is two directed edges), labels
NaN where unmeasured (masked), eval_train = the first 43,793 training graphs. Eval batches of
32,768 graphs as AlgoPerf (the last one partial, padded with zero-weight graphs).
"""
from algoperf import spec
from workloads.datasets import ogbg_molpcba as data
from workloads.definition import TinyTier, WorkloadDefinition


class OgbgDefinition(WorkloadDefinition):
    name = "ogbg"
    base_workload_name = "ogbg"
    dataset = data.NAME
    data_layer = "workloads.ogbg.data:OgbgData"
    models = {"pytorch": "workloads.ogbg.pytorch:OgbgPyTorch",
              "jax": "workloads.ogbg.jax:OgbgJax"}
    target_metric_name = "mean_average_precision"
    validation_target_value = 0.28098
    test_target_value = 0.268729
    loss_type = spec.LossType.SIGMOID_CROSS_ENTROPY
    num_train_examples = data.SIZES["train"]            # 350,343 graphs
    num_eval_train_examples = data.SIZES["validation"]  # 43,793: the first train graphs
    num_validation_examples = data.SIZES["validation"]  # 43,793
    num_test_examples = data.SIZES["test"]              # 43,793
    eval_batch_size = 32_768
    train_mean = None
    train_stddev = None
    max_allowed_runtime_sec = 12_011
    eval_period_time_sec = 240
    step_hint = 52_000
    # Model (AlgoPerf's GNN).
    latent_dim = 256
    hidden_dims = (256,)
    num_message_passing_steps = 5
    activation = "relu"
    num_outputs = data.NUM_TASKS
    default_dropout_rate = 0.1  # AlgoPerf's, when a submission passes none


class OgbgGeluDefinition(OgbgDefinition):
    name = "ogbg_gelu"
    activation = "gelu"
    validation_target_value = 0.27771
    test_target_value = 0.262926


class OgbgSiluDefinition(OgbgDefinition):
    name = "ogbg_silu"
    activation = "silu"
    validation_target_value = 0.282178
    test_target_value = 0.272144


class OgbgModelSizeDefinition(OgbgDefinition):
    name = "ogbg_model_size"
    latent_dim = 128
    hidden_dims = (256, 256)
    num_message_passing_steps = 3
    validation_target_value = 0.269446
    test_target_value = 0.253051


class OgbgTinyDefinition(TinyTier, OgbgDefinition):
    """GNN latent 32, hidden (32,), 3 steps (48,544 parameters) on generated ogbg_molpcba_tiny
    (``workloads.datasets.ogbg_molpcba``): 8,192 train / 1,024 validation / 1,024 test
    molecule-like graphs (5-18 atoms, OGB feature layout), 128 tasks from a hidden structural
    rule, 2% label noise, 10-60% of labels missing per task.

    Targets set by ``python -m workloads.target_setting --workload ogbg_tiny --seeds 3 --out
    workloads/ogbg/tiny_targets.json`` (results there): NAdamW at its TINY_POINT, batch 512
    (``get_batch_size('ogbg')``), 400 steps, never stopping. Best validation mAP
    0.8307 / 0.8346 / 0.8264 (median 0.8307) -> validation target 0.8307 - 0.02 -> 0.81,
    first reached at steps 246 / 230 / 263 (72.7 / 61.8 / 87.8 s of submission time on two
    busy CPU cores, one torch thread, ~0.3 s a step); test mAP there 0.8013-0.8076 -> 0.8013 -
    0.02 -> 0.781 (the margin moves the test target too).
    For scale: mAP of constant scores (the positive rate) is ~0.35; the untrained net ~0.37.
    Budget 180 s: about 2x the slowest time to target. step_hint 400: the calibration's
    schedule length (cosine to zero at step 400).

    Other baselines with their own search spaces (``algoperf run --num_tuning_trials=3``,
    rng_seed 0, same busy machine): AdamW reaches the targets in trial 2 (lr 0.0098) at step
    296, 101.5 s; trials 1 (lr 0.00098, dropout 0.1) and 3 (lr 0.00031) run out of budget at
    best validation mAP 0.713 and 0.457. SGD + Nesterov reaches none in its 3 trials (best
    0.591, 0.542, 0.551 at the budget's end), nor do two hand points (lr 2.0 / momentum 0.9:
    0.618 after 718 steps; lr 5.0 / momentum 0.97 diverges): plain SGD is slow on this net,
    whose embedding layers see raw integer features of very different scales (atomic index
    up to 34 next to 0/1 flags), as AlgoPerf's ogbg does.
    """

    name = "ogbg_tiny"
    dataset = data.TINY_NAME
    latent_dim = 32
    hidden_dims = (32,)
    num_message_passing_steps = 3
    num_train_examples = data.TINY_SIZES["train"]
    num_eval_train_examples = 1_024
    num_validation_examples = data.TINY_SIZES["validation"]
    num_test_examples = data.TINY_SIZES["test"]
    eval_batch_size = 1_024
    validation_target_value = 0.81
    test_target_value = 0.781
    max_allowed_runtime_sec = 180
    # 5% of NAdamW's median time / steps to target (tiny_targets.json); evals use the steps.
    eval_period_time_sec = 0.83
    eval_period_steps = 11
    step_hint = 400
