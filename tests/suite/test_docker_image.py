"""docker/Dockerfile.cpu built for real and run: the tiny suite and the scorer inside the image.

``docker/build_offline.sh`` makes the base image (debootstrap) and builds ``algoperf:cpu`` with
podman; ``buildah run --isolation=chroot`` runs commands in it (the way these machines allow:
no registry, no OCI runtime), always through the built image's own ENTRYPOINT (tini and the
entry point script).
Host folders are mounted as ``/experiments`` and belong to a non-root host user, so every
test also checks who owns what the container wrote. Skipped, with the reason, where the tools
are missing or refused; ``.ci/run`` installs them.
"""
import fcntl
import functools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import pandas as pd
import pytest

from tests.conftest import REPO
from tests.scoring.scoring_logs import write_mini_tree, write_targets

pytestmark = pytest.mark.slow

BUILD = os.path.join(REPO, "docker", "build_offline.sh")
HOST_USER = (4321, 4321)     # the host user who owns the mounted folders (not root, not 1000)
IMAGE_USER = 1000            # the image's default user (Dockerfile.cpu: UID)
IMAGE = "localhost/algoperf:cpu"


def missing_tools() -> Optional[str]:
    missing = [t for t in ("podman", "buildah", "debootstrap") if shutil.which(t) is None]
    if missing:
        return (f"{', '.join(missing)} not installed: apt-get install podman buildah "
                "debootstrap (.ci/run does)")
    if os.geteuid() != 0:
        return "building with debootstrap and chroot isolation needs root"
    return None


@pytest.fixture(scope="module")
def container():
    """A working container of a fresh build of algoperf:cpu (cached layers reused)."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    start = time.time()
    # pytest-xdist may give this module's tests to two workers: one builds, the other then
    # finds every layer cached.
    with open("/var/tmp/algoperf-image-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build = subprocess.run(["bash", BUILD], capture_output=True, text=True, timeout=1800)
    output = build.stdout + build.stderr
    if build.returncode != 0 and "operation not permitted" in output.lower():
        pytest.skip(f"this machine refuses container builds: {output[-800:]}")
    assert build.returncode == 0, output[-4000:]
    print(f"docker/build_offline.sh: {time.time() - start:.1f} s")
    name = f"algoperf-test-{os.getpid()}"
    made = buildah("from", "--name", name, IMAGE)
    assert made.returncode == 0, made.stderr
    yield name
    buildah("rm", name)


@functools.lru_cache(maxsize=None)
def store_flags() -> Tuple[str, ...]:
    """The image store's flags (the script probes the storage driver: once per process)."""
    return tuple(subprocess.run(["bash", BUILD, "--store_flags"], capture_output=True,
                                text=True, check=True).stdout.split())


@functools.lru_cache(maxsize=None)
def entrypoint() -> Tuple[str, ...]:
    """The built image's own ENTRYPOINT (buildah run does not apply it by itself)."""
    out = buildah("inspect", "--type", "image", IMAGE)
    assert out.returncode == 0, out.stderr
    return tuple(json.loads(out.stdout)["OCIv1"]["config"]["Entrypoint"])


def buildah(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["buildah", *store_flags(), *args], capture_output=True, text=True,
                          timeout=kwargs.pop("timeout", 120), **kwargs)


def in_image(container: str, args: Sequence[str], *, experiments: Path, user: str = "0:0",
             env: Sequence[str] = ()) -> List[str]:
    """The `buildah run` command line of ``algoperf-entrypoint <args>`` in the container, with
    the host folder ``experiments`` as /experiments. One mount only: buildah 1.28 drops the
    mounts onto the image's VOLUMEs when it is given two or more."""
    command = ["buildah", *store_flags(), "run", "--isolation=chroot", f"--user={user}",
               f"--volume={experiments}:/experiments"]
    for variable in env:
        command.append(f"--env={variable}")
    return [*command, container, "--", *entrypoint(), *args]


def host_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    os.chown(path, *HOST_USER)
    return path


