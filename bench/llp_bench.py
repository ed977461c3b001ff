"""LLP feature extraction: a process per clip vs. per-clip jobs on a resident worker (the workflow's design).

Why it matters: LLP has 11,849 10-s clips. Building the networks (CLIP, CLAP's HTSAT + RoBERTa,
ResNet-152, R(2+1)D-18; with real weights also reading and hashing multi-GB checkpoints) costs more
than embedding one clip, so ``workflow/rules/llp.smk`` runs its per-clip jobs on resident extraction
workers (:mod:`extractors.worker`) that keep each network loaded
(:func:`extractors.llp.features.built_once`, :func:`extractors.weight_loading.keep_networks_resident`). This script
measures both in one process on synthetic 10 s clips (ffmpeg):

1. reference, "a process per clip": networks are not kept resident, so every clip pays for building
   them (Python start-up and imports, another ~2-4 s per job, are *not* counted, so the ratio below
   understates the real gain);
2. "resident": networks kept resident (as in the worker), then all clips run.

It prints seconds per clip for both and their ratio. Run:
``python bench/llp_bench.py --n-clips 6 --kinds clip,clap,r21d,vggish`` (random weights, CPU by default).

``--vs KINDS`` also times another kind set, resident, in the same process (after the reference) and prints
its cost relative to ``--kinds``, e.g. feature set 2 as VALOR (``clip,r21d,clap_maps`` plus the generator's
``clap``) against the cheaper ``clip,clap``:
``python bench/llp_bench.py --n-clips 3 --kinds clip,clap --vs clip,r21d,clap_maps,clap``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extractors.llp.extract import extract_video  # noqa: E402
from extractors.synthetic_videos import make_demo_dataset  # noqa: E402
from extractors.weight_loading import keep_networks_resident  # noqa: E402


def run(clips: list[Path], kinds: list[str], per_clip_rebuild: bool, **kw: object) -> float:
    """Seconds per clip."""
    keep_networks_resident(False)  # empties the cache
    keep_networks_resident(not per_clip_rebuild)
    t0 = time.perf_counter()
    for clip in clips:
        extract_video(clip, kinds, **kw)
    return (time.perf_counter() - t0) / len(clips)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-clips", type=int, default=6)
    ap.add_argument("--kinds", default="clip,clap,r21d,vggish")
    ap.add_argument("--clip-model", default="ViT-B-32")
    ap.add_argument("--weights", choices=["random", "pretrained"], default="random")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vs", default="", help="another comma-separated kind set, timed resident")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per synthetic clip")
    a = ap.parse_args()
    kinds = [k for k in a.kinds.split(",") if k]
    kw = {"mode": a.weights, "device": a.device, "clip_model": a.clip_model}
    with tempfile.TemporaryDirectory() as tmp:
        make_demo_dataset(tmp, n_videos=a.n_clips, duration_s=a.duration, seed=0, size=(320, 240))
        clips = sorted((Path(tmp) / "videos").glob("*.mp4"))
        extract_video(clips[0], kinds, **kw)  # warm-up: imports, ffmpeg, allocator
        per_clip = run(clips, kinds, per_clip_rebuild=True, **kw)
        resident = run(clips, kinds, per_clip_rebuild=False, **kw)
        vs = [k for k in a.vs.split(",") if k]
        if vs:
            extract_video(clips[0], vs, **kw)  # warm-up of the other networks
            other = run(clips, vs, per_clip_rebuild=False, **kw)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"kinds={','.join(kinds)} clip_model={a.clip_model} weights={a.weights} device={a.device} "
          f"clips={len(clips)} x {a.duration:g} s")
    print(f"a process per clip (networks rebuilt): {per_clip:6.2f} s/clip")
    print(f"resident worker (networks built once): {resident:6.2f} s/clip")
    print(f"ratio per-process / resident: {per_clip / resident:.2f}x   peak RSS {rss:.2f} GiB")
    if vs:
        print(f"resident {','.join(vs)}: {other:6.2f} s/clip = {other / resident:.2f}x resident {','.join(kinds)}")


if __name__ == "__main__":
    main()
