#!/usr/bin/env bash
# Stop what start-distributed.sh started (its PID files): SIGTERM to each component's process group
# (a Celery worker finishes its running tasks first: warm shutdown), then SIGKILL after --timeout seconds.
#
# Usage: infra/airflow/stop-distributed.sh [--timeout SECONDS]   (default 60)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STOCKML_REPO="${STOCKML_REPO:-$(cd "$HERE/../.." && pwd)}"
export STOCKML_REPO
TIMEOUT=60
while [[ $# -gt 0 ]]; do
  case "$1" in
    --timeout) TIMEOUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

set -a
# shellcheck source=celery.env
. "$HERE/celery.env"
set +a
RUN_DIR="${STOCKML_AIRFLOW_RUN_DIR:-$AIRFLOW_HOME/run}"

shopt -s nullglob
pids=()
# Every other PID file is a Celery worker's (celery-worker, celery-worker-training, STOCKML_WORKER_NAME).
core=(flower triggerer dag-processor scheduler api-server)
workers=()
for f in "$RUN_DIR"/*.pid; do
  name="$(basename "$f" .pid)"
  [[ " ${core[*]} " == *" $name "* ]] || workers+=("$name")
done
# Workers first (they stop taking tasks), then Flower and the rest.
for name in "${workers[@]}" "${core[@]}"; do
  f="$RUN_DIR/$name.pid"
  [[ -f "$f" ]] || continue
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    echo "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  fi
  rm -f "$f"
done

deadline=$((SECONDS + TIMEOUT))
for pid in "${pids[@]}"; do
  while kill -0 -- "-$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 1; done
  if kill -0 -- "-$pid" 2>/dev/null; then
    echo "process group $pid still alive after ${TIMEOUT}s: SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
done
echo "stopped"
