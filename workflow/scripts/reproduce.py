"""Snakemake script: one table of the published numbers (config/published.yaml) with ours beneath each row
whose model we have, plus the seed and recipe of every run (models.run.compare.write_reproduce)."""

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
write_reproduce(snakemake.output.markdown, snakemake.output.csv, p.name, snakemake.wildcards.ds,
                json.loads(p.table), json.loads(p.papers), metrics, runs, json.loads(p.context))
