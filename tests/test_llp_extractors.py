"""LLP feature extractors: per-second shapes, random-weights provenance, CLIP prompts."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from extractors.llp import features as llp


@pytest.fixture(scope="module")
def clip2s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2.5 s, 25 FPS synthetic clip (lavfi testsrc2), path with a space and a quote."""
    import imageio_ffmpeg

    out = tmp_path_factory.mktemp("llp") / "clip o'k.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=96x64:rate=25:duration=2.5", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-y", str(out)], check=True)
    return out


def test_decode_at_8fps_and_whole_seconds(clip2s: Path) -> None:
    frames = llp.decode_frames(clip2s)
    assert frames.dtype == np.uint8 and frames.shape[1:] == (64, 96, 3)
    assert frames.shape[0] == 20  # 2.5 s at 8 fps
    segs = llp.segment_frames(frames)
    assert segs.shape == (2, 8, 64, 96, 3)  # the incomplete third second is dropped
    np.testing.assert_array_equal(segs[1, 0], frames[8])
    with pytest.raises(ValueError, match="shorter than one 8-frame segment"):
        llp.segment_frames(frames[:7])


def test_visual_features_per_second_random_weights(clip2s: Path) -> None:
    feats, prov = llp.extract_llp_visual(clip2s, mode="random", seed=3)
    assert feats["resnet152"].shape == (2, 2048) and feats["r21d"].shape == (2, 512)
    assert feats["resnet152_r21d"].shape == (2, 2560)
    assert all(f.dtype == np.float32 and np.isfinite(f).all() for f in feats.values())
    assert prov["T"] == 2 and prov["recipe"]["fps"] == 8
    for kind in ("resnet152", "r21d"):
        assert prov["weights"][kind]["weights"] == "random" and prov["weights"][kind]["seed"] == 3
    # the 2-D feature of a second is the mean of its 8 frame features (checked with a stand-in
    # network whose per-frame output is computable by hand: the per-channel image mean)
    segs = llp.segment_frames(llp.decode_frames(clip2s))

    class ChannelMean(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    got = llp.resnet_features(ChannelMean(), segs, batch=5)
    want = np.stack([llp.imagenet_transform(s).mean(dim=(2, 3)).numpy().mean(0) for s in segs])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got[0], got[1])  # testsrc2 changes over time


def test_pretrained_without_checkpoint_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="resnet152"):
        llp.build_resnet152("pretrained", root=tmp_path)


def test_clip_prompts_text_and_image_features(clip2s: Path) -> None:
    names = ["Violin_fiddle", "Dog", "Violin_fiddle"]
    assert llp.format_prompts(names) == ["A photo of Violin fiddle", "A photo of Dog", "A photo of Violin fiddle"]
    assert llp.format_prompts(["Dog"], llp.AUDIO_PROMPT) == ["This is the sound of Dog"]
    assert llp.format_prompts(["Frying_(food)"], llp.AUDIO_PROMPT, lowercase=True) == \
        ["This is the sound of frying (food)"]
    model, _, tok, prov = llp.build_clip("ViT-B-32", mode="random", seed=0)
    assert prov["weights"] == "random" and prov["clip_model"] == "ViT-B-32"
    emb, prompts = llp.clip_text_embeddings(model, tok, names)
    assert emb.shape == (3, 512) and prompts[0] == "A photo of Violin fiddle"
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb[0], emb[2], rtol=1e-5, atol=1e-6)
    assert not np.allclose(emb[0], emb[1])
    with torch.no_grad():
        direct = model.encode_text(tok(["A photo of Violin fiddle"])).numpy()[0]
    np.testing.assert_allclose(emb[0], direct / np.linalg.norm(direct), rtol=1e-4, atol=1e-5)
    # one frame per segment, VALOR's indices (80 frames, 10 segments -> 0, 9, 18, ..., 79)
    assert llp.clip_frame_indices(80, 10).tolist() == [0, 9, 18, 26, 35, 44, 53, 61, 70, 79]
    segs = llp.segment_frames(llp.decode_frames(clip2s))
    img = llp.clip_image_features(model, segs)
    assert img.shape == (2, 512) and np.allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        last = model.encode_image(llp.clip_transform(segs[1, -1:]), normalize=True).numpy()[0]
    np.testing.assert_allclose(img[1], last, rtol=1e-4, atol=1e-5)  # frame 15 of 16 = last of second 2
    with pytest.raises(KeyError, match="no registered CLIP checkpoint"):
        llp.build_clip("RN50", mode="pretrained")


def test_vggish_per_second_random_weights(tmp_path: Path) -> None:
    wav = tmp_path / "a b.wav"
    t = np.arange(int(3.2 * 16000)) / 16000
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, subtype="FLOAT")
    feats, prov = llp.extract_llp_vggish(wav, mode="random", seed=1)
    assert feats.shape == (3, 128) and feats.dtype == np.float32
    assert prov["weights"] == "random" and prov["seed"] == 1


