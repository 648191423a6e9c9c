"""--tensorboard: every eval row of a trial as TensorBoard scalars, read back with
TensorBoard's own event reader and compared with eval_measurements.csv."""
import csv
import glob
import math

import pytest

from algoperf import tracking
from tests.conftest import run_cli

pytest.importorskip("torch.utils.tensorboard",
                    reason="tensorboard not installed (pip install -e '.[tracking]')")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def scalars(log_dir):
    events = EventAccumulator(log_dir)
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def test_writer_logs_numeric_columns_at_their_global_step(tmp_path):
    writer = tracking.TensorBoardWriter(str(tmp_path), {"learning_rate": 0.01})
    writer.log_eval(1, {"score": 0.5, "validation/accuracy": 0.25, "note": "x", "ok": True})
    writer.log_eval(7, {"score": 1.5, "validation/accuracy": 0.75, "note": "y", "ok": False})
    log_dir = str(tmp_path / tracking.TENSORBOARD_DIR)
    got = scalars(log_dir)
    assert set(got) == {"score", "validation/accuracy"}  # strings and booleans are not scalars
    assert got["score"] == [(1, 0.5), (7, 1.5)]
    assert got["validation/accuracy"] == [(1, 0.25), (7, 0.75)]


def test_run_with_tensorboard_writes_every_csv_eval_row(tmp_path, tiny_data_dir):
    out = run_cli("run", "--workload=mnist_tiny",
                  "--submission_path=submissions/nadamw/submission.py",
                  "--tuning_search_space=submissions/nadamw/tuning_search_space.json",
                  f"--experiment_dir={tmp_path}", "--experiment_name=tb",
                  f"--data_dir={tiny_data_dir}", "--max_global_steps=60", "--rng_seed=0",
                  "--tensorboard")
    assert out.returncode == 0, out.stderr
    (trial_dir,) = glob.glob(str(tmp_path / "tb" / "mnist_tiny_pytorch" / "trial_1"))
    with open(f"{trial_dir}/eval_measurements.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 2
    got = scalars(f"{trial_dir}/{tracking.TENSORBOARD_DIR}")
    steps = [int(r["global_step"]) for r in rows]
    for column in ("validation/accuracy", "train/loss", "score"):
        assert [s for s, _ in got[column]] == steps
        assert all(math.isclose(v, float(r[column]), rel_tol=1e-6)
                   for (_, v), r in zip(got[column], rows))
