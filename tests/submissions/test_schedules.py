"""Schedules against their closed forms, and the LambdaLR wrapper against the pure function."""
import math

import pytest
import torch

from submissions.optimizers import schedules


def test_warmup_cosine_closed_form():
    peak, warmup, total = 0.5, 10, 110  # cosine spans C = 100 steps
    lr = lambda t: schedules.warmup_cosine_lr(t, peak, warmup, total)  # noqa: E731
    assert lr(0) == 0.0
    assert lr(5) == pytest.approx(peak * 5 / 10)
    assert lr(warmup) == pytest.approx(peak)          # end of warmup: the peak
    assert lr(warmup + 50) == pytest.approx(peak / 2)  # cosine midpoint
    assert lr(warmup + 25) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr(total) == pytest.approx(0.0, abs=1e-15)  # end: zero ...
    assert lr(total + 1000) == pytest.approx(0.0, abs=1e-15)  # ... and it stays there


def test_warmup_cosine_without_warmup_and_with_fractional_length():
    # warmup 0 starts at the peak; a scaled step_hint (float) is a valid length.
    assert schedules.warmup_cosine_lr(0, 1.0, 0, 7.5) == pytest.approx(1.0)
    assert schedules.warmup_cosine_lr(3, 1.0, 0, 7.5) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 3 / 7.5)))


def test_warmup_steps_is_algoperf_int_truncation():
    assert schedules.warmup_steps_for(0.05, 7813) == 390
    assert schedules.warmup_steps_for(0.02, 186_666 * 0.75) == 2799


def test_warmup_linear_decay_closed_form():
    peak, warmup, decay, end = 2.0, 4, 20, 0.01
    lr = lambda t: schedules.warmup_linear_decay_lr(t, peak, warmup, decay, end)  # noqa: E731
    assert lr(2) == pytest.approx(1.0)
    assert lr(warmup) == pytest.approx(peak)
    assert lr(warmup + 10) == pytest.approx(peak * (end + (1 - end) * 0.5))
    assert lr(warmup + decay) == pytest.approx(peak * end)
    assert lr(warmup + decay + 100) == pytest.approx(peak * end)
    assert schedules.warmup_linear_decay_lr(9, peak, 0, 0, end) == peak


@pytest.mark.parametrize("schedule,kwargs", [
    (schedules.warmup_cosine_lr, dict(warmup_steps=3, total_steps=12)),
    (schedules.warmup_linear_decay_lr, dict(warmup_steps=3, decay_steps=6, end_factor=0.1)),
])
def test_lambda_lr_follows_the_pure_function(schedule, kwargs):
    # Update t (0-based) must run with lr(t): the lr at construction is lr(0), and each
    # scheduler.step() after optimizer.step() moves to the next.
    peak = 0.3
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    scheduler = schedules.lambda_lr(opt, schedule, **kwargs)
    for t in range(15):
        assert opt.param_groups[0]["lr"] == pytest.approx(schedule(t, peak, **kwargs)), t
        opt.step()
        scheduler.step()


def test_lambda_lr_state_dict_round_trip():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = schedules.lambda_lr(opt, schedules.warmup_cosine_lr, warmup_steps=2,
                                    total_steps=10)
    for _ in range(4):
        opt.step()
        scheduler.step()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler2 = schedules.lambda_lr(opt2, schedules.warmup_cosine_lr, warmup_steps=2,
                                     total_steps=10)
    opt2.load_state_dict(opt.state_dict())
    scheduler2.load_state_dict(scheduler.state_dict())
    opt2.step()
    scheduler2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(
        schedules.warmup_cosine_lr(5, 1.0, 2, 10))
