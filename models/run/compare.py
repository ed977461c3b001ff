"""One comparison table for several localizers on the same data and metric (CLASP Table 1 style).

``compare(train_ds, val_ds, test_ds, models, out_dir, epochs, seed)`` trains every ``(name,
supervision)`` through :func:`models.run.train.train`, evaluates the best checkpoint on ``test_ds``
through :func:`models.run.evaluate.evaluate`, optionally also trains a label-shuffled control of each
(``controls=True``: same data, training labels permuted across videos, see ``models.run.controls``), and
writes ``table.md`` and ``table.csv`` (rows = method + supervision [+ control], columns = mAP at
tIoU 0.5 ... 0.9 and Avg over 0.1 ... 0.9, in percent) plus each run's own folder.

CLI::

    python -m models.run.compare --planted --out results/compare \\
        --models ccnet-full ccnet-weak dave-full dave-weak avel-weak clasp-weak --epochs 20 --controls \\
        --set ccnet.d_model=64 --set dave.d_model=64

``--planted`` builds the synthetic planted-event benchmark (``models.data.synthetic``); otherwise
``--store``/``--annotations``/``--recipe`` name a real feature store.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from extractors.io import write_text
from models.localizers.registry import SUPERVISIONS, get_spec
from models.run.names import parse_model_name, run_name

THETAS = ("0.5", "0.6", "0.7", "0.8", "0.9")
COLUMNS = [f"mAP@{t}" for t in THETAS] + ["Avg"]

ModelSpec = tuple[str, str] | tuple[str, str, dict[str, Any]]


def supervision_overrides(name: str, supervision: str) -> dict[str, Any]:
    """Config overrides that select ``supervision`` for model ``name``, one of the modes its declaration
    names (:func:`models.localizers.registry.register_localizer`).

    Models whose config has a ``supervision`` field get it set; models without one (weak-only
    localizers such as CLASP) accept only their one mode.
    """
    if supervision not in SUPERVISIONS:
        raise ValueError(f"supervision must be {' or '.join(map(repr, sorted(SUPERVISIONS)))}, got {supervision!r}")
    spec = get_spec(name)
    if supervision not in spec.supervision:
        raise ValueError(f"model {name!r} supports only {' or '.join(map(repr, spec.supervision))} supervision, "
                         f"not {supervision!r}")
    return {"supervision": supervision} if "supervision" in {f.name for f in dataclasses.fields(spec.config)} else {}


def row_label(name: str, supervision: str, control: bool) -> str:
    return f"{name} ({supervision}{', shuffled labels' if control else ''})"


def metrics_row(metrics: dict[str, Any]) -> dict[str, float]:
    """Percent values of the table columns from a ``models.run.metrics.compute_map`` result."""
    rep = metrics["reported"]
    row = {f"mAP@{t}": 100.0 * float(rep.get(t, float("nan"))) for t in THETAS}
    row["Avg"] = 100.0 * float(metrics["avg"])
    return row


def compare(
    train_ds: Any,
    val_ds: Any | None,
    test_ds: Any,
    models: Sequence[ModelSpec],
    out_dir: str | os.PathLike[str],
    epochs: int | None = None,
    seed: int = 0,
    controls: bool = False,
    batch_size: int | None = None,
    lr: float | None = None,
    device: str = "auto",
    recipe: Any | None = None,
    progress: bool = False,
    train_kwargs: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Train/evaluate each model (and optionally its label-shuffled control) and write the table.

    ``models``: ``(name, supervision)`` or ``(name, supervision, cfg_overrides)``.  Returns the table
    as a DataFrame indexed by row label with columns :data:`COLUMNS` (percent) plus ``method``,
    ``supervision``, ``control``, ``checkpoint``.
    """
    from models.run.evaluate import evaluate
    from models.run.train import train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for spec in models:
        name, sup = spec[0], spec[1]
        extra = dict(spec[2]) if len(spec) > 2 else {}  # type: ignore[misc]
        overrides = {**extra, **supervision_overrides(name, sup)}
        for control in ([False, True] if controls else [False]):
            run = out / run_name(f"{name}_{sup}", control)
            ckpt = train(name, train_ds, val_ds, run, cfg_overrides=overrides, epochs=epochs, batch_size=batch_size,
                         lr=lr, seed=seed, device=device, shuffle_labels=control, progress=progress,
                         **(train_kwargs or {}))
            metrics = evaluate(name, ckpt, test_ds, recipe, run / "test")
            rows.append({"row": row_label(name, sup, control), "method": name, "supervision": sup,
                         "control": control, **metrics_row(metrics), "checkpoint": str(ckpt)})
    df = pd.DataFrame(rows).set_index("row")
    from models.run.metrics import tious_for

    write_table(df, out, tious_for(recipe if recipe is not None else getattr(test_ds, "recipe", None)))
    return df


