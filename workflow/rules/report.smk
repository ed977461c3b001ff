# One self-contained HTML summary per dataset (metrics, curves, timelines, provenance, rejected and failed
# videos, random-weights banner); `snakemake --report` additionally collects every report() output.

rule summary:
    input:
        unpack(summary_inputs),
    output:
        html=report("results/{ds}/summary.html", caption="../report/summary.rst", category="Summary",
                    labels={"dataset": "{ds}"}),
    params:
        rejected=lambda wc: json.dumps(project.rejected(wc.ds), sort_keys=True),
        recipe=lambda wc: project.recipe_json(wc.ds),
        generator=lambda wc: json.dumps(DATASETS[wc.ds].get("generate_demo"), sort_keys=True),
        predict_with=lambda wc: project.predict_with_json(wc.ds),
    log:
        "logs/{ds}/summary.log",
    benchmark:
        "benchmarks/{ds}/summary.tsv"
    conda:
        "../../envs/avloc.yaml"
    script:
        "../scripts/summary.py"


# One short HTML page of rounded tables per metrics.json (a localizer's mAP per tIoU and per-class AP, or an
# EAR run's F-scores): what `snakemake --report` shows for a run's metrics instead of the raw JSON.
rule metrics_page:
    input:
        "results/{run}/metrics.json",
    output:
        report("results/{run}/metrics.html", caption="../report/metrics.rst", category="Metrics",
               labels={"run": "{run}"}),
    wildcard_constraints:
        run="[^/]+/models/[^/]+|avvp/[^/]+/[^/]+",
    log:
        "logs/metrics_page/{run}.log",
    conda:
        "../../envs/avloc.yaml"
    script:
        "../scripts/metrics_page.py"
