"""The whole pipeline on the hand-made mini tree (see ``scoring_logs.py`` for its contents).

Hand computation of the median times (seconds) before the held-out rules:

    submission  alpha                   beta                    alpha_variant
    fast        median(25, 30) = 27.5   median(12, 8) = 10      median(30, 40) = 35
    slow        median(115, 125) = 120  median(40, 30) = 35     median(60, 80) = 70
    broken      median(25, 35) = 30     21 (study_0 has none)   inf (NaN and a miss)

Held-out rules: (a) no base is infinite; (b) slow's alpha 120 > 4 x 27.5 = 110: infinite;
(c) broken's variant is infinite, so broken's alpha becomes infinite. Base table:

    fast    27.5  10    ratios 1, 1     score 1
    slow    inf   35    ratio 3.5       trapezoid 8.25 / 99,  exact 0.5 * 0.5 / 3
    broken  inf   21    ratio 2.1       trapezoid 31.25 / 99, exact 0.5 * 1.9 / 3

(trapezoid grid tau_k = 1 + k/33: rho jumps to 0.5 after tau_82 for 3.5 and after tau_36 for
2.1; see test_scoring_profiles.py for the arithmetic.)
"""
import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest

import scoring
from scoring import report
from scoring_logs import run_score_cli

INF = np.inf


@pytest.fixture(scope="module")
def runs(mini_root, mini_targets):
    return scoring.load_runs(mini_root, mini_targets)


@pytest.fixture(scope="module")
def result(runs):
    return scoring.score(runs, num_studies=2, num_trials=2, bootstrap_samples=300, seed=1)


def test_reader_labels_trials_and_drops_timestamp_suffixes(runs):
    trials = runs.trials
    assert sorted(trials["submission"].unique()) == ["broken", "fast", "slow"]
    assert sorted(trials["study"].unique()) == ["study_0", "study_1"]
    assert len(trials) == 23 and set(trials["framework"]) == {"pytorch"}


def test_reader_reports_stray_failed_and_truncated(runs):
    kinds = runs.notes.groupby("kind")["path"].apply(list).to_dict()
    assert kinds["stray"] == [os.path.join(runs.root, "fast", "study_0", "trial_1")]
    assert len(kinds["failed"]) == 1 and "alpha_pytorch" in kinds["failed"][0]
    assert len(kinds["truncated"]) == 1 and "broken" in kinds["truncated"][0]
    failed = runs.trials[runs.trials["status"] == "failed"].iloc[0]
    assert failed["reason"] == "loss became NaN"


def test_reader_keeps_nan_values_and_drops_only_the_half_written_row(runs):
    evals = runs.evals
    broken_alpha = evals[(evals["submission"] == "broken") & (evals["workload"] == "alpha")
                         & (evals["study"] == "study_0")]
    assert broken_alpha["time"].tolist() == [10.0, 25.0]  # the third, partial row is gone
    variant = evals[(evals["submission"] == "broken") & (evals["workload"] == "alpha_variant")
                    & (evals["study"] == "study_0")]
    assert variant["value"].isna().all() and len(variant) == 2


def test_raw_median_times_by_hand(result):
    expected = pd.DataFrame({"alpha": [27.5, 120.0, 30.0], "beta": [10.0, 35.0, 21.0],
                             "alpha_variant": [35.0, 70.0, INF]},
                            index=["fast", "slow", "broken"])
    got = result.raw_times.loc[["fast", "slow", "broken"], ["alpha", "beta", "alpha_variant"]]
    assert np.array_equal(got.to_numpy(), expected.to_numpy())


def test_study_choice_uses_eval_index_then_time(result):
    studies = result.studies.set_index(["submission", "workload", "study"])
    # fast/study_0/alpha: trial 2 reached at eval 0 (25 s) beats trial 1 at eval 1 (20 s).
    assert studies.loc[("fast", "alpha", "study_0"), "trial"] == 2
    assert studies.loc[("fast", "alpha", "study_0"), "time"] == 25.0
    # fast/study_0/beta: both at eval 1; trial 2 is faster (12 s vs 20 s).
    assert studies.loc[("fast", "beta", "study_0"), "trial"] == 2
    # fast/study_1/alpha: trial 2 failed although its log shows 0.9 at 5 s.
    assert studies.loc[("fast", "alpha", "study_1"), "trial"] == 1


def test_held_out_rules_by_hand(result):
    assert result.times.loc["fast"].tolist() == [27.5, 10.0]
    assert result.times.loc["slow"].tolist() == [INF, 35.0]     # 4x rule
    assert result.times.loc["broken"].tolist() == [INF, 21.0]   # its variant missed


