"""The SLURM profile against a real controller: ``profiles/slurm`` (account and partitions filled in for
the one-node cluster of ``ci/slurm/up.sh``) runs a small but complete workflow through
``snakemake --workflow-profile``: generated clips (one undecodable, one whose name has spaces and quotes) ->
grouped media + features submissions -> feature store -> training (2 epochs) -> evaluation -> summary.

What only a real cluster shows, asserted from ``sacct`` and the outputs: the controller accepts the
profile's requests; every rule is a SLURM job; the extraction is grouped as configured; each submission
asks for at most one GPU on the partition it should; the features equal a local run's bit for bit; the
resident workers started inside an allocation are gone when it ends and left their per-job records; a
second run submits nothing; ``scancel`` of a running submission ends the run non-zero with the job named
as cancelled, and the rerun resubmits only that submission.

Marked ``slurm`` and skipped (with the reason) where no cluster answers. CI:
``ci/slurm/ci.sh`` (brings the cluster up, runs this file, tears it down). By hand:
``sudo ci/slurm/up.sh && python -m pytest tests/test_slurm_cluster.py -m slurm``. Another cluster:
``AVLOC_SLURM_ACCOUNT``, ``AVLOC_SLURM_CPU_PARTITION``, ``AVLOC_SLURM_GPU_PARTITION`` (default: the
submitting user's default account, ``cpu``, ``gpu``)."""

from __future__ import annotations

import filecmp
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from extractors.synthetic_videos import make_demo_dataset

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slurm

N_GOOD = 4  # decodable clips; + one undecodable
PER_SUBMISSION = 2  # group-components extract=2: 4 clips -> 2 extraction submissions
ODD_NAME = 'a "quoted" clip with spaces'  # not both quote kinds, no comma: see README "Cluster"
# Rules that run as their own submission (no localrules in this workflow), and on which partition.
GPU_RULES = {"train", "evaluate"}
CPU_RULES = {"feature_store", "compare", "metrics_page", "summary"}


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 60), **kw)


