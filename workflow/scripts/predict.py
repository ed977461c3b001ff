"""Snakemake script: events (JSON, CSV, PNG timeline) for one new video from its cached features."""

import json
from pathlib import Path

import numpy as np

from extractors.errors import read_failure
from extractors.recipes import Recipe
from models.run.pipeline import checkpoint_classes, log_to_file
from models.run.predict import checkpoint_recipe, manifest_duration, predict_features, write_prediction

snakemake = globals()["snakemake"]
log_to_file(snakemake.log[0])
recipe = Recipe(**json.loads(snakemake.params.recipe))
checkpoint_recipe(snakemake.input.checkpoint, recipe)  # refuses features of another recipe than training's
visual_path, audio_path = snakemake.input.features
classes = checkpoint_classes(snakemake.input.checkpoint, snakemake.input.annotations, recipe)
failure = read_failure(Path(visual_path).with_suffix(".json"))
if failure is not None:  # the video's media/features job recorded a failure: no events, the record passed on
    events, duration, extra = [], 0.0, failure
else:
    audio, visual = np.load(audio_path), np.load(visual_path)
    duration = manifest_duration(snakemake.input.manifest)
    events = predict_features(snakemake.input.checkpoint, audio, visual, recipe, classes, duration,
                              snakemake.wildcards.vid)
    extra = {}
random_weights = (recipe.weights if failure is not None
                  else json.loads(Path(visual_path).with_suffix(".json").read_text()).get("weights")) == "random"
write_prediction(snakemake.wildcards.vid, events, duration, snakemake.output.events,
                 {"checkpoint": snakemake.input.checkpoint, "recipe": recipe.provenance(), **extra}, random_weights)
