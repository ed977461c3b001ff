"""A cancelled SLURM job ends the run (models/run/slurm_status.py): the plugin's own ``check_active_jobs``
fed ``CANCELLED by 0`` by a fake ``sacct`` reports the job as failed with the fix and keeps waiting on it
without (the control: the plugin as shipped), and the workflow under ``profiles/slurm`` ends by itself
on that state with the fix and not without it. The real-cluster case (``scancel``) is
tests/test_slurm_cluster.py."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from extractors.synthetic_videos import make_demo_dataset
from models.run import slurm_status

plugin = pytest.importorskip("snakemake_executor_plugin_slurm")
REPO = Path(__file__).resolve().parents[1]
JOB = "4242"


@pytest.mark.parametrize("text, state", [
    ("CANCELLED by 0", "CANCELLED"), ("CANCELLED by 1000", "CANCELLED"), ("CANCELLED+", "CANCELLED"),
    ("COMPLETED", "COMPLETED"), ("RUNNING", "RUNNING"), ("OUT_OF_MEMORY", "OUT_OF_MEMORY"), ("", ""),
])
def test_base_state(text, state):
    assert slurm_status.base_state(text) == state


def fake_slurm(bin_dir: Path, state: str) -> None:
    """``sacct`` that answers every query with one job in ``state``; ``scontrol`` that knows nothing."""
    bin_dir.mkdir(exist_ok=True)
    for name, body in {"sacct": f"#!/bin/sh\necho '{JOB}|{state}'\n", "scontrol": "#!/bin/sh\nexit 1\n"}.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)


def poll(state: str, tmp_path: Path, monkeypatch) -> dict[str, list]:
    """One status poll of the plugin's Executor.check_active_jobs for one submitted job whose sacct
    State is ``state``: which jobs it reports done, failed (with the message) or still running."""
    from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo

    fake_slurm(tmp_path / "bin", state)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    seen: dict[str, list] = {"success": [], "error": [], "running": []}
    ex = object.__new__(plugin.Executor)  # the state check_active_jobs reads; no workflow, no submission
    ex.workflow = SimpleNamespace(executor_settings=SimpleNamespace(
        init_seconds_before_status_checks=1, status_attempts=1, keep_successful_logs=True,
        status_command="sacct", requeue=False))
    ex.logger, ex.run_uuid = logging.getLogger("slurm-status-test"), "run"
    ex._status_query_failures = ex._status_query_calls = 0
    ex._status_query_total_seconds, ex._status_query_min_seconds, ex._status_query_max_seconds = 0.0, None, 0.0
    ex._status_query_cycle_rows, ex._preemption_warning, ex._failed_nodes = [], False, set()
    ex.next_seconds_between_status_checks = 1
    ex.report_job_success = lambda j: seen["success"].append(j.external_jobid)
    ex.report_job_error = lambda j, msg=None, **kw: seen["error"].append(msg)
    job = SubmittedJobInfo(job=None, external_jobid=JOB, aux={"slurm_logfile": tmp_path / "job.log"})

    async def run() -> None:
        ex.status_rate_limiter = asyncio.Lock()
        seen["running"] = [j.external_jobid async for j in ex.check_active_jobs([job])]

    asyncio.run(run())
    return seen


@pytest.fixture
def shipped(monkeypatch):
    """The plugin's status query as shipped (the fix undone for this test)."""
    query = plugin.query_job_status
    monkeypatch.setattr(plugin, "query_job_status", getattr(query, "__wrapped__", query))


@pytest.fixture
def fixed(monkeypatch, shipped):
    assert slurm_status.install()
    assert plugin.query_job_status.avloc_base_states


def test_control_the_shipped_plugin_waits_on_a_cancelled_job(shipped, tmp_path, monkeypatch):
    """The bug the fix exists for: 'CANCELLED by 0' falls into the plugin's "still running?" branch."""
    assert poll("CANCELLED by 0", tmp_path, monkeypatch) == {"success": [], "error": [], "running": [JOB]}


