"""Snakemake script: one metrics.json as a page of rounded tables (models.report.tables.write_metrics_page)."""

from models.report.tables import write_metrics_page
from models.run.pipeline import log_to_file

snakemake = globals()["snakemake"]
log_to_file(snakemake.log[0])
write_metrics_page(snakemake.input[0], snakemake.output[0], f"Metrics — {snakemake.wildcards.run}")
