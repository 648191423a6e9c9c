"""The three first-order submissions through AlgoPerf's API, on a tiny fake workload.

Submissions are loaded by file path, as the runner loads them.
"""
import collections
import importlib.util
import io
import json
import math
import os
import pathlib
import socket

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from algoperf import spec

ROOT = pathlib.Path(__file__).resolve().parents[2] / "submissions"
NAMES = ["adamw", "nadamw", "sgd_nesterov"]

# One in-range external-tuning point per submission (values inside its search space).
POINTS = {
    "adamw": dict(learning_rate=1e-2, one_minus_beta1=0.1, beta2=0.999, warmup_factor=0.05,
                  weight_decay=0.01, label_smoothing=0.1, dropout_rate=0.0),
    "nadamw": dict(learning_rate=1e-2, one_minus_beta1=0.1, beta2=0.999, warmup_factor=0.05,
                   weight_decay=0.01, label_smoothing=0.1, dropout_rate=0.0),
    "sgd_nesterov": dict(learning_rate=0.1, one_minus_beta1=0.1, warmup_factor=0.05,
                         weight_decay=1e-6, label_smoothing=0.1, dropout_rate=0.0,
                         decay_steps_factor=0.9, end_factor=1e-2),
}
SEARCH_SPACE_NAMES = {
    "adamw": {"learning_rate", "one_minus_beta1", "beta2", "warmup_factor", "weight_decay",
              "label_smoothing", "dropout_rate"},
    "sgd_nesterov": {"learning_rate", "one_minus_beta1", "warmup_factor", "weight_decay",
                     "label_smoothing", "dropout_rate", "decay_steps_factor", "end_factor"},
}
SEARCH_SPACE_NAMES["nadamw"] = SEARCH_SPACE_NAMES["adamw"]


def hparams(point):
    return collections.namedtuple("Hyperparameters", point)(**point)


def load_submission(name):
    path = ROOT / name / "submission.py"
    module_spec = importlib.util.spec_from_file_location(f"submission_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


class RecordingLogger:
    def __init__(self):
        self.rows = []

    def append_scalar_metrics(self, metrics, global_step):
        self.rows.append((global_step, dict(metrics)))


class TinyWorkload:
    """A 3-class softmax regression on 8 features, following the workload contract."""

    step_hint = 100

    def __init__(self, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(256, 8, generator=gen)
        teacher = torch.randn(8, 3, generator=gen)
        self.y = (self.x @ teacher).argmax(dim=1)
        self.metrics_logger = RecordingLogger()
        self.dropout_rates = []

    def init_model_fn(self, seed=0):
        torch.manual_seed(seed)
        return torch.nn.Linear(8, 3), None

    def batches(self, batch_size=32):
        while True:
            for i in range(0, len(self.x), batch_size):
                yield {"inputs": self.x[i:i + batch_size], "targets": self.y[i:i + batch_size]}

    def model_fn(self, params, augmented_and_preprocessed_input_batch, model_state, mode, rng,
                 update_batch_norm, dropout_rate=0.0):
        assert mode == spec.ForwardPassMode.TRAIN and update_batch_norm
        self.dropout_rates.append(dropout_rate)
        return params(augmented_and_preprocessed_input_batch["inputs"]), model_state

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0):
        per_example = F.cross_entropy(logits_batch, label_batch, reduction="none",
                                      label_smoothing=label_smoothing)
        if mask_batch is None:
            mask_batch = torch.ones_like(per_example)
        per_example = per_example * mask_batch
        return {"summed": per_example.sum(), "n_valid_examples": mask_batch.sum(),
                "per_example": per_example}

    def full_loss(self, model):
        with torch.no_grad():
            return F.cross_entropy(model(self.x), self.y).item()


def train(submission, workload, hyperparameters, steps):
    model, model_state = workload.init_model_fn()
    opt_state = submission.init_optimizer_state(workload, model, model_state, hyperparameters,
                                                rng=None)
    queue = workload.batches()
    for step in range(steps):
        batch = submission.data_selection(workload, queue, opt_state, model, model_state,
                                          hyperparameters, step, None)
        opt_state, model, model_state = submission.update_params(
            workload, model, None, model_state, hyperparameters, batch,
            spec.LossType.SOFTMAX_CROSS_ENTROPY, opt_state, [], step, None)
    return model, opt_state


@pytest.fixture(scope="module", params=NAMES)
def named_submission(request):
    return request.param, load_submission(request.param)


@pytest.mark.parametrize("self_tuning", [False, True], ids=["external", "self_tuning"])
def test_loss_decreases(named_submission, self_tuning):
    name, submission = named_submission
    workload = TinyWorkload()
    hp = None if self_tuning else hparams(POINTS[name])
    initial = workload.full_loss(workload.init_model_fn()[0])
    model, _ = train(submission, workload, hp, steps=80)
    # The self-tuning points are tuned for real workloads (AdamW's lr is 1.7e-3), so they
    # move this toy problem less in 80 steps than the external point does.
    assert workload.full_loss(model) < (0.95 if self_tuning else 0.6) * initial
    # Logged every early step: loss and grad_norm, finite.
    assert [s for s, _ in workload.metrics_logger.rows] == list(range(80))
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"])
               for _, r in workload.metrics_logger.rows)


