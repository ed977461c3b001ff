# One self-contained HTML summary per dataset (metrics, curves, timelines, provenance, rejected and failed
# videos, random-weights banner); `snakemake --report` additionally collects every report() output.


def summary_inputs(wc):
    ds = wc.ds
    spec = DATASETS[ds]
    files = {"features": feature_files(ds)}
    if spec.get("models"):
        files["metrics"] = expand("results/{ds}/models/{model}/metrics.json", ds=ds, model=dataset_models(ds))
        files["compare"] = f"results/{ds}/compare.md"
        if spec.get("annotations"):  # the page says what the data is, read from this file
            files["annotations"] = spec["annotations"]
    if "predict_with" in spec:
        model = spec["predict_with"]["model"]
        files["predictions"] = [f"results/{ds}/predictions/{model}/{vid}.json" for vid in videos(ds)]
    return files


rule summary:
    input:
        unpack(summary_inputs),
    output:
        html=report("results/{ds}/summary.html", caption="../report/summary.rst", category="Summary",
                    labels={"dataset": "{ds}"}),
    params:
        rejected=lambda wc: json.dumps(rejected(wc.ds), sort_keys=True),
        recipe=lambda wc: json.dumps(recipe(wc.ds).to_dict(), sort_keys=True),
        generator=lambda wc: json.dumps(DATASETS[wc.ds].get("generate_demo"), sort_keys=True),
        predict_with=lambda wc: json.dumps({**DATASETS[wc.ds]["predict_with"], "checkpoint": predictor(wc.ds)}
                                           if "predict_with" in DATASETS[wc.ds] else None, sort_keys=True),
    log:
        "logs/{ds}/summary.log",
    benchmark:
        "benchmarks/{ds}/summary.tsv"
    conda:
        "../../envs/avloc.yaml"
    script:
        "../scripts/summary.py"
