"""Progress lines of long steps (store build, evaluation, timelines): the ``avloc.progress`` logger, which
``log_to_file`` sends to both the rule's log and the console."""

from __future__ import annotations

import logging
import sys

from models.run import pipeline
from models.run.progress import Heartbeat


def test_heartbeat_lines_have_counts_seconds_and_eta(caplog):
    clock = iter([0.0, 10.0, 31.0, 40.0, 65.0, 70.0]).__next__
    caplog.set_level(logging.INFO, logger="avloc.progress")
    beat = Heartbeat("store: videos read", 10, every_s=30.0, clock=clock)  # starts at 0
    for _ in range(4):  # clock 10 (quiet), 31 (line: 2 done), 40 (quiet), 65 (line: 4 done)
        beat.tick()
    beat.finish()  # clock 70
    lines = [r.getMessage() for r in caplog.records if r.name == "avloc.progress"]
    # 2 videos in 31 s -> 8 left at 15.5 s each = 124 s; 4 in 65 s -> 6 left at 16.25 s = 98 s
    assert lines == ["store: videos read: 0 / 10", "store: videos read: 2 / 10, 31 s in, ETA 124 s",
                     "store: videos read: 4 / 10, 65 s in, ETA 98 s",
                     "store: videos read: 4 / 10 in 70 s"]


def test_log_to_file_sends_progress_to_the_log_and_the_console(tmp_path, capfd, monkeypatch):
    log = tmp_path / "rule.log"
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    try:
        pipeline.log_to_file(log)
        Heartbeat("evaluate: videos", 3).finish()
        logging.getLogger("models.other").info("detail for the log only")
    finally:
        logging.getLogger("avloc.progress").handlers.clear()
        logging.basicConfig(force=True)
    text = log.read_text()
    assert "evaluate: videos: 0 / 3" in text and "evaluate: videos: 0 / 3 in 0 s" in text
    assert "detail for the log only" in text
    console = capfd.readouterr().err
    assert "evaluate: videos: 0 / 3 in 0 s" in console and "detail for the log only" not in console
