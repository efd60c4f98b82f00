# Source this file (`. infra/airflow/env.sh`) to use the Airflow CLI, `stockml demo-data` or Python
# against the distributed set-up: it exports infra/airflow/celery.env and the secrets that
# start-distributed.sh generated ($AIRFLOW_HOME/secrets.env), and puts the venv first on PATH.
# Any variable exported before sourcing wins, as with the start script.
_stockml_here="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
export STOCKML_REPO="${STOCKML_REPO:-$(cd "$_stockml_here/../.." && pwd)}"
export PATH="${STOCKML_VENV:-$STOCKML_REPO/.venv}/bin:$PATH"
set -a
. "$_stockml_here/celery.env"
if [ -f "$AIRFLOW_HOME/secrets.env" ]; then . "$AIRFLOW_HOME/secrets.env"; fi
set +a
unset _stockml_here _stockml_sqlite_source
