"""Snakemake script: one table of all configured models and their label-shuffled controls (rows) x
mAP@0.5..0.9 and Avg (columns; compare.md / .csv), and compare.html (every tIoU and per-class AP, for the report)."""

import json
from pathlib import Path

import pandas as pd

from models.report.page import write_page
from models.report.tables import map_table, per_class_table
from models.run.compare import metrics_row, write_table
from models.run.pipeline import log_to_file, parse_model_name, split_control

snakemake = globals()["snakemake"]
log_to_file(snakemake.log[0])
rows = []
for path in snakemake.input.metrics:
    label = Path(path).parent.name
    name, sup = parse_model_name(label)
    control = split_control(label)[1]
    if control:
        label = f"{split_control(label)[0]} (shuffled labels)"
    rows.append({"row": label, "method": name, "supervision": sup or "default", "control": control,
                 **metrics_row(json.loads(Path(path).read_text())), "checkpoint": str(Path(path).parent)})
out_dir = Path(snakemake.output.markdown).parent
tmp_dir = out_dir / ".compare"
tmp_dir.mkdir(parents=True, exist_ok=True)
runs = [(Path(p).parent.name, json.loads(Path(p).read_text())) for p in snakemake.input.metrics]
write_table(pd.DataFrame(rows).set_index("row"), tmp_dir, runs[0][1].get("tious", []) if runs else [])
(tmp_dir / "table.md").replace(snakemake.output.markdown)
(tmp_dir / "table.csv").replace(snakemake.output.csv)
tmp_dir.rmdir()
# the report's view: every tIoU column of the Avg and per-class AP, rounded
write_page(snakemake.output.html, f"Comparison — {snakemake.wildcards.ds}",
           [f"<h1>Test-split mAP (%) at each tIoU — {snakemake.wildcards.ds}</h1>", map_table(runs),
            "<h2>Per-class AP (%), worst first</h2>", per_class_table(runs)])
