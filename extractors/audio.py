"""The one audio decode of the pipeline: int16 at the source rate through the reference's ADTS chain
(:func:`decode_audio`), the reference VGGish chain to 16 kHz, and :func:`load_audio` (mono at any rate, with
the resampler each recipe's reference uses)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from extractors.errors import MediaError
from extractors.ffmpeg import file_url, run_ffmpeg
from extractors.probe import MediaInfo, probe
from extractors.recipes import AUDIO_ALIGNMENTS

TARGET_SR = 16000


def decode_audio(src: Path, info: MediaInfo, alignment: str = "reference",
                 scratch: Path | None = None) -> tuple[np.ndarray, str, str | None]:
    """All samples of the first audio stream as int16, shape (n, channels), original rate; the path that
    decoded them (``"adts-copy"`` or ``"container"``) and, when the ADTS copy failed, why.

    ``alignment="reference"`` (the default) runs the reference chain for AAC: ``-acodec copy`` into an ADTS
    ``.aac`` file (``scratch``, removed afterwards), then a decode of that file. ADTS cannot carry an mp4's
    encoder-delay edit list, so the reference keeps the encoder's priming samples (1024 at the start, about
    23 ms at 44.1 kHz, plus the last frame's padding) that a decode straight from the container drops;
    keeping them is what makes VGGish windows line up with the released features. Other codecs cannot be
    stream-copied into ADTS (the reference fails on them) and are decoded from the container, as is an AAC
    stream whose copy fails (the reason is returned, so the video is not lost).
    ``alignment="trimmed"``: always decode from the container, applying its edit list (audio sample 0 at
    video time 0); identical to ``reference`` on files without an edit list.
    Conversion to s16 is ffmpeg's (the same swresample path the reference's '.aac -> .wav' takes)."""
    assert info.audio_stream_index is not None and info.channels
    if alignment not in AUDIO_ALIGNMENTS:
        raise ValueError(f"audio alignment must be one of {AUDIO_ALIGNMENTS}, got {alignment!r}")
    to_pcm = ["-vn", "-sn", "-dn", "-acodec", "pcm_s16le", "-f", "s16le", "pipe:1"]
    raw, used, copy_error = None, "container", None
    if alignment == "reference" and info.audio_codec == "aac":
        if scratch is None:
            fd, name = tempfile.mkstemp(suffix=".aac")
            os.close(fd)
            scratch = Path(name)
        try:
            run_ffmpeg(src, ["-i", file_url(src), "-map", f"0:{info.audio_stream_index}", "-vn", "-sn", "-dn",
                              "-acodec", "copy", "-f", "adts", file_url(scratch)], "audio stream copy (reference chain)")
            raw, used = run_ffmpeg(src, ["-i", file_url(scratch), *to_pcm], "audio decode", capture_stdout=True), "adts-copy"
        except MediaError as err:
            copy_error = str(err)
        finally:
            scratch.unlink(missing_ok=True)
    if raw is None:
        raw = run_ffmpeg(src, ["-i", file_url(src), "-map", f"0:{info.audio_stream_index}", *to_pcm], "audio decode",
                          capture_stdout=True)
    x = np.frombuffer(raw, dtype="<i2")
    usable = x.size - x.size % info.channels
    return x[:usable].reshape(-1, info.channels), used, copy_error


def reference_audio_chain(pcm_int16: np.ndarray, sr: int, target_sr: int = TARGET_SR) -> np.ndarray:
    """torchvggish's ``wavfile_to_examples`` front half: /32768, channel mean, resampy kaiser_best."""
    import resampy

    x = pcm_int16 / 32768.0  # float64, as the reference
    if x.ndim > 1:
        x = np.mean(x, axis=1)
    if sr != target_sr:
        x = resampy.resample(x, sr, target_sr)  # default filter='kaiser_best'
    return x


AudioResampler = Literal["resampy", "soxr"]


def load_audio(src: str | os.PathLike[str], sample_rate: int = TARGET_SR, max_seconds: float | None = None,
               resampler: AudioResampler = "resampy") -> tuple[np.ndarray, dict[str, Any]]:
    """The one audio decode of the feature extractors: mono float audio of the first audio stream of ``src``
    at ``sample_rate``, at most ``max_seconds`` s (None: all), and ``meta`` (``has_audio``, the source rate and
    channels, the resampler). A file without audio gives silence of its duration (at most ``max_seconds``).

    ``resampler`` names the reference each recipe follows:

    - ``"resampy"`` (VGGish, torchvggish's ``wavfile_to_examples``; the media stage's wav): int16 at the source
      rate (:func:`decode_audio`, ``alignment="reference"``), ``/ 32768``, channel mean, resampy
      ``kaiser_best`` over the whole track (float64), then cut to ``max_seconds``.
    - ``"soxr"`` (CLAP, librosa's ``load`` with ``soxr_hq`` in laion_clap/VALOR): ffmpeg reads at most
      ``max_seconds`` s (``-t``) and resamples each channel with soxr at 20-bit precision, as float32; the
      channels are then averaged (librosa ``to_mono``).
    """
    if resampler not in ("resampy", "soxr"):
        raise ValueError(f"resampler must be 'resampy' or 'soxr', got {resampler!r}")
    path = Path(src)
    info = probe(path)
    meta: dict[str, Any] = {"has_audio": bool(info.has_audio), "source_sample_rate": info.sample_rate,
                            "source_channels": info.channels,
                            "resampler": ("resampy kaiser_best" if resampler == "resampy"
                                          else "ffmpeg aresample soxr precision=20")}
    dtype = np.float64 if resampler == "resampy" else np.float32
    if not info.has_audio or info.audio_stream_index is None:
        dur = info.duration_s if info.duration_s else float(max_seconds or 0.0)
        n = int(round((min(dur, max_seconds) if max_seconds else dur) * sample_rate))
        return np.zeros(n, dtype), meta
    if resampler == "resampy":
        wave = reference_audio_chain(decode_audio(path, info)[0], int(info.sample_rate or 0), sample_rate)
        return (wave if max_seconds is None else wave[: int(round(max_seconds * sample_rate))]), meta
    limit = [] if max_seconds is None else ["-t", str(max_seconds)]
    raw = run_ffmpeg(path, ["-i", file_url(path), "-map", f"0:{info.audio_stream_index}", "-vn", "-sn", "-dn", *limit,
                             "-af", f"aresample={sample_rate}:resampler=soxr:precision=20",
                             "-acodec", "pcm_f32le", "-f", "f32le", "pipe:1"], f"{sample_rate} Hz audio decode",
                      capture_stdout=True)
    ch = int(info.channels or 1)
    x = np.frombuffer(raw, dtype="<f4")
    return x[: x.size - x.size % ch].reshape(-1, ch).mean(axis=1).astype(np.float32), meta


def write_wav(path: Path, x: np.ndarray, sr: int) -> None:
    """``x`` as a float32 WAV (VGGish reads it without a second int16 quantisation)."""
    import soundfile as sf

    sf.write(str(path), np.asarray(x, dtype=np.float32), sr, subtype="FLOAT", format="WAV")


