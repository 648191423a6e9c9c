"""The K-FAC submissions through AlgoPerf's API: the same trajectory as a hand-written K-FAC
loop, the right curvature weights for multi-label losses, a clear error where no Fisher
exists, and search spaces that hold what the submission reads."""
import json
import pathlib
import types

import pytest
import torch
import torch.nn.functional as F

from algoperf import random_utils, spec, submission_loader
from algoperf.search_space import hyperparameters_from_dict, load_search_space
from submissions import first_order, kfac_baseline
from submissions.optimizers.kfac import KFAC
from workloads import registry

ROOT = pathlib.Path(__file__).resolve().parents[2] / "submissions"
POINT = {"learning_rate": 0.05, "one_minus_beta1": 0.1, "beta2": 0.999, "weight_decay": 5e-4,
         "warmup_factor": 0.1, "damping": 0.01, "label_smoothing": 0.0, "dropout_rate": 0.0,
         "fisher": "empirical", "inverse_every": 2}


@pytest.mark.parametrize("flavour", ["expand", "reduce"])
def test_submission_step_is_the_hand_written_kfac_loop(flavour, tiny_data_dir):
    workload = registry.get_workload("mnist_tiny")
    submission = submission_loader.load_submission(str(ROOT / f"kfac_{flavour}" / "submission.py"))
    hp = hyperparameters_from_dict(POINT)
    queue = workload._build_input_queue(random_utils.PRNGKey(0), "train", tiny_data_dir, 16)
    batches = [next(queue) for _ in range(4)]

    model, model_state = workload.init_model_fn(random_utils.PRNGKey(3))
    state = submission.init_optimizer_state(workload, model, model_state, hp,
                                            random_utils.PRNGKey(4))
    for step, batch in enumerate(batches):
        state, model, model_state = submission.update_params(
            workload, model, workload.model_params_types, model_state, hp, batch,
            workload.loss_type, state, [], step, random_utils.PRNGKey(step))

    twin, _ = workload.init_model_fn(random_utils.PRNGKey(3))
    opt = KFAC(twin, lr=0.05, flavour=flavour, damping=0.01, momentum=0.9,
               weight_decay=5e-4, inverse_every=2, kl_clip=1e-3, fisher="empirical")
    sched = first_order.warmup_cosine_scheduler(opt, workload, hp)
    twin.train()
    for batch in batches:
        opt.zero_grad()
        logits = twin(batch["inputs"])
        opt.update_curvature(logits, "cross_entropy", batch["targets"])
        F.cross_entropy(logits, batch["targets"]).backward()
        opt.step()
        sched.step()
    assert state["optimizer"].kfac_step == 4
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=name)
    moved = [not torch.equal(p, q) for p, q in zip(
        model.parameters(), workload.init_model_fn(random_utils.PRNGKey(3))[0].parameters())]
    assert all(moved)


def test_curvature_weights_mask_padding_and_missing_labels():
    workload = types.SimpleNamespace(loss_type=spec.LossType.SIGMOID_CROSS_ENTROPY)
    targets = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [1.0, 1.0]])
    batch = {"targets": targets, "weights": torch.tensor([1.0, 1.0, 0.0])}
    weights = kfac_baseline.curvature_weights(workload, batch)
    # 3 present labels over 2 examples: the loss averages over labels, K-FAC over examples.
    scale = (2 / 3) ** 0.5
    torch.testing.assert_close(weights, scale * torch.tensor([[1.0, 0.0], [1.0, 1.0],
                                                               [0.0, 0.0]]))
    softmax = types.SimpleNamespace(loss_type=spec.LossType.SOFTMAX_CROSS_ENTROPY)
    assert kfac_baseline.curvature_weights(softmax, {"targets": targets}) is None


def test_a_loss_without_a_fisher_is_a_clear_error():
    init, _ = kfac_baseline.build("reduce")
    workload = types.SimpleNamespace(loss_type=spec.LossType.CTC_LOSS, name="librispeech")
    with pytest.raises(ValueError, match="K-FAC has no Fisher for LossType.CTC_LOSS"):
        init(workload, torch.nn.Linear(2, 2), None, None, None)


@pytest.mark.parametrize("flavour", ["expand", "reduce"])
def test_search_space_holds_what_the_submission_reads(flavour):
    path = ROOT / f"kfac_{flavour}" / "tuning_search_space.json"
    space = load_search_space(str(path))
    names = set(json.loads(path.read_text()))
    assert names == set(kfac_baseline.DEFAULTS)
    assert space is not None


def test_optional_settings_reach_the_optimizer():
    # A search-space point may name any K-FAC setting (the sweeps in benchmarks.kfac_sweep do);
    # one that is read but not passed on would silently run the default.
    hp = hyperparameters_from_dict(dict(POINT, factor_every=2, inverse_every=4, kl_clip=None,
                                        mc_samples=3, factor_decay=0.9, damping_mode="exact"))
    opt = kfac_baseline.make_optimizer(torch.nn.Linear(3, 2), hp, "reduce")
    assert (opt.factor_every, opt.inverse_every, opt.kl_clip, opt.mc_samples,
            opt.factor_decay, opt.damping_mode, opt.fisher) == (2, 4, None, 3, 0.9, "exact",
                                                                "empirical")
    default = kfac_baseline.make_optimizer(torch.nn.Linear(3, 2),
                                           hyperparameters_from_dict(kfac_baseline.DEFAULTS),
                                           "reduce")
    assert (default.factor_every, default.inverse_every, default.kl_clip,
            default.mc_samples) == (1, 10, 1e-3, 1)
