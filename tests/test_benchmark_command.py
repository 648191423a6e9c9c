"""``algoperf benchmark``: runs baselines on the tiny tier and ends in scores and a plot."""
import pandas as pd
import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_benchmark_runs_then_scores_and_plots(tmp_path, tiny_data_dir):
    out = run_cli("benchmark", f"--output_dir={tmp_path}", "--submissions=nadamw",
                  "--num_studies=1", "--num_tuning_trials=1", f"--data_dir={tiny_data_dir}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "rank  submission" in out.stdout and "mnist_tiny" in out.stdout
    scores = pd.read_csv(tmp_path / "scores" / "scores.csv")
    assert scores["submission"].tolist() == ["nadamw"]
    assert 0.0 <= scores["score"].iloc[0] <= 1.0
    png = (tmp_path / "scores" / "performance_profile.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert (tmp_path / "runs" / "nadamw" / "study_0" / "mnist_tiny_pytorch" / "trial_1" /
            "eval_measurements.csv").exists()
    # Scoring again from the logs alone gives the same table.
    again = run_cli("benchmark", f"--output_dir={tmp_path}", "--submissions=nadamw",
                    "--num_studies=1", "--num_tuning_trials=1", "--score_only")
    assert again.returncode == 0 and pd.read_csv(tmp_path / "scores" / "scores.csv").equals(
        scores)


def test_benchmark_rejects_stray_arguments(tmp_path):
    out = run_cli("benchmark", f"--output_dir={tmp_path}", "extra")
    assert out.returncode != 0 and "unexpected arguments" in out.stderr
