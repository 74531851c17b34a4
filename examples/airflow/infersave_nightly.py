"""Nightly InferSave DAG (Airflow 2.9+ and 3.x): re-plan the fleet with the InferSave operator, cross-check it
through the CLI, then run the price-shock sweep and draw its plots.

Tasks::

    plan ──────┐
               ├─> sweep ─> plot
    plan_cli ──┘

* ``plan`` (``solver.airflow.InferSavePlanOperator``) writes ``plan_<ds_nodash>.json`` and pushes a summary
  (status, objective, run-rate USD/h, one-off USD, VMs, GPUs, catalog date, calibration id) to XCom. An
  infeasible scenario or bad input fails the task without retries; a solver failure is retried.
* ``plan_cli`` runs ``infersave plan ... --format json``. Exit codes: 0 plan found, 1 infeasible, 2 bad input,
  3 solver error or time limit without a plan.
* ``sweep`` runs ``infersave sweep``; exit 1 (some points infeasible) still wrote the results, so it passes.
* ``plot`` writes the PNGs and an HTML report next to the results.

Paths reach the shell tasks only through environment variables (``env=``, rendered by Airflow), never pasted
into the command text, so a path with spaces or quotes cannot change the command.

Configure with environment variables on the scheduler/workers: ``INFERSAVE_HOME`` (a checkout of this
repository, for the bundled scenarios; default: two levels above this file), ``INFERSAVE_SCENARIO``,
``INFERSAVE_SWEEP``, ``INFERSAVE_OUT`` (default ``/tmp/infersave``), ``INFERSAVE_TIME_LIMIT_S`` (default 300).
The workers need ``pip install 'infersave[airflow]'`` (this repository) with ``infersave`` on their PATH.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

try:  # Airflow 3: the task SDK
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.9 / 2.10
    from airflow import DAG

try:  # Airflow 3 (and 2.x with apache-airflow-providers-standard)
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2.9 / 2.10 core operators
    from airflow.operators.bash import BashOperator

from solver.airflow import InferSavePlanOperator

HOME = Path(os.environ.get("INFERSAVE_HOME", Path(__file__).resolve().parents[2]))
SCENARIO = os.environ.get("INFERSAVE_SCENARIO", str(HOME / "scenarios" / "chat_fleet.yaml"))
SWEEP = os.environ.get("INFERSAVE_SWEEP", str(HOME / "scenarios" / "sweep_price_shock.yaml"))
OUT = os.environ.get("INFERSAVE_OUT", "/tmp/infersave")
TIME_LIMIT_S = os.environ.get("INFERSAVE_TIME_LIMIT_S", "300")

PLAN_CLI = """
set -u
mkdir -p "$OUT"
target="$OUT/plan_cli_$RUN_ID.json"
infersave plan "$SCENARIO" --format json --no-timings --time-limit "$TIME_LIMIT_S" --out "$target"
rc=$?
case $rc in
  0) echo "$target" ;;
  1) echo "infeasible: no fleet meets the SLOs within the limits (details in $target)" >&2; exit 1 ;;
  2) echo "bad input: fix the scenario or catalog files" >&2; exit 2 ;;
  3) echo "solver error or time limit without a plan: raise INFERSAVE_TIME_LIMIT_S" >&2; exit 3 ;;
  *) echo "infersave exited with $rc" >&2; exit "$rc" ;;
esac
"""

SWEEP_CLI = """
set -u
mkdir -p "$OUT"
target="$OUT/sweep_$RUN_ID.parquet"
infersave sweep "$SWEEP" --out "$target" --workers 2 --quiet
rc=$?
# 1: some points are infeasible, which is a result of the sweep; the table was written
if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then exit "$rc"; fi
echo "$target"
"""

PLOT_CLI = """
set -eu
infersave plot "$RESULTS" --out "$OUT/plots_$RUN_ID"
infersave report "$RESULTS" --out "$OUT/plots_$RUN_ID/report.html"
echo "$OUT/plots_$RUN_ID"
"""

# rendered by Airflow (env is a templated field of BashOperator); the shell only ever sees variables
ENV = {"OUT": "{{ params.out }}", "SCENARIO": "{{ params.scenario }}", "SWEEP": "{{ params.sweep }}",
       "TIME_LIMIT_S": "{{ params.time_limit_s }}", "RUN_ID": "{{ ds_nodash }}"}

with DAG(
    dag_id="infersave_nightly",
    description="Re-plan the LLM GPU fleet nightly and run the price-shock sweep",
    schedule="0 2 * * *",  # nightly at 02:00
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "infersave", "retries": 1, "retry_delay": timedelta(minutes=10)},
    params={"scenario": SCENARIO, "sweep": SWEEP, "out": OUT, "time_limit_s": TIME_LIMIT_S},
    tags=["infersave", "capacity-planning"],
) as dag:
    plan = InferSavePlanOperator(task_id="plan", scenario="{{ params.scenario }}",
                                 out="{{ params.out }}/plan_{{ ds_nodash }}.json",
                                 time_limit_s="{{ params.time_limit_s }}", solver="highs")
    # exit codes 1 and 2 cannot be cured by a retry; 3 (time limit) would only repeat, so no retries here
    plan_cli = BashOperator(task_id="plan_cli", bash_command=PLAN_CLI, env=ENV, append_env=True, retries=0)
    sweep = BashOperator(task_id="sweep", bash_command=SWEEP_CLI, env=ENV, append_env=True,
                         execution_timeout=timedelta(hours=1))
    plot = BashOperator(task_id="plot", bash_command=PLOT_CLI, append_env=True,
                        env={**ENV, "RESULTS": "{{ ti.xcom_pull(task_ids='sweep') }}"})

    [plan, plan_cli] >> sweep >> plot
