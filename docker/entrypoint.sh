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