def test_scores_by_hand(result):
    scores = result.scores["score"]
    assert scores["fast"] == pytest.approx(1.0, abs=1e-12)
    assert scores["slow"] == pytest.approx(8.25 / 99, abs=1e-12)
    assert scores["broken"] == pytest.approx(31.25 / 99, abs=1e-12)
    assert list(result.scores.index) == ["fast", "broken", "slow"]
    assert result.scores["rank"].tolist() == [1, 2, 3]


def test_exact_integral_by_hand(runs):
    scores = scoring.score(runs, integral="exact").scores["score"]
    assert scores["slow"] == pytest.approx(0.5 * 0.5 / 3)
    assert scores["broken"] == pytest.approx(0.5 * 1.9 / 3)


def test_without_held_out_rules_by_hand(runs):
    # v0.6 style: broken's alpha counts again (30 / 27.5); slow's alpha ratio 120 / 27.5 is
    # beyond r_max = 4 anyway.
    result = scoring.score(runs, held_out=False, integral="exact")
    scores = result.scores["score"]
    assert result.held_out_workloads == []
    assert scores["broken"] == pytest.approx(0.5 * (4 - 30 / 27.5) / 3 + 0.5 * 1.9 / 3)
    assert scores["slow"] == pytest.approx(0.5 * 0.5 / 3)


def test_non_strict_comparison_matters_here(runs, monkeypatch):
    """Negative test: with '>' instead of '>=' the values equal to the target stop counting."""
    from scoring import rules
    monkeypatch.setattr(rules, "reached", lambda v, t: np.greater(v, t))
    wrong = scoring.score(runs).scores["score"]
    assert wrong["slow"] == 0.0  # its study_1 beta hit exactly 0.5: now a miss, median inf
    assert wrong["fast"] != pytest.approx(1.0)


def test_reference_submission(runs):
    result = scoring.score(runs, reference_submission="broken", integral="exact")
    assert result.ratios.loc["fast", "beta"] == pytest.approx(10 / 21)
    assert result.ratios.loc["broken", "beta"] == 1.0
    with pytest.raises(scoring.ScoringInputError, match="nobody"):
        scoring.score(runs, reference_submission="nobody")


def test_workload_sets_are_configurable(runs):
    result = scoring.score(runs, base_workloads=["beta"], held_out_workloads=[])
    assert result.base_workloads == ["beta"]
    assert result.scores["score"]["fast"] == pytest.approx(1.0)
    with pytest.raises(scoring.ScoringInputError, match="gamma"):
        scoring.score(runs, base_workloads=["gamma"])


def test_folder_without_any_base_workload_is_an_error(runs):
    only_beta = dataclasses.replace(runs, trials=runs.trials[runs.trials["workload"] == "beta"])
    with pytest.raises(scoring.ScoringInputError, match="runs found of: beta"):
        scoring.score(only_beta, base_workloads=["alpha"], held_out=False)
    assert scoring.score(only_beta, base_workloads=["beta"], held_out=False).scores.shape[0] == 3


def test_submission_subset(runs):
    result = scoring.score(runs, submissions=["slow", "broken"], held_out=False)
    assert sorted(result.scores.index) == ["broken", "slow"]
    # Without fast, broken is the best on beta and on alpha.
    assert result.scores["score"]["broken"] == pytest.approx(1.0)


def test_strict_mode_names_the_gaps(runs):
    with pytest.raises(scoring.StrictCheckError, match="broken/study_0/beta: 0 trials"):
        scoring.score(runs, strict=True, num_studies=2, num_trials=1,
                      submissions=["slow", "broken"])
    notes = scoring.score(runs, num_studies=2, num_trials=1).notes
    assert "fast/study_0/alpha: 2 trials, expected 1" in " ".join(notes["message"])


def test_bootstrap_interval_brackets_the_point_estimate(result):
    scores = result.scores
    assert (scores["ci_low"] <= scores["score"] + 1e-12).all()
    assert (scores["score"] <= scores["ci_high"] + 1e-12).all()
    assert scores.loc["fast", ["ci_low", "ci_high"]].tolist() == [1.0, 1.0]  # always best
    assert scores.loc["slow", "ci_low"] < scores.loc["slow", "ci_high"]  # 30..40 s vs 8..12 s
    assert result.bootstrap.shape == (300, 3)


def test_bootstrap_is_reproducible_with_a_seed(runs):
    a = scoring.score(runs, bootstrap_samples=50, seed=3).bootstrap
    b = scoring.score(runs, bootstrap_samples=50, seed=3).bootstrap
    assert np.array_equal(a, b)


def test_pairwise_speedup_by_hand(result):
    speedups = result.speedups.set_index(["submission", "baseline"])
    row = speedups.loc[("fast", "broken")]
    assert row["speedup"] == pytest.approx(np.sqrt(30 / 27.5 * 21 / 10))
    assert row["workloads"] == 2
    assert speedups.loc[("broken", "fast"), "speedup"] == pytest.approx(1 / row["speedup"])


