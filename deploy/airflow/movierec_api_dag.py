"""Airflow DAG that trains through the service's API instead of the CLI.

For deployments where Airflow's workers do not share the service's machine or volumes: the
worker only needs ``curl`` and ``python3``. Tasks:

1. ``train``: ``POST /train`` (admin) starts ``train_and_publish`` on the service's side, then
   ``GET /jobs/{id}`` is polled until the job ends; the task fails when the job fails.
2. ``status``: ``GET /model/status`` into the task log (served version, champion, last job).

Environment of the worker: ``MOVIEREC_SERVICE_URL`` (default ``http://127.0.0.1:8000``), and
either ``MOVIEREC_ADMIN_TOKEN`` (bearer) or ``MOVIEREC_ADMIN_USER`` + ``MOVIEREC_ADMIN_PASSWORD``
(HTTP Basic). ``MOVIEREC_DAG_TRAIN_JSON`` is the request body (default ``{"dataset": "store"}``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
try:
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2 without the standard provider
    from airflow.operators.bash import BashOperator

INTERVAL = timedelta(hours=float(os.environ.get("MOVIEREC_DAG_INTERVAL_HOURS", "24")))

#: Credentials and URL, shared by the tasks (bash; whichever admin credential is configured).
PRELUDE = """
set -euo pipefail
URL="${MOVIEREC_SERVICE_URL:-http://127.0.0.1:8000}"
if [ -n "${MOVIEREC_ADMIN_TOKEN:-}" ]; then
  AUTH=(-H "Authorization: Bearer ${MOVIEREC_ADMIN_TOKEN}")
else
  AUTH=(-u "${MOVIEREC_ADMIN_USER}:${MOVIEREC_ADMIN_PASSWORD}")
fi
field() { python3 -c "import json, sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
"""

TRAIN = PRELUDE + """
BODY='{"dataset": "store"}'
if [ -n "${MOVIEREC_DAG_TRAIN_JSON:-}" ]; then BODY="$MOVIEREC_DAG_TRAIN_JSON"; fi
JOB=$(curl -fsS "${AUTH[@]}" -H 'Content-Type: application/json' -d "$BODY" "$URL/train" \\
  | field job_id)
echo "training job $JOB"
while true; do
  STATE=$(curl -fsS "${AUTH[@]}" "$URL/jobs/$JOB" | field state)
  [ "$STATE" = running ] || break
  sleep "${MOVIEREC_DAG_POLL_S:-10}"
done
curl -fsS "${AUTH[@]}" "$URL/jobs/$JOB"; echo
[ "$STATE" = succeeded ]
"""

STATUS = PRELUDE + """
curl -fsS "${AUTH[@]}" "$URL/model/status"; echo
"""

with DAG(
    dag_id="movierec_retrain_api",
    description="Retrain through the service's API (POST /train), then report its status.",
    schedule=INTERVAL,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["movierec"],
) as dag:
    train = BashOperator(task_id="train", bash_command=TRAIN)
    status = BashOperator(task_id="status", bash_command=STATUS)
    train >> status
