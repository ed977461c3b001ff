"""Clips with the properties of real downloads, made with the bundled ffmpeg for the tests and benches
(instead of real clips nobody else has): ActivityNet-like nominal rates and sizes, and AAC-in-mp4 with and
without the encoder-delay edit list."""

from __future__ import annotations

from pathlib import Path

from extractors.ffmpeg import ffmpeg_exe
from extractors.synthetic_videos import run_generator

#: Stand-ins for two real ActivityNet clips (width, height, nominal rate, duration in s): 19.62 FPS
#: nominal (981/50) at 320x240, and 30 FPS at 480x360 (6 s: the AAC tail stays under 1 % of it).
ODD_RATE_LIKE = (320, 240, "981/50", 6.0)
THIRTY_FPS_LIKE = (480, 360, "30", 6.0)


def make_activitynet_like_clip(path: Path | str, width: int, height: int, rate: str, duration_s: float) -> Path:
    """H.264 + AAC mono 44.1 kHz mp4 with the awkward properties of real ActivityNet downloads: any
    nominal rate (e.g. ``981/50`` = 19.62 FPS), 4:2:0, the index (moov) at the front. The audio is a
    gliding tone plus a 3 kHz tone gated on for the second half of every second, so it has real
    spectral structure for the audio-chain and log-mel tests.

    The AAC is encoded to ADTS first and then stream-copied into the mp4, so the mp4 carries no
    encoder-delay edit list, like the real downloads it stands in for: decoding it from the mp4 and decoding its
    ``-acodec copy`` ADTS copy (the reference chain) give the same samples. (An mp4 written by ffmpeg's
    own AAC encoder has a priming edit list that the ADTS copy loses: there the two paths differ.)
    Used by the tests and the benches instead of real clips nobody else has."""
    audio = (f"aevalsrc=0.4*sin(2*PI*(220+110*t)*t)+0.1*sin(2*PI*3000*t)*gt(mod(t\\,1)\\,0.5)"
             f":s=44100:c=mono:d={duration_s}")
    path = Path(path)
    adts = path.with_name(path.stem + ".audio.aac")
    base = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y"]
    run_generator([*base, "-f", "lavfi", "-i", audio, "-c:a", "aac", "-ac", "1", "-ar", "44100", "-f", "adts", str(adts)])
    run_generator([*base, "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={rate}:duration={duration_s}",
          "-i", str(adts), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-pix_fmt", "yuv420p",
          "-c:a", "copy", "-movflags", "+faststart", str(path)])
    adts.unlink()
    return path


def make_aac_edit_list_pair(out_dir: Path | str, duration_s: float = 3.0) -> dict[str, Path]:
    """Two AAC-in-mp4 clips of the same content (a 440 Hz tone at 44.1 kHz, a test pattern): one muxed
    straight from ffmpeg's AAC encoder, whose mp4 carries the encoder-delay edit list, and one whose AAC
    went through ADTS first (no edit list). Why: the reference audio chain keeps the priming an edit list
    trims, so audio alignment is measured on both kinds (tests/test_media.py, bench/audio_parity_bench.py)."""
    out = Path(out_dir)
    ff = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y"]
    video = ["-f", "lavfi", "-i", f"testsrc=size=64x48:rate=25:duration={duration_s}"]
    audio = f"sine=frequency=440:sample_rate=44100:duration={duration_s},volume=0.5"
    edl, adts, plain = out / "edit_list.mp4", out / "edit_list_source.aac", out / "no_edit_list.mp4"
    run_generator([*ff, *video, "-f", "lavfi", "-i", audio, "-c:v", "libx264", "-c:a", "aac", "-shortest", str(edl)])
    run_generator([*ff, "-f", "lavfi", "-i", audio, "-c:a", "aac", "-f", "adts", str(adts)])
    run_generator([*ff, *video, "-i", str(adts), "-c:v", "libx264", "-c:a", "copy", str(plain)])
    adts.unlink()
    return {"edit_list": edl, "no_edit_list": plain}
