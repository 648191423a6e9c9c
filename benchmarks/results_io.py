"""Where benchmark results go: ``benchmarks/results/<name>.json``, with the machine they ran on."""
import json
import os
import platform
import time
from typing import Any, Dict, Optional

import torch

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")


def machine() -> Dict[str, Any]:
    """What a timing depends on: library version, threads, cores, platform, date."""
    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d")}


def results_path(name: str) -> str:
    return os.path.join(RESULTS_DIR, f"{name}.json")


def save(name: str, payload: Dict[str, Any], merge_into: Optional[str] = None) -> str:
    """Write ``payload`` (plus ``machine()``) as the results of benchmark ``name``.

    With ``merge_into`` the stored file keeps its other entries: ``payload[merge_into]`` (a
    dict of cases, each stamped with ``machine()``) is merged into the stored dict of that
    name, so that running a subset of cases updates only those. Returns the path.
    """
    path = results_path(name)
    stored: Dict[str, Any] = {}
    if merge_into and os.path.exists(path):
        with open(path) as f:
            stored = json.load(f)
    if merge_into:
        cases = {k: dict(v, **machine()) for k, v in payload.pop(merge_into).items()}
        stored.setdefault(merge_into, {}).update(cases)
        stored.update(payload)
    else:
        stored = dict(payload, **machine())
    stored["benchmark"] = name
    os.makedirs(RESULTS_DIR, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(stored, f, indent=2)
    os.replace(tmp, path)
    print(f"wrote {os.path.relpath(path)}")
    return path
