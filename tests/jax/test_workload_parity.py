"""PyTorch and JAX workloads, end to end through the AlgoPerf API: the same initial weights
(copied PyTorch -> JAX) give the same eval outputs (1e-5), and 10 NAdamW steps of each
framework's baseline on identical batches, without dropout, give train losses equal to rtol
1e-4 at every step and equal eval metrics. A deliberate mismatch (optax's own Nesterov Adam,
whose bias correction is not AlgoPerf's) is caught.

The batches are identical by construction: both workloads share the data layer, so the same
seed gives the same numpy batches (two sources, so each framework draws its own copy of the
per-batch randomness, e.g. mixup's lambda).

The learning rate is 3e-4, not the tiny point's 3e-3: Adam-type first steps are nearly sign
steps, and on the WRN (BatchNorm) the float32 rounding differences between the frameworks'
kernels then grow about tenfold a step at 3e-3 (measured on cifar_wrn_tiny: 4e-4 relative by
step 10 in float32, 3e-6 at 3e-4; in float64 both frameworks agree to 6e-10 at 3e-3 too). At
3e-3 the test would compare rounding, not the two implementations.
"""
import os

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

from algoperf import jax_sharding_utils, random_utils, spec, submission_loader  # noqa: E402
from algoperf.search_space import hyperparameters_from_dict  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from workloads import registry  # noqa: E402

STEPS = 10
POINT = {"learning_rate": 3e-4, "one_minus_beta1": 0.1, "beta2": 0.999, "warmup_factor": 0.05,
         "weight_decay": 0.05, "label_smoothing": 0.0, "dropout_rate": 0.0}
BATCH = {"mnist_tiny": 32, "cifar_wrn_tiny": 16, "ogbg_tiny": 16, "imagenet_vit_tiny": 16}


class Recorder:
    def __init__(self):
        self.losses = []

    def append_scalar_metrics(self, metrics, global_step):
        self.losses.append(metrics["loss"])


def load(framework):
    folder = os.path.join(REPO, "submissions", "nadamw")
    path = os.path.join(folder, "jax", "submission.py") if framework == "jax" else \
        os.path.join(folder, "submission.py")
    return submission_loader.load_submission(path)


def pair(name, data_dir):
    """(torch workload, model, state), (jax workload, params, state): the same weights."""
    torch_w = registry.get_workload(name, "pytorch")
    jax_w = registry.get_workload(name, "jax")
    model, torch_state = torch_w.init_model_fn(random_utils.PRNGKey(0))
    jax_w.init_model_fn(random_utils.PRNGKey(0))  # the model, its shapes and types
    params, jax_state = jax_w.variables_from_torch(model.state_dict())
    registry.check_data(torch_w, data_dir)
    return ((torch_w, model, torch_state),
            (jax_w, jax_sharding_utils.replicate(params), jax_sharding_utils.replicate(jax_state)))


def train(workload, submission, params, state, batches, tx_override=None):
    hp = hyperparameters_from_dict(POINT, path="point")
    opt = submission.init_optimizer_state(workload, params, state, hp, random_utils.PRNGKey(1))
    if tx_override is not None:
        opt = (jax_sharding_utils.replicate(tx_override.init(params)), tx_override.update)
    workload.attach_metrics_logger(Recorder())
    for step, batch in enumerate(batches):
        opt, params, state = submission.update_params(
            workload, params, workload.model_params_types, state, hp, batch, workload.loss_type,
            opt, [], step, random_utils.PRNGKey(2 + step))
    return workload.metrics_logger.losses, params, state


def train_source(workload, data_dir, name):
    return workload.train_source(workload.load_arrays(data_dir, "train"), BATCH[name], 7)


def batches(workload, data_dir, name):
    """STEPS train batches of ``workload``'s data layer (seed 7), on its device."""
    source = train_source(workload, data_dir, name)
    placed = []
    for _ in range(STEPS):
        batch, rng = source.next()
        placed.append(workload._model_batch(batch, True, rng))
    return placed


@pytest.mark.parametrize("name", ["mnist_tiny", "cifar_wrn_tiny", "ogbg_tiny",
                                  "imagenet_vit_tiny"])
