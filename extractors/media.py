"""Media stage: turn any input video into the two files every extractor reads.

``normalize(src, out_mp4, out_wav, fps)`` writes

* ``out_mp4`` — the video re-encoded to a **constant** frame rate exactly as the reference
  (v-iashin/video_features) does before I3D/R(2+1)D extraction: ``ffmpeg -i SRC -filter:v fps=fps=<fps>``
  with libx264 defaults (no ``-crf``/``-preset``/``-pix_fmt`` given), source resolution kept, no audio
  (the audio goes to the wav).
* ``out_wav`` — 16 kHz mono **float32** PCM made by the reference VGGish audio chain (docs/recipes.md, "VGGish"):
  the audio decoded to signed 16-bit at its original rate and channel count, ``/ 32768``, mean over
  channels, ``resampy.resample(x, sr, 16000)`` (resampy's default ``filter='kaiser_best'``; skipped when
  ``sr == 16000``, as torchvggish does). Stored as float32 so VGGish reads it without a second int16
  quantisation (the reference keeps float64 in memory; float32 storage differs by < 1e-7 relative).
* ``<out_mp4 stem>.json`` — the :class:`MediaManifest` (source hash, probe, counts, warnings).

ffmpeg ``fps`` filter semantics (verified in ffmpeg's ``libavfilter/vf_fps.c`` and ``ffmpeg -h
filter=fps`` of the bundled ffmpeg 9.0: option ``round`` defaults to ``near`` = ``AV_ROUND_NEAR_INF``,
``eof_action`` defaults to ``round``, ``start_time`` unset):

1. every input frame ``i`` with time ``t_i`` (seconds from the file start) gets the output index
   ``r_i = round_half_away_from_zero(t_i * fps)``;
2. output frames are numbered from ``r_0`` (the first frame's index; 0 for ordinary files) and output
   frame ``k`` is the *last* input frame with ``r_i <= k``: equivalently the last input frame with
   ``t_i < (k + 0.5) / fps`` (a time exactly on ``(k + 0.5)/fps`` rounds up to ``k + 1``). Frames that
   share an index are dropped except the last one; gaps are filled by repeating the previous frame.
   So "nearest" means rounding each *input* time to the output grid, not picking the input frame
   closest to ``k/fps``: with inputs at 0.030 s and 0.058 s (both round to k = 1 at 25 fps) output
   frame 1 shows the 0.058 s frame although 0.030 s is closer to 0.04 s;
3. at end of stream the filter emits frames up to (excluding) ``round(t_end * fps)`` where ``t_end``
   is the end of the last frame (its pts + duration), so a CFR clip of duration ``D`` gives
   ``round(D * fps)`` frames (for the usual ``t_0 = 0``).

:func:`fps_filter_source_indices` implements these rules independently (tests compare against it).

The ffmpeg stage is the *reference* path on purpose: a direct fps filter into raw frames (PyAV,
decord) would skip the libx264 round trip and drift from the reference features (docs/recipes.md, "Decoding").

Policies where the reference is silent or crashes (each recorded in the manifest):

* **No audio track**: a silent wav of ``round(video_duration * 16000)`` zeros, ``has_audio: False``
  and a warning — VGGish then yields features of silence, so audio and visual keep the same ``T``.
* **Odd width/height**: the reference command is tried first (libx264 keeps a 4:4:4 source's odd
  size); only when libx264 refuses it (4:2:0 needs even sizes) we retry with the last column and/or
  row cropped (``crop=trunc(iw/2)*2:trunc(ih/2)*2:0:0``, top-left anchored) and warn. Even sizes such
  as 176x144 or 144x176 are never touched.
* **Variable frame rate** input: works as any other (the fps filter makes it CFR); warned.
* **Clips shorter than ``min_duration_s``** (default 0.96 s; the workflow passes the recipe's
  :attr:`~extractors.recipes.Recipe.min_duration_s`: ``stack + 1`` frames at its FPS and one VGGish
  example): rejected, since they can produce no feature at all.
* **Audio shorter than the video**: padded with silence to the video's length (``short_audio="pad"``,
  the default; ``audio_padded_s`` and a warning in the manifest) so no visual step is lost, or kept
  short (``"cut"``, the reference: the store cuts both streams to the audio). Audio longer than the
  video is kept whole; the store drops the audio steps past the video's end.
* **Environment faults** (a full disk, a missing or read-only output folder, no memory: ``OSError``,
  also when ffmpeg reports one) are raised as they are, never as ``MediaError``, so a job never
  records a good video as bad.
* **Truncated files** whose index survives (moov at the front) decode partially without an ffmpeg
  error; we reject outputs with fewer than 90 % of the expected frames.
* **Rotation metadata**: ffmpeg auto-rotates (as in the reference), so a phone video tagged as rotated
  comes out portrait; the manifest records both the probed (coded) and the written size.
* **Audio alignment** (``audio_alignment``, a recipe field). Default ``"reference"``: AAC audio goes
  through the reference's own two steps, ``-acodec copy`` to an ADTS ``.aac`` file, then a decode of it.
  An mp4 written with an encoder-delay edit list (ffmpeg's own muxer, many YouTube downloads) tells
  decoders to drop the AAC encoder's 1024 priming samples; ADTS cannot carry that, so the reference
  keeps them (about 23 ms at 44.1 kHz at the start, plus the last frame's padding at the end) and so do
  we: the same ffmpeg gives sample-identical int16 on mp4s with and without edit lists (tests). Other
  codecs (MP3, Opus, PCM) cannot be stream-copied into ADTS, where the reference fails; they are decoded
  from the container. ``"trimmed"`` always decodes from the container with its edit list applied (audio
  sample 0 at video time 0, ~23 ms earlier than the reference on such files); equal to ``"reference"``
  on files without an edit list.

Every file is written under a temporary name in the target directory (``.<name>.tmp-<pid>.<ext>``)
and renamed into place only after everything succeeded; on any failure the temporaries are removed
and nothing appears at the output paths. Pre-existing outputs are left untouched on failure.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from extractors.audio import TARGET_SR, decode_audio, reference_audio_chain, write_wav
from extractors.errors import MediaError
from extractors.ffmpeg import file_url, run_ffmpeg
from extractors.io import sha256_file
from extractors.probe import MIN_DURATION_S, MediaInfo, check_usable, written_video_info
from extractors.recipes import SHORT_AUDIO

#: An output with fewer frames than this fraction of ``round(duration * fps)`` is treated as truncated.
MIN_DECODED_FRACTION = 0.9
#: Audio padded by at least this much (s) gets a manifest warning; any padding is in ``audio_padded_s``.
PAD_WARN_S = 0.1


@dataclass
class MediaManifest:
    """Provenance of one normalized video, written next to the mp4 as ``<stem>.json``."""

    source: str
    source_sha256: str
    probe: MediaInfo
    out_mp4: str
    out_wav: str
    fps: float
    n_frames: int
    width: int
    height: int
    audio_samples: int
    sample_rate: int
    has_audio: bool
    warnings: list[str] = field(default_factory=list)
    x264_preset: str | None = None  # None = libx264 defaults (the reference)
    audio_padded_s: float = 0.0  # silence appended to an audio track shorter than the video (short_audio="pad")
    audio_decode: str = ""  # "adts-copy" (the reference chain) or "container" (edit list applied); "" = none
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step: probe/video/audio/total

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["probe"] = self.probe.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MediaManifest:
        d = json.loads(text)
        d["probe"] = MediaInfo(**d["probe"])
        return cls(**d)


def _tmp_name(final: Path, ext: str | None = None) -> Path:
    """``.<name>.tmp-<pid><ext>`` beside ``final`` (same filesystem, so os.replace is atomic).

    The real extension is kept last so ffmpeg/soundfile infer the right format."""
    ext = final.suffix if ext is None else ext
    return final.with_name(f".{final.stem}.tmp-{os.getpid()}{ext}")


def fps_filter_source_indices(times_s: Sequence[float], end_s: float, fps: float) -> list[int]:
    """Which input frame each output frame of ``-filter:v fps=fps=<fps>`` shows (default options).

    ``times_s``: input presentation times in ascending order; ``end_s``: end of the last frame.
    Independent re-statement of vf_fps.c (see the module docstring) used to predict alignment."""

    def near(x: float) -> int:  # AV_ROUND_NEAR_INF: half away from zero
        return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)

    r = [near(t * fps) for t in times_s]
    out: list[int] = []
    i = 0
    for k in range(r[0], near(end_s * fps)):
        while i + 1 < len(r) and r[i + 1] <= k:
            i += 1
        out.append(i)
    return out


def normalize(
    src: str | os.PathLike[str],
    out_mp4: str | os.PathLike[str],
    out_wav: str | os.PathLike[str],
    fps: float = 25.0,
    min_duration_s: float = MIN_DURATION_S,
    x264_preset: str | None = None,
    short_audio: str = "pad",
    audio_alignment: str = "reference",
) -> MediaManifest:
    """Write the constant-frame-rate mp4, the 16 kHz mono float32 wav and the JSON manifest.

    ``short_audio``: an audio track shorter than the written video is padded with silence to the
    video's length (``"pad"``, ``audio_padded_s`` and a warning in the manifest), so every visual step
    keeps an audio step, or left as it is (``"cut"``, the reference: the feature store then cuts both
    streams to the audio's length). Audio longer than the video is kept; the store drops its tail.

    ``audio_alignment``: ``"reference"`` (default: the reference's ADTS round trip, keeping AAC priming
    samples an mp4 edit list would drop) or ``"trimmed"`` (edit list applied), see the module docstring.

    ``x264_preset`` (e.g. ``"ultrafast"``) is a *non-reference* speed option: it changes the
    re-encoded pixels slightly and therefore the features; ``None`` keeps libx264's defaults as the
    reference does. Raises MediaError (naming ``src`` and the reason) for unusable inputs; nothing is
    then left at the output paths."""
    t_start = time.perf_counter()
    src, out_mp4, out_wav = Path(src), Path(out_mp4), Path(out_wav)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if short_audio not in SHORT_AUDIO:
        raise ValueError(f"short_audio must be 'pad' or 'cut', got {short_audio!r}")
    info = check_usable(src, min_duration_s)
    seconds = {"probe": time.perf_counter() - t_start}
    out_mp4.parent.mkdir(parents=True, exist_ok=True)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    out_json = out_mp4.with_suffix(".json")
    tmp_mp4, tmp_wav, tmp_json = _tmp_name(out_mp4, ".mp4"), _tmp_name(out_wav, ".wav"), _tmp_name(out_json)
    warnings: list[str] = []
    try:
        # ---- video: the reference re-encode
        if info.variable_frame_rate:
            warnings.append(f"variable frame rate input converted to constant {fps:g} fps")
        preset = ["-preset", x264_preset] if x264_preset else []
        t0 = time.perf_counter()

        def reencode(vf: str) -> list[str]:
            return ["-i", file_url(src), "-map", f"0:{info.video_stream_index}", "-an", "-sn", "-dn",
                    "-filter:v", vf, "-c:v", "libx264", *preset, "-f", "mp4", file_url(tmp_mp4)]

        vf = f"fps=fps={fps:g}"
        try:
            run_ffmpeg(src, reencode(vf), "video re-encode")
        except MediaError:
            if not (info.width % 2 or info.height % 2):
                raise
            # libx264 refuses odd sizes in 4:2:0 (4:4:4 sources pass above, as in the reference)
            run_ffmpeg(src, reencode(vf + ",crop=trunc(iw/2)*2:trunc(ih/2)*2:0:0"),
                        "video re-encode (cropped to even size)")
            warnings.append(
                f"odd frame size {info.width}x{info.height} cropped to "
                f"{info.width - info.width % 2}x{info.height - info.height % 2} for libx264 4:2:0"
            )
        n_frames, out_w, out_h, _ = written_video_info(tmp_mp4)
        expected = round(info.duration_s * fps)
        if n_frames < MIN_DECODED_FRACTION * expected - 1:
            raise MediaError(
                src,
                f"truncated or corrupt video: decoded {n_frames} frames, expected about {expected} "
                f"({info.duration_s:.2f} s at {fps:g} fps)",
            )
        if n_frames / fps < min_duration_s:
            raise MediaError(src, f"clip too short after decoding: {n_frames} frames is below the "
                                  f"{min_duration_s:g} s minimum (one feature window)")

        seconds["video"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # ---- audio: the reference VGGish chain
        has_audio, audio_decode = info.has_audio, ""
        if has_audio:
            pcm, audio_decode, copy_error = decode_audio(src, info, audio_alignment, scratch=_tmp_name(out_wav, ".aac"))
            if copy_error:
                warnings.append(f"AAC stream copy of the reference chain failed ({copy_error}); decoded from the "
                                "container instead (edit list applied)")
            if pcm.shape[0] == 0:
                has_audio = False
                warnings.append("audio stream decoded to zero samples; treated as no audio")
            else:
                wav = reference_audio_chain(pcm, int(info.sample_rate or 0))
                dur_a = pcm.shape[0] / float(info.sample_rate or 1)
                if info.audio_duration_s and dur_a < MIN_DECODED_FRACTION * info.audio_duration_s - 0.1:
                    warnings.append(
                        f"audio decoded to {dur_a:.2f} s of the {info.audio_duration_s:.2f} s announced"
                    )
        if not has_audio:
            wav = np.zeros(int(round(info.duration_s * TARGET_SR)), dtype=np.float32)
            if info.has_audio is False:
                warnings.append("no audio stream: wrote a silent 16 kHz track of the video's duration")
        padded_s = 0.0
        video_samples = int(round(n_frames / fps * TARGET_SR))
        if has_audio and short_audio == "pad" and wav.shape[0] < video_samples:
            padded_s = (video_samples - wav.shape[0]) / TARGET_SR
            if padded_s >= PAD_WARN_S:  # AAC tracks often end a frame or two early: recorded, not warned
                warnings.append(f"audio track ({wav.shape[0] / TARGET_SR:.2f} s) shorter than the video "
                                f"({n_frames / fps:.2f} s): padded with {padded_s:.2f} s of silence")
            wav = np.concatenate([wav, np.zeros(video_samples - wav.shape[0], dtype=wav.dtype)])
        write_wav(tmp_wav, wav, TARGET_SR)
        seconds["audio"] = time.perf_counter() - t0

        manifest = MediaManifest(
            source=str(src),
            source_sha256=sha256_file(src),
            probe=info,
            out_mp4=str(out_mp4),
            out_wav=str(out_wav),
            fps=float(fps),
            n_frames=n_frames,
            width=out_w,
            height=out_h,
            audio_samples=int(wav.shape[0]),
            sample_rate=TARGET_SR,
            has_audio=has_audio,
            warnings=warnings,
            x264_preset=x264_preset,
            audio_decode=audio_decode,
            seconds=seconds,
            audio_padded_s=round(padded_s, 6),
        )
        seconds["total"] = time.perf_counter() - t_start  # hashing included; the json is written next
        tmp_json.write_text(manifest.to_json(), encoding="utf-8")
        # ---- publish: media first, manifest last (a manifest means a complete set)
        os.replace(tmp_mp4, out_mp4)
        os.replace(tmp_wav, out_wav)
        os.replace(tmp_json, out_json)
        return manifest
    except (MediaError, OSError, MemoryError):
        raise  # OSError (full disk, missing temp dir) is the environment's fault, never the video's
    except Exception as e:  # anything unexpected still names the file
        raise MediaError(src, f"{type(e).__name__}: {e}") from e
    finally:
        for t in (tmp_mp4, tmp_wav, tmp_json):
            t.unlink(missing_ok=True)


def normalize_many(
    srcs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    fps: float = 25.0,
    min_duration_s: float = MIN_DURATION_S,
    x264_preset: str | None = None,
) -> tuple[list[MediaManifest], list[tuple[str, str]]]:
    """Normalize each source to ``out_dir/<stem>.mp4|.wav|.json``; failures are collected, not raised.

    Returns (manifests of the successes, [(source path, error message)] of the failures). Two
    sources with the same stem would overwrite each other, so the later one is reported as an error."""
    out_dir = Path(out_dir)
    done: list[MediaManifest] = []
    errors: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for s in srcs:
        s = Path(s)
        if s.stem in seen:
            errors.append((str(s), str(MediaError(s, f"duplicate video id {s.stem!r} (also {seen[s.stem]})"))))
            continue
        seen[s.stem] = str(s)
        try:
            done.append(normalize(s, out_dir / f"{s.stem}.mp4", out_dir / f"{s.stem}.wav", fps, min_duration_s,
                                  x264_preset))
        except MediaError as e:
            errors.append((str(s), str(e)))
    return done, errors
