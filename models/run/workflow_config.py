"""The config as the workflow's rules read it: recipes, usable videos, feature files, models, reproductions.

Why a module: workflow/rules/common.smk holds input functions only (the snakemake-workflows layout); the
logic behind them (memoised discovery, defaults, the reproduce tables, shell fragments) lives here, where it
can be unit-tested without Snakemake. One :class:`Project` per Snakemake invocation; it reads ``config`` as
given (Snakemake's schema validation has filled its defaults) and keeps what it found (probed videos,
recipes) for the invocation, because input functions call it for every job and rescanning would make the
DAG quadratic.

Discovery runs at DAG-build time: every video file in a dataset's folder is probed once (PyAV, cached by
size+mtime); files that cannot be decoded (zero-byte, text renamed .mp4, truncated, audio-only, shorter than
the recipe's min_duration_s, a name with braces or control characters, a dangling symlink) are left out of
the DAG and listed with their reason in logs/<ds>/rejected_videos.tsv and in the summary report. Everything
else (including videos without audio) goes through the per-video rules; one that fails there on its own
content gets a failure record (extractors/extract.py), is left out of the store and listed in
logs/<ds>/failed_videos.tsv.

A dataset can instead say where its features already are (``features: {from: <folder>, layout:
unav_release | ours, prefix: ""}``): no video, no media or feature job; the annotated videos whose feature
files are all there go straight into the store (models.data.features.find_features), the others are listed
with the missing files in logs/<ds>/missing_features.tsv and the summary, and at evaluation their ground
truth counts as missed (models.run.pipeline.load_splits), as in the reference evaluator. Not part of any
model's code fingerprint (models.run.code_fingerprint): it decides which jobs exist, not their numbers.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from snakemake.exceptions import IncompleteCheckpointException, WorkflowError

from extractors import discovery, registry
from extractors.recipes import Recipe, get_recipe
from extractors.weight_registry import REGISTRY
from models.run.names import run_name, split_control, split_seed

DEFAULT_SEED = 0


def seed_of(spec: Mapping[str, Any]) -> int:
    """The ``seed`` of a config block (a dataset's ``train:``, an ``avvp:`` benchmark): one default for all."""
    return spec.get("seed", DEFAULT_SEED)


def metrics_files(ds: str, models: list[str]) -> list[str]:
    """Each model run's metrics.json: what compare, the summary, `all` and reproduce wait for."""
    return [f"results/{ds}/models/{m}/metrics.json" for m in models]


def metrics_pages(ds: str, models: list[str]) -> list[str]:
    """Each model run's metrics.html (report.smk's metrics_page): what `snakemake --report` shows of a run."""
    return [f"results/{ds}/models/{m}/metrics.html" for m in models]


class Datasets(dict):
    """config["datasets"]; a name that is not there (a target such as results/<typo>/compare.md) says so
    and lists the configured ones, rather than a KeyError."""

    def __missing__(self, ds: str) -> Any:
        raise WorkflowError(f"unknown dataset {ds!r} in a target (results/<dataset>/...); "
                            f"datasets in the config: {', '.join(sorted(self)) or 'none'}")


def merge_reproduce_train(datasets: Mapping[str, Any], tables: Mapping[str, Any]) -> None:
    """Put each reproduced table's ``train:`` fields under the dataset's own ``model_overrides`` (the
    dataset's win), in place, before any job reads them, so the train rule's params (hence reruns) and the
    config check see the merged values."""
    for spec in datasets.values():
        if "reproduce" in spec and reproduce_spec(spec)["table"] in tables:
            own = spec.setdefault("model_overrides", {})
            for model, fields in (tables[reproduce_spec(spec)["table"]].get("train") or {}).items():
                own[model] = {**fields, **own.get(model, {})}


def reproduce_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A dataset's ``reproduce: <table>`` or ``reproduce: {table: <table>, models: [...], seeds: [...],
    controls: bool}`` (a subset of its models; one training per seed; the weak models' label-shuffled
    controls, default on) in the long form."""
    given = spec["reproduce"]
    defaults = {"models": None, "seeds": None, "controls": True}
    return {**defaults, "table": given} if isinstance(given, str) else {**defaults, **given}


class Project:
    """The ``datasets:`` side of a config, memoised for one Snakemake invocation.

    ``wait_for_demo(ds)`` raises until a dataset's demo generator has run (Snakemake's checkpoint);
    ``is_main_process``: print the rejection summary only once, not in every job's own snakemake process.
    """

    def __init__(self, config: dict[str, Any], basedir: str | Path,
                 wait_for_demo: Callable[[str], object] = lambda ds: None, is_main_process: bool = True) -> None:
        self.config = config
        self.datasets: Datasets = Datasets(config.get("datasets", {}))
        self.weights_root: str = config.get("weights_root", "resources/weights")
        self.extensions: list[str] = config.get("extensions", discovery.DEFAULT_EXTENSIONS)
        self.keep_flow: bool = config.get("keep_flow", False)
        # Under profiles/slurm (its `config: cluster_names: true`): names a cluster job's command line cannot
        # carry are left out at discovery with their reason (extractors.discovery.cluster_name_reason), not at
        # submission.
        self.cluster_names: bool = config.get("cluster_names", False)
        # a user's extractors (config `extractor_modules:`, docs/extending.md): registered before anything asks
        self.extractor_modules: list[str] = config.get("extractor_modules", [])
        registry.load_modules(self.extractor_modules)
        self.extractor_module_args = " ".join(f"--extractor-module {shlex.quote(str(p))}"
                                              for p in self.extractor_modules)
        self.published_file = Path(basedir) / "config" / "published.yaml"
        self.published: dict[str, Any] = yaml.safe_load(self.published_file.read_text())
        self.wait_for_demo = wait_for_demo
        self.is_main_process = is_main_process
        self._discovered: dict[str, discovery.Discovery] = {}
        self.recipe = functools.cache(self._recipe)
        self.extraction_recipe_json = functools.cache(self._extraction_recipe_json)
        self.weight_files = functools.cache(self._weight_files)
        self.has_label_ids = functools.cache(self._has_label_ids)
        merge_reproduce_train(self.datasets, self.published["tables"])

    # ---------------------------------------------------------------- recipes and videos

    def _recipe(self, ds: str) -> Recipe:
        r = get_recipe(self.datasets[ds]["recipe"], **self.datasets[ds].get("recipe_overrides", {}))
        if r.visual not in registry.visual_names():
            raise WorkflowError(f"dataset {ds!r}: visual extractor {r.visual!r} is not registered; known: "
                                f"{registry.visual_names()} (a user's extractor file goes under `extractor_modules:`, "
                                "docs/extending.md)")
        return r

    def _extraction_recipe_json(self, ds: str) -> str:
        """The recipe fields that decide features, as deterministic JSON: a rule param, so editing any of
        them reruns the feature jobs (and nothing else) under the default --rerun-triggers."""
        return json.dumps(discovery.extraction_fields(self.recipe(ds)), sort_keys=True)

    def recipe_json(self, ds: str) -> str:
        """The whole recipe as deterministic JSON: the train/evaluate/predict/summary param."""
        return json.dumps(self.recipe(ds).to_dict(), sort_keys=True)

    def videos_dir(self, ds: str) -> Path:
        return discovery.resolve_videos_dir(self.datasets[ds]["videos"])

    def features_source(self, ds: str) -> dict[str, str] | None:
        """``{from, layout, prefix}`` of a dataset whose features already exist (a release folder or another
        run's ``results/<ds>``), else None."""
        spec = self.datasets[ds]
        src = spec.get("features")
        if src is None:
            return None
        if "annotations" not in spec:
            raise WorkflowError(f"dataset {ds!r}: `features:` needs `annotations:` (the videos are the annotated ones)")
        if "predict_with" in spec:
            raise WorkflowError(f"dataset {ds!r}: `predict_with` needs videos (their media manifests give durations)")
        return {"from": src["from"], "layout": src.get("layout", "ours"), "prefix": src.get("prefix", "")}

    def source_feature_paths(self, ds: str, vid: str) -> list[Path]:
        from models.data.features import feature_paths  # imported on use: demo-only DAGs skip it

        src = self.features_source(ds)
        return feature_paths(vid, src["from"], src["layout"], self.visual_kind(ds), registry.AUDIO, src["prefix"])

    def discover_features(self, ds: str) -> discovery.Discovery:
        """Accepted (every feature file present) and missing annotated videos of a features-only dataset;
        one directory listing per feature folder, so 10k videos cost milliseconds."""
        from models.data.features import find_features
        from models.run.pipeline import read_annotations

        src = self.features_source(ds)
        ann = read_annotations(self.datasets[ds]["annotations"], self.recipe(ds))
        if not Path(src["from"]).is_dir() or (src["layout"] == "ours" and not Path(src["from"], "features").is_dir()):
            raise WorkflowError(f"dataset {ds!r}: feature folder {src['from']} (layout {src['layout']}) not found")
        found, missing = find_features(sorted(ann), src["from"], src["layout"], self.visual_kind(ds), registry.AUDIO,
                                       src["prefix"])
        if not found:
            raise WorkflowError(f"dataset {ds!r}: none of the {len(ann)} annotated videos has features under "
                                f"{src['from']} (layout {src['layout']}); first missing: "
                                f"{next(iter(missing.values()), '')}")
        if missing:
            print(f"[avloc] {ds}: {len(missing)} of {len(ann)} annotated videos have no features "
                  f"(logs/{ds}/missing_features.tsv); their ground truth counts as missed", file=sys.stderr)
        discovery.write_rejections(missing, Path("logs") / ds / "missing_features.tsv")
        return discovery.Discovery(accepted={v: self.source_feature_paths(ds, v)[0] for v in found},
                                   rejected=missing)

    def discover(self, ds: str) -> discovery.Discovery:
        """Accepted and rejected videos of ``ds``, found once (every per-video input function calls this).
        Waits for the demo generator (nothing memoised until it has run); the rejection log is written here."""
        if ds not in self._discovered and self.features_source(ds) is not None:
            self._discovered[ds] = self.discover_features(ds)
        if ds not in self._discovered:
            if "generate_demo" in self.datasets[ds]:
                self.wait_for_demo(ds)
            found = discovery.discover(self.videos_dir(ds), self.extensions,
                                       min_duration_s=self.recipe(ds).min_duration_s,
                                       cache=Path("results") / ds / "probe_cache.json",
                                       cluster_names=self.cluster_names)
            log = Path("logs") / ds / "rejected_videos.tsv"
            discovery.write_rejections(found.rejected, log)
            if found.rejected and self.is_main_process:
                print(discovery.rejection_summary(ds, found.rejected, log), file=sys.stderr)
            self._discovered[ds] = found
        return self._discovered[ds]

    def videos(self, ds: str) -> dict[str, Path]:
        """{video_id: source path} of the decodable videos of ``ds`` (of a features-only dataset: the annotated
        videos with features, each with its first feature file)."""
        return self.discover(ds).accepted

    def rejected(self, ds: str) -> dict[str, str]:
        return self.discover(ds).rejected

    def visual_kind(self, ds: str) -> str:
        return self.recipe(ds).visual

    def feature_kinds(self, ds: str) -> list[str]:
        return [self.visual_kind(ds), registry.AUDIO]

    def training_datasets(self) -> list[str]:
        return [ds for ds, spec in self.datasets.items() if spec.get("models")]

    def prediction_datasets(self) -> list[str]:
        return [ds for ds, spec in self.datasets.items() if "predict_with" in spec]

    def feature_files(self, ds: str) -> list[str]:
        if self.features_source(ds) is not None:
            return [str(p) for vid in self.videos(ds) for p in self.source_feature_paths(ds, vid)]
        return [f"results/{ds}/features/{kind}/{vid}.npy" for vid in self.videos(ds) for kind in self.feature_kinds(ds)]

    def record_files(self, ds: str) -> list[str]:
        """Each video's media manifest and feature provenance: the files that hold a failure record when the
        video failed in its own job. Targets of `all` so that deleting one retries the video (Snakemake does
        not rerun a missing intermediate file whose consumers are up to date)."""
        if self.features_source(ds) is not None:
            return []
        try:
            vids = self.videos(ds)
        except IncompleteCheckpointException:  # demo data not generated yet: no record exists yet either, and
            return []  # raising here would hold back every other target of `all` until the checkpoint has run
        return [f"results/{ds}/media/{vid}.json" for vid in vids] + [
            f"results/{ds}/features/{kind}/{vid}.json" for vid in vids for kind in self.feature_kinds(ds)]

    # ---------------------------------------------------------------- features and weights

    def _weight_files(self, ds: str, kind: str) -> list[str]:
        return [f"{self.weights_root}/{REGISTRY[name].filename}"
                for name in registry.weights_needed(self.recipe(ds), kind)]

    def all_weight_files(self) -> list[str]:
        return sorted({f for ds in self.datasets for kind in self.feature_kinds(ds) for f in self.weight_files(ds, kind)})

    def datasets_with_visual(self, kind: str) -> str:
        """Wildcard constraint: the datasets whose recipe uses ``kind`` (a regex matching nothing if none),
        so features/vggish/<vid>.npy has exactly one producing rule per dataset. A dataset whose features
        already exist (``features: {from: ...}``) has none: nothing may try to extract them."""
        names = [ds for ds in self.datasets if self.visual_kind(ds) == kind and "features" not in self.datasets[ds]]
        return "|".join(re.escape(ds) for ds in names) if names else "(?!)"

    def feature_outputs(self, name: str) -> dict[str, str]:
        """A features_<name> rule's outputs: the visual and audio features with their provenance, and the flow
        store where the extractor uses flow and keep_flow asks for it."""
        out = {"visual": f"results/{{ds}}/features/{name}/{{vid}}.npy",
               "visual_provenance": f"results/{{ds}}/features/{name}/{{vid}}.json",
               "audio": f"results/{{ds}}/features/{registry.AUDIO}/{{vid}}.npy",
               "audio_provenance": f"results/{{ds}}/features/{registry.AUDIO}/{{vid}}.json"}
        if self.keep_flow and registry.get(name).uses_flow:
            out |= {"flow": "results/{ds}/flow/{vid}.npz", "flow_provenance": "results/{ds}/flow/{vid}.npz.json"}
        return out

    def extra_feature_args(self, flow: str | None) -> str:
        """``--flow-out`` where the rule keeps the flow, and the user's extractor files."""
        flow_arg = f"--flow-out {shlex.quote(flow)}" if flow is not None else ""
        return " ".join(a for a in (flow_arg, self.extractor_module_args) if a)

    def missing_features(self, ds: str) -> list[str]:
        """The annotated videos without features of a features-only dataset (the store lists them)."""
        return sorted(self.rejected(ds)) if self.features_source(ds) is not None else []

    def store_source(self, ds: str) -> dict[str, str]:
        """{root, layout, prefix} the store reads each video's features from."""
        src = self.features_source(ds)
        if src is None:
            return {"root": f"results/{ds}", "layout": "ours", "prefix": ""}
        return {"root": src["from"], "layout": src["layout"], "prefix": src["prefix"]}

    # ---------------------------------------------------------------- models

    def dataset_models(self, ds: str) -> list[str]:
        """The configured models of `ds` followed by their label-shuffled controls."""
        spec = self.datasets[ds]
        return list(spec.get("models", [])) + [run_name(m, control=True) for m in spec.get("controls", [])]

    def train_seed(self, ds: str) -> int:
        return seed_of(self.datasets[ds].get("train", {}))

    def train_spec(self, ds: str, model: str) -> str:
        """The train fields of ``model``'s job as JSON (a param); a ``_seed<k>`` run (reproduce.smk, the
        grammar of models.run.names) trains with seed k."""
        base, _ = split_control(model)
        seed = split_seed(model)[1]
        spec = dict(self.datasets[ds].get("train", {}))
        if seed is not None:
            spec["seed"] = seed
        spec["model_overrides"] = self.datasets[ds].get("model_overrides", {}).get(base, {})
        return json.dumps(spec, sort_keys=True)

    def max_timelines(self, ds: str) -> int:
        return self.datasets[ds].get("evaluate", {}).get("max_timelines", 200)

    def predict_features(self, ds: str, vid: str) -> list[str]:
        return [f"results/{ds}/features/{kind}/{vid}.npy" for kind in self.feature_kinds(ds)]

    def predict_annotations(self, ds: str) -> str:
        """The annotations of the dataset the predicting model was trained on (its class list)."""
        return self.datasets[self.datasets[ds]["predict_with"]["dataset"]]["annotations"]

    def predictor(self, ds: str) -> str:
        spec = self.datasets[ds]["predict_with"]
        return f"results/{spec['dataset']}/models/{spec['model']}/best.pt"

    def predict_with_json(self, ds: str) -> str:
        """The summary's `predict_with` param: the entry, the checkpoint it names and whether the predicting
        model was trained on generated demo data (null if none)."""
        spec = self.datasets[ds]
        if "predict_with" not in spec:
            return json.dumps(None)
        given = spec["predict_with"]
        return json.dumps({**given, "checkpoint": self.predictor(ds),
                           "synthetic": "generate_demo" in self.datasets[given["dataset"]]}, sort_keys=True)

    # ---------------------------------------------------------------- reproduce (config/published.yaml)

    def reproduce_spec(self, ds: str) -> dict[str, Any]:
        return reproduce_spec(self.datasets[ds])

    def reproduce_table(self, ds: str) -> str:
        name = self.reproduce_spec(ds)["table"]
        tables = self.published["tables"]
        if name not in tables:
            raise WorkflowError(f"dataset {ds!r}: reproduce: {name!r} is not a table of {self.published_file} "
                                f"(tables: {sorted(tables)})")
        want = tables[name]["recipe"]
        if self.datasets[ds]["recipe"] != want:
            raise WorkflowError(f"dataset {ds!r}: table {name!r} was measured with recipe {want!r}, "
                                f"the dataset uses {self.datasets[ds]['recipe']!r}")
        return name

    def reproduce_datasets(self, table: str | None = None) -> list[str]:
        return [ds for ds, spec in self.datasets.items()
                if "reproduce" in spec and (table is None or self.reproduce_table(ds) == table)]

    def reproduce_models(self, ds: str) -> list[str]:
        """The table's models in row order, each once (only those listed in ``reproduce.models``, if given)."""
        rows = self.published["tables"][self.reproduce_table(ds)]["rows"]
        models = list(dict.fromkeys(r["model"] for r in rows if r.get("model")))
        only = self.reproduce_spec(ds)["models"]
        if only is None:
            return models
        unknown = sorted(set(only) - set(models))
        if unknown:
            raise WorkflowError(f"dataset {ds!r}: reproduce.models {unknown} are not models of table "
                                f"{self.reproduce_table(ds)!r} ({models})")
        return [m for m in models if m in only]

    def reproduce_seeds(self, ds: str) -> list[int]:
        """The seeds each model is trained with: ``reproduce.seeds``, else the dataset's ``train.seed`` alone."""
        return list(self.reproduce_spec(ds)["seeds"] or [self.train_seed(ds)])

    def reproduce_run(self, ds: str, model: str, seed: int, control: bool = False) -> str:
        """The model folder of one run: the dataset's own seed keeps the plain name (the files of a single-seed
        table, shared with `compare`), another seed is ``<model>[_shuffled]_seed<k>`` (models.run.names)."""
        return run_name(model, control, None if seed == self.train_seed(ds) else seed)

    def reproduce_runs(self, ds: str) -> dict[str, dict[str, dict[int, str]]]:
        """``{model: {"ours": {seed: run}, "control": {seed: run}}}``: every run of the table, one job each; the
        control (labels shuffled: the chance line) only for the models the table lists as weakly supervised."""
        rows = self.published["tables"][self.reproduce_table(ds)]["rows"]
        weak = {r["model"] for r in rows if r.get("model") and r["supervision"] == "weak"}
        spec, seeds = self.reproduce_spec(ds), self.reproduce_seeds(ds)
        runs = {}
        for m in self.reproduce_models(ds):
            runs[m] = {"ours": {s: self.reproduce_run(ds, m, s) for s in seeds}}
            if spec["controls"] and m in weak:
                runs[m]["control"] = {s: self.reproduce_run(ds, m, s, control=True) for s in seeds}
        return runs

    def reproduce_run_names(self, ds: str, kind: str | None = None) -> list[str]:
        return [r for groups in self.reproduce_runs(ds).values() for k, by_seed in groups.items()
                if kind in (None, k) for r in by_seed.values()]

    def _has_label_ids(self, ds: str) -> bool:
        from models.run.pipeline import read_annotations

        ann = read_annotations(self.datasets[ds]["annotations"], self.recipe(ds))
        return any(s.label_id is not None for a in ann.values() for s in a.segments)

    def reproduce_context(self, ds: str) -> str:
        src = self.features_source(ds)
        return json.dumps({
            "features": (f"{src['from']} (layout {src['layout']})" if src else f"extracted here ({self.videos_dir(ds)})"),
            "annotations": self.datasets[ds]["annotations"],
            "recipe": f"{self.recipe(ds).name} (fingerprint {self.recipe(ds).fingerprint()})",
            "annotated videos without features": f"{len(self.rejected(ds))} (logs/{ds}/"
                                                 f"{'missing_features' if src else 'rejected_videos'}.tsv); "
                                                 "their ground truth counts as missed",
            "published figures": "config/published.yaml",
        })

    def reproduce_table_json(self, ds: str) -> str:
        return json.dumps(self.published["tables"][self.reproduce_table(ds)])

    def reproduce_train_specs(self, ds: str) -> str:
        return json.dumps({r: json.loads(self.train_spec(ds, r)) for r in self.reproduce_run_names(ds)})