def test_clap_audio_of_a_video_without_audio_is_labelled_silence(clip2s: Path) -> None:
    out, prov = llp.extract_llp_clap(clip2s, mode="random", seed=1)
    feats = out["clap"]
    assert list(out) == ["clap"] and feats.shape == (2, 512) and feats.dtype == np.float32 and prov["T"] == 2
    assert prov["has_audio"] is False and abs(prov["audio"]["n_samples"] - 2.5 * 48000) < 0.05 * 48000
    assert prov["weights"]["weights"] == "random" and prov["weights"]["tokenizer"] == "byte-fallback (random weights)"
    np.testing.assert_allclose(feats[0], feats[1], rtol=1e-5, atol=1e-6)  # two seconds of the same silence


def test_clip_job_reports_a_failing_clip_and_the_reader_counts_it(tmp_path):
    """One feature job per clip: a clip that cannot be read still gets its two files (an empty .npz and its
    reason under `failed` in the .json) and the job succeeds; the reader returns the good clip's features
    per id, the failure apart, ignores ids without a file, and nothing temporary is left."""
    from extractors.io import load_npz
    from extractors.llp.extract import main, read_clips
    from extractors.synthetic_videos import make_demo_dataset

    make_demo_dataset(tmp_path / "d", n_videos=1, duration_s=3.0, seed=2)
    good = tmp_path / "d" / "videos" / "demo_000.mp4"
    bad = tmp_path / "it's broken.mp4"
    bad.write_bytes(b"not a video at all")
    out = tmp_path / "clips"
    for video in (good, bad):
        assert main(["clip", "--video", str(video), "--out", str(out / f"{video.stem}.npz"), "--kinds", "vggish",
                     "--weights", "random", "--device", "cpu"]) == 0
    meta = json.loads((out / "it's broken.json").read_text())
    assert meta["id"] == "it's broken" and meta["failed"] and load_npz(out / "it's broken.npz") == {}
    feats, failed = read_clips(out, ["demo_000", "it's broken", "never downloaded"])
    assert list(feats) == ["demo_000"] and list(feats["demo_000"]) == ["vggish"]
    assert feats["demo_000"]["vggish"].shape == (3, 128) and failed == {"it's broken": meta["failed"]}
    prov = json.loads((out / "demo_000.json").read_text())
    assert "failed" not in prov and prov["id"] == "demo_000" and prov["shapes"] == {"vggish": [3, 128]}
    assert sorted(p.name for p in out.iterdir()) == ["demo_000.json", "demo_000.npz", "it's broken.json",
                                                     "it's broken.npz"]


def test_only_the_clips_own_fault_is_a_failed_clip(tmp_path, monkeypatch):
    """ContentError (undecodable, too short) is recorded as a failed clip; an environment fault (here: no
    ffmpeg binary) fails the job and writes nothing, so a good clip is never recorded as bad."""
    from extractors.ffmpeg import ffmpeg_exe
    from extractors.llp.extract import main

    short = tmp_path / "short.mp4"  # 0.5 s: less than one 1 s segment
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.5",
                    "-c:v", "mpeg4", str(short)], check=True)
    out = tmp_path / "clips"
    args = ["--kinds", "r21d", "--weights", "random", "--device", "cpu"]
    assert main(["clip", "--video", str(short), "--out", str(out / "short.npz"), *args]) == 0
    assert json.loads((out / "short.json").read_text())["failed"] == (
        f"ContentError: {short}: too short: 4 frames at 8 fps is less than one 1 s segment")
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))
    with pytest.raises(FileNotFoundError, match="no-ffmpeg"):
        main(["clip", "--video", str(short), "--out", str(out / "env.npz"), *args])
    assert sorted(p.name for p in out.iterdir()) == ["short.json", "short.npz"]


