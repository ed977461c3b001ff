"""Imports run downhill (docs/architecture.md): workflow -> models -> extractors -> nothing of ours.

Every module under extractors/ and models/ is parsed (nothing is imported) and each import, function-local
ones included (they are how cycles get hidden), is checked against the layer order below: a module may
import its own layer or a lower one, never a higher one; and the module graph has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("extractors", "models")

# lowest first; a module belongs to the longest prefix that names it
LAYERS: tuple[str, ...] = (
    "extractors",             # video -> media -> frames -> flow -> I3D/VGGish/R(2+1)D features, weights
    "extractors.llp",         # LLP per-second features (ResNet/R(2+1)D/CLIP/VGGish/CLAP)
    "models.localizers",      # the models, their shared heads/losses/pooling, step events, registry
    "models.data",            # annotations, feature store, datasets, planted data
    "models.run",             # train / evaluate / predict / compare, mAP, plots, Snakemake-script glue
    "models.avvp",            # EAR: inputs, model, label migration, pseudo-labels, stages, AVVP metric
    "models.report",          # HTML summaries of everything above
)


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest prefix naming ``module``; -1 for none (the bare ``models`` package)."""
    matches = [i for i, p in enumerate(LAYERS) if module == p or module.startswith(p + ".")]
    return max(matches, key=lambda i: len(LAYERS[i])) if matches else -1


def _resolve(name: str) -> str | None:
    """The module of ours that ``name`` (a module or ``module.attribute``) refers to, or None."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_in(source: str, module: str, is_pkg: bool = False) -> list[tuple[str, int]]:
    """``(imported module of ours, line)`` for every import statement anywhere in ``source``."""
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in MODULES else src for a in node.names]
        for t in targets:
            if t.split(".")[0] in PACKAGES:
                r = _resolve(t)
                if r is not None and r != module and (r, node.lineno) not in out:
                    out.append((r, node.lineno))
    return out


def imports_of(module: str) -> list[tuple[str, int]]:
    path = MODULES[module]
    return imports_in(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")


GRAPH = {m: sorted({t for t, _ in imports_of(m)}) for m in MODULES}


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in MODULES if m not in PACKAGES and layer_of(m) < 0]
    assert not unplaced, f"modules outside every layer of LAYERS (place their package): {unplaced}"


def test_extractors_never_import_models() -> None:
    bad = [f"{m}:{line} imports {t}" for m in MODULES if m.startswith("extractors")
           for t, line in imports_of(m) if t.startswith("models")]
    assert not bad, "extractors must not depend on the training side:\n" + "\n".join(bad)


def test_imports_run_downhill() -> None:
    bad = []
    for m in MODULES:
        if m in PACKAGES:
            continue
        for t, line in imports_of(m):
            if t in PACKAGES:
                continue
            if layer_of(t) > layer_of(m):
                bad.append(f"{MODULES[m].relative_to(ROOT)}:{line}: {m} ({LAYERS[layer_of(m)]}) imports "
                           f"{t} ({LAYERS[layer_of(t)]}), a higher layer")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles (function-local imports count):\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("graph, expected", [
    ({"a": ["b"], "b": ["a"], "c": ["a"]}, [["a", "b"]]),
    ({"a": ["b"], "b": ["c"], "c": []}, []),
    ({"a": ["b"], "b": ["c"], "c": ["a"]}, [["a", "b", "c"]]),
])
def test_cycle_finder(graph: dict[str, list[str]], expected: list[list[str]]) -> None:
    assert find_cycles(graph) == expected


def test_checker_sees_function_local_and_upward_imports() -> None:
    """The checks would catch the problems of issue #12 if they came back."""
    src = "import numpy\n\ndef f():\n    from models.data.dataset import read_unav\n"
    assert imports_in(src, "extractors.llp.extract") == [("models.data.dataset", 4)]  # function-local
    assert imports_in("from . import media\n", "extractors.worker") == [("extractors.media", 1)]  # relative
    assert find_cycles({"extractors.llp.clap": ["extractors.llp.features"],
                        "extractors.llp.features": ["extractors.llp.clap"]})  # the old cycle
    assert layer_of("models.data.dataset") > layer_of("extractors.llp.extract")
    assert layer_of("models.run.train") > layer_of("models.localizers.registry")
    assert layer_of("extractors.worker") == LAYERS.index("extractors")
    assert layer_of("extractors.llp.clap") == LAYERS.index("extractors.llp")
    assert layer_of("models") == -1


