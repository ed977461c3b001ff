"""Snakemake script: one table of the published numbers (config/published.yaml) with ours beneath each row
whose model we have (mean ± std over the seeds' runs, the weak models' shuffled controls as the chance line),
plus the seed and recipe of every run (models.run.compare.write_reproduce)."""

import json
from pathlib import Path

from models.run.compare import write_reproduce
from models.run.pipeline import log_to_file

snakemake = globals()["snakemake"]
log_to_file(snakemake.log[0])
p = snakemake.params
metrics, runs = {}, {}
for path in snakemake.input.metrics:
    run_dir = Path(path).parent
    metrics[run_dir.name] = json.loads(Path(path).read_text())
    config_json = run_dir / "config.json"  # written by models.run.train.train next to best.pt
    if not config_json.exists():
        raise FileNotFoundError(f"{config_json} is missing: the run's seed and recipe cannot be recorded")
    info = json.loads(config_json.read_text())
    runs[run_dir.name] = {"info": info, "overrides": json.loads(p.train_specs)[run_dir.name]}
groups = {model: {kind: {int(seed): run for seed, run in by_seed.items()} for kind, by_seed in kinds.items()}
          for model, kinds in json.loads(p.runs).items()}  # JSON keys are strings; seeds are ints
for seed, run in ((seed, run) for kinds in groups.values() for by_seed in kinds.values() for seed, run in by_seed.items()):
    if runs[run]["info"].get("seed") != seed:
        raise RuntimeError(f"{run}: config.json says seed {runs[run]['info'].get('seed')}, the table expects "
                           f"{seed}; delete results/{snakemake.wildcards.ds}/models/{run} and rerun")
write_reproduce(snakemake.output.markdown, snakemake.output.csv, p.name, snakemake.wildcards.ds,
                json.loads(p.table), json.loads(p.papers), metrics, runs, json.loads(p.context), groups)
