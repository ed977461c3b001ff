"""Snakemake script: the per-dataset HTML summary (models.report.summary.write_summary)."""

import json

from models.report.summary import write_summary
from models.run.pipeline import log_to_file

snakemake = globals()["snakemake"]
log_to_file(snakemake.log[0])
inp = snakemake.input
write_summary(
    snakemake.output.html,
    snakemake.wildcards.ds,
    json.loads(snakemake.params.recipe),
    metrics=list(inp.get("metrics", [])),
    compare_md=inp.get("compare"),
    feature_files=list(inp.get("features", [])),
    predictions=list(inp.get("predictions", [])),
    rejected=json.loads(snakemake.params.rejected),
    annotations=inp.get("annotations"),
    generator=json.loads(snakemake.params.generator),
    predict_with=json.loads(snakemake.params.predict_with),
)
