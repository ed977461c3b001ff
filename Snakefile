# Raw videos -> 25/16 FPS media -> RAFT flow -> I3D / VGGish (or R(2+1)D) features -> feature store
# -> trained, evaluated localizers (CLASP, CCNet, DAVE, AVEL, MIL) -> event timelines for new videos.
# Each stage lives in workflow/rules/; the Python work happens in the `extractors` and `models` packages.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/weights.smk"
include: "workflow/rules/media.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/avvp.smk"
include: "workflow/rules/llp.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets,
    default_target: True


onsuccess:
    for ds, spec in config.get("datasets", {}).items():
        if spec.get("models") or "predict_with" in spec:  # a clips-only entry (e.g. demo_llp's) has none
            print(f"[avloc] {ds}: summary report at results/{ds}/summary.html")
    for name in config.get("avvp", {}):
        print(f"[avloc] avvp {name}: summary report at results/avvp/{name}/summary.html")
    print("[avloc] full Snakemake report: snakemake --report results/report.html")
