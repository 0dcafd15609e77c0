#!/usr/bin/env bash
# Runs an experiment on every worker of a Cloud TPU VM (one host or a pod slice).
#
#   experiments/launch_tpu.sh TPU_NAME ZONE CONFIG WORKDIR [--config.field=value ...]
#
# e.g.
#   CKPT_DIR=gs://my-bucket/lead/paper/ckpt experiments/launch_tpu.sh my-v4-32 us-central2-b \
#       configs/paper_llama3_8b.py /tmp/lead_paper \
#       --config.model.checkpoint=/data/Llama-3.1-8B --config.data.tokenizer=/data/Llama-3.1-8B \
#       --config.data.train_path=/data/lead_pool.jsonl
#
# Steps (each on all workers at once, `gcloud ... --worker=all`):
#   1. copy this repository to ~/$REPO_DIR on every worker (model weights and pool
#      files are not copied: put them on every worker or on a shared disk first);
#   2. create the pinned environment there: python3 -m venv, requirements.txt,
#      and the TPU runtime for the pinned jax (skip with SETUP=0);
#   3. start `python -m experiments.run` on every worker with
#      --config.mesh.distributed=True: jax.distributed.initialize() finds the
#      other workers by itself on Cloud TPU, and every process runs the same
#      program on its share of the global batch.
# Checkpoints of a multi-host run must go to storage every worker sees: set
# CKPT_DIR (a gs:// path), passed as --config.checkpoint.directory. Metrics are
# written by process 0 into WORKDIR on worker 0. Logs: WORKDIR/run.log on each worker.
#
# Environment: PROJECT (gcloud project; default: gcloud's), REPO_DIR (default
# lead_jax), SETUP (1), CKPT_DIR (""), PYTHON (python3.11 or python3).
set -euo pipefail

if [[ $# -lt 4 ]]; then
  sed -n '2,30p' "$0"
  exit 2
fi
TPU_NAME=$1 ZONE=$2 CONFIG=$3 WORKDIR=$4
shift 4
REPO_DIR=${REPO_DIR:-lead_jax}
SETUP=${SETUP:-1}
PYTHON=${PYTHON:-python3}
GCLOUD=(gcloud compute tpus tpu-vm)
SCOPE=(--zone "$ZONE" --worker=all)
if [[ -n "${PROJECT:-}" ]]; then SCOPE+=(--project "$PROJECT"); fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
JAX_VERSION=$(sed -n 's/^jax==//p' "$ROOT/requirements.txt")

echo "[1/3] copying $ROOT to $TPU_NAME:~/$REPO_DIR (all workers)"
ARCHIVE=$(mktemp /tmp/lead_jax_src.XXXXXX.tar.gz)
trap 'rm -f "$ARCHIVE"' EXIT
git -C "$ROOT" ls-files -z | tar -C "$ROOT" --null -T - -czf "$ARCHIVE"
"${GCLOUD[@]}" scp "$ARCHIVE" "$TPU_NAME:~/lead_jax_src.tar.gz" "${SCOPE[@]}"
"${GCLOUD[@]}" ssh "$TPU_NAME" "${SCOPE[@]}" --command \
  "mkdir -p ~/$REPO_DIR && tar -C ~/$REPO_DIR -xzf ~/lead_jax_src.tar.gz"

if [[ "$SETUP" == 1 ]]; then
  echo "[2/3] installing the environment on every worker (jax $JAX_VERSION + TPU runtime)"
  "${GCLOUD[@]}" ssh "$TPU_NAME" "${SCOPE[@]}" --command "cd ~/$REPO_DIR && \
    $PYTHON -m venv .venv && .venv/bin/pip install -q -r requirements.txt && \
    .venv/bin/pip install -q 'jax[tpu]==$JAX_VERSION' \
      -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
else
  echo "[2/3] SETUP=0: keeping the installed environment"
fi

ARGS=(--config "$CONFIG" --workdir "$WORKDIR" --config.mesh.distributed=True)
if [[ -n "${CKPT_DIR:-}" ]]; then ARGS+=("--config.checkpoint.directory=$CKPT_DIR"); fi
ARGS+=("$@")
QUOTED=$(printf '%q ' "${ARGS[@]}")
echo "[3/3] starting: python -m experiments.run $QUOTED"
"${GCLOUD[@]}" ssh "$TPU_NAME" "${SCOPE[@]}" --command "cd ~/$REPO_DIR && \
  mkdir -p $(printf '%q' "$WORKDIR") && \
  nohup .venv/bin/python -m experiments.run $QUOTED \
    > $(printf '%q' "$WORKDIR")/run.log 2>&1 &"
echo "started on every worker of $TPU_NAME; follow with:"
echo "  ${GCLOUD[*]} ssh $TPU_NAME --zone $ZONE --worker=0 --command 'tail -f $WORKDIR/run.log'"
