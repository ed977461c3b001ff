"""Snakemake script: train one localizer on a dataset's train split, select on validation or, without
one, on a seeded holdout of train (``train.holdout_frac``); a ``<model>_shuffled`` job trains the
label-shuffled control."""

import json
import logging
from pathlib import Path

from extractors.recipes import Recipe
from models.run.pipeline import (
    input_fingerprint,
    load_splits,
    log_to_file,
    model_overrides,
    reset_stale_resume_state,
    split_control,
)
from models.run.train import train

snakemake = globals()["snakemake"]
log_to_file(snakemake.log[0])
recipe = Recipe(**json.loads(snakemake.params.recipe))
spec = json.loads(snakemake.params.train)
splits = load_splits(snakemake.input.store, snakemake.input.annotations, recipe)
run_dir = Path(snakemake.output.checkpoint).parent
reset_stale_resume_state(run_dir, input_fingerprint(snakemake.input.store, snakemake.params.recipe,
                                                    snakemake.params.train, snakemake.wildcards.model,
                                                    snakemake.params.code))  # new code: no resume
model, control = split_control(snakemake.wildcards.model)
name, overrides = model_overrides(model)
overrides = {**spec.get("model_overrides", {}), **overrides}
best = train(name, splits["train"], splits.get("validation"), run_dir, cfg_overrides=overrides,
             epochs=spec.get("epochs"), batch_size=spec.get("batch_size"), lr=spec.get("lr"),
             seed=spec.get("seed", 0), device=snakemake.config.get("device", "auto"), progress=False,
             shuffle_labels=control, holdout_frac=spec.get("holdout_frac", 0.1))
logging.info("best checkpoint %s", best)