def test_with_the_fix_a_cancelled_job_is_reported_failed(fixed, tmp_path, monkeypatch):
    seen = poll("CANCELLED by 0", tmp_path, monkeypatch)
    assert seen["running"] == [] and seen["success"] == [] and len(seen["error"]) == 1
    assert f"SLURM-job '{JOB}' failed, SLURM status is: 'CANCELLED'" in seen["error"][0]


@pytest.mark.parametrize("state, outcome", [("COMPLETED", "success"), ("RUNNING", "running"),
                                            ("PENDING", "running"), ("CANCELLED+", "error"), ("FAILED", "error")])
def test_with_the_fix_other_states_read_as_before(fixed, tmp_path, monkeypatch, state, outcome):
    seen = poll(state, tmp_path, monkeypatch)
    assert [k for k, v in seen.items() if v] == [outcome], seen


def test_install_is_idempotent_and_can_be_turned_off(shipped, monkeypatch):
    monkeypatch.setenv(slurm_status.DISABLE_ENV, "0")
    assert not slurm_status.install() and not hasattr(plugin.query_job_status, "avloc_base_states")
    monkeypatch.delenv(slurm_status.DISABLE_ENV)
    assert slurm_status.install() and slurm_status.install()
    wrapped = plugin.query_job_status
    assert wrapped.avloc_base_states and not hasattr(wrapped.__wrapped__, "avloc_base_states")


FAKE_CLUSTER = {  # sbatch submits nothing and prints a job id; sacct: that job was cancelled by root (and,
    # asked for the account of the user's latest job, since the profile names none, the one sacctmgr knows)
    "sbatch": f"#!/bin/sh\necho \"$*\" >> \"$FAKE_SLURM_LOG\"\necho {JOB}\n",
    "sacct": f"#!/bin/sh\ncase \"$*\" in *Account*) echo YOUR_ACCOUNT ;; *) echo '{JOB}|CANCELLED by 0' ;; esac\n",
    "squeue": "#!/bin/sh\nexit 0\n", "sinfo": "#!/bin/sh\nexit 0\n", "scontrol": "#!/bin/sh\nexit 0\n",
    "sacctmgr": "#!/bin/sh\necho YOUR_ACCOUNT\n", "sshare": "#!/bin/sh\necho YOUR_ACCOUNT\n",
}


@pytest.fixture(scope="module")
def one_video(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("one_video")
    make_demo_dataset(root, n_videos=1, duration_s=2.0, seed=0)
    return root


def run_cancelled(root: Path, tmp_path: Path, patch: bool, timeout: float) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKE_CLUSTER.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    cfg = {"datasets": {"one": {"videos": str(root / "videos"), "recipe": "demo",
                                "annotations": str(root / "annotations.json"), "models": ["mil"]}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "FAKE_SLURM_LOG": str(tmp_path / "sbatch.log"), slurm_status.DISABLE_ENV: "1" if patch else "0",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
           "--configfile", str(tmp_path / "config.yaml"), "--workflow-profile", str(REPO / "profiles" / "slurm"),
           "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
           "--latency-wait", "0", "--retries", "0"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout)


def test_workflow_run_ends_on_a_cancelled_submission(one_video, tmp_path):
    """Through the Snakefile (which installs the fix) and profiles/slurm: the submission that sacct says
    was cancelled is named with SLURM's state, its group reported failed, and the run exits non-zero by
    itself."""
    proc = run_cancelled(one_video, tmp_path, patch=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert f"SLURM job {JOB} ended CANCELLED by 0 (sacct): Snakemake reports its jobs as failed" in out, out[-3000:]
    assert "Error in group extract" in out
    assert len((tmp_path / "sbatch.log").read_text().splitlines()) == 1  # the one extract group, once


def test_control_without_the_fix_the_run_waits(one_video, tmp_path):
    """The same run with AVLOC_SLURM_STATUS_PATCH=0 (the plugin as shipped) is still waiting after 25 s,
    more than ten status polls."""
    with pytest.raises(subprocess.TimeoutExpired):
        run_cancelled(one_video, tmp_path, patch=False, timeout=25)
    assert len((tmp_path / "sbatch.log").read_text().splitlines()) == 1
