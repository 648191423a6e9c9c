"""Same seed, same losses: each tiny workload's first steps, recorded once, compared forever.

``trajectory(name, data_dir)`` trains the NAdamW baseline for STEPS steps (seed 0, the first
point of its tiny search space, one torch thread) and returns the train losses the submission
logged at every step and the evals after step 1 and step STEPS.
``tests/workloads/test_regression.py`` compares it with ``regression_losses.json``, recorded
before the workloads moved behind the framework seam:

    python -m tests.workloads.regression_reference --out tests/workloads/regression_losses.json
"""
import argparse
import json
import os
import tempfile
from typing import Dict

import numpy as np
import torch

from algoperf import random_utils, runner, search_space, submission_loader
from algoperf.backends import get_backend
from tests.conftest import REPO
from workloads import registry

STEPS = 4
WORKLOADS = ("mnist_tiny", "cifar_wrn_tiny", "ogbg_tiny", "imagenet_vit_tiny")
NADAMW = os.path.join(REPO, "submissions", "nadamw")


def trajectory(name: str, data_dir: str) -> Dict[str, object]:
    torch.set_num_threads(1)
    space = search_space.load_search_space(os.path.join(NADAMW, "tuning_search_space_tiny.json"))
    (point,) = search_space.draw_hyperparameters(space, 1, seed=0)
    workload = registry.get_workload(name, "pytorch")
    registry.check_data(workload, data_dir)
    submission = submission_loader.load_submission(os.path.join(NADAMW, "submission.py"))
    backend = get_backend("pytorch")
    config = runner.TrialConfig(data_dir=data_dir, max_global_steps=STEPS,
                                save_checkpoints=False)
    result = runner.train_once(workload, submission, backend, point,
                               random_utils.key_for_trial(0, 0, 1), None, config)
    assert not result.failed and result.global_step == STEPS
    losses = [row["loss"] for row in workload.metrics_logger.train_rows]
    evals = {str(step): {k: float(v) for k, v in sorted(r.items())
                         if k.startswith(("train/", "validation/", "test/"))
                         and not k.endswith("num_examples")}
             for step, r in result.eval_results}
    return {"train_losses": [float(x) for x in losses], "evals": evals}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="algoperf_regression_")
    reference = {name: trajectory(name, data_dir) for name in WORKLOADS}
    reference["_about"] = (f"NAdamW at the first point of its tiny search space, seed 0, {STEPS} "
                           f"steps, one torch thread, torch {torch.__version__}, numpy "
                           f"{np.__version__}; written by tests/workloads/"
                           "regression_reference.py")
    with open(args.out, "w") as f:
        json.dump(reference, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
