"""The Shampoo submission: its search space is the v0.5 winner's five points, each point
builds the optimizer it names, the tiny-tier frequency rule, and a run through the CLI."""
import importlib.util
import pathlib

import pandas as pd
import pytest
import torch

from algoperf import search_space
from submissions import first_order
from submissions.optimizers.shampoo import Shampoo
from tests.conftest import run_cli

ROOT = pathlib.Path(__file__).resolve().parents[2] / "submissions" / "shampoo"


def _submission():
    module_spec = importlib.util.spec_from_file_location("submission_shampoo",
                                                         ROOT / "submission.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _points():
    return search_space.draw_hyperparameters(
        search_space.load_search_space(ROOT / "tuning_search_space.json"), 5)


def test_search_space_is_the_v05_winners_list():
    space = search_space.load_search_space(ROOT / "tuning_search_space.json")
    assert space.is_point_list and len(space.points) == 5
    assert {p["max_preconditioner_dim"] for p in space.points} == {1024}
    assert {p["precondition_frequency"] for p in space.points} == {100}
    assert [p["grafting_type"] for p in space.points] == ["ADAM", "ADAM", "SGD", "ADAM", "ADAM"]
    # The first point is the self-tuning default (and AlgoPerf's NAdamW self-tuning point's
    # learning rate, b1 and weight decay).
    # (communication_dtype / communicate_params only configure Distributed Shampoo's
    # all-gather; nothing here reads them.)
    ignored = {"communication_dtype", "communicate_params"}
    assert {k: v for k, v in space.points[0].items() if k not in ignored} == \
        _submission().HPARAMS
    assert space.points[0]["learning_rate"] == \
        first_order.ALGOPERF_NADAMW_SELF_TUNING["learning_rate"]


def test_every_point_builds_the_optimizer_it_names():
    sub = _submission()
    for hp in _points():
        model = torch.nn.Linear(4, 3)
        opt = sub.make_optimizer(model.parameters(), hp)
        group = opt.param_groups[0]
        assert isinstance(opt, Shampoo)
        assert group["betas"] == (1 - hp.one_minus_beta1, 1 - hp.one_minus_beta2)
        assert group["momentum"] == pytest.approx(
            1 - hp.one_minus_momentum if hp.use_momentum else 0.0)
        assert group["grafting"] == hp.grafting_type.lower()
        assert group["inv_root_override"] == hp.inv_root_override
        assert group["start_preconditioning_step"] == hp.precondition_frequency
        assert group["precondition_1d"] and group["nesterov"]


def test_frequency_is_scaled_only_on_short_schedules():
    sub = _submission()
    hp = _points()[0]
    assert sub.effective_frequency(hp, 35_200) == 100   # cifar_wrn full size: unchanged
    assert sub.effective_frequency(hp, 2_000) == 100    # mnist_tiny: 20 refreshes already
    assert sub.effective_frequency(hp, 250) == 25       # cifar_wrn_tiny: 10 refreshes
    off = first_order.as_hyperparameters(dict(hp._asdict(), min_root_refreshes=0))
    assert sub.effective_frequency(off, 250) == 100


def test_precondition_1d_is_an_optional_point_setting():
    sub = _submission()
    hp = _points()[0]
    vector = torch.nn.Parameter(torch.zeros(5))
    opt = sub.make_optimizer([vector], first_order.as_hyperparameters(
        dict(hp._asdict(), precondition_1d=False)))
    assert not opt.param_groups[0]["precondition_1d"]
    vector.grad = torch.ones(5)
    opt.step()
    assert "factors" not in opt.state[vector]


@pytest.mark.slow
def test_cli_run_on_cifar_wrn_tiny(tmp_path, tiny_data_dir):
    """30 steps through ``algoperf run``: preconditioning from step 25 (the scaled frequency),
    finite losses, logs in AlgoPerf's layout, and learning (above chance)."""
    out = run_cli("run", "--workload=cifar_wrn_tiny",
                  f"--submission_path={ROOT / 'submission.py'}",
                  f"--tuning_search_space={ROOT / 'tuning_search_space.json'}",
                  f"--experiment_dir={tmp_path}", "--experiment_name=shampoo",
                  "--rng_seed=0", f"--data_dir={tiny_data_dir}", "--max_global_steps=30")
    assert out.returncode == 0, out.stderr[-3000:]
    evals = pd.read_csv(tmp_path / "shampoo" / "cifar_wrn_tiny_pytorch" / "trial_1" /
                        "eval_measurements.csv")
    assert evals["global_step"].iloc[-1] == 30
    assert evals["train/loss"].notna().all()
    assert evals["validation/accuracy"].iloc[-1] > 0.3
