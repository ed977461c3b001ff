"""The ``avvp:`` side of the config as the workflow's rules read it: each benchmark's data sources, LLP splits
and clips, the extractor settings of its `llp:` block, and the shell fragments of its jobs.

Why a module: workflow/rules/common.smk holds input functions only; this is the logic behind avvp.smk and
llp.smk, unit-tested without Snakemake (tests/test_workflow_config.py). The clips and split lists are read
once per invocation (input functions call them for every llp_features job; re-reading LLP's CSVs, or UnAV's
JSON, per job made the DAG quadratic). Not part of any code fingerprint: it decides which jobs exist.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snakemake.exceptions import WorkflowError

from extractors import discovery
from extractors.weight_registry import REGISTRY
from models.run.workflow_config import Project, seed_of

# the `llp:` block's defaults, as extractors.llp.extract's CLI has them
LLP_DEFAULTS = {"visual": "resnet152_r21d", "audio": "vggish", "weights": "pretrained", "clip_model": "ViT-L-14"}
LLP_CSVS = {"train_csv": "AVVP_train.csv", "val_csv": "AVVP_val_pd.csv", "test_csv": "AVVP_test_pd.csv",
            "eval_audio_csv": "AVVP_eval_audio.csv", "eval_visual_csv": "AVVP_eval_visual.csv"}
DENSE_T_MAX = 60  # seconds of each dense_from video (dense_t_max)
LLP_SECONDS = 10  # LLP's clips (extractors.llp.features.N_SEGMENTS)


def shuffle_flag(labels: str) -> str:
    """Stage 2/3's flag for the ``shuffled`` labels (the chance-level control)."""
    return "--shuffle-labels" if labels == "shuffled" else ""


def check_sources(avvp: Mapping[str, Any]) -> None:
    """Each split of a benchmark has exactly one source; a second one would make two rules write it."""
    for name, spec in avvp.items():
        sources = {"dense": [k for k in ("planted", "dense", "dense_from") if spec.get(k)],
                   "train/test": [k for k in ("planted", "llp", "train") if spec.get(k)]}
        for split, given in sources.items():
            if len(given) > 1:
                raise WorkflowError(f"avvp.{name}: {split} data from both {' and '.join(given)}; keep one")


