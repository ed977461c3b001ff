"""How close is our 16 kHz audio to the reference extractor's chain? (issue #26 item 4; DESIGN §2 in
docs/recipes.md "Audio").

The reference chain is run literally with the same ffmpeg: ``-acodec copy`` to ``.aac``, decode to an int16
wav, /32768, channel mean, ``resampy.resample(x, sr, 16000)`` (kaiser_best). Our media stage is run with
each audio alignment (``reference``, the default, and ``trimmed``). For each clip it prints the wave's max
|d| and the VGGish embeddings' max |d| (VGGish with **random-initialised weights**, seeded: parity of the
pipeline, not of the checkpoint), and the sample shift between the two alignments.

Clips: two generated AAC-in-mp4 clips of the same content (one straight from ffmpeg's AAC encoder, whose
mp4 carries the encoder-delay edit list, one whose AAC went through ADTS first: no edit list), plus any
video paths given on the command line (e.g. your own YouTube downloads).

    python bench/audio_parity_bench.py
    python bench/audio_parity_bench.py path/to/clip1.mp4 path/to/clip2.mp4
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import resampy
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from extractors.download_like_clips import make_aac_edit_list_pair  # noqa: E402
from extractors.ffmpeg import ffmpeg_exe  # noqa: E402
from extractors.media import normalize  # noqa: E402


def reference_chain(src: Path, tmp: Path) -> np.ndarray:
    """The reference extractor's audio chain, literally (see the module docstring)."""
    aac, wav = tmp / "ref.aac", tmp / "ref.wav"
    ff = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i"]
    subprocess.run([*ff, str(src), "-acodec", "copy", str(aac)], check=True)
    subprocess.run([*ff, str(aac), str(wav)], check=True)
    x, sr = sf.read(str(wav), dtype="int16", always_2d=True)
    return resampy.resample((x / 32768.0).mean(axis=1), sr, 16000, filter="kaiser_best")


def generated_clips(tmp: Path) -> dict[str, Path]:
    """An mp4 with the AAC encoder-delay edit list and one of the same content without it (5 s)."""
    pair = make_aac_edit_list_pair(tmp, duration_s=5.0)
    return {"generated, edit list": pair["edit_list"], "generated, no edit list": pair["no_edit_list"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="*", type=Path, help="extra clips with an AAC audio track")
    args = ap.parse_args()

    import torch

    from extractors.vggish import VGGish, embed_examples, log_mel_examples

    torch.manual_seed(0)
    net = VGGish().eval()  # random-initialised (labelled above): pipeline parity only

    def embed(wave: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return embed_examples(net, log_mel_examples(wave.astype(np.float32)))

    print("clip | alignment | samples (ours / reference) | wave max |d| | VGGish max |d| | VGGish steps")
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        clips = generated_clips(tmp) | {p.name: p for p in args.videos}
        for name, src in clips.items():
            ref = reference_chain(src, tmp)
            f_ref = embed(ref)
            for alignment in ("reference", "trimmed"):
                m = normalize(src, tmp / "o.mp4", tmp / "o.wav", 25, audio_alignment=alignment)
                ours, sr = sf.read(m.out_wav, dtype="float64")
                assert sr == 16000
                n = min(len(ours), len(ref))
                f_ours = embed(ours)
                k = min(len(f_ours), len(f_ref))
                print(f"{name} | {alignment} | {len(ours)} / {len(ref)} | {np.abs(ours[:n] - ref[:n]).max():.2e} | "
                      f"{np.abs(f_ours[:k] - f_ref[:k]).max():.2e} | {len(f_ours)} / {len(f_ref)}")


if __name__ == "__main__":
    main()