def test_missing_weights_fail_the_clip_job_loudly(tmp_path):
    """A missing checkpoint or an unknown kind is not a bad clip: the job raises and writes nothing."""
    from extractors.llp.extract import main
    from extractors.synthetic_videos import make_demo_dataset
    from extractors.weight_registry import WeightsError

    make_demo_dataset(tmp_path / "d", n_videos=1, duration_s=2.0, seed=2)
    video = tmp_path / "d" / "videos" / "demo_000.mp4"
    with pytest.raises(WeightsError):
        main(["clip", "--video", str(video), "--out", str(tmp_path / "o" / "demo_000.npz"), "--kinds", "r21d",
              "--weights", "pretrained", "--weights-root", str(tmp_path / "no weights"), "--device", "cpu"])
    with pytest.raises(ValueError, match="unknown LLP feature kinds"):  # a configuration error, not a bad clip
        main(["clip", "--video", str(video), "--out", str(tmp_path / "o" / "demo_000.npz"), "--kinds", "r3d",
              "--weights", "random", "--device", "cpu"])
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_networks_stay_resident_across_clip_jobs(tmp_path, monkeypatch):
    """What the extraction worker relies on: with keep_networks_resident on, a second clip job in the same
    process builds none of LLP's networks again (ResNet-152, R(2+1)D-18, CLIP, VGGish, CLAP: builders
    counted, modules identical); off (the default for library calls), every call builds its own."""
    import extractors.vggish as vggish_mod
    from extractors.llp import clap
    from extractors.llp.extract import main
    from extractors.weight_loading import keep_networks_resident

    calls: dict[str, int] = {}
    built: dict[str, list[object]] = {}

    def counting(name, fn):
        @functools.wraps(fn)  # the same qualified name: the resident cache's key
        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            out = fn(*args, **kwargs)
            built.setdefault(name, []).append(out[0])
            return out
        return wrapper

    for name in ("build_resnet152", "build_r2plus1d_18", "build_clip"):
        monkeypatch.setattr(llp, name, counting(name, getattr(llp, name)))
    monkeypatch.setattr(clap, "build_clap", counting("build_clap", clap.build_clap))
    vggish_cls = vggish_mod.VGGish
    monkeypatch.setattr(vggish_mod, "VGGish", lambda *a, **k: calls.__setitem__("VGGish", calls.get("VGGish", 0) + 1)
                        or vggish_cls(*a, **k))
    import imageio_ffmpeg

    videos = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for i, video in enumerate(videos):  # one second each, with audio
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                        "testsrc2=size=64x48:rate=25:duration=1.2", "-f", "lavfi", "-i",
                        f"sine=frequency={440 * (i + 1)}:sample_rate=16000:duration=1.2", "-c:v", "libx264",
                        "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-y", str(video)], check=True)
    args = ["--kinds", "resnet152,r21d,clip,vggish,clap", "--weights", "random", "--clip-model", "ViT-B-32",
            "--device", "cpu"]
    names = ["build_resnet152", "build_r2plus1d_18", "build_clip", "build_clap", "VGGish"]
    keep_networks_resident(True)
    try:
        for video in videos:
            assert main(["clip", "--video", str(video), "--out", str(tmp_path / f"{video.stem}.npz"), *args]) == 0
    finally:
        keep_networks_resident(False)
    assert {n: calls.get(n) for n in names} == dict.fromkeys(names, 1), calls
    assert all(len(v) == 1 for v in built.values())
    assert all(json.loads((tmp_path / f"{v.stem}.json").read_text()).get("failed") is None for v in videos)
    calls.clear()
    for out in ("again", "and again"):  # the cheap networks are enough to show it
        assert main(["clip", "--video", str(videos[0]), "--out", str(tmp_path / f"{out}.npz"), "--kinds",
                     "r21d,vggish", "--weights", "random", "--device", "cpu"]) == 0
    assert calls == {"build_r2plus1d_18": 2, "VGGish": 2}, "resident off: built afresh every time"


def test_feature_set_2_as_valor_clip_r21d_and_clap_maps(tmp_path: Path) -> None:
    """Feature set 2 of one clip through the clip CLI's entry: CLIP + R(2+1)D-18 per second, concatenated
    for stage 3 as VALOR's visual stream, CLAP frame-level maps per second for the audio stream, every kind
    with the same T (seconds); the generator's clip/clap kinds beside them."""
    from extractors.llp import extract as E
    from extractors.synthetic_videos import make_demo_dataset
    from models.avvp.inputs import _stack

    assert E.base_kinds("clip_r21d") == ("clip", "r21d") and E.base_kinds("clap_maps") == ("clap_maps",)
    assert E.llp_weights_needed(["clap_maps"]) == E.llp_weights_needed(["clap"])
    assert "r2plus1d_18" in E.llp_weights_needed(E.base_kinds("clip_r21d"))
    make_demo_dataset(tmp_path / "d", n_videos=1, duration_s=3.0, seed=5)
    video = tmp_path / "d" / "videos" / "demo_000.mp4"
    kinds = ["clip", "r21d", "clap_maps", "clap"]
    feats, prov = E.extract_video(video, kinds, mode="random", seed=0, clip_model="ViT-B-32")
    assert {k: v.shape for k, v in feats.items()} == {"clip": (3, 512), "r21d": (3, 512), "clap_maps": (3, 768),
                                                      "clap": (3, 512)}
    assert prov["weights"]["clap_maps"]["recipe"]["clap_maps"].startswith("VALOR get_audio_feature_maps")
    assert prov["weights"]["clap_maps"]["weights"]["weights"] == "random"
    # the CLAP maps are not L2-normalised joint-space vectors: a different quantity than `clap`
    assert not np.allclose(np.linalg.norm(feats["clap_maps"], axis=1), 1.0, atol=1e-3)
    stacked = _stack([feats], "clip_r21d", 10)
    assert stacked.shape == (1, 10, 1024) and not stacked[0, 3:].any()
    np.testing.assert_array_equal(stacked[0, :3], np.concatenate([feats["clip"], feats["r21d"]], axis=1))
    vis, _ = llp.extract_llp_visual(video, mode="random", seed=0, kinds=("clip", "r21d"), clip_model="ViT-B-32")
    np.testing.assert_allclose(vis["clip_r21d"], stacked[0, :3], rtol=1e-5, atol=1e-6)
