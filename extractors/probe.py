"""What a video holds, read with PyAV without decoding a frame: streams, duration, frame rate (variable or
not, measured from packet timestamps), audio; and the cheap admission test every stage starts with."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from extractors.errors import MediaError
from extractors.ffmpeg import file_url

MIN_DURATION_S = 0.96


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learned about a file (PyAV, demux only: no frame is decoded)."""

    path: str
    duration_s: float  # video duration: max(stream header, first packet start .. last packet end)
    container_duration_s: float | None
    fps_avg: float  # average frame rate reported by the demuxer
    fps_nominal: float | None  # the stream's base ("r_frame_rate") rate
    variable_frame_rate: bool  # packet durations differ by more than 1 % (measured, not guessed)
    n_video_packets: int
    width: int
    height: int
    video_codec: str
    video_stream_index: int
    has_audio: bool
    audio_codec: str | None = None
    audio_stream_index: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    audio_duration_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _f(x: Fraction | int | float | None) -> float | None:
    return None if x is None else float(x)


# ---------------------------------------------------------------------------------------------- probe
def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Read stream facts with PyAV; raises MediaError for files that are not usable video.

    Variable frame rate is *measured* from the demuxed packet timestamps (cheap: no decoding)
    because containers often report a nominal rate that hides VFR."""
    import av

    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file does not exist")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(p, "empty file (0 bytes)")
    try:
        container = av.open(file_url(p), metadata_errors="ignore")
    except av.error.FFmpegError as e:  # InvalidDataError, etc.
        raise MediaError(p, f"not a readable media file ({getattr(e, 'strerror', None) or e})") from e
    try:
        vstreams = [
            s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)
        ]
        if not vstreams:
            raise MediaError(p, "no video stream")
        vs = vstreams[0]
        astreams = list(container.streams.audio)
        as_ = astreams[0] if astreams else None
        cdur = container.duration / 1e6 if container.duration else None
        vdur = float(vs.duration * vs.time_base) if vs.duration and vs.time_base else cdur
        vcc = vs.codec_context
        width, height = int(vcc.width or 0), int(vcc.height or 0)
        if width <= 0 or height <= 0:
            raise MediaError(p, "video stream has no frame size (corrupt header?)")

        # Demux the video packets only: timestamps give the true frame rate and VFR-ness.
        pts: list[int] = []
        first_pkt = last_end = None
        try:
            for pkt in container.demux(vs):
                if pkt.pts is None:
                    continue
                pts.append(pkt.pts)
                t0 = float(pkt.pts * vs.time_base)
                first_pkt = t0 if first_pkt is None else min(first_pkt, t0)
                end = t0 + float((pkt.duration or 0) * vs.time_base)
                last_end = end if last_end is None else max(last_end, end)
        except av.error.FFmpegError:
            pass  # truncated files stop demuxing early; normalize() checks the decoded length
        if not pts:
            raise MediaError(p, "video stream has no packets (truncated or corrupt file)")
        pts.sort()
        diffs = np.diff(np.asarray(pts, dtype=np.int64))
        diffs = diffs[diffs > 0]
        vfr = False
        if diffs.size >= 2:
            med = float(np.median(diffs))
            # 1-tick jitter is timestamp rounding (29.97 fps in a 1/1000 time base gives 33/34 ms)
            vfr = bool(np.mean(np.abs(diffs - med) > max(0.01 * med, 1.0)) > 0.01)
        # Some muxers store the last frame's *start* as the stream duration (seen with VFR mp4s);
        # the demuxed end of the last packet is the duration the fps filter actually sees.
        span = (last_end - first_pkt) if last_end is not None and first_pkt is not None else 0.0
        vdur = max(vdur or 0.0, span)
        fps_avg = _f(vs.average_rate) or (len(pts) / vdur if vdur else 0.0)

        a_kwargs: dict[str, Any] = {}
        if as_ is not None:
            acc = as_.codec_context
            a_kwargs = dict(
                audio_codec=acc.name,
                audio_stream_index=as_.index,
                sample_rate=int(acc.sample_rate or 0) or None,
                channels=int(acc.layout.nb_channels) if acc.layout else None,
                audio_duration_s=float(as_.duration * as_.time_base) if as_.duration else cdur,
            )
        return MediaInfo(
            path=str(p),
            duration_s=float(vdur),
            container_duration_s=cdur,
            fps_avg=float(fps_avg),
            fps_nominal=_f(vs.base_rate),
            variable_frame_rate=vfr,
            n_video_packets=len(pts),
            width=width,
            height=height,
            video_codec=vcc.name,
            video_stream_index=vs.index,
            has_audio=as_ is not None,
            **a_kwargs,
        )
    finally:
        container.close()


def check_usable(path: str | os.PathLike[str], min_duration_s: float = MIN_DURATION_S) -> MediaInfo:
    """Cheap admission test (probe + minimum duration), the same checks normalize() starts with.

    Raises MediaError with the documented reason; truncation of files whose index survives is only
    detected by normalize() (it needs a decode)."""
    info = probe(path)
    if info.duration_s < min_duration_s:
        raise MediaError(
            path,
            f"clip too short: {info.duration_s:.3f} s is below the {min_duration_s:g} s minimum "
            f"(one feature window)",
        )
    return info


def written_video_info(mp4: Path) -> tuple[int, int, int, float]:
    """(frames, width, height, fps) of the media stage's written mp4, from its index (mp4 stores exact counts);
    not :func:`extractors.frames.count_frames`, which decodes to count what the I3D reference loop reads."""
    import av

    with av.open(file_url(mp4)) as c:
        vs = c.streams.video[0]
        n = vs.frames
        if not n:  # index without counts: count packets
            n = sum(1 for pkt in c.demux(vs) if pkt.size)
        return int(n), int(vs.codec_context.width), int(vs.codec_context.height), float(vs.average_rate or 0)


