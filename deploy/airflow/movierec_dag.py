"""Airflow DAG for people who run Airflow: the same CLI commands the scheduler runs.

Copy this file into your DAGs folder; set MOVIEREC_HOME (and MOVIEREC_MLFLOW_URI, ...) in the
worker's environment, or as Airflow Variables exported by your deployment. Tasks:

1. ``ingest_batches``: move files from ``batches/landing/`` through validation into the store
   (``processed/`` or ``failed/`` with their reject reports).
2. ``train``: train on the store with the feedback received, evaluate, log to MLflow, register,
   promote only when better, publish atomically and tell the service to reload.
3. ``report``: print the registry (versions, aliases, metrics) into the task log.
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

MOVIEREC = os.environ.get("MOVIEREC_BIN", "movierec")
INTERVAL = timedelta(hours=float(os.environ.get("MOVIEREC_DAG_INTERVAL_HOURS", "24")))

with DAG(
    dag_id="movierec_retrain",
    description="Ingest landed batches, retrain with feedback, promote only when better.",
    schedule=INTERVAL,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["movierec"],
) as dag:
    ingest = BashOperator(
        task_id="ingest_batches", bash_command=f"{MOVIEREC} scheduler --once --scan-only"
    )
    train = BashOperator(
        task_id="train",
        bash_command=f"{MOVIEREC} train --dataset store --model "
        "${MOVIEREC_TRAIN_MODEL:-ease} --strategies popularity,itemknn,als,ease,mf,ranked",
    )
    report = BashOperator(task_id="report", bash_command=f"{MOVIEREC} model list")
    ingest >> train >> report
