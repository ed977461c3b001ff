"""The user-facing docs stay true to the repository: README's quick start stays short and keeps the
blocks .ci/run extracts, every relative link in README.md, config/README.md and docs/*.md names a file
that exists, and config/README.md lists exactly the keys of the config schema (with its defaults and
allowed values), so the reference cannot drift from what `snakemake -n` accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
CONFIG_DOC = REPO / "config" / "README.md"
# Linked from README.md but written on other branches of the same change (docs/cluster.md: the SLURM
# internals; docs/extending.md: adding a localizer or an extractor). Until they are merged a link to them
# may dangle; once they exist they are checked like every other file. Empty this after the merge.
WRITTEN_ELSEWHERE: set[str] = set()
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _doc_files() -> list[Path]:
    return [REPO / "README.md", CONFIG_DOC, *sorted((REPO / "docs").glob("*.md"))]


def _relative_links(md: Path) -> list[tuple[str, Path]]:
    """(target as written, resolved path) of every link in ``md`` that is not a URL or an in-page anchor."""
    out = []
    for target in LINK.findall(md.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        out.append((target, (md.parent / target.split("#", 1)[0]).resolve()))
    return out


def test_quick_start_is_short_and_keeps_the_ci_blocks() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Quick start\n.*?(?=^## )", text, flags=re.S | re.M)
    assert section, "README has no '## Quick start' section"
    lines = section.group(0).rstrip("\n").splitlines()
    assert len(lines) <= 15, f"quick start is {len(lines)} lines (at most 15)"
    for marker in ("<!-- install -->", "<!-- test -->"):
        i = lines.index(marker)
        assert lines[i + 1] == "```bash" and lines[i + 2].startswith("python3 -m venv .venv"), marker
    assert "results/demo/summary.html" in section.group(0) and "docs/demo.md" in section.group(0)


def test_relative_links_point_to_existing_files() -> None:
    files = _doc_files()
    assert (REPO / "README.md") in files and CONFIG_DOC.exists()
    dangling = []
    for md in files:
        for target, path in _relative_links(md):
            rel = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
            if not path.exists() and rel not in WRITTEN_ELSEWHERE:
                dangling.append(f"{md.relative_to(REPO)}: {target}")
    assert not dangling, "links to files that do not exist:\n" + "\n".join(dangling)


def test_readme_links_the_reference_docs() -> None:
    linked = {p.relative_to(REPO).as_posix() for _, p in _relative_links(REPO / "README.md")}
    needed = {"config/README.md", "docs/demo.md", "docs/workers.md", "docs/architecture.md",
              "docs/recipes.md"} | WRITTEN_ELSEWHERE
    assert needed <= linked, f"README does not link {sorted(needed - linked)}"


def test_the_link_check_catches_a_dangling_link(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text("[a](missing.md) [b](https://example.org/x) [c](#anchor) [d](x.md#top)\n")
    links = _relative_links(md)
    assert [t for t, _ in links] == ["missing.md", "x.md#top"]
    assert [p.exists() for _, p in links] == [False, True]


# ------------------------------------------------------------------------------ config reference
def _schema_keys(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every key of the schema as a dotted path (``<name>`` for a user-chosen mapping key) -> its schema."""
    defs = schema.get("definitions", {})

    def resolve(node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    out: dict[str, dict[str, Any]] = {}

    def walk(node: Any, prefix: str) -> None:
        node = resolve(node)
        if not isinstance(node, dict):
            return
        branches = [node, *(resolve(b) for k in ("oneOf", "anyOf") for b in node.get(k, []))]
        for b in branches:
            if not isinstance(b, dict):
                continue
            for key, sub in b.get("properties", {}).items():
                path = f"{prefix}.{key}" if prefix else key
                out.setdefault(path, resolve(sub))
                walk(sub, path)
            extra = resolve(b.get("additionalProperties"))
            if isinstance(extra, dict) and extra.get("properties"):  # a mapping of named entries
                walk(extra, f"{prefix}.<name>")

    walk(schema, "")
    return out


def _documented_rows() -> dict[str, str]:
    """Key path -> its table row, for every row of config/README.md whose first cell is a backticked key."""
    rows = {}
    for line in CONFIG_DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| `([^`]+)` \|", line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} documented twice"
            rows[m.group(1)] = line
    return rows


def _problems(schema: dict[str, Any], rows: dict[str, str]) -> list[str]:
    """Where config/README.md (``rows``) and ``schema`` disagree: keys missing on either side, defaults and
    allowed values (``enum``) a row does not state."""
    keys = _schema_keys(schema)
    out = [f"not documented: {k}" for k in sorted(set(keys) - set(rows))]
    out += [f"not in the schema: {k}" for k in sorted(set(rows) - set(keys))]
    for path, node in keys.items():
        row = rows.get(path, "")
        default = node.get("default")
        if isinstance(default, list):
            out += [f"{path}: default {d}" for d in default if str(d) not in row]
        elif default not in (None, ""):
            text = str(default).lower() if isinstance(default, bool) else str(default)
            out += [] if f"`{text}`" in row else [f"{path}: default {default!r}"]
        out += [f"{path}: choice {c!r}" for c in node.get("enum", []) if f"`{c}`" not in row]
    return out


def test_config_reference_matches_the_schema() -> None:
    schema = yaml.safe_load(SCHEMA.read_text())
    keys = _schema_keys(schema)
    assert {"datasets.<name>.videos", "avvp.<name>.llp.visual", "datasets.<name>.reproduce.seeds"} <= set(keys)
    problems = _problems(schema, _documented_rows())
    assert not problems, "config/README.md disagrees with workflow/schemas/config.schema.yaml:\n" + "\n".join(problems)


@pytest.mark.parametrize("edit, expected", [
    ("add_key", "not documented: datasets.<name>.train.warmup_epochs"),
    ("add_choice", "datasets.<name>.recipe: choice 'my_recipe'"),
    ("change_default", "datasets.<name>.evaluate.max_timelines: default 100"),
])
def test_the_config_check_catches_a_schema_change(edit: str, expected: str) -> None:
    schema = yaml.safe_load(SCHEMA.read_text())
    ds = schema["properties"]["datasets"]["additionalProperties"]["properties"]
    if edit == "add_key":
        ds["train"]["properties"]["warmup_epochs"] = {"type": "integer"}
    elif edit == "add_choice":
        ds["recipe"]["enum"].append("my_recipe")
    else:
        ds["evaluate"]["properties"]["max_timelines"]["default"] = 100
    assert _problems(schema, _documented_rows()) == [expected]