def cluster_problem() -> str | None:
    """Why no test can run here (None: a cluster answers and has an idle node)."""
    if shutil.which("sinfo") is None or shutil.which("sacct") is None:
        return "no SLURM client (sinfo/sacct) on PATH: start a one-node cluster with ci/slurm/up.sh"
    try:
        states = _run(["sinfo", "-h", "-o", "%T"], timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if states.returncode != 0:
        return f"no SLURM cluster answers (sinfo: {states.stderr.strip()[:200]}): see ci/slurm/up.sh"
    if not {s.rstrip("*~#") for s in states.stdout.split()} & {"idle", "mixed"} or "*" in states.stdout:
        return f"the SLURM cluster has no responding idle node (sinfo states: {states.stdout.split()})"
    if _run(["sacct", "-n", "-X", "-S", "now-1minutes"], timeout=20).returncode != 0:
        return "sacct does not answer (no slurmdbd accounting)"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')"
    return None


def default_account() -> str:
    user = os.environ.get("USER") or _run(["id", "-un"]).stdout.strip()
    out = _run(["sacctmgr", "-n", "-P", "show", "user", user, "format=defaultaccount"]).stdout.split()
    return out[0] if out else "avloc"


def node_limits() -> tuple[int, int]:
    """(CPUs, RealMemory MB) of the smallest node: requests above them are rejected by the controller."""
    out = _run(["sinfo", "-h", "-N", "-o", "%c %m"]).stdout.split("\n")
    pairs = [tuple(int(x.rstrip("+")) for x in line.split()) for line in out if line.strip()]
    return min(p[0] for p in pairs), min(p[1] for p in pairs)


def local_profile(src: Path, dst: Path, account: str, cpu_part: str, gpu_part: str, cpus: int,
                  mem_mb: int) -> dict:
    """``profiles/slurm`` for this cluster: its one placeholder filled in and the two optional fields set
    (what docs/cluster.md tells a user to edit), the group size cut to 2 so 4 clips make 2 grouped
    submissions, and the per-rule threads and memory capped to the node (a 2-core CI machine has no
    8-core, 64 GB node; the controller rejects larger requests). Status polling is quicker than on a busy
    cluster and a failed job is not retried (the cancel test). Nothing else changes."""
    text = src.read_text()
    settings = "\n".join(line.split("#")[0] for line in text.splitlines())  # not the comments
    assert re.findall(r"YOUR_\w+", settings) == ["YOUR_GPU_PARTITION"], "one placeholder (docs/cluster.md)"
    prof = yaml.safe_load(text.replace("YOUR_GPU_PARTITION", gpu_part))
    prof["default-resources"].update(slurm_account=account, slurm_partition=cpu_part)
    prof["group-components"] = [f"extract={PER_SUBMISSION}"]
    prof["cores"] = cpus
    prof["resources"] = [r if not r.startswith("mem_mb=") else f"mem_mb={mem_mb}" for r in prof["resources"]]
    prof["default-resources"]["mem_mb"] = min(prof["default-resources"]["mem_mb"], mem_mb // 4)
    for spec in prof["set-resources"].values():
        spec["mem_mb"] = min(spec["mem_mb"], mem_mb // 4)
    prof["set-threads"] = {rule: min(n, cpus) for rule, n in prof["set-threads"].items()}
    prof["slurm-init-seconds-before-status-checks"] = 2
    prof["seconds-between-status-checks"] = 5
    prof["slurm-keep-successful-logs"] = True
    prof["retries"] = 0
    dst.mkdir(parents=True)
    (dst / "config.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    return prof


def sacct_jobs(workdir: Path, since: str) -> list[dict[str, str]]:
    """The allocations (no steps) submitted from ``workdir`` since ``since``."""
    fields = ["JobID", "JobName", "Comment", "Partition", "Account", "ReqTRES", "AllocTRES", "State",
              "ExitCode", "WorkDir", "Start", "End"]
    out = _run(["sacct", "-n", "-P", "-X", "-S", since, "-o", ",".join(fields)]).stdout
    rows = [dict(zip(fields, line.split("|"), strict=False)) for line in out.splitlines() if line.strip()]
    return [r for r in rows if os.path.realpath(r["WorkDir"]) == os.path.realpath(workdir)]


def queued_jobs(workdir: Path) -> list[str]:
    """Job ids from ``workdir`` that SLURM still has pending or running."""
    out = _run(["squeue", "-h", "-o", "%i|%Z"]).stdout
    rows = [line.split("|", 1) for line in out.splitlines() if "|" in line]
    return [i for i, wd in rows if os.path.realpath(wd) == os.path.realpath(workdir)]


def running_extractions(workdir: Path) -> list[str]:
    """Job ids of the running extraction submissions from ``workdir`` (squeue: sacct has the comment only
    once a job ended)."""
    out = _run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k|%Z"]).stdout
    rows = [line.split("|", 2) for line in out.splitlines() if line.count("|") == 2]
    return [i for i, comment, wd in rows if os.path.realpath(wd) == os.path.realpath(workdir)
            and comment.startswith("rule_extract")]


def gpus_requested(tres: str) -> int:
    m = re.search(r"gres/gpu(?::[^=,]+)?=(\d+)", tres)
    return int(m.group(1)) if m else 0


def snakemake(workdir: Path, *args: str, targets: list[str] = (), timeout: int = 1500) -> subprocess.CompletedProcess:
    """Snakemake in ``workdir`` with its config; the targets go first (options like --resources and
    --configfile take several values)."""
    cmd = [sys.executable, "-m", "snakemake", *targets, "-s", str(workdir / "Snakefile"), "-d", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir, timeout=timeout)


def wait_until_gone(pids: set[int], timeout_s: float) -> set[int]:
    deadline = time.monotonic() + timeout_s
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if Path(f"/proc/{p}").exists()}
        if alive:
            time.sleep(1)
    return alive


@pytest.fixture(scope="module")
def cluster() -> dict:
    problem = cluster_problem()
    if problem and os.environ.get("AVLOC_SLURM_REQUIRED") == "1":  # CI (ci/slurm/ci.sh): a skip would hide it
        pytest.fail(f"AVLOC_SLURM_REQUIRED=1 but {problem}")
    if problem:
        pytest.skip(problem)
    # the rules run `python` from PATH (on the node too: SLURM exports this environment)
    probe = _run(["python", "-c", "import av, torch, extractors"], timeout=120)
    if probe.returncode != 0:
        pytest.fail(f"`python` on PATH ({shutil.which('python')}) cannot import the project: activate its "
                    f"virtual environment first\n{probe.stderr[-1000:]}")
    cpus, mem = node_limits()
    return {"account": os.environ.get("AVLOC_SLURM_ACCOUNT") or default_account(),
            "cpu": os.environ.get("AVLOC_SLURM_CPU_PARTITION", "cpu"),
            "gpu": os.environ.get("AVLOC_SLURM_GPU_PARTITION", "gpu"), "cpus": cpus, "mem_mb": mem}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("slurm_clips")
    make_demo_dataset(root / "gen", n_videos=N_GOOD, duration_s=3.0, seed=1)
    videos = root / "videos"
    shutil.copytree(root / "gen" / "videos", videos)
    ann = json.loads((root / "gen" / "annotations.json").read_text())
    first = sorted(videos.glob("*.mp4"))[0]
    first.rename(videos / f"{ODD_NAME}.mp4")
    ann["database"][ODD_NAME] = ann["database"].pop(first.stem)
    (videos / "broken.mp4").write_text("this is not a video\n")
    (root / "annotations.json").write_text(json.dumps(ann))
    return videos, root / "annotations.json"


def workflow_copy(dest: Path, videos: Path, annotations: Path) -> Path:
    """The repository's workflow (Snakefile, rules, scripts, schema, envs, published numbers) in ``dest``, with
    a tiny config instead of config/config.yaml."""
    dest.mkdir(parents=True)
    shutil.copy2(REPO / "Snakefile", dest / "Snakefile")
    shutil.copytree(REPO / "workflow", dest / "workflow")
    shutil.copytree(REPO / "envs", dest / "envs")  # the rules' conda: files (Snakemake records their hash)
    # the workstation profile too: Snakemake reads profiles/default beside the Snakefile unless
    # --workflow-profile names another, and its default-resources would replace the SLURM profile's
    shutil.copytree(REPO / "profiles" / "default", dest / "profiles" / "default")
    (dest / "config").mkdir()
    shutil.copy2(REPO / "config" / "published.yaml", dest / "config" / "published.yaml")  # read by reproduce.smk
    cfg = {"datasets": {"tiny": {
        "videos": str(videos), "recipe": "demo", "annotations": str(annotations),
        "recipe_overrides": {"t_max": 16}, "models": ["mil"],
        "train": {"epochs": 2, "batch_size": 2, "lr": 0.001, "seed": 0}}}}
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dest


@pytest.fixture(scope="module")
def slurm_run(cluster, clips, tmp_path_factory) -> dict:
    """The whole workflow through the filled-in profile, then a second invocation (must submit nothing),
    plus the same workflow run locally (no SLURM) in its own copy."""
    videos, annotations = clips
    base = tmp_path_factory.mktemp("slurm_cluster")
    work = workflow_copy(base / "work", videos, annotations)
    prof = local_profile(REPO / "profiles" / "slurm" / "config.yaml", work / "profiles" / "slurm",
                         cluster["account"], cluster["cpu"], cluster["gpu"], cluster["cpus"], cluster["mem_mb"])
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 2))
    t0 = time.monotonic()
    first = snakemake(work, "--workflow-profile", str(work / "profiles" / "slurm"))
    wall = time.monotonic() - t0
    assert first.returncode == 0, f"snakemake --workflow-profile failed:\n{first.stdout[-3000:]}\n{first.stderr[-8000:]}"
    jobs = sacct_jobs(work, since)
    second = snakemake(work, "--workflow-profile", str(work / "profiles" / "slurm"))
    jobs_after = sacct_jobs(work, since)
    # the same workflow on this machine, without SLURM: the features to compare, the time to compare
    local = workflow_copy(base / "local", videos, annotations)
    t0 = time.monotonic()
    loc = snakemake(local, "--cores", str(cluster["cpus"]), "--workflow-profile", "none", "--resources", "gpu=1")
    local_wall = time.monotonic() - t0
    assert loc.returncode == 0, f"local run failed:\n{loc.stdout[-3000:]}\n{loc.stderr[-6000:]}"
    summary = {"submissions": len(jobs), "slurm_wall_s": round(wall, 1), "local_wall_s": round(local_wall, 1)}
    print(f"[slurm cluster] {json.dumps(summary)}; sacct jobs: "
          + ", ".join(f"{j['JobID']} {j['Comment']} {j['Partition']} {j['ReqTRES']} {j['State']}" for j in jobs))
    return {"work": work, "local": local, "jobs": jobs, "jobs_after": jobs_after, "first": first,
            "second": second, "profile": prof, "wall": wall}


def _rule(comment: str) -> str:
    m = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", comment)
    assert m, f"unexpected submission comment {comment!r}"
    return m.group(1)


def test_every_rule_is_a_slurm_job_grouped_and_on_its_partition(slurm_run, cluster):
    jobs = slurm_run["jobs"]
    assert jobs, "sacct lists no job submitted from the run's directory"
    assert all(j["State"] == "COMPLETED" and j["ExitCode"] == "0:0" for j in jobs), jobs
    assert {j["Account"] for j in jobs} == {cluster["account"]}
    by_rule: dict[str, list[dict]] = {}
    for j in jobs:
        by_rule.setdefault(_rule(j["Comment"]), []).append(j)
    extract = [j for rule, js in by_rule.items() if rule not in GPU_RULES | CPU_RULES for j in js]
    # Nothing but the dataset-level rules and the extraction groups, once each: no rule ran locally (the
    # workflow declares no localrules) and no per-video submission escaped the group.
    assert {r: len(js) for r, js in by_rule.items() if r in GPU_RULES | CPU_RULES} == dict.fromkeys(
        GPU_RULES | CPU_RULES, 1), by_rule.keys()
    assert len(extract) == math.ceil(N_GOOD / PER_SUBMISSION), [j["Comment"] for j in extract]
    # On the submitting machine only the aggregate target `all` (no command; Snakemake never submits a
    # rule without one), nothing else.
    local = set(re.findall(r"^localrule (\S+):", slurm_run["first"].stderr + slurm_run["first"].stdout, re.M))
    assert local <= {"all"}, f"ran on the submitting machine: {local}"
    for j in jobs:
        rule = _rule(j["Comment"])
        gpu = rule not in CPU_RULES
        assert j["Partition"] == (cluster["gpu"] if gpu else cluster["cpu"]), j
        assert gpus_requested(j["ReqTRES"]) == (1 if gpu else 0), j
        assert gpus_requested(j["AllocTRES"]) == (1 if gpu else 0), j


def test_resident_workers_left_records_and_died_with_their_allocation(slurm_run):
    work = slurm_run["work"]
    good = sorted(p.stem for p in (work / "results" / "tiny" / "media").glob("*.json"))
    assert len(good) == N_GOOD and ODD_NAME in good
    pids: set[int] = set()
    for stage in ("media", "features"):
        for vid in good:
            rec = json.loads((work / "benchmarks" / "tiny" / stage / f"{vid}.worker.json").read_text())
            assert rec["rc"] == 0 and rec["mode"].startswith("worker") and rec["wall_s"] > 0, rec
            pids.add(rec["pid"])
    # The plugin's job step runs each job of a group as its own `srun` step, and the worker's socket is
    # keyed by SLURM_STEP_ID: one worker per job here (not one per submission, as on a workstation).
    print(f"[slurm cluster] {len(pids)} resident workers for {2 * N_GOOD} extraction jobs")
    # Every one of them is gone once its step ended: proctrack/cgroup kills what a step left running,
    # also a worker in its own session re-parented to init.
    left = wait_until_gone(pids, timeout_s=30)
    assert not left, f"resident workers outlived their SLURM allocation: {sorted(left)}"


def test_features_equal_a_local_run_and_the_bad_clip_is_reported(slurm_run):
    work, local = slurm_run["work"], slurm_run["local"]
    for kind in ("i3d", "vggish"):
        got = sorted((work / "results" / "tiny" / "features" / kind).glob("*.npy"))
        assert [p.name for p in got] == sorted(p.name for p in (local / "results" / "tiny" / "features" / kind).glob("*.npy"))
        assert len(got) == N_GOOD
        for p in got:
            assert filecmp.cmp(p, local / "results" / "tiny" / "features" / kind / p.name, shallow=False), p.name
    rejected = (work / "logs" / "tiny" / "rejected_videos.tsv").read_text().splitlines()
    assert len(rejected) == 2 and rejected[1].startswith("broken.mp4\t"), rejected
    html = (work / "results" / "tiny" / "summary.html").read_text()
    assert "broken.mp4" in html
    metrics = json.loads((work / "results" / "tiny" / "models" / "mil" / "metrics.json").read_text())
    assert 0.0 <= metrics["avg"] <= 1.0


def test_second_run_submits_nothing(slurm_run):
    second = slurm_run["second"]
    assert second.returncode == 0, second.stderr[-4000:]
    assert "Nothing to be done" in second.stdout + second.stderr
    assert len(slurm_run["jobs_after"]) == len(slurm_run["jobs"])


def test_no_gpu_left_allocated(slurm_run, cluster):
    node = _run(["scontrol", "show", "node", "-o"]).stdout
    busy = _run(["squeue", "-h", "-o", "%i"]).stdout.split()
    if not busy:  # with other jobs on the cluster their GPUs may be held
        assert "gres/gpu=" not in "".join(re.findall(r"AllocTRES=\S*", node)), node


def test_scancel_is_reported_and_the_rerun_resubmits_only_the_cancelled_submission(slurm_run, cluster, clips,
                                                                            tmp_path):
    """Cancel the running extraction submission once its first video is done: Snakemake names the
    cancelled job with SLURM's state, finishes the other submission and exits non-zero by itself; a rerun
    resubmits only the cancelled submission (not the other one's videos) and ends with the same features.
    SLURM 22.05's sacct reports a user's cancel as 'CANCELLED by <uid>', which snakemake-executor-plugin-slurm
    2.8.0 as shipped takes for a running job (Snakemake then waits for ever): the workflow reads the state
    word instead (models/run/slurm_status.py; its controls are in tests/test_slurm_status.py)."""
    videos, annotations = clips
    work = workflow_copy(tmp_path / "work", videos, annotations)
    local_profile(REPO / "profiles" / "slurm" / "config.yaml", work / "profiles" / "slurm",
                  cluster["account"], cluster["cpu"], cluster["gpu"], cluster["cpus"], cluster["mem_mb"])
    targets = [f"results/tiny/features/i3d/{Path(v).stem}.npy" for v in os.listdir(videos) if v != "broken.mp4"]
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 2))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    cmd = [sys.executable, "-m", "snakemake", *targets, "-s", str(work / "Snakefile"), "-d", str(work),
           "--workflow-profile", str(work / "profiles" / "slurm"), "--configfile", str(work / "config.yaml")]
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work, text=True)
        cancelled, done_before, reported = None, set(), False
        deadline = time.monotonic() + 900
        try:
            while cancelled is None and time.monotonic() < deadline and proc.poll() is None:
                running = running_extractions(work)
                done_before = {p.stem for p in (work / "results" / "tiny" / "features" / "i3d").glob("*.npy")}
                if running and done_before:
                    cancelled = running[0]
                    assert _run(["scancel", cancelled]).returncode == 0
                time.sleep(1)
            # Snakemake fails once the other submission ends. Once SLURM has nothing left of this run it
            # must notice within its status interval (which grows by 10 s per poll without news, at most
            # 180 s: the plugin's check_active_jobs); a Snakemake still waiting after that is the bug.
            while proc.poll() is None and time.monotonic() < deadline and queued_jobs(work):
                time.sleep(2)
            try:
                proc.wait(timeout=240)
                reported = True
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    out = (tmp_path / "first.log").read_text()
    assert cancelled, f"no extraction submission was running after a video finished:\n{out[-3000:]}"
    state = _run(["sacct", "-n", "-X", "-P", "-j", cancelled, "-o", "State"]).stdout.strip()
    assert state.startswith("CANCELLED"), state
    assert reported, f"Snakemake still waited 240 s after `scancel {cancelled}` ({state!r}):\n{out[-3000:]}"
    assert proc.returncode != 0, out[-4000:]
    assert f"SLURM job {cancelled} ended {state} (sacct)" in out and "Error in group extract" in out, out[-4000:]
    first_ids = {j["JobID"] for j in sacct_jobs(work, since)}
    rerun = snakemake(work, "--workflow-profile", str(work / "profiles" / "slurm"), targets=targets)
    assert rerun.returncode == 0, rerun.stderr[-6000:]
    resubmitted = [j for j in sacct_jobs(work, since) if j["JobID"] not in first_ids]
    assert len(resubmitted) == 1, resubmitted  # the one cancelled group, nothing else
    # What each submission ran: the jobs its Snakemake printed in its SLURM log. The rerun redoes the
    # cancelled submission's videos, also one that had finished inside it (Snakemake marks a group's
    # outputs complete only when the whole submission succeeds), and none of the other submission's.
    def vids_of(job_id: str) -> set[str]:
        (sub_log,) = (work / ".snakemake" / "slurm_logs").rglob(f"{job_id}.log")
        return set(re.findall(r"^\s*wildcards: ds=tiny, vid=(.+)$", sub_log.read_text(), re.M))

    rerun_vids = vids_of(resubmitted[0]["JobID"])
    others = set().union(*(vids_of(i) for i in first_ids - {cancelled}))
    assert others and not rerun_vids & others, (rerun_vids, others)
    assert rerun_vids | others <= {Path(v).stem for v in targets}, (rerun_vids, others)
    # A video that finished inside the cancelled submission is redone with it when Snakemake had not yet
    # marked it complete; when the cancel lands after that, its finished outputs are kept. Either way every
    # target's features exist and equal a clean run's (below): nothing half-written is published.
    for v in targets:
        assert (work / v).exists(), v
    for kind in ("i3d", "vggish"):
        for p in (slurm_run["work"] / "results" / "tiny" / "features" / kind).glob("*.npy"):
            assert filecmp.cmp(p, work / "results" / "tiny" / "features" / kind / p.name, shallow=False), p.name
