"""The Airflow operator (solver/airflow.py) and the example DAG (examples/airflow/infersave_nightly.py): the DAG
loads, has the expected tasks and wiring, passes paths to shell tasks only through the environment, the operator
plans and returns its XCom summary or fails without retry, and the whole DAG runs with ``dag.test()``.
Skipped unless Airflow is installed (``pip install -e '.[airflow]'``)."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, SCENARIOS

# Airflow reads AIRFLOW_HOME on import; keep it (and its config/sqlite files) out of the user's ~/airflow
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="infersave-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
# Airflow 3's dag.test() runs the DAG as parsed from the dags folder (the "dags-folder" bundle)
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "examples" / "airflow"))

pytest.importorskip("airflow", reason="Airflow extra not installed: pip install -e .[airflow]")

from solver.airflow import AirflowFailException, InferSavePlanOperator  # noqa: E402

DAG_FILE = ROOT / "examples" / "airflow" / "infersave_nightly.py"


def load_dag_module(name: str = "infersave_nightly"):
    spec = importlib.util.spec_from_file_location(name, DAG_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def module():
    return load_dag_module()


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


def test_tasks_dependencies_and_env_only_shell(module):
    dag = module.dag
    assert dag.dag_id == "infersave_nightly"
    assert set(dag.task_ids) == {"plan", "plan_cli", "sweep", "plot"}
    assert dag.get_task("sweep").upstream_task_ids == {"plan", "plan_cli"}
    assert dag.get_task("plot").upstream_task_ids == {"sweep"}
    assert not dag.catchup
    plan = dag.get_task("plan")
    assert isinstance(plan, InferSavePlanOperator)
    assert set(plan.template_fields) == {"scenario", "out", "time_limit_s", "solver"}
    for task_id in ("plan_cli", "sweep", "plot"):
        task = dag.get_task(task_id)
        assert "{{" not in task.bash_command, task_id  # values reach the shell via env only
        assert "OUT" in task.env
    assert "infersave plan" in dag.get_task("plan_cli").bash_command
    assert "infersave sweep" in dag.get_task("sweep").bash_command


def test_operator_returns_summary_and_writes_plan(tmp_path):
    out = tmp_path / "plan.json"
    op = InferSavePlanOperator(task_id="p", scenario=str(SCENARIOS / "sweep_base.yaml"), out=str(out),
                               time_limit_s="60", solver="highs")
    summary = op.execute({})
    plan = json.loads(out.read_text())
    assert summary["status"] == plan["status"] == "optimal"
    assert summary["objective"] == pytest.approx(plan["objective"])
    assert summary["online_usd_per_hour"] == pytest.approx(plan["online_usd_per_hour"])
    assert summary["catalog_retrieved"] == "2026-11-25" and summary["plan_path"] == str(out)
    json.dumps(summary)  # XCom needs JSON-serialisable values


@pytest.mark.parametrize("kwargs, match", [
    ({"scenario": str(SCENARIOS / "infeasible_tight_slo.yaml")}, "infeasible: workload 'instant-70b'"),
    ({"scenario": "/nonexistent/scenario.yaml"}, "bad input: "),
    ({"scenario": str(SCENARIOS / "sweep_base.yaml"), "time_limit_s": "soon"}, "bad input: time_limit_s"),
    ({"scenario": str(SCENARIOS / "sweep_base.yaml"), "solver": "gurobi"}, "bad input: solver"),
])
def test_operator_fails_without_retry_on_bad_input_or_infeasible(tmp_path, kwargs, match):
    op = InferSavePlanOperator(task_id="p", out=str(tmp_path / "plan.json"), **kwargs)
    with pytest.raises(AirflowFailException, match=match):
        op.execute({})
    assert not (tmp_path / "plan.json").exists()


def test_dag_test_runs_end_to_end(tmp_path, monkeypatch):
    """``dag.test()`` on a 2-point sweep; the shell tasks find ``infersave`` beside this interpreter."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"name: tiny\nbase: {SCENARIOS / 'sweep_base.yaml'}\naxes:\n  price.gpu.H100: [1.0, 2.0]\n")
    out = tmp_path / "out dir"  # a space: paths travel through env, not the command text
    monkeypatch.setenv("INFERSAVE_OUT", str(out))
    monkeypatch.setenv("INFERSAVE_SWEEP", str(sweep))
    monkeypatch.setenv("INFERSAVE_SCENARIO", str(SCENARIOS / "sweep_base.yaml"))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    from airflow.utils import db

    db.resetdb()  # the temporary AIRFLOW_HOME's sqlite metadata database (dag.test() records its run there)
    dag = load_dag_module("infersave_nightly_e2e").dag
    run = dag.test()
    assert str(getattr(run.state, "value", run.state)) == "success", run.state
    plans = sorted(p.name for p in out.glob("plan_*.json"))
    assert len(plans) == 2 and sum(p.startswith("plan_cli_") for p in plans) == 1
    assert len(list(out.glob("sweep_*.parquet"))) == 1
    plots = next(out.glob("plots_*"))
    assert (plots / "fleet_composition.png").exists() and (plots / "report.html").exists()