# ---------------------------------------------------------------- one decode loop, one window builder
# Issue #25: frames were read three ways, windows built three ways, audio decoded three ways. Each now has one
# home; these checks fail when a second one comes back. They parse the modules (nothing is imported).
FRAME_SOURCE = "extractors.frames"  # iter_frames (OpenCV or ffmpeg's fps filter) and window_groups
AUDIO_SOURCE = "extractors.audio"  # decode_audio / load_audio: every audio decode and resample
GONE = ("iter_frames_rgb", "_window_groups", "iter_windows", "decode_audio_16k", "decode_audio_48k",
        "decode_audio_int16", "hann_periodic", "_FlowSource")


def _source(module: str) -> str:
    return MODULES[module].read_text(encoding="utf-8")


def defs_in(source: str) -> list[str]:
    return [n.name for n in ast.walk(ast.parse(source))
            if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]


def uses_in(source: str, names: set[str]) -> list[int]:
    """Lines where ``x.<name>`` or a bare or imported ``<name>`` is used, for any of ``names``."""
    return [n.lineno for n in ast.walk(ast.parse(source))
            if (isinstance(n, ast.Attribute) and n.attr in names) or (isinstance(n, ast.Name) and n.id in names)
            or (isinstance(n, ast.alias) and n.name in names)]


def audio_decoding_in(source: str) -> list[int]:
    """Lines that import resampy or build an ffmpeg audio decode (``pcm_*`` output, ``aresample``)."""
    return [getattr(n, "lineno", 0) for n in ast.walk(ast.parse(source))
            if (isinstance(n, ast.alias) and n.name.split(".")[0] == "resampy")
            or (isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith(("pcm_", "aresample")))]


@pytest.mark.parametrize("name", ["num_windows", "window_groups", "iter_frames", "load_audio", "compute_flow",
                                  "periodic_hann"])
def test_one_definition_of_each_decode_and_window_function(name: str) -> None:
    where = [m for m in MODULES if name in defs_in(_source(m))]
    assert len(where) == 1, f"{name} is defined in {where}: one frame source, window builder, audio decode"


def test_the_replaced_duplicates_stay_gone() -> None:
    back = [f"{m}: {n}" for m in MODULES for n in defs_in(_source(m)) if n in GONE]
    assert not back, "a second decode/window path came back (use extractors.frames / extractors.audio):\n" + \
        "\n".join(back)


def test_only_the_frame_source_opens_videos_for_frames() -> None:
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line}" for m in MODULES if m != FRAME_SOURCE
           for line in uses_in(_source(m), {"VideoCapture", "read_frames"})]
    assert not bad, f"only {FRAME_SOURCE} reads video frames (cv2.VideoCapture, imageio_ffmpeg.read_frames):\n" + \
        "\n".join(bad)


def test_only_the_audio_module_decodes_and_resamples_audio() -> None:
    bad = []
    for m in MODULES:
        if m == AUDIO_SOURCE:
            continue
        bad += [f"{m}:{line} uses {AUDIO_SOURCE}'s private helpers"
                for line in uses_in(_source(m), {"_run_ffmpeg", "_url", "_write_wav"})]
        bad += [f"{m}:{line} resamples or decodes audio itself" for line in audio_decoding_in(_source(m))]
    assert not bad, f"only {AUDIO_SOURCE} decodes audio (decode_audio / load_audio):\n" + "\n".join(bad)


def test_decode_checks_see_a_second_path() -> None:
    """The checks above would catch the old code (issue #25's three readers)."""
    old_r21d = "import cv2\n\ndef iter_frames_rgb(p):\n    cap = cv2.VideoCapture(str(p))\n"
    assert defs_in(old_r21d) == ["iter_frames_rgb"] and set(defs_in(old_r21d)) <= set(GONE)
    assert uses_in(old_r21d, {"VideoCapture", "read_frames"}) == [4]
    old_clap = ("def decode_audio_48k(src):\n    from extractors.media import _run_ffmpeg, _url\n"
                "    return _run_ffmpeg(src, ['-af', 'aresample=48000', '-acodec', 'pcm_f32le'])\n")
    assert uses_in(old_clap, {"_run_ffmpeg", "_url"}) == [2, 2, 3]
    assert audio_decoding_in(old_clap) == [3, 3]
    assert audio_decoding_in("import resampy\n") == [1]
    assert FRAME_SOURCE in MODULES and AUDIO_SOURCE in MODULES


