"""Discovery (extractors.discovery): every file in a dataset folder is either admitted or listed with a reason,
whatever its name, and the rejection TSV parses back with the project's own reader."""

from __future__ import annotations

import os
import subprocess
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


CLUSTER_NAMES = ["plain", "a b", 'a "quoted" clip', "it's", "it's a $clip", "it's `x`", "both ' and \"", "a,b",
                 "back\\slash", "$HOME", "`date`", "ü é", "semi;colon", "amp&", "bang!", "tilde~", "it's (1)"]


@pytest.mark.parametrize("name", CLUSTER_NAMES)
def test_cluster_names_are_those_a_job_command_carries_back(name):
    """cluster_name_reason against what really happens: the job's --target-jobs argument as Snakemake's
    executor interface writes it, through bash, parsed by Snakemake's own parser. A name passes exactly
    when it comes back unchanged."""
    executors = pytest.importorskip("snakemake_interface_executor_plugins.utils")
    from snakemake.target_jobs import parse_target_jobs_cli_args

    spec = type("Spec", (), {"rulename": "media", "wildcards_dict": {"ds": "tiny", "vid": name}})()
    arg = executors.format_cli_arg("--target-jobs", executors.encode_target_jobs_cli_args([spec]))
    shell = subprocess.run(["bash", "-c", f"printf '%s\\0' {arg}"], capture_output=True, text=True)
    words = shell.stdout.split("\0")[:-1]
    try:
        back = parse_target_jobs_cli_args(words[1:])[0].wildcards_dict.get("vid") if shell.returncode == 0 else None
    except Exception:  # noqa: BLE001 - any failure to parse is a name that does not come back
        back = None
    assert (discovery.cluster_name_reason(name) is None) == (words[:1] == ["--target-jobs"] and back == name), (
        name, arg, words, back)


def test_cluster_names_are_rejected_only_when_asked(tmp_path, base_clip):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("good", "it's a $clip", "a,b", 'a "quoted" clip'):
        (folder / f"{name}.mp4").write_bytes(base_clip.read_bytes())
    assert sorted(discovery.discover(folder).accepted) == sorted(["good", "it's a $clip", "a,b", 'a "quoted" clip'])
    found = discovery.discover(folder, cluster_names=True)
    assert sorted(found.accepted) == ["a \"quoted\" clip", "good"]
    assert found.rejected["a,b.mp4"].startswith("comma in the file name")
    assert "cannot be quoted in a cluster job's command" in found.rejected["it's a $clip.mp4"]
