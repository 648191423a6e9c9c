"""The marginal-likelihood K-FAC submission (submissions/kfac_marglik/, both flavours): its
marginal-likelihood steps on every tiny workload, the learned prior precisions as the
optimizer's weight decays, and (slow) the cifar_wrn_tiny target under the self-tuning
ruleset through the command a user runs."""
import pathlib

import pandas as pd
import pytest
import torch

from algoperf import random_utils, submission_loader
from algoperf.suite.plan import tiny_workloads
from tests.conftest import run_cli
from submissions import first_order, kfac_marglik_common
from submissions.optimizers.kfac import marglik
from workloads import registry

ROOT = pathlib.Path(__file__).resolve().parents[2]
SUBMISSIONS = {"reduce": ROOT / "submissions/kfac_marglik/submission.py",
               "expand": ROOT / "submissions/kfac_marglik/submission_expand.py"}
# The defaults with the burn-in and period shrunk so that a few steps hold two
# marginal-likelihood steps (steps 0 and 2).
QUICK = dict(kfac_marglik_common.DEFAULTS, marglik_burnin_epochs=0.0)


def quick_point(workload):
    return first_order.as_hyperparameters(dict(
        QUICK, marglik_every_epochs=2 / kfac_marglik_common.steps_per_epoch(workload)))


@pytest.mark.parametrize("flavour", sorted(SUBMISSIONS))
@pytest.mark.parametrize("workload_name", tiny_workloads())
def test_marglik_steps_learn_the_weight_decay_on_every_tiny_workload(workload_name, flavour,
                                                                     tiny_data_dir):
    workload = registry.get_workload(workload_name)
    submission = submission_loader.load_submission(str(SUBMISSIONS[flavour]))
    hp = quick_point(workload)
    batch_size = kfac_marglik_common.steps_per_epoch(workload)  # checks the retry to the base
    batch_size = round(workload.num_train_examples / batch_size)
    queue = workload._build_input_queue(random_utils.PRNGKey(0), "train", tiny_data_dir,
                                        batch_size)
    model, model_state = workload.init_model_fn(random_utils.PRNGKey(1))
    state = submission.init_optimizer_state(workload, model, model_state, hp,
                                            random_utils.PRNGKey(2))
    optimizer, learned = state["optimizer"], state["marglik"]
    start = learned["log_prior_precision"].clone()
    n = workload.num_train_examples
    torch.testing.assert_close(start.exp(), torch.full_like(start, n * QUICK["weight_decay"]))
    for step in range(3):
        state, model, model_state = submission.update_params(
            workload, model, workload.model_params_types, model_state, hp, next(queue),
            workload.loss_type, state, [], step, random_utils.PRNGKey(10 + step))
    history = learned["history"]
    assert [h["step"] for h in history] == [0, 2]
    assert all(torch.isfinite(torch.tensor(h["log_ml"])) for h in history)
    names = list(history[-1]["prior_precision"])
    assert len(names) == len(optimizer.covered_modules) == len(set(names))
    delta = learned["log_prior_precision"].exp()
    assert not torch.allclose(delta, start.exp())  # it learned something
    # The decays the optimizer applies are delta / N, one per covered layer.
    applied = [layer.weight_decay for layer in optimizer._layers]
    torch.testing.assert_close(torch.tensor(applied, dtype=torch.float64), delta / n)
    # The last marginal-likelihood step climbed: at the current factors and weights the
    # gradient is smaller at the learned delta than at the one the step before learned
    # (convergence to the optimum itself is tests/kfac/test_marglik.py's).
    eigvals = [marglik.block_eigenvalues((G.double(), A.double())) for A, G in (
        optimizer.factors(m) for m in optimizer.covered_modules)]
    sq_norms = torch.stack([sum(p.detach().double().pow(2).sum() for p in m.parameters())
                            for m in optimizer.covered_modules])
    grad = marglik.log_marginal_likelihood_grad(sq_norms, eigvals, n, delta)
    first = torch.tensor(list(history[0]["prior_precision"].values()), dtype=torch.float64)
    grad_at_first = marglik.log_marginal_likelihood_grad(sq_norms, eigvals, n, first)
    assert grad.abs().sum() < grad_at_first.abs().sum()
    # The learned decays stay inside their bounds.
    low, high = kfac_marglik_common.precision_bounds(n, hp)
    eta = learned["log_prior_precision"]
    assert bool(((eta >= low - 1e-9) & (eta <= high + 1e-9)).all())


def test_no_marglik_step_before_the_burn_in():
    workload = registry.get_workload("cifar_wrn_tiny")
    hp = first_order.as_hyperparameters(kfac_marglik_common.DEFAULTS)
    per_epoch = kfac_marglik_common.steps_per_epoch(workload)      # 5000 / 128 = 39.06
    steps = [s for s in range(120) if kfac_marglik_common.is_marglik_step(s, workload, hp)]
    assert steps == [39, 59, 79, 99, 119] and round(per_epoch) == 39


def test_check_runs_the_submission_self_tuning_with_checkpoint_and_resume(tiny_data_dir):
    """``algoperf check`` without a search space: hyperparameters=None on a tiny workload,
    3 steps, checkpoint (the learned state included), resume."""
    out = run_cli("check", f"--submission_path={SUBMISSIONS['reduce']}",
                  "--workloads=mnist_tiny", f"--data_dir={tiny_data_dir}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "self-tuning: hyperparameters=None" in out.stdout
    assert "1 of 1 workloads ok" in out.stdout and "leaves out" not in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("flavour", sorted(SUBMISSIONS))
def test_reaches_the_cifar_wrn_tiny_target_self_tuning(flavour, tmp_path, tiny_data_dir):
    out = run_cli("run", "--workload=cifar_wrn_tiny", f"--submission_path={SUBMISSIONS[flavour]}",
                  "--tuning_ruleset=self", f"--experiment_dir={tmp_path}",
                  "--experiment_name=marglik", "--rng_seed=0", f"--data_dir={tiny_data_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "reached validation target 0.9400" in out.stderr
    measurements = pd.read_csv(next(tmp_path.rglob("measurements.csv")))
    log_ml = measurements["marglik/log_ml"].dropna()
    assert len(log_ml) >= 2  # marginal-likelihood steps ran before the target


def test_a_kfac_point_without_marglik_settings_gets_the_defaults():
    """Under external tuning with the K-FAC baselines' space the marginal-likelihood settings
    come from DEFAULTS; the point's own values stay."""
    point = first_order.as_hyperparameters(dict(kfac_marglik_common.DEFAULTS.items()))
    assert kfac_marglik_common._marglik_hp(point) is point
    kfac_point = first_order.as_hyperparameters({"learning_rate": 0.01, "weight_decay": 1e-3})
    filled = kfac_marglik_common._marglik_hp(kfac_point)
    assert filled.learning_rate == 0.01 and filled.weight_decay == 1e-3
    assert filled.marglik_steps == kfac_marglik_common.DEFAULTS["marglik_steps"]
