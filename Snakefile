# Raw videos -> 25/16 FPS media -> RAFT flow -> I3D / VGGish (or R(2+1)D) features -> feature store
# -> trained, evaluated localizers (CLASP, CCNet, DAVE, AVEL, MIL) -> event timelines for new videos.
# Each stage lives in workflow/rules/ (one include per stage below, in pipeline order); the Python work happens in
# `extractors` (video -> features) and `models` (features -> predictions -> scores): docs/architecture.md.

from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from models.localizers import registry
from models.run import config_check

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# The user's localizers (`localizer_modules`, docs/extending.md) are imported first: their declarations add their
# names to the schema's model pattern (models.run.config_check.load_schema), the config check and the jobs.
# A misspelt key or value: one line naming it (with "did you mean"), not Snakemake's schema dump; model names and
# fields, predict_with and its recipe are checked after the includes (models.run.config_check).
try:
    registry.use_modules(config.get("localizer_modules") or [])
    config_check.raise_if(config_check.schema_errors(config, config_check.load_schema(
        Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")))
except (config_check.ConfigError, FileNotFoundError, ValueError) as exc:  # other errors keep their traceback
    raise WorkflowError(str(exc)) from None
validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"  # every input function; the config objects (models.run/avvp.workflow_config)
include: "workflow/rules/demo.smk"  # synthetic demo videos + annotations (extractors.synthetic_videos)
include: "workflow/rules/weights.smk"  # pretrained checkpoints (extractors.weights)
include: "workflow/rules/media.smk"  # raw video -> constant-FPS mp4 + 16 kHz wav (extractors.media)
include: "workflow/rules/features.smk"  # mp4/wav -> RAFT flow, I3D or R(2+1)D, VGGish (extractors.extract)
include: "workflow/rules/dataset.smk"  # per-video features -> feature store (models.data)
include: "workflow/rules/models.smk"  # train, evaluate, compare, predict (models.run, models.localizers)
include: "workflow/rules/avvp.smk"  # EAR stages 1-3 and AVVP scores (models.avvp)
include: "workflow/rules/llp.smk"  # LLP clips -> per-second features -> EAR inputs (extractors.llp, models.avvp.inputs)
include: "workflow/rules/report.smk"  # HTML summaries (models.report)
include: "workflow/rules/reproduce.smk"  # one target per published table (config/published.yaml)


try:
    from models.avvp.ear import EARConfig
    from models.avvp.pseudo_labels import GeneratorConfig

    config_check.raise_if(config_check.videos_folder_errors(DATASETS, config.get("avvp", {})) +
        config_check.model_override_errors(DATASETS) + config_check.avvp_errors(
        config.get("avvp", {}), {"gen": GeneratorConfig, "ear": EARConfig}) + config_check.predict_with_errors(
        DATASETS, {ds: project.dataset_models(ds) + (project.reproduce_models(ds) if "reproduce" in DATASETS[ds] else [])
                   for ds in DATASETS}))
except config_check.ConfigError as exc:
    raise WorkflowError(str(exc)) from None


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
