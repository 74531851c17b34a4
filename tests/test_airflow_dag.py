"""The example Airflow DAG (examples/airflow/infersave_nightly.py) loads, has the expected tasks and wiring, and
its Python task returns a plan as JSON. Skipped unless Airflow is installed (``pip install -e .[airflow]``)."""
from __future__ import annotations

import importlib.util
import json
import os
import tempfile

import pytest

from conftest import ROOT, SCENARIOS

# Airflow reads AIRFLOW_HOME on import; keep it (and its config/sqlite files) out of the user's ~/airflow
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="infersave-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

pytest.importorskip("airflow", reason="Airflow extra not installed: pip install -e .[airflow]")

DAG_FILE = ROOT / "examples" / "airflow" / "infersave_nightly.py"


@pytest.fixture(scope="module")
def module():
    spec = importlib.util.spec_from_file_location("infersave_nightly", DAG_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dag_loads_in_a_dagbag():
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3.1+
    except ImportError:
        from airflow.models.dagbag import DagBag
    try:
        bag = DagBag(dag_folder=str(DAG_FILE), include_examples=False)
    except TypeError:  # newer Airflow 3 dropped include_examples (examples come from the config)
        bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    assert "infersave_nightly" in bag.dag_ids


def test_tasks_and_dependencies(module):
    dag = module.dag
    assert dag.dag_id == "infersave_nightly"
    assert set(dag.task_ids) == {"plan_python", "plan_cli", "sweep", "plot"}
    assert dag.get_task("plan_python").downstream_task_ids == {"sweep"}
    assert dag.get_task("plan_cli").downstream_task_ids == {"sweep"}
    assert dag.get_task("sweep").upstream_task_ids == {"plan_python", "plan_cli"}
    assert dag.get_task("plot").upstream_task_ids == {"sweep"}
    assert not dag.catchup
    assert "infersave plan" in dag.get_task("plan_cli").bash_command
    assert "--format json" in dag.get_task("plan_cli").bash_command
    assert "infersave sweep" in dag.get_task("sweep").bash_command
    assert type(dag.get_task("plan_python")).__name__ == "PythonOperator"


def test_python_task_callable_returns_plan_json(module):
    payload = json.loads(module.plan_fleet(str(SCENARIOS / "sweep_base.yaml")))
    assert payload["status"] == "optimal" and payload["assignments"]


def test_python_task_fails_without_retry_when_infeasible(module):
    with pytest.raises(module.AirflowFailException, match="infeasible"):
        module.plan_fleet(str(SCENARIOS / "infeasible_tight_slo.yaml"))
