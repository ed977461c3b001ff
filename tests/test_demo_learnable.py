"""The built-in demo stays learnable: on clips made with the shipped config's generator settings, the
demo recipe's random-weight I3D and VGGish features separate the classes (and the background).

Why at feature level: a localizer can only beat its label-shuffled control if the features tell the
events apart. This failed silently once (PyTorch's default init shrank random I3D features to ~1e-6 and
CLASP scored 0), so the test checks the scale and a nearest-centroid separability of per-step features,
on two short clips (about 30 s on two idle cores) instead of training models on a full demo set.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from extractors.i3d import extract_i3d
from extractors.media import normalize
from extractors.recipes import get_recipe
from extractors.synthetic_videos import make_demo_dataset
from extractors.vggish import extract_vggish

REPO = Path(__file__).resolve().parents[1]


def step_labels(spans: list[tuple[float, float, str]], centres: np.ndarray) -> list[str]:
    """The class whose span holds each step centre, or 'background'."""
    out = []
    for c in centres:
        hit = [lab for s, e, lab in spans if s <= c < e]
        out.append(hit[0] if hit else "background")
    return out


def nearest_centroid_accuracy(x: np.ndarray, labels: list[str]) -> tuple[float, float]:
    """(accuracy of assigning each step to the nearest class centroid, min distance between two
    centroids / mean distance of a step to its own centroid)."""
    names = sorted(set(labels))
    y = np.array([names.index(lab) for lab in labels])
    cents = np.stack([x[y == k].mean(0) for k in range(len(names))])
    d = np.linalg.norm(x[:, None, :] - cents[None], axis=-1)
    acc = float((d.argmin(1) == y).mean())
    spread = float(d[np.arange(len(y)), y].mean())
    dc = np.linalg.norm(cents[:, None] - cents[None], axis=-1)
    gap = float(dc[~np.eye(len(names), dtype=bool)].min())
    return acc, gap / max(spread, 1e-12)


@pytest.fixture(scope="module")
def demo_features(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Two clips with the shipped demo's generator settings (6 feature steps each; seed 4 puts three
    classes in them), their features and per-step visual / audio labels from the annotations and
    distractors."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["datasets"]["demo"]
    recipe = get_recipe(cfg["recipe"], **cfg.get("recipe_overrides", {}))
    spec = dict(cfg["generate_demo"])
    spec.update(n_videos=2, duration_s=6 * recipe.step_s + 1 / 25, n_val=0, n_test=1, seed=4)
    spec["size"] = tuple(spec["size"])
    root = tmp_path_factory.mktemp("learnable")
    ann = json.loads(make_demo_dataset(root, **spec).read_text())["database"]
    dis = json.loads((root / "distractors.json").read_text())
    torch.set_num_threads(2)
    out = []
    for vid, v in sorted(ann.items()):
        mp4, wav = root / f"{vid}_n.mp4", root / f"{vid}_n.wav"
        normalize(root / "videos" / f"{vid}.mp4", mp4, wav, fps=recipe.fps)
        visual, _ = extract_i3d(mp4, recipe, device="cpu", batch_size=8)
        audio, _ = extract_vggish(wav, recipe, device="cpu")
        t = min(len(visual), len(audio))
        centres = np.array([recipe.step_time(i) for i in range(t)])
        av = [(a["segment"][0], a["segment"][1], a["label"]) for a in v["annotations"]]
        vis = av + [(d["segment"][0], d["segment"][1], d["label"]) for d in dis[vid] if d["kind"] == "visual_only"]
        aud = av + [(d["segment"][0], d["segment"][1], d["label"]) for d in dis[vid] if d["kind"] == "audio_only"]
        out.append({"visual": visual[:t], "audio": audio[:t], "vis_labels": step_labels(vis, centres),
                    "aud_labels": step_labels(aud, centres)})
    return out


@pytest.mark.parametrize("modality", ["visual", "audio"])
def test_demo_features_separate_the_classes(demo_features: list[dict], modality: str) -> None:
    x = np.concatenate([d[modality] for d in demo_features])
    labels = sum((d["vis_labels" if modality == "visual" else "aud_labels"] for d in demo_features), [])
    assert len(set(labels) - {"background"}) >= 3, f"too few classes in the test clips: {sorted(set(labels))}"
    # the scale a localizer's projection can use (random default-init I3D gave ~1e-6)
    assert x.std(0).mean() > 1e-2, f"{modality} features nearly constant: per-dim std {x.std(0).mean():.2e}"
    acc, ratio = nearest_centroid_accuracy(x, labels)
    assert acc >= 0.9, f"{modality}: nearest-centroid accuracy {acc:.2f} over {sorted(set(labels))}"
    assert ratio > 1.0, f"{modality}: closest class centroids {ratio:.2f}x the within-class spread"
