"""Nightly InferSave DAG (Airflow 2.9+ and 3.x): re-plan the fleet, once through the Python API and once through
the CLI, then run the price-shock sweep and draw its plots.

Tasks::

    plan_python ─┐
                 ├─> sweep ─> plot
    plan_cli ────┘

* ``plan_python`` (PythonOperator) calls ``solver.plan.plan`` and returns the plan as JSON (pushed to XCom as
  ``return_value``). An infeasible scenario or bad input fails the task without retries (retrying cannot help);
  a solver failure raises normally and is retried.
* ``plan_cli`` (BashOperator) runs ``infersave plan ... --format json`` and pushes the path of the JSON file.
  Exit codes: 0 plan found, 1 infeasible / no instance meets the SLO (the JSON file then holds
  ``{"status": "infeasible", "message": ...}``), 2 bad input, 3 solver error or time limit without a plan.
* ``sweep`` runs ``infersave sweep``; exit 1 (some points infeasible) still wrote the results, so it passes.
* ``plot`` writes the PNGs next to the results.

Configure with environment variables on the workers: ``INFERSAVE_HOME`` (a checkout of this repository, for the
bundled scenarios; default: two levels above this file), ``INFERSAVE_SCENARIO``, ``INFERSAVE_SWEEP``,
``INFERSAVE_OUT`` (default ``/tmp/infersave``). The workers need ``pip install infersave`` (this repository).
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
    from airflow.providers.standard.operators.python import PythonOperator
except ImportError:  # Airflow 2.9 / 2.10 core operators
    from airflow.operators.bash import BashOperator
    from airflow.operators.python import PythonOperator

try:  # Airflow 3 (airflow.exceptions.AirflowFailException is a deprecated alias there)
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 2.9 / 2.10
    from airflow.exceptions import AirflowFailException

HOME = Path(os.environ.get("INFERSAVE_HOME", Path(__file__).resolve().parents[2]))
SCENARIO = os.environ.get("INFERSAVE_SCENARIO", str(HOME / "scenarios" / "chat_fleet.yaml"))
SWEEP = os.environ.get("INFERSAVE_SWEEP", str(HOME / "scenarios" / "sweep_price_shock.yaml"))
OUT = os.environ.get("INFERSAVE_OUT", "/tmp/infersave")


def plan_fleet(scenario: str, time_limit_s: float | None = 300.0) -> str:
    """Solve the scenario with the Python API; the returned JSON string goes to XCom."""
    from solver.errors import InfeasibleError, InputError, NoCandidatesError
    from solver.plan import plan

    try:
        result = plan(scenario, time_limit_s=time_limit_s, timings=False)
    except (InfeasibleError, NoCandidatesError) as exc:  # a business outcome: no fleet meets the SLO/limits
        raise AirflowFailException(f"infeasible: {exc}") from exc
    except InputError as exc:  # the scenario or catalog is wrong: fix the file
        raise AirflowFailException(f"bad input: {exc}") from exc
    return result.model_dump_json()


PLAN_CLI = """
set -u
mkdir -p "{{ params.out }}"
target="{{ params.out }}/plan_{{ ds_nodash }}.json"
infersave plan "{{ params.scenario }}" --format json --no-timings --time-limit 300 --out "$target"
rc=$?
case $rc in
  0) echo "$target" ;;
  1) echo "infeasible: no fleet meets the SLOs within the limits (details in $target)" >&2; exit 1 ;;
  2) echo "bad input: fix the scenario or catalog files" >&2; exit 2 ;;
  3) echo "solver error or time limit without a plan: raise --time-limit" >&2; exit 3 ;;
  *) echo "infersave exited with $rc" >&2; exit "$rc" ;;
esac
"""

SWEEP_CLI = """
set -u
mkdir -p "{{ params.out }}"
target="{{ params.out }}/sweep_{{ ds_nodash }}.parquet"
infersave sweep "{{ params.sweep }}" --out "$target" --workers 2 --quiet
rc=$?
# 1: some points are infeasible, which is a result of the sweep; the table was written
if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then exit "$rc"; fi
echo "$target"
"""

PLOT_CLI = """
set -eu
infersave plot "{{ ti.xcom_pull(task_ids='sweep') }}" --out "{{ params.out }}/plots_{{ ds_nodash }}"
echo "{{ params.out }}/plots_{{ ds_nodash }}"
"""

with DAG(
    dag_id="infersave_nightly",
    description="Re-plan the LLM GPU fleet nightly and run the price-shock sweep",
    schedule="0 2 * * *",  # nightly at 02:00
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "infersave", "retries": 1, "retry_delay": timedelta(minutes=10)},
    params={"scenario": SCENARIO, "sweep": SWEEP, "out": OUT},
    tags=["infersave", "capacity-planning"],
) as dag:
    plan_python = PythonOperator(task_id="plan_python", python_callable=plan_fleet,
                                 op_kwargs={"scenario": SCENARIO})
    # exit codes 1 and 2 cannot be cured by a retry; 3 (time limit) would only repeat, so no retries here
    plan_cli = BashOperator(task_id="plan_cli", bash_command=PLAN_CLI, retries=0)
    sweep = BashOperator(task_id="sweep", bash_command=SWEEP_CLI, execution_timeout=timedelta(hours=1))
    plot = BashOperator(task_id="plot", bash_command=PLOT_CLI)

    [plan_python, plan_cli] >> sweep >> plot