class Benchmarks:
    """Every ``avvp:`` benchmark of a config; the datasets they borrow clips from come from ``project``."""

    def __init__(self, config: Mapping[str, Any], project: Project) -> None:
        self.avvp: Mapping[str, Any] = config.get("avvp", {})
        self.project = project
        check_sources(self.avvp)
        self.planted_names = [n for n, s in self.avvp.items() if s.get("planted")]
        self.llp_names = [n for n, s in self.avvp.items() if "llp" in s]
        self.dense_names = [n for n, s in self.avvp.items() if "dense_from" in s]
        self._llp_found: dict[str, dict[str, Path]] = {}
        self._llp_splits: dict[tuple[str, str], list[str]] = {}
        self._llp_clips: dict[str, dict[str, Path]] = {}

    # ---------------------------------------------------------------- EAR's stages (avvp.smk)

    def spec(self, name: str) -> Mapping[str, Any]:
        return self.avvp[name]

    def seed(self, name: str) -> int:
        return seed_of(self.spec(name))

    def selects_on_val(self, name: str) -> bool:
        """Stage 3 picks its epoch on the validation split (EARConfig.select, default best_val)."""
        return self.spec(name).get("ear", {}).get("select", "best_val") == "best_val"

    def has_val(self, name: str) -> bool:
        spec = self.spec(name)
        return bool(spec.get("planted") or "llp" in spec or spec.get("val"))

    def data(self, name: str, split: str) -> str:
        """The .npz of `split` (dense, train, val, test) for benchmark `name`."""
        spec = self.spec(name)
        if split == "val" and not self.has_val(name):
            raise WorkflowError(f"avvp.{name}: stage 3 selects its epoch on a validation split, and none is "
                                "configured (give `val: <.npz>` with gt_a/gt_v, or `ear: {{select: last}}`)")
        if spec.get("planted") or (split != "dense" and "llp" in spec) or (split == "dense" and "dense_from" in spec):
            return f"data/avvp/{name}/{split}.npz"
        if split not in spec:
            raise WorkflowError(f"avvp.{name}: no `{split}` .npz configured (give planted: true, llp:, or the path)")
        return spec[split]

    def modes(self, name: str) -> list[str]:
        return self.spec(name).get("modes", ["pseudo", "video"])

    def section_json(self, name: str, key: str) -> str:
        """A benchmark's `gen:` or `ear:` block, quoted for the shell."""
        return shlex.quote(json.dumps(self.spec(name).get(key, {}), sort_keys=True))

    def preset(self, name: str) -> str:
        return "--preset planted" if self.spec(name).get("planted") else ""

    def banner(self, name: str) -> str:
        """Warning stamped on plots and the summary: planted data, or features from random weights."""
        spec = self.spec(name)
        if spec.get("planted"):
            return "PLANTED BENCHMARK: synthetic features, not LLP"
        if spec.get("llp", {}).get("weights", LLP_DEFAULTS["weights"]) == "random":
            return "WEIGHTS: RANDOM - features from randomly initialised extractors"
        return ""

    def migration_flag(self, name: str) -> str:
        return "" if self.spec(name).get("migration", True) else "--no-migration"

    def stage2_eval_inputs(self, name: str) -> dict[str, str]:
        """The splits with segment ground truth whose pseudo-labels stage 2 scores (Table III)."""
        files = {"test": self.data(name, "test")}
        if self.has_val(name):
            files["val"] = self.data(name, "val")
        return files

    def stage2_eval_args(self, name: str) -> str:
        return " ".join(f"--{k} {shlex.quote(v)}" for k, v in sorted(self.stage2_eval_inputs(name).items()))

    def stage3_inputs(self, name: str, mode: str) -> dict[str, str]:
        files = {"train": self.data(name, "train"), "test": self.data(name, "test")}
        if self.selects_on_val(name):
            files["val"] = self.data(name, "val")
        if mode != "video":
            labels = "shuffled" if mode == "shuffled" else "real"
            files["pseudo"] = f"results/avvp/{name}/stage2/{labels}/pseudo_labels.npz"
        return files

    def stage3_args(self, name: str, mode: str) -> dict[str, str]:
        """stage 3's optional arguments, each quoted: ``--pseudo``, ``--val``, ``--banner``, and its out folder."""
        files = self.stage3_inputs(name, mode)
        return {"pseudo": f"--pseudo {shlex.quote(files['pseudo'])}" if mode != "video" else "",
                "val": f"--val {shlex.quote(files['val'])}" if self.selects_on_val(name) else "",
                "banner": f"--banner {shlex.quote(self.banner(name))}" if self.banner(name) else "",
                "out": shlex.quote(f"results/avvp/{name}/{mode}")}

    def summary_metrics(self, name: str) -> list[str]:
        return [f"results/avvp/{name}/{mode}/metrics.json" for mode in self.modes(name)]

    def metrics_pages(self, name: str) -> list[str]:
        """Each mode's metrics.html (report.smk's metrics_page): what `snakemake --report` shows of a run."""
        return [f"results/avvp/{name}/{mode}/metrics.html" for mode in self.modes(name)]

    def train_pseudo_labels(self, name: str) -> list[str]:
        """The training split's pseudo-labels for the summary (what a Table III row with seg > 0 and evt 0.0
        is made of); none where no mode uses them."""
        return [f"results/avvp/{name}/stage2/real/pseudo_labels.npz"] if "pseudo" in self.modes(name) else []

    def stage1_log(self, name: str) -> str | list[str]:
        """Stage 1's training log for the summary; none where no mode needs the generator."""
        return [] if self.modes(name) == ["video"] else f"results/avvp/{name}/stage1/generator.json"

    # ---------------------------------------------------------------- LLP clips and splits (llp.smk)

    def llp_spec(self, name: str) -> Mapping[str, Any]:
        """The `llp:` block; benchmarks without one (e.g. only `dense_from`) get the extractor defaults."""
        return self.spec(name).get("llp", {})

    def llp_setting(self, name: str, key: str) -> str:
        """``visual``, ``audio``, ``weights`` or ``clip_model`` of the `llp:` block, else its default."""
        return self.llp_spec(name).get(key, LLP_DEFAULTS[key])

    def source_dataset(self, name: str) -> str | None:
        """`from_dataset`: the UnAV-format `datasets` entry whose clips and annotations stand in for LLP."""
        ds = self.llp_spec(name).get("from_dataset")
        datasets = self.project.datasets
        if ds is not None and (ds not in datasets or "annotations" not in datasets[ds]):
            raise WorkflowError(f"avvp.{name}.llp.from_dataset: {ds!r} is not a dataset with annotations in `datasets`")
        return ds

    def csv(self, name: str, key: str) -> str:
        if self.source_dataset(name):
            return f"data/avvp/{name}/csv/{LLP_CSVS[key]}"
        spec = self.llp_spec(name)
        return str(Path(spec["annotations"]) / spec.get(key, LLP_CSVS[key]))

    def split_csvs(self, name: str) -> list[str]:
        return [self.csv(name, f"{split}_csv") for split in self.splits(name)]

    def source_annotations(self, name: str) -> str:
        return self.project.datasets[self.source_dataset(name)]["annotations"]

    def split_has_gt(self, name: str, split: str) -> bool:
        """Whether a split's clips have segment ground truth: LLP's validation and test splits; the training
        split too where the CSVs come from a UnAV-format entry (`from_dataset`: every clip's events are known),
        so stage 2's pseudo-labels get their training row (real LLP has no segment labels for training)."""
        return split != "train" or bool(self.source_dataset(name))

    def eval_csvs(self, name: str, split: str) -> list[str]:
        """The segment-level ground truth of a split that has it (:meth:`split_has_gt`)."""
        if not self.split_has_gt(name, split):
            return []
        return [self.csv(name, "eval_audio_csv"), self.csv(name, "eval_visual_csv")]

    def eval_args(self, name: str, split: str) -> str:
        if not self.split_has_gt(name, split):
            return ""
        audio, visual = self.eval_csvs(name, split)
        return f"--eval-audio-csv {shlex.quote(audio)} --eval-visual-csv {shlex.quote(visual)}"

    def llp_videos(self, name: str) -> dict[str, Path]:
        """{video_id: path} of the decodable clips; the others are logged with their reason."""
        ds = self.source_dataset(name)
        if ds:
            return self.project.videos(ds)
        if name not in self._llp_found:
            found = discovery.discover(Path(self.llp_spec(name)["videos"]), self.project.extensions, min_duration_s=1.0,
                                       cache=Path("results") / "avvp" / name / "probe_cache.json",
                                       cluster_names=self.project.cluster_names)
            discovery.write_rejections(found.rejected, Path("logs") / "avvp" / name / "rejected_videos.tsv")
            self._llp_found[name] = found.accepted
        return self._llp_found[name]

    def split_videos(self, name: str, split: str) -> list[str]:
        """The usable clips of one split, in CSV order."""
        if (name, split) not in self._llp_splits:
            self._llp_splits[name, split] = self._read_split(name, split)
        return self._llp_splits[name, split]

    def _read_split(self, name: str, split: str) -> list[str]:
        from models.data.llp import read_llp
        from models.data.unav import read_unav

        ds = self.source_dataset(name)
        if ds:  # the CSVs are made by a job; the split is known from the annotations already
            clips = self.project.videos(ds)  # first: waits for the demo generator
            named = {"test": "test", "val": "validation"}  # the others are train (models.data.llp.unav_to_llp_csvs)
            ids = [v for v, a in read_unav(self.project.datasets[ds]["annotations"]).items()
                   if a.subset == named.get(split) or (split == "train" and a.subset not in named.values())]
            return [v for v in ids if v in clips]
        ids = read_llp(self.csv(name, f"{split}_csv"))
        clips = self.llp_videos(name)
        return [v for v in ids if v in clips]

    def splits(self, name: str) -> list[str]:
        """The splits a benchmark reads: val only where stage 3 selects its epoch on it."""
        return ["train", "val", "test"] if self.selects_on_val(name) else ["train", "test"]

    def clips(self, name: str) -> dict[str, Path]:
        """{id: path} of the clips of the split CSVs (other files in the folder are not extracted)."""
        if name not in self._llp_clips:
            clips = self.llp_videos(name)
            self._llp_clips[name] = {v: clips[v] for split in self.splits(name) for v in self.split_videos(name, split)}
        return self._llp_clips[name]

    def split_features(self, name: str, split: str) -> list[str]:
        """The per-clip feature files of the split's clips (known once the clips are: may wait for the demo)."""
        wanted = self.split_videos(name, split)
        if not wanted:
            raise WorkflowError(f"avvp.{name}: no usable clip for the {split} split (see "
                                f"logs/avvp/{name}/rejected_videos.tsv and {self.csv(name, f'{split}_csv')})")
        return [f"results/avvp/{name}/features/clips/{v}.npz" for v in wanted]

    def needs_generator(self, name: str) -> bool:
        return any(m != "video" for m in self.modes(name))

    def unless_generator(self, name: str, flag: str) -> str:
        """``flag`` (``--no-encoders``, ``--no-generator``) where no mode needs the pseudo-label generator."""
        return "" if self.needs_generator(name) else flag

    def kinds(self, name: str) -> list[str]:
        from extractors.llp.extract import base_kinds

        kinds = [*base_kinds(self.llp_setting(name, "visual")), *base_kinds(self.llp_setting(name, "audio"))]
        if self.needs_generator(name):
            kinds += ["clip", "clap"]
        return list(dict.fromkeys(kinds))

    def _weights(self, name: str, kinds: list[str], text: bool = False) -> list[str]:
        from extractors.llp.extract import llp_weights_needed

        names = llp_weights_needed(kinds, self.llp_setting(name, "clip_model"), self.llp_setting(name, "weights"),
                                   text=text)
        return [f"{self.project.weights_root}/{REGISTRY[n].filename}" for n in names]

    def weight_files(self, name: str, text: bool = False) -> list[str]:
        """The checkpoints of a clip job (``text``: of the text-embedding job: CLIP + CLAP where needed)."""
        kinds = (["clip", "clap"] if self.needs_generator(name) else []) if text else self.kinds(name)
        return self._weights(name, kinds, text=text)

    def common_args(self, name: str) -> str:
        """The extractor arguments every LLP job of the benchmark shares."""
        return (f"--weights {self.llp_setting(name, 'weights')} --weights-root {shlex.quote(self.project.weights_root)} "
                f"--clip-model {shlex.quote(self.llp_setting(name, 'clip_model'))} --seed {self.seed(name)}")

    # ---------------------------------------------------------------- dense_from (stage 1 from a UnAV dataset)

    def dense_dataset(self, name: str) -> str:
        ds = self.spec(name)["dense_from"]
        datasets = self.project.datasets
        if ds not in datasets or "annotations" not in datasets[ds]:
            raise WorkflowError(f"avvp.{name}.dense_from: {ds!r} is not a dataset with annotations in `datasets`")
        return ds

    def dense_annotations(self, name: str) -> str:
        return self.project.datasets[self.dense_dataset(name)]["annotations"]

    def dense_clip(self, name: str, vid: str) -> str:
        """A dense_from video, its path relative as configured (as llp_features' clips)."""
        return str(self.project.videos(self.dense_dataset(name))[vid])

    def dense_features(self, name: str) -> list[str]:
        return [f"results/avvp/{name}/dense_features/clips/{v}.npz" for v in self.project.videos(self.dense_dataset(name))]

    def dense_weight_files(self, name: str) -> list[str]:
        return self._weights(name, ["clip", "clap"])

    def dense_t_max(self, name: str) -> int:
        return self.spec(name).get("dense_t_max", DENSE_T_MAX)


def llp_feature_shell(bench_dir: str) -> str:
    """The per-clip job's command; the worker writes the job's own resources beside Snakemake's benchmark file.
    The device is the rule's ``device`` param (common.smk `untracked`: no rerun trigger, lint clean)."""
    return (
        f"python -m extractors.worker llp --threads {{threads}} --record {bench_dir}/{{wildcards.vid:q}}.worker.json "
        "--entry extractors.llp.extract -- "
        "clip --video={input.video:q} --out {output.features:q} --kinds {params.kinds} --max-seconds {params.seconds} "
        "{params.common} --device {params.device} > {log:q} 2>&1"
    )