def give_to_host_user(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        os.lchown(path, *HOST_USER)


def owners(folder: Path) -> set:
    """(uid, gid) of everything under ``folder``, the folder itself included."""
    paths = [folder, *folder.rglob("*")]
    return {(os.lstat(p).st_uid, os.lstat(p).st_gid) for p in paths}


def test_the_tiny_suite_runs_in_the_image_and_writes_as_the_folders_owner(container, tmp_path):
    experiments = host_folder(tmp_path / "experiments")
    started = time.time()
    run = subprocess.run(in_image(container, [
        "suite", "--submissions=nadamw", "--workloads=mnist_tiny",
        "--output_dir=/experiments/tiny_suite"], experiments=experiments),
        capture_output=True, text=True, timeout=900)
    print(f"suite in the image: {time.time() - started:.1f} s\n{run.stdout[-2500:]}")
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert "1/1 finished (1 done, 0 failed)" in run.stdout
    assert "rank  submission" in run.stdout and "nadamw" in run.stdout
    # AlgoPerf's layout of the trial's logs, on the host.
    suite = experiments / "tiny_suite"
    trial = suite / "external_tuning" / "nadamw" / "study_0" / "mnist_tiny_pytorch" / "trial_1"
    evals = pd.read_csv(trial / "eval_measurements.csv")
    assert {"global_step", "score", "validation/accuracy"} <= set(evals.columns)
    assert evals["global_step"].is_monotonic_increasing and len(evals) >= 2
    assert json.loads((trial / "hparams.json").read_text())["learning_rate"] > 0
    assert (trial / "meta_data_0.json").exists() and (trial / "flags_0.json").exists()
    # The score table and the plot.
    scores = pd.read_csv(suite / "scores" / "scores.csv")
    assert scores["submission"].tolist() == ["nadamw"] and scores["score"].iloc[0] > 0
    png = (suite / "scores" / "performance_profile.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # Started as root, the entry point ran the suite as the owner of /experiments: every file
    # on the host belongs to the host user, none to root or to the image's user.
    assert owners(experiments) == {HOST_USER}


def test_score_runs_in_the_image_on_a_small_log_folder(container, tmp_path):
    """The hand-made mini tree of tests/scoring: its scores are known in closed form."""
    experiments = host_folder(tmp_path / "experiments")
    write_mini_tree(str(experiments / "runs"))
    write_targets(str(experiments / "targets.json"))
    give_to_host_user(experiments)
    run = subprocess.run(in_image(container, [
        "score", "--submission_directory=/experiments/runs",
        "--targets_file=/experiments/targets.json", "--output_dir=/experiments/scored",
        "--num_studies=2", "--bootstrap_samples=50"],
        user=f"{HOST_USER[0]}:{HOST_USER[1]}", experiments=experiments),
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    scores = pd.read_csv(experiments / "scored" / "scores.csv", index_col="submission")["score"]
    assert scores.round(4).to_dict() == {"fast": 1.0, "broken": 0.3157, "slow": 0.0833}
    assert (experiments / "scored" / "performance_profile.png").exists()
    assert owners(experiments) == {HOST_USER}


def test_a_folder_the_user_cannot_write_is_one_clear_error(container, tmp_path):
    experiments = host_folder(tmp_path / "experiments")
    run = subprocess.run(in_image(container, ["suite", "--workloads=mnist_tiny"],
                                  user=str(IMAGE_USER), experiments=experiments),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert (f"the output folder /experiments (owner uid {HOST_USER[0]}) is not writable by "
            f"uid {IMAGE_USER}") in run.stderr
    assert list(experiments.iterdir()) == []


def tini_of(marker: str) -> int:
    """The host pid of the container's tini whose command line contains ``marker``."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if argv and os.path.basename(argv[0]) == b"tini" and marker.encode() in b" ".join(argv):
            return int(proc.name)
    raise AssertionError(f"no tini running with {marker!r}")


def test_sigterm_reaches_the_trial_through_tini_and_the_trial_resumes(container, tmp_path):
    """What `docker stop` or a scheduler's preemption does: SIGTERM to the container's init."""
    experiments = host_folder(tmp_path / "experiments")
    # The slowed-down NAdamW of tests/suite/fixtures (the image has no tests/), beside the logs.
    code = experiments / "code"
    shutil.copytree(os.path.join(REPO, "tests", "fixtures"), code / "tests" / "fixtures",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(os.path.join(REPO, "tests", "suite", "fixtures", "slow"),
                    code / "submissions" / "slow", ignore=shutil.ignore_patterns("__pycache__"))
    give_to_host_user(experiments)
    steps = 300
    command = in_image(container, [
        "suite", "--submissions_dir=/experiments/code/submissions", "--submissions=slow",
        "--workloads=mnist_tiny", f"--max_global_steps={steps}", "--progress_every=5",
        "--output_dir=/experiments/preempted"],
        experiments=experiments, env=["PYTHONPATH=/experiments/code"])
    csv = (experiments / "preempted" / "external_tuning" / "slow" / "study_0" /
           "mnist_tiny_pytorch" / "trial_1" / "eval_measurements.csv")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not (csv.exists() and len(pd.read_csv(csv)) >= 3):
        assert time.time() < deadline and first.poll() is None, "the trial never logged 3 evals"
        time.sleep(0.2)
    os.kill(tini_of("/experiments/preempted"), signal.SIGTERM)
    out, _ = first.communicate(timeout=120)
    assert "suite: interrupted; stopping the running trials" in out, out[-3000:]
    stopped = pd.read_csv(csv)
    assert stopped["global_step"].iloc[-1] < steps

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "1/1 finished (1 done, 0 failed)" in again.stdout
    evals = pd.read_csv(csv)
    assert set(evals["preemption_count"]) == {0, 1}
    assert evals["global_step"].is_unique and evals["global_step"].iloc[-1] == steps
    assert owners(experiments) == {HOST_USER}
