"""Nothing outside the repository: users get the checkout and nothing beside it, so no tracked file may
point at a folder beside it (or at this machine's absolute paths), and no test may open a file there
(the audit-hook guard in conftest.py, tested here on a throw-away sibling layout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, outside_repo

SCANNED = ["tests", "extractors", "models", "workflow", "bench", "docs", "README.md"]
# built from pieces so that this file does not match itself
FORBIDDEN = ["..", "/shared"], ["shared/", "media"], ["shared/", "data"], ["shared/", "weights-data"], \
    ["shared/", "papers"], ["DESIGN", ".md"], ["/", "work/"]
PATTERNS = ["".join(p) for p in FORBIDDEN]


def _tracked_files() -> list[Path]:
    """Tracked files under SCANNED (git ls-files); without git (an unpacked archive) every file there."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *SCANNED], cwd=REPO, capture_output=True,
                             check=True).stdout
        return [REPO / os.fsdecode(n) for n in out.split(b"\0") if n]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for s in SCANNED:
            p = REPO / s
            files += [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
        return files


def test_no_tracked_file_points_outside_the_repository() -> None:
    files = [f for f in _tracked_files() if f.resolve() != Path(__file__).resolve() and f.exists()]
    assert any(f.name == "conftest.py" for f in files) and any(f.suffix == ".py" for f in files)
    hits = []
    for f in files:
        data = f.read_bytes()
        if b"\0" in data:  # binary (e.g. tests/data/*.npz)
            continue
        for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            hits += [f"{f.relative_to(REPO)}:{n}: {p!r}: {line.strip()}" for p in PATTERNS if p in line]
    assert not hits, "references outside the repository:\n" + "\n".join(hits)


# ------------------------------------------------------------------------------ path classification
@pytest.fixture()
def layout(tmp_path: Path) -> dict[str, Path]:
    """work/{repo, shared, venv} plus a separate temp dir and a symlink from the repo to the sibling."""
    work = tmp_path / "work"
    d = {"repo": work / "repo", "shared": work / "shared", "venv": work / "venv", "tmp": tmp_path / "tmp"}
    for p in d.values():
        p.mkdir(parents=True)
    (d["shared"] / "clip.mp4").write_bytes(b"x")
    (d["repo"] / "link").symlink_to(d["shared"])
    d["work"] = work
    return d


def test_classification(layout: dict[str, Path]) -> None:
    repo, shared, tmp = layout["repo"], layout["shared"], layout["tmp"]

    def out(p: Path | str, tmp_dir: Path = tmp) -> bool:
        return outside_repo(p, repo, tmp_dir, exempt=[layout["venv"]])

    assert out(shared / "clip.mp4")
    assert out(repo / ".." / "shared" / "clip.mp4")  # normalised
    assert out(repo / "link" / "clip.mp4")  # a symlink inside the repo pointing beside it
    assert out(layout["work"] / "repo-other" / "x")  # a sibling whose name starts like the repo
    assert not out(repo / "tests" / "a.py")
    assert not out(repo)
    assert not out(layout["venv"] / "lib" / "site.py")  # the interpreter's own prefix
    assert not out(tmp / "x")
    assert not out("/usr/lib/x")  # not beside the checkout at all
    # the temp dir exempts what lies beside the checkout only when it is not an ancestor of it
    assert out(shared / "clip.mp4", tmp_dir=layout["work"].parent)  # clone under /tmp: still flagged
    assert not out(shared / "clip.mp4", tmp_dir=layout["work"])  # checkout directly in the temp dir
    assert not out(layout["work"] / "shared-tmp" / "x", tmp_dir=layout["work"] / "shared-tmp")


# ------------------------------------------------------------------------------ the hook, end to end
def _fake_checkout(root: Path, body: str) -> Path:
    repo = root / "work" / "repo"
    (repo / "tests").mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("conftest.py"), repo / "tests" / "conftest.py")
    (repo / "tests" / "test_x.py").write_text(body, encoding="utf-8")
    (root / "work" / "shared").mkdir()
    (root / "work" / "shared" / "data.txt").write_text("beside the checkout\n", encoding="utf-8")
    return repo


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # the fake checkout's conftest imports this checkout's extractors
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=repo,
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_hook_fails_a_session_that_reads_beside_the_checkout(tmp_path: Path, xdist: bool) -> None:
    body = ("from pathlib import Path\n\n\ndef test_reads_sibling():\n"
            "    assert (Path(__file__).parents[2] / 'shared' / 'data.txt').read_text().startswith('beside')\n\n\n"
            "def test_inside():\n    assert 'def' in Path(__file__).read_text()\n")
    repo = _fake_checkout(tmp_path, body)
    res = _run(repo, *(["-n", "1"] if xdist else []))
    text = res.stdout + res.stderr
    assert res.returncode != 0, text
    assert str((tmp_path / "work" / "shared" / "data.txt").resolve()) in text, text
    assert "2 passed" in text  # the tests themselves pass: only the guard fails the run


def test_hook_passes_a_clean_session(tmp_path: Path) -> None:
    repo = _fake_checkout(tmp_path, "from pathlib import Path\n\n\ndef test_inside():\n"
                                    "    assert 'def' in Path(__file__).read_text()\n")
    res = _run(repo)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "outside the repository" not in res.stdout