def test_optimizer_state_layout_and_schedule_start(named_submission):
    name, submission = named_submission
    workload = TinyWorkload()
    model, _ = workload.init_model_fn()
    state = submission.init_optimizer_state(workload, model, None, hparams(POINTS[name]), None)
    assert set(state) == {"optimizer", "scheduler"}
    assert state["optimizer"].param_groups[0]["lr"] == 0.0  # warmup starts at 0


def test_dropout_rate_reaches_model_fn(named_submission):
    name, submission = named_submission
    workload = TinyWorkload()
    point = dict(POINTS[name], dropout_rate=0.1)
    train(submission, workload, hparams(point), steps=1)
    assert workload.dropout_rates == [0.1]


def test_batch_sizes(named_submission):
    _, submission = named_submission
    with pytest.raises(ValueError):
        submission.get_batch_size("mnist_tiny")  # a variant: the runner retries with 'mnist'
    assert submission.get_batch_size("mnist") == 16
    assert submission.get_batch_size("imagenet_vit") == 1024
    assert submission.get_batch_size("ogbg") == 512
    assert submission.get_batch_size("cifar_wrn") == 128


def test_search_space_parses(named_submission):
    name, _ = named_submission
    space = json.loads((ROOT / name / "tuning_search_space.json").read_text())
    assert set(space) == SEARCH_SPACE_NAMES[name]
    for key, dim in space.items():
        if "feasible_points" in dim:
            assert set(dim) == {"feasible_points"} and dim["feasible_points"], key
        else:
            assert set(dim) == {"min", "max", "scaling"}, key
            assert dim["scaling"] in ("log", "linear") and 0 < dim["min"] < dim["max"], key
    # The in-range point used above really is in range.
    for key, value in POINTS[name].items():
        dim = space[key]
        assert (value in dim["feasible_points"] if "feasible_points" in dim
                else dim["min"] <= value <= dim["max"]), key


def test_masked_examples_do_not_contribute():
    # The loss is summed / n_valid: a batch with masked-out rows steps exactly like the batch
    # of its valid rows alone.
    submission = load_submission("sgd_nesterov")
    workload = TinyWorkload()
    hp = hparams(dict(POINTS["sgd_nesterov"], warmup_factor=0.0))
    x, y = workload.x[:8], workload.y[:8]
    weights = torch.tensor([1.0, 0, 1, 1, 0, 1, 0, 1])
    garbage = {"inputs": x * 100, "targets": (y + 1) % 3}
    masked = {"inputs": torch.where(weights[:, None] > 0, x, garbage["inputs"]),
              "targets": torch.where(weights > 0, y, garbage["targets"]), "weights": weights}
    valid = {"inputs": x[weights > 0], "targets": y[weights > 0]}
    results = []
    for batch in (masked, valid):
        model, _ = workload.init_model_fn()
        state = submission.init_optimizer_state(workload, model, None, hp, None)
        submission.update_params(workload, model, None, None, hp, batch,
                                 spec.LossType.SOFTMAX_CROSS_ENTROPY, state, [], 0, None)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1])