def test_trial_summary_columns(result):
    trials = report.trial_summary(result.trials).set_index(["submission", "workload", "study",
                                                           "trial"])
    row = trials.loc[("fast", "alpha", "study_0", 1)]
    assert row["reached"] and row["time_to_target"] == 20.0 and row["step_at_target"] == 20.0
    assert row["best_value"] == 0.9 and row["time_to_best"] == 30.0
    assert json.loads(row["hparams"]) == {"learning_rate": 0.001}


def test_workload_summary(result):
    summary = report.workload_summary(result)
    beta = summary.loc[("fast", "beta")]
    assert beta["best_value"] == 0.3 and beta["median_time"] == 10.0  # lowest loss is best
    assert (beta["trials"], beta["trials_reached"], beta["studies_reached"]) == (4, 3, 2)
    alpha = summary.loc[("fast", "alpha")]
    assert alpha["trials_not_ok"] == 1 and alpha["trials_reached"] == 3  # 4th one failed
    variant = summary.loc[("broken", "alpha_variant")]
    assert variant["studies_reached"] == 0 and variant["median_time"] == INF


def test_terminal_report_shows_scores_hours_ratios_and_marks(result):
    text = report.terminal_report(result)
    assert "fast" in text and "1.0000" in text and "0.3157" in text
    assert "0.00764 x1.00" in text  # fast's alpha: 27.5 s, the best
    assert "0.00833*" in text       # broken's alpha: reached in 30 s, voided by held-out rules
    assert "stray" in text


def test_profile_lines_are_ordered_by_score_with_exact_steps(result):
    lines = report.profile_lines(result)
    assert [label for label, _, _ in lines] == ["fast (1.0000)", "broken (0.3157)",
                                                "slow (0.0833)"]
    _, xs, ys = lines[1]
    assert xs.tolist() == [1.0, 2.1, 4.0] and ys.tolist() == [0.0, 0.5, 0.5]


def test_write_report_makes_every_file(result, tmp_path):
    paths = report.write_report(result, str(tmp_path), title="mini")
    for name in ["scores.csv", "time_to_target.csv", "trials.csv", "studies.csv",
                 "speedups.csv", "notes.csv", "performance_profiles.csv", "report.md",
                 "performance_profile.png", "performance_profile.pdf",
                 os.path.join("summaries", "fast.csv"), os.path.join("summaries", "fast.md")]:
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(paths["plot_png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    markdown = (tmp_path / "report.md").read_text()
    assert "![Performance profiles](performance_profile.png)" in markdown
    assert "| 1 | fast | 1.0000 |" in markdown
    scores = pd.read_csv(tmp_path / "scores.csv", index_col="submission")
    assert scores.loc["broken", "score"] == pytest.approx(31.25 / 99)


def test_cli_scores_the_mini_tree(mini_root, mini_targets, tmp_path):
    out = tmp_path / "out"
    proc = run_score_cli(f"--submission_directory={mini_root}", f"--targets_file={mini_targets}",
                         f"--output_dir={out}", "--num_studies=2", "--bootstrap_samples=50")
    assert proc.returncode == 0, proc.stderr
    assert "fast" in proc.stdout and "0.3157" in proc.stdout
    scores = pd.read_csv(out / "scores.csv", index_col="submission")["score"]
    assert scores.round(4).to_dict() == {"fast": 1.0, "broken": 0.3157, "slow": 0.0833}
    assert (out / "performance_profile.pdf").exists()


def test_cli_exact_integral_without_held_out(mini_root, mini_targets, tmp_path):
    proc = run_score_cli(f"--submission_directory={mini_root}", f"--targets_file={mini_targets}",
                         f"--output_dir={tmp_path}", "--integral=exact", "--noheld_out",
                         "--bootstrap_samples=0", "--nocompute_performance_profiles")
    assert proc.returncode == 0, proc.stderr
    scores = pd.read_csv(tmp_path / "scores.csv", index_col="submission")["score"]
    assert scores["broken"] == pytest.approx(0.5 * (4 - 30 / 27.5) / 3 + 0.5 * 1.9 / 3)
    assert not (tmp_path / "performance_profile.png").exists()


def test_one_study_prints_no_interval(mini_root, mini_targets, tmp_path):
    import shutil
    root = tmp_path / "runs"
    shutil.copytree(mini_root, root)
    for study_1 in root.glob("*/study_1*"):
        shutil.rmtree(study_1)
    result = scoring.score(scoring.load_runs(str(root), mini_targets), num_studies=1,
                           bootstrap_samples=100)
    assert "ci_low" not in result.scores and result.bootstrap is None
    assert "no CI: one study per submission" in report.describe_config(result)
    assert "CI" not in report.score_headers(result)[-2]
