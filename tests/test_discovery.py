"""Discovery (extractors.discovery): every file in a dataset folder is either admitted or listed with a reason,
whatever its name, and the rejection TSV parses back with the project's own reader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from extractors import discovery
from extractors.synthetic_videos import make_clip


@pytest.fixture(scope="module")
def base_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("base") / "base.mp4", size=(64, 48), duration_s=1.2)


def test_awkward_names_are_admitted_or_rejected_with_a_reason(tmp_path, base_clip):
    folder = tmp_path / "videos"
    folder.mkdir()
    data = base_clip.read_bytes()
    for name in ("good.mp4", "brace{vid}.mp4", "close}.mp4", "tab\tname.mp4", "new\nline.mp4", 'quote".mp4'):
        (folder / name).write_bytes(data)
    (folder / "gone.mp4").symlink_to(folder / "nowhere.mp4")
    (folder / "link.mp4").symlink_to(folder / "good.mp4")
    (folder / "adir.mp4").mkdir()  # a folder named like a video: not a video, not listed
    found = discovery.discover(folder)
    assert sorted(found.accepted) == ["good", "link", 'quote"']
    assert found.rejected == {
        "brace{vid}.mp4": "braces { } in the file name would be read as a Snakemake wildcard; rename the file",
        "close}.mp4": "braces { } in the file name would be read as a Snakemake wildcard; rename the file",
        "tab\tname.mp4": "control character (tab, newline, ...) in the file name; rename the file",
        "new\nline.mp4": "control character (tab, newline, ...) in the file name; rename the file",
        "gone.mp4": f"dangling symlink (its target {folder / 'nowhere.mp4'} does not exist)",
    }
    tsv = tmp_path / "logs" / "rejected_videos.tsv"
    discovery.write_rejections(found.rejected, tsv)
    rows = discovery.read_rejections(tsv)
    assert {r["file"]: r["reason"] for r in rows} == found.rejected
    assert [list(r) for r in rows] == [["file", "reason"]] * len(rows)
    summary = discovery.rejection_summary("demo", found.rejected, tsv, limit=2).splitlines()
    assert summary[0] == f"demo: 5 videos left out before any job (all in {tsv}):"
    assert summary[1:] == ["  'brace{vid}.mp4': braces { } in the file name would be read as a Snakemake "
                           "wildcard; rename the file",
                           "  'close}.mp4': braces { } in the file name would be read as a Snakemake wildcard; "
                           "rename the file", "  ... and 3 more"]
    assert discovery.rejection_summary("demo", {}, tsv) == ""


def test_unreadable_file_is_rejected(tmp_path, base_clip, monkeypatch):
    folder = tmp_path / "videos"
    folder.mkdir()
    secret = folder / "secret.mp4"
    secret.write_bytes(base_clip.read_bytes())
    secret.chmod(0)
    if os.geteuid() == 0:  # root reads every file: ask access() the question a normal user's check answers
        real = os.access
        monkeypatch.setattr(discovery.os, "access", lambda p, m: False if Path(p) == secret else real(p, m))
    try:
        found = discovery.discover(folder)
    finally:
        secret.chmod(0o600)
    assert found.rejected == {"secret.mp4": "not readable by this user (permission denied)"}


def test_tsv_round_trips_any_cell():
    cells = [["a\tb", 'say "hi"'], ["line\nbreak", "plain"], ["trailing\r", ""]]
    import csv
    import io

    text = discovery.tsv_text(["file", "reason"], cells)
    assert text.startswith("file\treason\n")
    back = list(csv.DictReader(io.StringIO(text, newline=""), delimiter="\t"))
    assert [[r["file"], r["reason"]] for r in back] == cells
