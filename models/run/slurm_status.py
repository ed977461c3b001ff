"""SLURM job states read as SLURM writes them: a carried fix for snakemake-executor-plugin-slurm.

Why: the plugin (2.8.0, the newest on the package index) keeps ``sacct``'s whole State text and
compares it exactly (``job_status_query.query_job_status`` stores ``row[1].strip()``;
``Executor.check_active_jobs`` tests ``status == "COMPLETED"`` and ``status in fail_stati``). SLURM
writes more than the state there. sacct(1), field ``State``: "If more information is available on the
job state than will fit into the current field width (for example, the UID that CANCELLED a job) the
state will be followed by a '+'"; in the plugin's ``--parsable2`` output nothing is cut and
``src/sacct/print.c`` prints ``"%s by %u"``: ``CANCELLED by 0`` (seen on SLURM 22.05 after
``scancel``). The plugin takes that for its ``else: # still running?`` branch and Snakemake waits for
ever (the same bug: Snakemake-Profiles/slurm PR #22, a review of snakemake PR #2167). ``squeue``'s
``%T`` prints the bare state, but ``slurm-status-command: squeue`` is no fix: the plugin goes back to
``sacct`` whenever ``MinJobAge`` is under three status intervals.

The fix wraps the plugin's module-level ``query_job_status`` (which ``check_active_jobs`` looks up at
every poll) so that each state is its first word without a trailing ``+``. A bare state stays as it
is, so the wrapper does nothing once upstream reads the state itself. The workflow installs it when the
Snakefile is read (workflow/rules/common.smk), so in the submitting Snakemake, where the plugin polls;
``AVLOC_SLURM_STATUS_PATCH=0`` leaves the plugin as shipped (the control in
tests/test_slurm_status.py). docs/cluster.md says what a cancel does now."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

PLUGIN = "snakemake_executor_plugin_slurm"
DISABLE_ENV = "AVLOC_SLURM_STATUS_PATCH"

StatusQuery = Callable[[str, Any], Awaitable[tuple[dict[str, str] | None, float | None]]]


def base_state(text: str) -> str:
    """The state word of a ``sacct``/``squeue`` State value: ``CANCELLED by 0`` -> ``CANCELLED``,
    ``CANCELLED+`` (the uid did not fit the column) -> ``CANCELLED``, ``COMPLETED`` -> ``COMPLETED``."""
    words = text.split()
    return words[0].rstrip("+") if words else text


# The plugin's fail_stati (Executor.check_active_jobs): the states it reports as a failed job.
FAILED_STATES = frozenset({"BOOT_FAIL", "CANCELLED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT",
                           "ERROR"})


def reading_base_states(query: StatusQuery) -> StatusQuery:
    """``query`` (the plugin's ``query_job_status``) with every state cut to :func:`base_state`. A job
    seen in a failed state is named once with SLURM's own words (``CANCELLED by 0``): Snakemake 9
    prints a failed group submission as "Error in group extract" without the plugin's message."""
    named: set[str] = set()

    @functools.wraps(query)
    async def query_job_status(command: str, logger: Any) -> tuple[dict[str, str] | None, float | None]:
        states, seconds = await query(command, logger)
        if states is None:
            return states, seconds
        base = {job: base_state(state) for job, state in states.items()}
        for job, state in states.items():
            if base[job] in FAILED_STATES and job not in named:
                named.add(job)
                logger.warning(f"SLURM job {job} ended {state} (sacct): Snakemake reports its jobs as failed")
        return base, seconds

    query_job_status.avloc_base_states = True  # type: ignore[attr-defined]
    return query_job_status


def install() -> bool:
    """Wrap the plugin's status query (once; True when it is wrapped). Nothing happens when the plugin
    is not installed or ``AVLOC_SLURM_STATUS_PATCH=0``; a plugin without the function (a release that
    moved it) is left alone with a warning, since the fix then no longer applies as written."""
    if os.environ.get(DISABLE_ENV) == "0":
        return False
    module = sys.modules.get(PLUGIN)
    if module is None:
        if importlib.util.find_spec(PLUGIN) is None:
            return False
        module = importlib.import_module(PLUGIN)
    query = getattr(module, "query_job_status", None)
    if query is None or not inspect.iscoroutinefunction(query):
        print(f"[avloc] {PLUGIN} has no async query_job_status: the fix for 'CANCELLED by <uid>' "
              "(models/run/slurm_status.py) is not applied", file=sys.stderr)
        return False
    if not getattr(query, "avloc_base_states", False):
        module.query_job_status = reading_base_states(query)
    return True
