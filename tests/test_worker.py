"""Resident extraction workers (extractors/worker/): jobs of one pool share a worker that keeps its
networks loaded, each job's output lands in that job's own log, a failing job fails alone (and the
worker is replaced), idle workers exit, and AVLOC_WORKER=0 runs the job in its own process. Issue 22:
each job runs in its own environment, a stopped job stops and publishes nothing, a killed worker leaves
nothing running, the worker folder/sockets are owner-only and both ends check the other's uid, and each
job's own resources are recorded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from extractors.recipes import get_recipe
from extractors.synthetic_videos import make_demo_dataset


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("worker_clips")
    make_demo_dataset(root, n_videos=2, duration_s=2.0, seed=3)
    return sorted((root / "videos").glob("*.mp4"))


@pytest.fixture()
def worker_env(tmp_path: Path):
    short = Path(tempfile.mkdtemp(prefix="w", dir="/tmp"))  # sockets need a short path
    env = {**os.environ, "AVLOC_WORKER_DIR": str(short), "AVLOC_WORKER_IDLE_S": "2", "OMP_NUM_THREADS": "1"}
    yield env, short
    deadline = time.time() + 10  # let the idle workers exit before the folder goes
    while list(short.glob("*.sock")) and time.time() < deadline:
        time.sleep(0.2)


def job(env: dict[str, str], cwd: Path, log: Path, pool: str, *args: str, entry: str | None = None,
        record: str | None = None, umask: int | None = None) -> int:
    with open(log, "w") as fh:
        head = [pool, "--threads", "1", *(["--entry", entry] if entry else []), *(["--record", record] if record else [])]
        return subprocess.run([sys.executable, "-m", "extractors.worker", *head, "--", *args],
                              stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                              preexec_fn=None if umask is None else (lambda: os.umask(umask))).returncode


def media_args(src: Path, out: Path) -> list[str]:
    return ["media", "--src", str(src), "--mp4", str(out / f"{src.stem}.mp4"), "--wav", str(out / f"{src.stem}.wav"),
            "--fps", "25"]


def features_args(vid: str, out: Path) -> list[str]:
    recipe = json.dumps(get_recipe("demo").to_dict())
    return ["features", "--visual", "i3d", "--mp4", f"media/{vid}.mp4", "--wav", f"media/{vid}.wav",
            "--out-visual", f"feat/i3d/{vid}.npy", "--out-audio", f"feat/vggish/{vid}.npy",
            "--recipe-json", recipe, "--device", "cpu"]


def test_jobs_share_a_resident_worker_and_log_to_their_own_files(clips, worker_env, tmp_path):
    env, wdir = worker_env
    for clip in clips:
        assert job(env, tmp_path, tmp_path / f"{clip.stem}.media.log", "media", *media_args(clip, tmp_path / "media")) == 0
    for clip in clips:
        assert job(env, tmp_path, tmp_path / f"{clip.stem}.features.log", "features",
                   *features_args(clip.stem, tmp_path), record=f"bench/{clip.stem}.worker.json") == 0
    for clip in clips:  # each job's own messages, and only its own, in its log
        text = (tmp_path / f"{clip.stem}.media.log").read_text()
        assert f"{clip.stem}.mp4 -> " in text and all(f"{c.stem}.mp4 -> " not in text for c in clips if c != clip)
        x = np.load(tmp_path / "feat" / "i3d" / f"{clip.stem}.npy")
        assert x.shape[1] == 2048 and np.load(tmp_path / "feat" / "vggish" / f"{clip.stem}.npy").shape[1] == 128
    first, second = ((tmp_path / f"{c.stem}.features.log").read_text() for c in clips)
    assert "network i3d/rgb" in first and "network vggish" in first, first
    assert "network" not in second, "the second video reuses the first one's networks"
    starts = [p for p in wdir.glob("*.log") if "listening" in p.read_text()]
    assert len(starts) == 2, "one worker for the media pool, one for the features pool"
    assert all(p.read_text().count("listening") == 1 for p in starts)
    # honest accounting: the worker's own numbers for each job (Snakemake's benchmark sees the ~20 MB client)
    worker_pid = int(next(p for p in starts if "pool features" in p.read_text()).read_text().split(" pid ")[1].split()[0])
    recs = [json.loads((tmp_path / "bench" / f"{c.stem}.worker.json").read_text()) for c in clips]
    assert [r["mode"] for r in recs] == ["worker job 1", "worker job 2"] and {r["pid"] for r in recs} == {worker_pid}
    assert all(r["rc"] == 0 and r["max_rss_mb"] > 150 and r["wall_s"] > 0 and r["cpu_s"] > 0.1 for r in recs), recs
    assert "[worker] job resources (worker job 1" in first and "peak RSS" in first


def test_llp_clip_jobs_share_a_worker_and_a_bad_clip_is_recorded(clips, worker_env, tmp_path):
    """LLP's per-clip jobs (``--entry extractors.llp.extract -- clip ...``) on the `llp` pool: the second good clip builds no network
    again, although a clip that cannot be decoded ran in between (recorded with `failed`, the job succeeds
    and the worker stays)."""
    env, wdir = worker_env
    bad = tmp_path / "bad clip.mp4"
    bad.write_text("this is not a video\n")
    order = [clips[0], bad, clips[1]]
    for video in order:
        assert job(env, tmp_path, tmp_path / f"{video.stem}.log", "llp", "clip", "--video", str(video),
                   "--out", f"clips/{video.stem}.npz", "--kinds", "r21d,vggish", "--weights", "random",
                   "--device", "cpu", entry="extractors.llp.extract") == 0, (tmp_path / f"{video.stem}.log").read_text()
    first, failed, second = ((tmp_path / f"{v.stem}.log").read_text() for v in order)
    assert "build_r2plus1d_18" in first and "network vggish" in first, first
    assert "network" not in second, "the second clip reuses the first one's networks"
    assert json.loads((tmp_path / "clips" / "bad clip.json").read_text())["failed"] and "bad clip" in failed
    assert np.load(tmp_path / "clips" / f"{clips[1].stem}.npz")["r21d"].shape == (2, 512)
    logs = list(wdir.glob("*-llp-0.log"))
    assert len(logs) == 1 and logs[0].read_text().count("listening") == 1, "one worker served all three"


def test_a_failing_job_fails_alone_and_the_worker_is_replaced(clips, worker_env, tmp_path):
    env, wdir = worker_env
    # an environment fault (the output folder cannot be made: a file is in the way) fails the job; a bad
    # video would not: its job publishes a failure record and succeeds (tests/test_inputs.py)
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be\n")
    assert job(env, tmp_path, tmp_path / "bad.log", "media", *media_args(clips[0], blocker / "sub")) != 0
    assert "NotADirectoryError" in (tmp_path / "bad.log").read_text()
    assert blocker.read_text() == "a file where the output folder should be\n", "no partial outputs"
    blocker.unlink()
    log = next(wdir.glob("*-media-0.log"))
    deadline = time.time() + 10  # the worker notes its exit just after replying
    while "exiting" not in log.read_text() and time.time() < deadline:
        time.sleep(0.1)
    assert "failed" in log.read_text() and "exiting" in log.read_text()
    assert job(env, tmp_path, tmp_path / "good.log", "media", *media_args(clips[0], tmp_path / "out")) == 0
    assert (tmp_path / "out" / f"{clips[0].stem}.wav").exists()
    assert next(wdir.glob("*-media-0.log")).read_text().count("listening") == 2


def test_idle_worker_exits_and_switch_off_runs_in_process(clips, worker_env, tmp_path):
    env, wdir = worker_env
    assert job(env, tmp_path, tmp_path / "a.log", "media", *media_args(clips[0], tmp_path / "o")) == 0
    assert list(wdir.glob("*.sock"))
    deadline = time.time() + 15
    while list(wdir.glob("*.sock")) and time.time() < deadline:
        time.sleep(0.2)
    assert not list(wdir.glob("*.sock")), "idle worker exited and removed its socket"
    env_off = {**env, "AVLOC_WORKER": "0"}
    before = sorted(wdir.glob("*.log"))
    assert job(env_off, tmp_path, tmp_path / "b.log", "media", *media_args(clips[1], tmp_path / "o")) == 0
    assert f"{clips[1].stem}.mp4 -> " in (tmp_path / "b.log").read_text()
    assert sorted(wdir.glob("*.log")) == before, "no worker was started"


def test_client_refuses_missing_separator(worker_env, tmp_path):
    env, _ = worker_env
    proc = subprocess.run([sys.executable, "-m", "extractors.worker", "media", "media"], capture_output=True,
                          text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "missing '--' before the extraction arguments" in proc.stderr
    for entry in ("os", "extractors.weights"):  # only the extraction entry points, not any module of the package
        proc = subprocess.run([sys.executable, "-m", "extractors.worker", "media", "--entry", entry, "--", "x"],
                              capture_output=True, text=True, env=env, cwd=tmp_path)
        assert proc.returncode == 2 and (f"entry {entry!r} is not an extraction entry point (one of "
                                         "extractors.extract, extractors.llp.extract)") in proc.stderr


def test_media_pool_runs_without_torch(clips, worker_env, tmp_path):
    """envs/media.yaml has no torch: the media job, on a resident worker and in-process, never imports it
    (a ``torch`` package that raises on import is first on the path; the project comes from this tree)."""
    env, _ = worker_env
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is not in the media environment')\n")
    root = Path(__file__).resolve().parents[1]
    env = {**env, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(root)])}
    assert job(env, tmp_path, tmp_path / "a.log", "media", *media_args(clips[0], tmp_path / "o")) == 0, \
        (tmp_path / "a.log").read_text()
    env_off = {**env, "AVLOC_WORKER": "0"}
    assert job(env_off, tmp_path, tmp_path / "b.log", "media", *media_args(clips[1], tmp_path / "o")) == 0, \
        (tmp_path / "b.log").read_text()
    assert (tmp_path / "o" / f"{clips[1].stem}.wav").exists()


# ------------------------------------------------------------------------------------ issue 22: trust
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second user (setpriv --reuid=nobody)")
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def slot_file(env: dict[str, str], pool: str, kind: str) -> Path:
    """The path of slot 0's lock/socket/log of ``pool`` as the client computes it in ``env``."""
    code = f"from extractors.worker.protocol import slot_paths; print(slot_paths({pool!r}, 0)[{kind!r}])"
    return Path(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                               check=True).stdout.strip())


