"""Snakemake script: test-split predictions, mAP, and timeline plots of the first ``max_timelines`` test videos."""

import json
import logging
from pathlib import Path

from extractors.recipes import Recipe
from models.data.unav import read_distractors
from models.run.evaluate import evaluate
from models.run.pipeline import checkpoint_classes, load_splits, log_to_file, parse_model_name
from models.run.predict import plot_dataset_timelines

snakemake = globals()["snakemake"]
log_to_file(snakemake.log[0])
recipe = Recipe(**json.loads(snakemake.params.recipe))
classes = checkpoint_classes(snakemake.input.checkpoint, snakemake.input.annotations, recipe)
splits = load_splits(snakemake.input.store, snakemake.input.annotations, recipe, classes=classes)
test = splits.get("test") or splits.get("validation")
out_dir = Path(snakemake.output.metrics).parent
name, _ = parse_model_name(snakemake.wildcards.model)
metrics = evaluate(name, snakemake.input.checkpoint, test, recipe, out_dir,
                   device=snakemake.config.get("device", "auto"), progress=True)
plot_dataset_timelines(snakemake.output.predictions, test, snakemake.output.timelines, recipe,
                       max_videos=snakemake.params.max_timelines, distractors=read_distractors(snakemake.input.annotations))
logging.info("metrics %s", {k: metrics[k] for k in ("avg",) if k in metrics})
