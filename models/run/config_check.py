"""Config mistakes caught when the workflow is parsed, one line each, before any video is extracted.

Snakemake's schema validation reports a misspelt key inside a dump of the whole schema, and it cannot see
what only the code knows: the fields of each model's config dataclass (``model_overrides``), which models
a dataset trains (``predict_with.model``) and whether a prediction dataset's features match the ones the
model was trained on (``predict_with`` recipes). Without these checks such mistakes surface in the train
or predict job, after every video has been extracted. Each message names the key by its path in the config
and, where a close known name exists, suggests it (difflib).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from models.localizers import registry
from models.run.names import model_pattern


class ConfigError(ValueError):
    """One or more config mistakes; ``str()`` is one line per mistake."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string when none is close."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _path(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts)


def load_schema(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The config schema with its model-name pattern filled in from the registry: the localizers a
    ``datasets`` entry can train (declared ones and the config's ``localizer_modules``; EAR runs under
    ``avvp:``), each with an optional ``-weak``/``-full``. The file leaves the pattern out, so the model list
    is written nowhere but in the declarations."""
    import yaml

    schema = yaml.safe_load(Path(path).read_text())
    schema["definitions"]["model_name"]["pattern"] = model_pattern(registry.names())
    return schema


def schema_errors(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """One line per schema violation, named by its path in the config: a key the schema does not allow
    (``additionalProperties: false``) or a value outside an ``enum`` with a suggestion from the allowed
    names; any other violation with jsonschema's message, shortened (Snakemake's own validation, which runs
    after this, would print the whole schema)."""
    import jsonschema

    lines = []
    validator = jsonschema.Draft202012Validator(schema)
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = _path(err.absolute_path) or "config"
        if err.validator == "enum" and isinstance(err.instance, str):
            allowed = [str(v) for v in err.validator_value]
            lines.append(f"{where}: {err.instance!r} is not one of {', '.join(allowed)}"
                         f"{did_you_mean(err.instance, allowed)}")
            continue
        alts = err.validator_value if err.validator in ("oneOf", "anyOf") else None
        if alts and all(set(a) == {"required"} for a in alts):  # e.g. `videos`, or `features` + `annotations`
            need = " or ".join(" + ".join(f"`{k}`" for k in a["required"]) for a in alts)
            lines.append(f"{where}: needs {'exactly one of ' if err.validator == 'oneOf' else ''}{need}")
            continue
        if err.validator == "pattern" and isinstance(err.instance, str):
            words = set(re.findall(r"[A-Za-z_]{3,}", err.validator_value))  # the names a pattern spells out
            lines.append(f"{where}: {err.instance!r} does not match {err.validator_value!r}"
                         f"{did_you_mean(err.instance, words)}")
            continue
        if err.validator != "additionalProperties" or err.validator_value is not False:
            best = jsonschema.exceptions.best_match([err])
            msg = best.message if len(best.message) <= 200 else best.message[:197] + "..."
            lines.append(f"{_path(best.absolute_path) or 'config'}: {msg}")
            continue
        allowed = err.schema.get("properties", {})
        for key in sorted(set(err.instance) - set(allowed)):
            if any(re.search(p, key) for p in err.schema.get("patternProperties", {})):
                continue
            # a key one level too high (`epochs` beside `train:`) points to where it belongs
            nested = [f"{p}.{key}" for p, sub in sorted(allowed.items())
                      if isinstance(sub, dict) and key in (sub.get("properties") or {})]
            hint = did_you_mean(key, allowed) or (f" (did you mean {nested[0]!r}?)" if nested else "")
            lines.append(f"{where}: unknown key {key!r}{hint}; allowed: {', '.join(sorted(allowed))}")
    return lines


def model_override_errors(datasets: Mapping[str, Any]) -> list[str]:
    """``model_overrides.<model>`` must name a localizer and only fields of its config dataclass."""
    from models.run.pipeline import parse_model_name, split_control

    lines = []
    for ds, spec in datasets.items():
        for model, fields in (spec.get("model_overrides") or {}).items():
            where = f"datasets.{ds}.model_overrides.{model}"
            name, control = split_control(model)
            if control:
                lines.append(f"{where}: a control is trained with its model's overrides; "
                             f"put them under model_overrides.{name}")
                continue
            try:
                base, _ = parse_model_name(model)
            except ValueError as exc:
                lines.append(f"{where}: {exc}")
                continue
            localizers = registry.names()
            if base not in localizers:
                lines.append(f"{where}: unknown model {base!r}{did_you_mean(base, localizers)}; "
                             f"models: {', '.join(localizers)}")
                continue
            known = {f.name for f in dataclasses.fields(registry.get_entry(base)[0])}
            for key in sorted(set(fields or {}) - known):
                lines.append(f"{where}: unknown key {key!r}{did_you_mean(key, known)}")
    return lines


def avvp_errors(avvp: Mapping[str, Any], sections: Mapping[str, type]) -> list[str]:
    """``avvp.<name>.<section>`` must hold only fields of its dataclass (``sections``: gen -> GeneratorConfig,
    ear -> EARConfig; passed in by the workflow, as models.avvp sits above this layer)."""
    lines = []
    for name, spec in avvp.items():
        for section, cls in sections.items():
            known = {f.name for f in dataclasses.fields(cls)}
            for key in sorted(set(spec.get(section) or {}) - known):
                lines.append(f"avvp.{name}.{section}: unknown key {key!r}{did_you_mean(key, known)}")
    return lines


def predict_with_errors(datasets: Mapping[str, Any], trained: Mapping[str, list[str]]) -> list[str]:
    """``predict_with.dataset`` must be a configured dataset, ``predict_with.model`` one of the models it
    trains (``trained``: dataset -> its model names, controls and reproduced models included), and the
    two datasets' recipes must extract the same features: a model applied to features of another recipe
    (other windows, steps or extractors) gives timelines that look plausible and are wrong."""
    from extractors.discovery import extraction_fields
    from extractors.recipes import get_recipe

    lines = []
    for ds, spec in datasets.items():
        pw = spec.get("predict_with")
        if not pw:
            continue
        where = f"datasets.{ds}.predict_with"
        source = pw["dataset"]
        if source not in datasets:
            lines.append(f"{where}.dataset: unknown dataset {source!r}{did_you_mean(source, datasets)}; "
                         f"datasets: {', '.join(sorted(datasets))}")
            continue
        models = trained.get(source, [])
        if pw["model"] not in models:
            lines.append(f"{where}.model: {pw['model']!r} is not a model of dataset {source!r}"
                         f"{did_you_mean(pw['model'], models)}; its models: {', '.join(models) or 'none'}")
        mine, theirs = spec, datasets[source]
        a = extraction_fields(get_recipe(mine["recipe"], **mine.get("recipe_overrides", {})))
        b = extraction_fields(get_recipe(theirs["recipe"], **theirs.get("recipe_overrides", {})))
        differ = [k for k in sorted(a) if a[k] != b.get(k)]
        if differ:
            diff = ", ".join(f"{k} {a[k]!r} vs {b.get(k)!r}" for k in differ)
            lines.append(f"{where}: recipe of {ds!r} differs from the recipe {source!r} was trained with "
                         f"({diff}); give {ds!r} recipe: {theirs['recipe']!r} and the same recipe_overrides")
    return lines


def videos_folder_errors(datasets: Mapping[str, Any], avvp: Mapping[str, Any]) -> list[str]:
    """Each ``videos`` folder that must exist when the workflow is read (not a generated demo's, not one
    replaced by ``features:``) and does not: one line naming the key, instead of a traceback out of the
    first input function that lists the folder."""
    from extractors.discovery import resolve_videos_dir

    where = [(f"datasets.{ds}.videos", spec["videos"]) for ds, spec in datasets.items()
             if "videos" in spec and "features" not in spec and "generate_demo" not in spec]
    where += [(f"avvp.{name}.llp.videos", spec["llp"]["videos"]) for name, spec in avvp.items()
              if "videos" in spec.get("llp", {})]
    lines = []
    for key, folder in where:
        path = resolve_videos_dir(folder)
        if not path.exists():
            lines.append(f"{key}: folder {folder} does not exist")
        elif not path.is_dir():
            lines.append(f"{key}: {folder} is a file, not a folder of videos")
    return lines


def raise_if(lines: list[str]) -> None:
    if lines:
        raise ConfigError("\n".join(lines))
