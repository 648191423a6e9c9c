#!/usr/bin/env bash
# The images' entry point: `algoperf <command> [flags]`, with `run` spread over every visible GPU.
#
#   algoperf-entrypoint [--nproc=auto|N] [--dry_run] <command> [algoperf flags...]
#
#   run      -> torchrun --standalone --nproc_per_node=N -m algoperf.cli run ...   (N > 1)
#               python -m algoperf.cli run ...                                      (N = 1)
#   other    -> python -m algoperf.cli <command> ...   (suite, score, data, benchmark)
#
# --nproc=auto (the default, or $ALGOPERF_NPROC): the GPUs in CUDA_VISIBLE_DEVICES if set, else
# the GPUs `nvidia-smi -L` lists, else 1 (CPU). --dry_run prints the command instead of running
# it (how the tests check this script without Docker or GPUs).
#
# Who writes the files: the images run as a non-root user. Started as root (`--user 0`, or an
# engine that ignores USER), this script re-runs itself as the owner of the output folder, so
# the logs on a mounted host folder belong to the host user; on a folder root owns, it stays
# root. An output folder the user cannot write to is one error before anything starts (the
# output folder: --output_dir / --experiment_dir, else the working directory, /experiments).
# A HOME the user cannot write to (an arbitrary --user id) becomes /tmp, for library caches.
#
# Signals: the images start this script under tini (PID 1), which forwards Ctrl-C and SIGTERM
# to the process group; the last step here is `exec`, so the trial is that process.
set -euo pipefail

PYTHON="${ALGOPERF_PYTHON:-python}"
nproc="${ALGOPERF_NPROC:-auto}"
dry_run=0

die() { echo "algoperf-entrypoint: error: $*" >&2; exit 2; }

count_gpus() {
  if [[ -n "${CUDA_VISIBLE_DEVICES+x}" ]]; then
    # "" or "-1" hide every GPU; otherwise a comma-separated list.
    if [[ -z "${CUDA_VISIBLE_DEVICES}" || "${CUDA_VISIBLE_DEVICES}" == "-1" ]]; then
      echo 0
    else
      awk -F, '{print NF}' <<<"${CUDA_VISIBLE_DEVICES}"
    fi
  elif command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true
  else
    echo 0
  fi
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --nproc=*) nproc="${1#--nproc=}"; shift ;;
    --dry_run|--dry-run) dry_run=1; shift ;;
    *) break ;;
  esac
done

# The folder this command writes to: the value of its last --output_dir/--experiment_dir flag,
# else the working directory.
output_folder() {
  local folder="$PWD" arg
  for arg in "$@"; do
    case "$arg" in
      --output_dir=*) folder="${arg#--output_dir=}" ;;
      --experiment_dir=*) folder="${arg#--experiment_dir=}" ;;
    esac
  done
  [[ "$folder" == /* ]] || folder="$PWD/$folder"
  # The nearest folder that exists: the command creates the rest.
  while [[ ! -e "$folder" && "$folder" != / ]]; do folder="$(dirname "$folder")"; done
  echo "$folder"
}

if [[ $# -gt 0 && "$1" != -* ]]; then
  folder="$(output_folder "$@")"
  if [[ "$(id -u)" == 0 && $dry_run -eq 0 ]]; then
    owner="$(stat -c %u "$folder")"
    if [[ "$owner" != 0 ]]; then
      exec setpriv --reuid="$owner" --regid="$(stat -c %g "$folder")" --clear-groups \
        "$0" "--nproc=$nproc" "$@"
    fi
  fi
  if [[ ! -w "$folder" ]]; then
    die "the output folder $folder (owner uid $(stat -c %u "$folder")) is not writable by uid \
$(id -u): run the image with --user \"\$(id -u):\$(id -g)\" of the folder's owner, or mount a \
folder that user owns"
  fi
fi
[[ -w "${HOME:-/nonexistent}" ]] || export HOME=/tmp

if [[ $# -eq 0 || "$1" == "--help" || "$1" == "-h" ]]; then
  command=(-m algoperf.cli --help)
  [[ $dry_run -eq 1 ]] && { echo "$PYTHON ${command[*]}"; exit 0; }
  exec "$PYTHON" "${command[@]}"
fi

if [[ "$nproc" == "auto" ]]; then
  nproc="$(count_gpus)"
  [[ "$nproc" -ge 1 ]] || nproc=1
elif ! [[ "$nproc" =~ ^[1-9][0-9]*$ ]]; then
  die "--nproc=$nproc: expected auto or a positive integer"
fi

if [[ "$1" == "run" && "$nproc" -gt 1 ]]; then
  command=(torchrun --standalone "--nproc_per_node=$nproc" -m algoperf.cli "$@")
else
  command=("$PYTHON" -m algoperf.cli "$@")
fi

if [[ $dry_run -eq 1 ]]; then
  printf '%q ' "${command[@]}" | sed 's/ $//'
  echo
  exit 0
fi
exec "${command[@]}"