def test_same_weights_same_eval_and_ten_nadamw_steps_agree(name, tiny_data_dir):
    (torch_w, model, torch_state), (jax_w, params, jax_state) = pair(name, tiny_data_dir)
    split = "validation"
    logits_torch = torch_w._eval_logits(model, torch_state, torch_w._model_batch(
        train_source(torch_w, tiny_data_dir, name).next()[0], False, None))
    logits_jax = jax_w._eval_logits(params, jax_state, jax_w._model_batch(
        train_source(jax_w, tiny_data_dir, name).next()[0], False, None))
    np.testing.assert_allclose(logits_jax.reshape(logits_torch.shape), logits_torch,
                               rtol=1e-5, atol=1e-5)

    losses_torch, model, torch_state = train(torch_w, load("pytorch"), model, torch_state,
                                             batches(torch_w, tiny_data_dir, name))
    losses_jax, params, jax_state = train(jax_w, load("jax"), params, jax_state,
                                          batches(jax_w, tiny_data_dir, name))
    assert len(losses_torch) == len(losses_jax) == STEPS
    np.testing.assert_allclose(losses_jax, losses_torch, rtol=1e-4)
    # The trained weights evaluate alike (eval metrics of both frameworks' workloads).
    n = torch_w.num_validation_examples
    got = jax_w._eval_model_on_split(split, n, 256, params, jax_state, None, tiny_data_dir)
    want = torch_w._eval_model_on_split(split, n, 256, model, torch_state, None, tiny_data_dir)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-5), key


def test_a_different_optimizer_rule_is_caught(tiny_data_dir):
    """optax.nadamw corrects the Nesterov look-ahead's two terms separately (its first
    steps are ~25% shorter): its losses leave AlgoPerf's NAdamW's by far more than 1e-4."""
    name = "mnist_tiny"
    (torch_w, model, torch_state), (jax_w, params, jax_state) = pair(name, tiny_data_dir)
    losses_torch, _, _ = train(torch_w, load("pytorch"), model, torch_state,
                               batches(torch_w, tiny_data_dir, name))
    other = optax.nadamw(POINT["learning_rate"], b1=0.9, b2=0.999, eps=1e-8,
                         weight_decay=POINT["weight_decay"])
    losses_jax, _, _ = train(jax_w, load("jax"), params, jax_state,
                             batches(jax_w, tiny_data_dir, name), tx_override=other)
    relative = np.abs(np.array(losses_jax) - losses_torch) / np.abs(losses_torch)
    assert relative.max() > 10 * 1e-4


def test_jax_model_fn_modes_and_param_types(tiny_data_dir):
    jax_w = registry.get_workload("cifar_wrn_tiny", "jax")
    params, state = jax_w.init_model_fn(random_utils.PRNGKey(0))
    P = spec.ParameterType
    types = jax_w.model_params_types
    assert types["stem"]["kernel"] == P.CONV_WEIGHT
    assert types["blocks_0"]["norm1"]["scale"] == P.BATCH_NORM_SCALE
    assert types["head"]["kernel"] == P.WEIGHT and types["head"]["bias"] == P.BIAS
    assert jax_w.param_shapes["head"]["kernel"] == spec.ShapeTuple((64, 10))
    assert jax_w.is_output_params("head") and not jax_w.is_output_params("stem")
    registry.check_data(jax_w, tiny_data_dir)
    batch = batches(jax_w, tiny_data_dir, "cifar_wrn_tiny")[0]
    _, updated = jax_w.model_fn(params, batch, state, spec.ForwardPassMode.TRAIN,
                                random_utils.PRNGKey(3), update_batch_norm=True)
    _, frozen = jax_w.model_fn(params, batch, state, spec.ForwardPassMode.TRAIN,
                               random_utils.PRNGKey(3), update_batch_norm=False)
    mean = lambda s: np.asarray(s["batch_stats"]["blocks_0"]["norm1"]["mean"])  # noqa: E731
    assert not np.allclose(mean(updated), mean(state)) and np.allclose(mean(frozen), mean(state))
    vit = registry.get_workload("imagenet_vit_tiny", "jax")
    vit.init_model_fn(random_utils.PRNGKey(0))
    attention = vit.model_params_types["Transformer"]["encoderblock_0"][
        "MultiHeadDotProductAttention_1"]
    assert attention["query"]["kernel"] == P.ATTENTION_Q
    assert attention["out"]["bias"] == P.ATTENTION_BIAS
    assert vit.model_params_types["Transformer"]["encoder_layernorm"]["scale"] == \
        P.LAYER_NORM_SCALE