def test_grad_clip_bounds_the_first_sgd_step():
    # SGD + Nesterov from zero momentum with lr(0) = peak (no warmup), no weight decay:
    # the first step is lr * (1 + b) * g, with ||g|| clipped to grad_clip.
    submission = load_submission("sgd_nesterov")
    workload = TinyWorkload()
    point = dict(POINTS["sgd_nesterov"], warmup_factor=0.0, weight_decay=0.0, grad_clip=1e-3)
    hp = hparams(point)
    model, _ = workload.init_model_fn()
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    state = submission.init_optimizer_state(workload, model, None, hp, None)
    batch = next(workload.batches())
    submission.update_params(workload, model, None, None, hp, batch,
                             spec.LossType.SOFTMAX_CROSS_ENTROPY, state, [], 0, None)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    momentum = 1 - point["one_minus_beta1"]
    expected = point["learning_rate"] * (1 + momentum) * point["grad_clip"]
    assert (after - before).norm().item() == pytest.approx(expected, rel=1e-4)
    # The logged grad_norm is the norm before clipping.
    assert workload.metrics_logger.rows[0][1]["grad_norm"] > 10 * point["grad_clip"]


def test_prepare_for_eval_is_identity(named_submission):
    _, submission = named_submission
    params, opt_state, model_state = object(), object(), object()
    out = submission.prepare_for_eval(None, params, None, model_state, None,
                                      spec.LossType.SOFTMAX_CROSS_ENTROPY, opt_state, [], 0,
                                      None)
    assert out == (opt_state, params, model_state)


def _ddp_worker(rank, world_size, port, name, point, batches, out_path):
    """One rank of a gloo run: its shard of every global batch, through DDP."""
    os.environ.update(LOCAL_RANK=str(rank), RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        submission = load_submission(name)  # after LOCAL_RANK is set: it reads it at import
        assert submission.first_order.USE_PYTORCH_DDP
        final = _train_on(submission, point, batches, rank, world_size)
        if rank == 0:
            torch.save(final, out_path)
    finally:
        dist.destroy_process_group()


def _train_on(submission, point, batches, rank=0, world_size=1):
    workload = TinyWorkload()
    model, _ = workload.init_model_fn()
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    hp = hparams(point)
    state = submission.init_optimizer_state(workload, model, None, hp, None)
    for step, batch in enumerate(batches):
        shard = {k: v.chunk(world_size)[rank] for k, v in batch.items()}
        submission.update_params(workload, model, None, None, hp, shard,
                                 spec.LossType.SOFTMAX_CROSS_ENTROPY, state, [], step, None)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_two_gloo_processes_match_one_process(tmp_path):
    # Ranks get different numbers of valid (unmasked) examples, so only the all-reduced
    # summed / n_valid, not an average of per-rank means, gives the one-process answer.
    workload = TinyWorkload()
    weights = torch.tensor([1.0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1])
    batches = [{"inputs": workload.x[i:i + 16], "targets": workload.y[i:i + 16],
                "weights": weights} for i in range(0, 48, 16)]
    point = dict(POINTS["nadamw"], warmup_factor=0.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out_path = tmp_path / "rank0.pt"
    torch.multiprocessing.spawn(_ddp_worker, nprocs=2,
                                args=(2, port, "nadamw", point, batches, str(out_path)))
    two = torch.load(out_path)
    one = _train_on(load_submission("nadamw"), point, batches)
    # float32; the two runs sum the same numbers in a different order.
    torch.testing.assert_close(two, one, rtol=1e-5, atol=1e-6)


def test_resume_from_state_dicts_continues_exactly(named_submission):
    # What a checkpoint keeps of optimizer_state: each entry's state_dict(), through
    # torch.save. Resuming mid-warmup must give the uninterrupted run's parameters.
    name, submission = named_submission
    workload = TinyWorkload()
    hp = hparams(POINTS[name])
    batches = [b for b, _ in zip(workload.batches(), range(12))]

    def run(model, state, steps):
        for step in steps:
            submission.update_params(workload, model, None, None, hp, batches[step],
                                     spec.LossType.SOFTMAX_CROSS_ENTROPY, state, [], step, None)

    model, _ = workload.init_model_fn()
    state = submission.init_optimizer_state(workload, model, None, hp, None)
    run(model, state, range(12))

    first, _ = workload.init_model_fn()
    first_state = submission.init_optimizer_state(workload, first, None, hp, None)
    run(first, first_state, range(5))
    buffer = io.BytesIO()
    torch.save({"params": first.state_dict(),
                "opt": {k: v.state_dict() for k, v in first_state.items()}}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed, _ = workload.init_model_fn(seed=1)
    resumed.load_state_dict(saved["params"])
    resumed_state = submission.init_optimizer_state(workload, resumed, None, hp, None)
    for key, obj in resumed_state.items():
        obj.load_state_dict(saved["opt"][key])
    run(resumed, resumed_state, range(5, 12))
    for a, b in zip(model.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
