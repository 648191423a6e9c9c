"""ogbg eval under DDP: two gloo processes gather every graph once and score like one."""
import json
import os

import numpy as np
import pytest

from tests.conftest import run_python

SCRIPT = r"""
import json, os, sys
from algoperf import pytorch_utils, random_utils
from workloads import registry

class Small(registry.workload_class("ogbg", "pytorch")):
    check_sizes = False  # small files in the prepared ogbg-molpcba format

use_ddp, rank, _, _ = pytorch_utils.pytorch_setup()
pytorch_utils.pytorch_init(use_ddp, rank)  # as the runner does, and leaves the group at exit
workload = Small()
model, state = workload.init_model_fn(random_utils.PRNGKey(0))
# 11 validation graphs in batches of 6: 3 per process, the last batch padded with 1.
out = workload._eval_model_on_split("validation", 11, 6, model, state, None, sys.argv[1])
if int(os.environ.get("RANK", 0)) == 0:
    print("RESULT " + json.dumps(out))
"""


def _run(data_dir, nproc):
    script = os.path.join(str(data_dir), "eval_script.py")  # torchrun runs files, not -c
    with open(script, "w") as f:
        f.write(SCRIPT)
    out = run_python(script, str(data_dir), nproc=nproc, timeout=300)
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
def test_two_process_eval_matches_one_process(tmp_path):
    from tests.workloads.test_ogbg import SMALL, fake_graphs
    from workloads.datasets import ogbg_molpcba as data
    graphs = {s: fake_graphs(n, seed=i) for i, (s, n) in enumerate(SMALL.items())}
    data.prepare_molpcba(tmp_path, source=lambda split: iter(graphs[split]), check_sizes=False)
    one, two = _run(tmp_path, 1), _run(tmp_path, 2)
    assert np.isfinite(one["mean_average_precision"])
    assert two["mean_average_precision"] == pytest.approx(one["mean_average_precision"],
                                                          abs=1e-6)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
