"""A sweep interrupted half-way (SIGTERM, or Ctrl-C reaching the whole process group) stops within 2 s, leaves a
valid partial table and no process behind; ``--resume`` completes it identical to an uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, SCENARIOS, run_cli

SWEEP = "name: signals\nbase: {base}\naxes:\n  price.gpu.H100: [0.5, 1.0, 2.0]\n  pricing: [on_demand, both]\n"
N_POINTS = 6  # of about a second each


def _cli(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INFERSAVE_CHECKPOINT_S": "0"}
    return subprocess.Popen([sys.executable, "-m", "solver.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def _group_gone(pgid: int, within_s: float = 3.0) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).drop(columns=["wall_s"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    """The same sweep, never interrupted."""
    folder = tmp_path_factory.mktemp("reference")
    (folder / "sweep.yaml").write_text(SWEEP.format(base=SCENARIOS / "sweep_base.yaml"), encoding="utf-8")
    done = _cli(["sweep", "sweep.yaml", "--out", "r.parquet", "--workers", "2", "--quiet"], folder)
    done.communicate(timeout=300)
    assert done.returncode == 0
    return _table(folder / "r.parquet")


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_interrupted_sweep_is_partial_then_resumes(how, reference, tmp_path, monkeypatch):
    (tmp_path / "sweep.yaml").write_text(SWEEP.format(base=SCENARIOS / "sweep_base.yaml"), encoding="utf-8")
    partial = tmp_path / "r.partial.parquet"
    # on a busy machine this process can be descheduled long enough for the whole sweep to finish between its first
    # checkpoint and the signal (exit 0, the full table written: seen once under a load of ~5 on 2 cores); such a run
    # was never interrupted, so it is run again, at most three times in all
    for _attempt in range(3):
        for stale in (tmp_path / "r.parquet", partial):
            stale.unlink(missing_ok=True)
        proc = _cli(["sweep", "sweep.yaml", "--out", "r.parquet", "--workers", "2", "--quiet"], tmp_path)
        end = time.monotonic() + 120
        while not partial.exists() and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.05)
        started = time.monotonic()
        if proc.poll() is None:
            if how == "sigterm":
                proc.send_signal(signal.SIGTERM)
            else:  # a terminal sends SIGINT to the whole foreground process group
                os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        if not (proc.returncode == 0 and (tmp_path / "r.parquet").exists()):
            break
    else:
        pytest.fail("the sweep ran to the end three times: it finished before the signal, or ignored it")
    assert time.monotonic() - started < 2.0
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "partial" in lines[0] and "--resume" in lines[0], err
    assert "Traceback" not in err
    assert _group_gone(proc.pid), "a worker or the fork server outlived the sweep"
    assert not (tmp_path / "r.parquet").exists()
    assert not list(tmp_path.glob(".*.tmp"))
    got = _table(partial)
    finished = got["point"].nunique()
    assert 0 < finished < N_POINTS
    # the partial rows are exactly the reference's rows of those points
    pd.testing.assert_frame_equal(got.reset_index(drop=True),
                                  reference[reference["point"].isin(got["point"])].reset_index(drop=True))

    if how != "sigterm":
        return  # resuming is the same whatever stopped the sweep
    monkeypatch.chdir(tmp_path)
    result = run_cli(["sweep", "sweep.yaml", "--out", "r.parquet", "--workers", "1", "--quiet", "--resume"])
    assert result.exit_code == 0, result.stderr
    assert f"{finished} kept from before" in result.stderr
    assert not partial.exists()
    pd.testing.assert_frame_equal(_table(tmp_path / "r.parquet"), reference)