def llp_args(video: Path, out: str) -> list[str]:
    return ["clip", "--video", str(video), "--out", out, "--kinds", "vggish", "--weights", "random", "--device", "cpu"]


def test_llp_jobs_run_in_their_own_environment_and_only_bad_clips_are_recorded(clips, worker_env, tmp_path):
    """The worker started under TMPDIR=A; A is deleted; a job sent with TMPDIR=B gets its features (the
    same as in its own process), not a 'failed clip'. The job's umask applies to its outputs. A job whose
    ffmpeg is missing (an environment fault, not the clip's) fails with rc != 0 and records nothing."""
    env, wdir = worker_env
    env = {**env, "AVLOC_WORKER_IDLE_S": "60"}  # the same worker for all three (the failing third ends it)
    a, b = (Path(tempfile.mkdtemp(dir=tmp_path, prefix=p)) for p in ("A", "B"))
    assert job({**env, "TMPDIR": str(a)}, tmp_path, tmp_path / "1.log", "llp", *llp_args(clips[0], "w/0.npz"),
               entry="extractors.llp.extract") == 0, (tmp_path / "1.log").read_text()
    a.rmdir()
    assert job({**env, "TMPDIR": str(b)}, tmp_path, tmp_path / "2.log", "llp", *llp_args(clips[1], "w/1.npz"),
               entry="extractors.llp.extract", umask=0o077) == 0, (tmp_path / "2.log").read_text()
    meta = json.loads((tmp_path / "w" / "1.json").read_text())
    assert "failed" not in meta, meta
    assert job({**env, "TMPDIR": str(b), "AVLOC_WORKER": "0"}, tmp_path, tmp_path / "ref.log", "llp",
               *llp_args(clips[1], "ref/1.npz"), entry="extractors.llp.extract") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "w" / "1.npz")["vggish"], np.load(tmp_path / "ref" / "1.npz")["vggish"])
    assert np.load(tmp_path / "w" / "1.npz")["vggish"].shape == (2, 128)
    assert (tmp_path / "w" / "1.npz").stat().st_mode & 0o777 == 0o600, "the job's umask 077, not the worker's"
    rc = job({**env, "TMPDIR": str(b), "IMAGEIO_FFMPEG_EXE": str(tmp_path / "no-ffmpeg")}, tmp_path,
             tmp_path / "3.log", "llp", *llp_args(clips[0], "w/env.npz"), entry="extractors.llp.extract")
    text = (tmp_path / "3.log").read_text()
    assert rc == 1 and "FileNotFoundError" in text and "no-ffmpeg" in text, text
    assert not (tmp_path / "w" / "env.json").exists() and not (tmp_path / "w" / "env.npz").exists()
    assert next(wdir.glob("*-llp-0.log")).read_text().count("listening") == 1, "one worker served the three jobs"


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """A 40 s 640x360 clip with audio: its media job (libx264 re-encode) runs for several seconds."""
    from extractors.ffmpeg import ffmpeg_exe

    path = tmp_path_factory.mktemp("long") / "long clip.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=40",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=40", "-c:v", "mpeg4", "-q:v", "8",
                    "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if text.encode() in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def wait_for(pred, timeout: float, step: float = 0.05) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def worker_pid(log: Path) -> int:
    return int(log.read_text().rsplit("listening", 1)[0].rsplit(" pid ", 1)[1].split()[0])


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def start_long_media_job(env: dict[str, str], cwd: Path, clip: Path) -> tuple[subprocess.Popen, Path, Path]:
    """The long clip's media job in its own process group (as Snakemake runs a job), once ffmpeg writes."""
    out, log = cwd / "out", cwd / "long.log"
    with open(log, "w") as fh:
        client = subprocess.Popen([sys.executable, "-m", "extractors.worker", "media", "--", *media_args(clip, out)],
                                  stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    assert wait_for(lambda: out.is_dir() and any(out.glob(".long clip.tmp-*.mp4")), 60), log.read_text()
    return client, out, log


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_job_stops_publishes_nothing_and_the_next_job_runs(clips, long_clip, worker_env, tmp_path, sig):
    """Snakemake stops a job by signalling its process group: the worker stops the job within a second
    or two, kills its ffmpeg, removes its temp files, publishes nothing, says so in the job's log, and the
    next job of the slot (started at once) succeeds."""
    env, wdir = worker_env
    client, out, log = start_long_media_job(env, tmp_path, long_clip)
    pid = worker_pid(next(wdir.glob("*-media-0.log")))
    assert processes_mentioning(str(out)), "ffmpeg is encoding"
    os.killpg(client.pid, sig)
    with open(tmp_path / "next.log", "w") as fh:  # queued at once on the same slot
        nxt = subprocess.Popen([sys.executable, "-m", "extractors.worker", "media", "--",
                                *media_args(clips[0], tmp_path / "next")], stdout=fh, stderr=subprocess.STDOUT,
                               env=env, cwd=tmp_path)
    assert wait_for(lambda: not alive(pid), 3), "the worker stops the job and exits within seconds"
    assert client.wait(10) == (-sig if sig == signal.SIGKILL else 128 + sig)
    assert nxt.wait(60) == 0, (tmp_path / "next.log").read_text()
    assert wait_for(lambda: not processes_mentioning(str(out)), 3), "no ffmpeg outlives the job"
    time.sleep(1.0)
    assert sorted(p.name for p in out.iterdir()) == [], "nothing published, no temp file left"
    text = log.read_text()
    assert "[worker] job cancelled after" in text and "nothing was published" in text, text
    if sig != signal.SIGKILL:
        assert f"[worker] {signal.Signals(sig).name}: job cancelled on extraction worker {pid}" in text
    assert (tmp_path / "next" / f"{clips[0].stem}.wav").exists()


def test_a_killed_worker_leaves_no_ffmpeg_and_no_temp_files(long_clip, worker_env, tmp_path):
    env, wdir = worker_env
    client, out, log = start_long_media_job(env, tmp_path, long_clip)
    wlog = next(wdir.glob("*-media-0.log"))
    pid = worker_pid(wlog)
    os.kill(pid, signal.SIGKILL)
    assert client.wait(10) == 1
    assert f"extraction worker {pid} (pool media, slot 0) died while running this job" in log.read_text()
    assert wait_for(lambda: not processes_mentioning(str(out)), 3), "the supervisor killed the orphaned ffmpeg"
    assert wait_for(lambda: not any(out.iterdir()), 3), sorted(p.name for p in out.iterdir())
    assert f"worker {pid} ended (signal 9) during a job: killed 1 leftover process(es)" in wlog.read_text()
    assert not list(wdir.glob("*.sock")), "the supervisor removed the killed worker's socket"


def test_the_worker_folder_must_be_owned_by_you_and_private(clips, tmp_path):
    base = Path(tempfile.mkdtemp(prefix="w", dir="/tmp"))
    env = {**os.environ, "AVLOC_WORKER_IDLE_S": "2"}

    def run(folder: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "extractors.worker", "media", "--",
                               *media_args(clips[0], tmp_path / "o")], capture_output=True, text=True,
                              env={**env, "AVLOC_WORKER_DIR": str(folder)}, cwd=tmp_path)

    shared = base / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    proc = run(shared)
    assert proc.returncode == 1 and (
        f"[worker] refusing worker directory {shared}: it has mode 0755, not 0700; other users could read or "
        "replace its sockets, locks and logs. Remove it, or set AVLOC_WORKER_DIR to a directory owned by you "
        "with mode 0700") in proc.stderr, proc.stderr
    if os.geteuid() == 0:  # another user's folder, world-writable
        other = base / "other"
        other.mkdir()
        os.chown(other, 65534, 65534)
        other.chmod(0o777)
        proc = run(other)
        assert proc.returncode == 1 and (f"refusing worker directory {other}: it is owned by uid 65534, not by you "
                                         "(uid 0) and has mode 0777, not 0700") in proc.stderr, proc.stderr
    mine = base / "mine"  # created by the client: 0700
    lock = slot_file({**env, "AVLOC_WORKER_DIR": str(mine)}, "media", "lock")
    assert mine.stat().st_mode & 0o777 == 0o700
    lock.symlink_to(tmp_path / "victim")
    proc = run(mine)
    assert proc.returncode == 1 and f"[worker] refusing {lock}: it is a symbolic link" in proc.stderr, proc.stderr
    assert not (tmp_path / "victim").exists()
    long_dir = Path("/tmp") / ("x" * 90)
    proc = run(long_dir)
    assert proc.returncode == 1 and "over the 107-byte limit of Unix socket paths; set AVLOC_WORKER_DIR to a " \
        "shorter folder" in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()
    shutil.rmtree(base)
    shutil.rmtree(long_dir, ignore_errors=True)