def _class_fields(path: Path) -> dict[str, set[str]]:
    """Annotated class-level names of every class in ``path``: the fields a dataclass declares."""
    out: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            out[node.name] = {s.target.id for s in node.body
                              if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
    return out


def test_decode_defaults_are_written_once() -> None:
    """The Soft-NMS decode settings live in ``DecodeConfig``; a model config that needs them inherits them
    (``PyramidConfig(DecodeConfig, ModelConfig)``) instead of writing the defaults a second time."""
    decode = _class_fields(MODULES["models.localizers.decoding"])["DecodeConfig"]
    assert {"pre_nms_thresh", "nms_sigma", "max_seg_num"} <= decode
    again = [f"{MODULES[m].relative_to(ROOT)}: {cls} declares {sorted(names & decode)}"
             for m in MODULES if m.startswith("models")
             for cls, names in _class_fields(MODULES[m]).items()
             if names & decode and (m, cls) != ("models.localizers.decoding", "DecodeConfig")]
    assert not again, "decode defaults written outside models.localizers.decoding.DecodeConfig:\n" + "\n".join(again)


LINE_LIMIT = 500
# product modules allowed past LINE_LIMIT: network ports, whose length is the network's (none today; the longest
# port, extractors/llp/clap/htsat.py, is under the limit). Path -> the network it ports.
NETWORK_PORTS: dict[str, str] = {}
LIMITED_DIRS = ("models", "extractors", "workflow/scripts")  # product code; tests and bench/ are not products


def product_files() -> dict[str, Path]:
    """Every product module under :data:`LIMITED_DIRS`, by repository-relative path."""
    return {str(p.relative_to(ROOT)): p for d in LIMITED_DIRS for p in sorted((ROOT / d).rglob("*.py"))}


def too_long(files: dict[str, Path], limit: int = LINE_LIMIT, ports: dict[str, str] = NETWORK_PORTS
             ) -> dict[str, int]:
    """``{path: lines}`` of the files over ``limit`` lines that are not listed network ports."""
    return {rel: n for rel, p in files.items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > limit and rel not in ports}


def test_product_modules_are_short_enough_to_hold_one_job() -> None:
    """A product module past ~500 lines holds more than one job (as heads.py once held layers, targets,
    losses, decoding and the pyramid base, and worker.py the client, the server, the supervisor and the
    accounting); split it into files named for one job."""
    files = product_files()
    assert {"extractors/frames.py", "models/run/train.py", "workflow/scripts/train.py"} <= set(files)
    assert set(NETWORK_PORTS) <= set(files), "a listed network port that is gone: remove it from NETWORK_PORTS"
    long = too_long(files)
    assert not long, f"modules over {LINE_LIMIT} lines (split them, or list a network port): {long}"


def test_line_limit_check_sees_a_long_module(tmp_path: Path) -> None:
    """The check above fails on a long module unless it is a listed port."""
    long, short = tmp_path / "long.py", tmp_path / "short.py"
    long.write_text("x = 1\n" * (LINE_LIMIT + 1))
    short.write_text("x = 1\n" * LINE_LIMIT)
    files = {"extractors/long.py": long, "extractors/short.py": short}
    assert too_long(files) == {"extractors/long.py": LINE_LIMIT + 1}
    assert too_long(files, ports={"extractors/long.py": "a network"}) == {}


def test_the_training_driver_reads_in_a_minute() -> None:
    """``models.run.train.train`` stays a short numbered driver over named steps."""
    tree = ast.parse(MODULES["models.run.train"].read_text(encoding="utf-8"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train")
    body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) else fn.body  # after the docstring
    assert fn.end_lineno - body[0].lineno + 1 <= 35, "train() grew: move the new work into a named step"
    called = {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert {"build_run", "resume_run", "train_one_epoch", "validate_epoch", "save_checkpoint"} <= called
