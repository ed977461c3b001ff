"""Snakemake script: the EAR (AVVP) summary page of one benchmark (models.report.avvp_summary.write_avvp_summary)."""

from models.report.avvp_summary import write_avvp_summary
from models.run.pipeline import log_to_file

snakemake = globals()["snakemake"]
log_to_file(snakemake.log[0])
stage1 = snakemake.input.get("stage1")
write_avvp_summary(snakemake.output.html, snakemake.wildcards.name, list(snakemake.input.metrics),
                   stage1_json=stage1 if stage1 else None, banner=snakemake.params.banner,
                   train_npz=snakemake.input.train, test_npz=snakemake.input.test,
                   pseudo_npz=snakemake.input.pseudo[0] if snakemake.input.pseudo else None)