SNOOP = """
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(1)
open(sys.argv[2], "w").close()
c, _ = s.accept()
c.settimeout(5)
got = b""
try:
    while chunk := c.recv(65536):
        got += chunk
except OSError:
    pass
open(sys.argv[2], "wb").write(got)
"""

INTRUDE = """
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
req = {"argv": ["media", "--src", sys.argv[2], "--mp4", sys.argv[3] + "/x.mp4", "--wav", sys.argv[3] + "/x.wav",
                "--fps", "25"], "cwd": "/", "threads": 1, "entry": "extractors.extract", "env": dict(os.environ),
       "umask": 0, "record": None}
try:
    socket.send_fds(s, [json.dumps(req).encode() + b"\\n"], [1, 2])
    got = s.recv(65536)
except OSError:
    got = b""
print("accepted" if b"accepted" in got else "refused")
"""


@ROOT_ONLY
def test_sockets_are_private_and_both_ends_check_the_other_user(clips, worker_env, tmp_path):
    """umask 002 still gives a 0600 socket; a second user that reaches the socket anyway (the folder made
    traversable, the socket 0666) is refused by the worker; a socket another user swapped in gets nothing
    from the client."""
    env, wdir = worker_env
    assert job(env, tmp_path, tmp_path / "a.log", "media", *media_args(clips[0], tmp_path / "o"), umask=0o002) == 0
    sock = slot_file(env, "media", "socket")
    assert sock.stat().st_mode & 0o777 == 0o600
    wdir.chmod(0o711)
    sock.chmod(0o666)
    drop = tmp_path / "drop"
    drop.mkdir()
    drop.chmod(0o777)
    proc = subprocess.run([*NOBODY, sys.executable, "-c", INTRUDE, str(sock), str(clips[1]), str(drop)],
                          capture_output=True, text=True, timeout=60, cwd="/")
    wdir.chmod(0o700)
    assert proc.stdout == "refused\n", proc.stdout + proc.stderr
    assert list(drop.iterdir()) == [], "the worker ran nothing for the other user"
    assert "[worker] refused a connection from uid 65534" in next(wdir.glob("*-media-0.log")).read_text()
    # the other user's listener put in place of the slot's socket (it would get the job's argv and env)
    assert wait_for(lambda: not sock.exists(), 10), "the idle worker exits"
    nb = Path(tempfile.mkdtemp(prefix="nb", dir="/tmp"))
    os.chown(nb, 65534, 65534)
    listener = subprocess.Popen([*NOBODY, sys.executable, "-c", SNOOP, str(nb / "s"), str(nb / "got")], cwd="/")
    assert wait_for(lambda: (nb / "got").exists(), 20)
    os.rename(nb / "s", sock)
    proc = subprocess.run([sys.executable, "-m", "extractors.worker", "media", "--", *media_args(clips[1], tmp_path / "p")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    listener.kill()
    listener.wait()
    assert proc.returncode == 1 and f"[worker] refusing worker socket {sock}: it is served by uid 65534 (pid " \
        in proc.stderr and "not by you (uid 0)" in proc.stderr, proc.stderr
    assert (nb / "got").read_bytes() == b"", "the other user's listener got nothing"
    sock.unlink()
    shutil.rmtree(nb)


def test_exit_codes_follow_python():
    from extractors.worker.jobs import exit_code

    def exits(code):
        def main(argv):
            raise SystemExit(code)
        return main

    assert exit_code(lambda argv: None, []) == 0
    assert exit_code(lambda argv: 3, []) == 3
    assert exit_code(exits(None), []) == 0 and exit_code(exits(0), []) == 0 and exit_code(exits(2), []) == 2
    assert exit_code(exits("bad arguments"), []) == 1


@pytest.mark.parametrize("edited", ["worker/client.py", "worker/server.py", "media.py", "llp/clap/model.py",
                                    "extract.py"])
def test_fingerprint_covers_every_module_of_extractors(tmp_path, monkeypatch, edited):
    """A worker runs code from all of extractors/ (its own package included): editing any module, in a
    subpackage or not, gives a new fingerprint, so jobs go to a fresh worker running the new code."""
    from extractors.worker import protocol

    assert protocol.EXTRACTORS_DIR == Path(protocol.__file__).resolve().parents[1]
    assert protocol.EXTRACTORS_DIR.name == "extractors"
    copy = tmp_path / "extractors"
    shutil.copytree(protocol.EXTRACTORS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(protocol, "EXTRACTORS_DIR", copy)
    before = protocol.fingerprint()
    assert protocol.fingerprint() == before
    with open(copy / edited, "a") as fh:
        fh.write("# edited\n")
    assert protocol.fingerprint() != before, f"editing extractors/{edited} must start a new worker"


def test_an_exiting_worker_loses_no_job_and_stale_files_are_swept(clips, worker_env, tmp_path):
    """A worker that closes a connection without acknowledging it (it was exiting) makes the client start
    a fresh worker instead of failing the job; the start removes another fingerprint's files unused for a
    day, never recent ones; and an idle exit stops listening before it releases the slot."""
    env, wdir = worker_env
    import socket as sk

    old = [wdir / f"0123456789abcdef-media-0{s}" for s in (".lock", ".log")]
    recent = wdir / "fedcba9876543210-media-0.lock"
    for f in [*old, recent]:
        f.write_text("")
    for f in old:
        os.utime(f, (time.time() - 2 * 86400,) * 2)
    sock_path = slot_file(env, "media", "socket")
    srv = sk.socket(sk.AF_UNIX, sk.SOCK_STREAM)
    srv.bind(str(sock_path))
    srv.listen(1)

    def exiting_worker():
        conn, _ = srv.accept()
        sock_path.unlink()
        conn.close()
        srv.close()

    import threading

    t = threading.Thread(target=exiting_worker)
    t.start()
    assert job(env, tmp_path, tmp_path / "a.log", "media", *media_args(clips[0], tmp_path / "o")) == 0, \
        (tmp_path / "a.log").read_text()
    t.join()
    assert (tmp_path / "o" / f"{clips[0].stem}.wav").exists()
    assert not any(f.exists() for f in old) and recent.exists()


def test_idle_exit_stops_listening_under_the_slot_lock(tmp_path):
    import socket as sk

    from extractors.worker.server import Server

    lock = tmp_path / "s.lock"
    path = Path(tempfile.mkdtemp(prefix="w", dir="/tmp")) / "s.sock"
    server = Server("media", 0, path, lock, None)
    assert path.stat().st_mode & 0o777 == 0o600
    holder = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    import fcntl

    fcntl.flock(holder, fcntl.LOCK_EX)
    assert server.may_exit() is False and path.exists(), "a client holds the slot: keep serving"
    os.close(holder)
    assert server.may_exit() is True
    c = sk.socket(sk.AF_UNIX, sk.SOCK_STREAM)
    with pytest.raises(FileNotFoundError):
        c.connect(str(path))
    c.close()
    shutil.rmtree(path.parent)


def test_a_start_failure_says_why_even_when_the_log_cannot_be_written(clips, worker_env, tmp_path):
    """No space for the worker's log (here: a file size limit of 0): the client's error carries the
    worker's own message, not an empty log."""
    import resource

    env, _ = worker_env
    proc = subprocess.run([sys.executable, "-m", "extractors.worker", "media", "--", *media_args(clips[0], tmp_path / "o")],
                          capture_output=True, text=True, env=env, cwd=tmp_path,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)))
    assert proc.returncode == 1 and "[worker] extraction worker exited with 1 while starting" in proc.stderr
    assert "OSError: [Errno 27] File too large" in proc.stderr, proc.stderr