def avg_header(tious: Sequence[float]) -> str:
    """``Avg (0.1:0.9)``: the mean's thresholds in the header, so an Avg above every column shown cannot
    read as a bug (the UnAV-100 / CCNet tables show the columns Avg is taken over, or say so)."""
    if len(tious) == 0:
        return "Avg"
    ts = sorted(float(t) for t in tious)
    return f"Avg ({ts[0]:g}:{ts[-1]:g})"


def write_table(df: pd.DataFrame, out_dir: Path, tious: Sequence[float] = ()) -> None:
    """``table.csv`` (all columns) and ``table.md`` (method rows x mAP columns, one decimal; the Avg's
    header names its thresholds ``tious`` when given)."""
    write_text(out_dir / "table.csv", df.to_csv(float_format="%.4f"))
    header = [*COLUMNS[:-1], avg_header(tious)]
    lines = ["| Method | " + " | ".join(header) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for label, r in df.iterrows():
        lines.append(f"| {label} | " + " | ".join(f"{r[c]:.1f}" for c in COLUMNS) + " |")
    write_text(out_dir / "table.md", "\n".join(lines) + "\n")


def _parse_value(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def parse_models(items: Sequence[str], sets: Sequence[str]) -> list[ModelSpec]:
    """Model names as in the workflow (``ccnet-full``, :func:`models.run.names.parse_model_name`; ``ccnet:full``
    reads the same; weak when no supervision is given) plus ``name.field=value`` overrides -> model specs."""
    per_model: dict[str, dict[str, Any]] = {}
    for s in sets:
        key, _, val = s.partition("=")
        mname, _, fld = key.partition(".")
        if not fld or not _:
            raise ValueError(f"--set expects name.field=value, got {s!r}")
        per_model.setdefault(mname, {})[fld] = _parse_value(val)
    specs: list[ModelSpec] = []
    for it in items:
        name, sup = parse_model_name(it.replace(":", "-", 1))
        specs.append((name, sup or "weak", per_model.get(name, {})))
    return specs


def main(argv: Sequence[str] | None = None) -> int:
    from extractors.recipes import get_recipe
    from models.data.annotations import class_list
    from models.data.dataset import FeatureDataset
    from models.data.store import FeatureStore
    from models.data.unav import read_unav

    ap = argparse.ArgumentParser(description="Train and compare localizers in one mAP table.")
    ap.add_argument("--models", nargs="+", required=True, help="model names as in the workflow, e.g. ccnet-full avel-weak")
    ap.add_argument("--set", action="append", default=[], help="name.field=value config override (JSON value)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--planted", action="store_true", help="use the synthetic planted-event benchmark")
    ap.add_argument("--planted-videos", type=int, default=240)
    ap.add_argument("--planted-classes", type=int, default=6)
    ap.add_argument("--planted-signal", type=float, default=1.6)
    ap.add_argument("--planted-dims", type=int, nargs=2, default=(128, 2048), metavar=("AUDIO", "VISUAL"))
    ap.add_argument("--planted-len", type=int, nargs=2, default=(40, 64), metavar=("MIN", "MAX"))
    ap.add_argument("--store")
    ap.add_argument("--annotations")
    ap.add_argument("--recipe", default="unav100")
    ap.add_argument("--t-max", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--controls", action="store_true", help="also train label-shuffled controls")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.planted:
        from models.data.synthetic import PlantedConfig, make_planted

        recipe = get_recipe(args.recipe, t_max=args.t_max or 64)
        pcfg = PlantedConfig(n_videos=args.planted_videos, num_classes=args.planted_classes,
                             signal=args.planted_signal, audio_dim=args.planted_dims[0],
                             visual_dim=args.planted_dims[1], t_len=tuple(args.planted_len), seed=args.seed)
        store, ann, classes = make_planted(pcfg, out / "planted", recipe)
    else:
        if not (args.store and args.annotations):
            ap.error("give --planted or both --store and --annotations")
        recipe = get_recipe(args.recipe, **({"t_max": args.t_max} if args.t_max else {}))
        store, ann = FeatureStore(args.store), read_unav(args.annotations)
        classes = class_list(ann)
    sets = {s: FeatureDataset(store, ann, classes, recipe, subset=s) for s in ("train", "validation", "test")}
    df = compare(sets["train"], sets["validation"], sets["test"], parse_models(args.models, args.set), out,
                 epochs=args.epochs, seed=args.seed, controls=args.controls, batch_size=args.batch_size,
                 lr=args.lr, device=args.device, recipe=recipe, progress=True)
    print((out / "table.md").read_text())
    print(df[COLUMNS].round(2).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# ----------------------------------------------------------------------------------------------
# Our numbers beside the published ones (workflow/rules/reproduce.smk, config/published.yaml)

PUBLISHED_COLUMNS = ("0.5", "0.6", "0.7", "0.8", "0.9", "Avg")
RECIPE_FIELDS = ("seed", "epochs", "batch_size", "lr", "n_train", "n_val", "device", "amp_dtype", "torch")


Runs = dict[str, dict[str, dict[Any, str]]]  # {model: {"ours" | "control": {seed: run name}}}


def _seed_rows(base: dict[str, Any], source: str, by_seed: dict[Any, str],
               metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row of ``source`` for ``by_seed``'s runs: the mean over the seeds with the sample std (n - 1) of
    each column, then (for two seeds or more) one row per seed. A lone run is its own row, with its seed."""
    per = {seed: metrics_row(metrics[run]) for seed, run in by_seed.items()}
    vals = pd.DataFrame([{t: m[f"mAP@{t}"] for t in THETAS} | {"Avg": m["Avg"]} for m in per.values()])
    n = len(per)
    mean = {"source": source, "seed": "" if n > 1 else str(next(iter(per))), "n_seeds": n,
            **vals.mean().to_dict(), **{f"std_{c}": (vals[c].std(ddof=1) if n > 1 else float("nan"))
                                        for c in PUBLISHED_COLUMNS}}
    rows = [{**base, **mean, "runs": " ".join(by_seed.values())}]
    if n > 1:
        rows += [{**base, "source": source, "seed": str(seed), "n_seeds": 1, **vals.iloc[i].to_dict(),
                  "runs": by_seed[seed]} for i, seed in enumerate(per)]
    return rows


def reproduce_frame(table: dict[str, Any], metrics: dict[str, dict[str, Any]],
                    runs: Runs | None = None) -> pd.DataFrame:
    """One row per published row of ``table`` (config/published.yaml) and, below each row with a ``model``,
    ``ours`` (the mean over its seeds' ``metrics.json``, then one row per seed) and, where ``runs`` has one,
    its label-shuffled ``control`` (the chance line, same layout). ``runs`` defaults to one run per model,
    named as the model (``metrics`` keys). Columns in percent as the papers; ``std_*`` is the sample std
    over seeds (empty for one seed); rows with an empty ``seed`` are means over ``n_seeds`` runs."""
    if runs is None:
        runs = {m: {"ours": {"": m}} for m in metrics}
    rows: list[dict[str, Any]] = []
    for r in table["rows"]:
        if len(r["mAP"]) != len(PUBLISHED_COLUMNS):
            raise ValueError(f"published row {r['method']!r}: expected {len(PUBLISHED_COLUMNS)} values, got {r['mAP']}")
        base = {"paper": r["paper"], "table": r["table"], "method": r["method"], "supervision": r["supervision"],
                "features": r.get("features", ""), "model": r.get("model") or ""}
        rows.append({**base, "source": "published", "seed": "", "n_seeds": "",
                     **dict(zip(PUBLISHED_COLUMNS, map(float, r["mAP"]), strict=True)), "runs": ""})
        groups = runs.get(r.get("model") or "", {})
        for source in ("ours", "control"):
            by_seed = groups.get(source, {})
            if by_seed and all(run in metrics for run in by_seed.values()):
                rows += _seed_rows(base, source, by_seed, metrics)
    cols = ["paper", "table", "method", "supervision", "features", "model", "source", "seed", "n_seeds",
            *PUBLISHED_COLUMNS, *(f"std_{c}" for c in PUBLISHED_COLUMNS), "runs"]
    return pd.DataFrame(rows).reindex(columns=cols)


def _cell(r: pd.Series, c: str) -> str:
    std = r.get(f"std_{c}")
    return f"{r[c]:.1f} ± {std:.1f}" if isinstance(std, float) and not math.isnan(std) else f"{r[c]:.1f}"


def write_reproduce(out_md: str | os.PathLike[str], out_csv: str | os.PathLike[str], name: str, dataset: str,
                    table: dict[str, Any], papers: dict[str, str], metrics: dict[str, dict[str, Any]],
                    runs: dict[str, dict[str, Any]], context: dict[str, Any],
                    groups: Runs | None = None) -> pd.DataFrame:
    """``reproduce.md`` (published rows with ours beneath as mean ± std over seeds, the weak models' shuffled
    controls as the chance line, then the recipe of every run: seed, epochs, batch, lr, config overrides) and
    ``reproduce.csv`` (the same rows plus one per seed, long format). ``runs``: per run name, the run's
    ``config.json`` (``info``) and overrides; ``groups``: :func:`reproduce_frame`'s ``runs``."""
    df = reproduce_frame(table, metrics, groups)
    write_text(out_csv, df.to_csv(index=False, float_format="%.2f"))
    cols = " | ".join(PUBLISHED_COLUMNS)
    lines = [f"# Reproduction of `{name}` on dataset `{dataset}`", "", " ".join(str(table.get("description", "")).split()), ""]
    lines += [f"- {k}: {v}" for k, v in context.items()]
    lines += ["", "Papers: " + "; ".join(f"**{k}**: {' '.join(v.split())}" for k, v in papers.items()), ""]
    seeds = sorted({r["seed"] for _, r in df.iterrows() if r["source"] != "published" and r["seed"] != ""},
                   key=lambda x: (len(x), x))
    lines += [f"Ours: mean ± sample std (n - 1) over {len(seeds)} seeds ({', '.join(seeds)}; each seed's row in "
              "reproduce.csv); *chance*: the same model trained with its training labels shuffled across "
              "videos (the weak models' control), the score of a model that learned no class evidence.", ""
              ] if len(seeds) > 1 else []
    lines += [f"| Paper | Method | Supervision | Source | {cols} | n |",
              "|---|---|---|---|" + "---:|" * len(PUBLISHED_COLUMNS) + "---|"]
    shown = {m for m, g in (groups or {m: {"ours": {"": m}} for m in metrics}).items()
             if all(run in metrics for run in g.get("ours", {}).values())}
    for _, r in df.iterrows():
        if r["source"] != "published" and r["seed"] != "" and r["n_seeds"] == 1 and len(seeds) > 1:
            continue  # one seed's row: in the CSV
        method = r["method"] + (f" ({r['features']} features)" if r["features"] else "")
        if r["source"] == "ours":
            src = "ours: `" + r["model"] + "`"
        elif r["source"] == "control":
            src = "chance: `" + run_name(r["model"], control=True) + "` (shuffled labels)"
        else:
            src = "published" + (f" (`{r['model']}` not run)" if r["model"] and r["model"] not in shown else "")
        vals = " | ".join(_cell(r, c) for c in PUBLISHED_COLUMNS)
        n = "" if r["source"] == "published" else str(r["n_seeds"])
        lines.append(f"| {r['paper']} {r['table']} | {method} | {r['supervision']} | {src} | {vals} | {n} |")
    lines += ["", "## Runs (seed and recipe of every model above)", "",
              "| Model | " + " | ".join(RECIPE_FIELDS) + " | config overrides | test videos (without features) |",
              "|---|" + "---|" * (len(RECIPE_FIELDS) + 2)]
    for model, run in runs.items():
        vals = " | ".join(str(run.get("info", {}).get(k, "")) for k in RECIPE_FIELDS)
        m = metrics[model]
        lines.append(f"| `{model}` | {vals} | `{json.dumps(run.get('overrides', {}), sort_keys=True)}` | "
                     f"{m.get('n_videos', '?')} ({m.get('n_videos_without_features', 0)}) |")
    write_text(out_md, "\n".join(lines) + "\n")
    return df
