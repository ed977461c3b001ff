"""EAR's three training stages and a CLI (EAR paper Fig. 2, §IV-A).

1. Stage 1 (:func:`models.avvp.pseudo_labels.pretrain_generator`): label migration on dense AV data
   (UnAV-100 CLAP/CLIP features), then generator pre-training.
2. Stage 2 (:func:`models.avvp.pseudo_labels.generate_pseudo_labels`): the frozen generator labels the
   LLP training set (CLAP/CLIP features + class-prompt text embeddings), filtered by video labels.
3. Stage 3 (:func:`train_ear`): the AVVP model (:class:`models.avvp.ear.EAR`) on the LLP features
   (VGGish + ResNet-152|R(2+1)D-18, or CLAP + CLIP) with pseudo-labels and video-level labels;
   AdamW, linear warm-up then cosine annealing (peak 1e-4, floor 5e-6, 80 epochs, 10 warm-up,
   batch 64 in the paper; the generator's floor is 1e-5). The learning rate is updated every
   optimizer step (warm-up over ``warmup_epochs * steps_per_epoch`` steps), our choice: the paper
   only names the schedule.

Data files (``.npz``), so the stages work on any extracted features:

- dense: ``audio (N,T,Da)``, ``visual (N,T,Dv)``, ``av_labels (N,T,C)``, ``text_a (C,Da)``,
  ``text_v (C,Dv)``, optional ``mask (N,T)``;
- llp split: ``audio``, ``visual`` (stage-3 features), ``gen_audio``, ``gen_visual`` (the
  generator's CLAP/CLIP features), ``labels (N,C)``, ``text_a``, ``text_v`` (target-class text
  embeddings), optional ``gt_a``/``gt_v (N,C,T)`` for evaluation, optional ``video_ids``, optional
  ``mask (N,T)`` (valid segments; pseudo-labels, training and predictions ignore the others), optional
  ``missing_ids`` (videos of the split's CSV left out for want of a clip or features; reported).

One process per stage (one Snakemake rule each, ``workflow/rules/avvp.smk``), files in between:

- ``python -m models.avvp.train planted --out-dir D``: the planted benchmark as ``dense/train/test.npz``;
- ``stage1 --dense F --out generator.pt``: migration + pre-training (``generator.json``: config, loss log);
- ``stage2 --generator G --train F [--val F] [--test F] --out pseudo_labels.npz``: pseudo-labels of the
  training split (+ ``.json`` with the AVVP scores of the pseudo-labels of every given split that has
  segment ground truth: the paper's Table III is those of the validation and test splits);
- ``stage3 --train F --val F --test F [--pseudo P] --out DIR``: the AVVP model trained with pseudo-labels
  (or with video-level labels only when ``--pseudo`` is absent), its epoch chosen on the validation split
  (:func:`train_ear`) and evaluated on the test split: ``metrics.json``, ``predictions.json``, ``ear.pt``,
  ``curve.png``, ``timelines/*.png``.

``--shuffle-labels`` (stages 2-3) is the label-shuffled control, with the localizers' rule
(:mod:`models.run.controls`: the permutation of ``seed + 7919``); :func:`run_stages` runs the same stage
functions in one process (tests). Seeding (:func:`models.run.runtime.seed_everything`), checkpoint writing
(:func:`models.run.runtime.atomic_torch_save`) and curves (:mod:`models.run.plots`) are the localizers' too;
the loop is EAR's own (:func:`models.avvp.ear.fit_minibatches`: whole splits in memory, AdamW with a per-step
warm-up cosine learning rate).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from extractors.io import load_npz, save_npz, write_json
from models.avvp.ear import EAR, LOST_VALUES, EARConfig, events_from_binary, fit_minibatches
from models.avvp.planted import PRESETS, make_demo_data
from models.avvp.pseudo_labels import (
    GeneratorConfig,
    PseudoLabelGenerator,
    generate_pseudo_labels,
    pretrain_generator,
)
from models.run.controls import shuffled_labels
from models.run.runtime import atomic_torch_save, resolve_device, seed_everything


# ----------------------------------------------------------------------------- stage 3
def train_ear(
    model: EAR,
    audio: np.ndarray,
    visual: np.ndarray,
    labels: np.ndarray,
    pseudo_a: np.ndarray | None = None,
    pseudo_v: np.ndarray | None = None,
    seed: int = 0,
    log: list[dict[str, Any]] | None = None,
    device: str | torch.device = "cpu",
    mask: np.ndarray | None = None,
    val: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Stage 3. ``pseudo_*`` ``(N, T, C)`` are required when ``model.cfg.use_pseudo``. The data stay on
    the host; each minibatch moves to ``device``. With ``cfg.select == "best_val"`` the validation split
    ``val`` (``audio``, ``visual``, ``gt_a``, ``gt_v``, optional ``mask``) is scored after every epoch
    (its numbers join ``log``) and the model is left with the weights of the earliest epoch of best
    segment-level Type@AV (``seg_type``), as HAN (``YapengTian/AVVP-ECCV20`` ``main_avvp.py``:
    ``if F >= best_F`` on ``eval(..., label_val)``) and VALOR (``Franklin905/VALOR`` ``main_avvp.py``:
    ``F_scores['Seg-type'] > best_F['Seg-type']``, the earliest best epoch on ties) select their checkpoint;
    ``"last"`` keeps the last epoch and needs no validation split. Returns the selection:
    ``{"by", "epoch", "val"}``."""
    cfg = model.cfg
    if cfg.use_pseudo and (pseudo_a is None or pseudo_v is None):
        raise ValueError("EARConfig.use_pseudo=True needs pseudo_a and pseudo_v (run stage 2 first)")
    if cfg.select == "best_val" and (val is None or "gt_a" not in val):
        raise ValueError("EARConfig.select='best_val' needs a validation split with segment ground truth "
                         "(gt_a/gt_v); give one, or set select='last' to keep the last epoch")
    seed_everything(seed)
    tens = {"audio": torch.as_tensor(audio, dtype=torch.float32),
            "visual": torch.as_tensor(visual, dtype=torch.float32),
            "labels": torch.as_tensor(labels, dtype=torch.float32)}
    if mask is not None:  # (N, T) valid segments: clips shorter than T are zero-padded
        tens["mask"] = torch.as_tensor(mask, dtype=torch.bool)
    if cfg.use_pseudo:
        model.set_class_weights(pseudo_a, pseudo_v)
        tens["pseudo_a"] = torch.as_tensor(pseudo_a, dtype=torch.float32)
        tens["pseudo_v"] = torch.as_tensor(pseudo_v, dtype=torch.float32)

    model.to(device)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        batch = {k: v[idx].to(device) for k, v in tens.items()}
        return model.loss(model(batch), batch)

    best: dict[str, Any] = {"by": "last epoch", "epoch": cfg.epochs - 1, "val": None}
    state: dict[str, torch.Tensor] | None = None

    def validate(epoch: int) -> dict[str, Any]:
        nonlocal state
        pred = predict_ear(model, val["audio"], val["visual"], device=device, mask=val.get("mask"))
        scores = avvp_metrics(pred["pred_a"], pred["pred_v"], val["gt_a"], val["gt_v"])
        if best["val"] is None or scores["seg_type"] > best["val"]["seg_type"]:
            best.update(epoch=epoch, val=scores)
            state = copy.deepcopy(model.state_dict())
        return {"val_seg_type": scores["seg_type"], "val_evt_event": scores["evt_event"]}

    use_val = cfg.select == "best_val"
    # BatchNorm in ERM needs more than one sample per batch
    fit_minibatches(model, audio.shape[0], cfg, batch_loss, seed=seed, log=log, min_batch=2,
                    on_epoch=validate if use_val else None)
    if use_val:
        assert state is not None
        model.load_state_dict(state)
        best["by"] = "best validation seg_type"
    return best


@torch.no_grad()
def predict_ear(model: EAR, audio: np.ndarray, visual: np.ndarray, batch_size: int = 256,
                device: str | torch.device = "cpu", mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Binary ``pred_a``/``pred_v`` ``(N, C, T)`` plus segment and video probabilities."""
    model.eval()
    keys = ("pred_a", "pred_v", "prob_a", "prob_v", "video")
    acc: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for s in range(0, audio.shape[0], batch_size):
        batch = {"audio": torch.as_tensor(audio[s:s + batch_size], dtype=torch.float32).to(device),
                 "visual": torch.as_tensor(visual[s:s + batch_size], dtype=torch.float32).to(device)}
        if mask is not None:  # padded segments are never predicted (EAR.parse gates by the mask)
            batch["mask"] = torch.as_tensor(mask[s:s + batch_size], dtype=torch.bool).to(device)
        out = model(batch)
        pa, pv = model.parse(out)
        acc["pred_a"].append(pa)
        acc["pred_v"].append(pv)
        acc["prob_a"].append(out["prob_a"].transpose(1, 2).cpu().numpy())
        acc["prob_v"].append(out["prob_v"].transpose(1, 2).cpu().numpy())
        acc["video"].append(out["video"].cpu().numpy())
    return {k: np.concatenate(v) for k, v in acc.items()}


def avvp_metrics(pred_a: np.ndarray, pred_v: np.ndarray, gt_a: np.ndarray, gt_v: np.ndarray) -> dict[str, float]:
    """AVVP F-scores from the shared evaluator (``models.avvp.metrics``)."""
    from models.avvp.metrics import avvp_scores

    return {k: float(v) for k, v in avvp_scores(pred_a, pred_v, gt_a, gt_v).items()}


def dense_arrays(videos: list[tuple[Any, np.ndarray, np.ndarray]], classes: list[str], recipe: Any,
                 t_max: int) -> dict[str, np.ndarray]:
    """Stage-1 arrays from UnAV-style data: ``videos`` = ``[(VideoAnnotation, audio (T, Da),
    visual (T, Dv)), ...]`` (CLAP / CLIP features on the recipe's steps), AV segments in seconds.

    Segments map to feature steps with the repository convention (``models.data.steps``): step
    ``x = (seconds - recipe.center_offset_s) / recipe.step_s``, a step is covered when its centre lies
    inside the segment. Sequences are cut or zero-padded to ``t_max`` with a mask.
    """
    from models.data.steps import render_segments, seconds_to_steps

    cidx = {c: i for i, c in enumerate(classes)}
    n = len(videos)
    da, dv = videos[0][1].shape[1], videos[0][2].shape[1]
    out = {"audio": np.zeros((n, t_max, da), np.float32), "visual": np.zeros((n, t_max, dv), np.float32),
           "av_labels": np.zeros((n, t_max, len(classes)), np.float32), "mask": np.zeros((n, t_max), bool)}
    for i, (ann, fa, fv) in enumerate(videos):
        t = min(len(fa), len(fv), t_max)
        out["audio"][i, :t], out["visual"][i, :t] = fa[:t], fv[:t]
        out["mask"][i, :t] = True
        rows = [(*seconds_to_steps(sg.start, sg.end, recipe), cidx[sg.label]) for sg in ann.segments]
        out["av_labels"][i, :t] = render_segments(np.array(rows, np.float64).reshape(-1, 3), t, len(classes))
    return out


# ----------------------------------------------------------------------------- driver
def pretrain_stage1(dense: dict[str, np.ndarray], gen_cfg: GeneratorConfig, seed: int = 0, migrate: bool = True,
                    log: list[dict[str, Any]] | None = None, device: str | torch.device = "cpu"
                    ) -> PseudoLabelGenerator:
    """Stage 1: a seeded generator, label migration on the dense data, pre-training."""
    seed_everything(seed)
    gen = PseudoLabelGenerator(gen_cfg)
    return pretrain_generator(gen, dense["audio"], dense["visual"], dense["av_labels"], dense["text_a"],
                              dense["text_v"], dense.get("mask"), migrate=migrate, seed=seed, log=log,
                              device=device)


def pseudo_stage2(gen: PseudoLabelGenerator, train: dict[str, np.ndarray], labels: np.ndarray,
                  device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray, dict[str, float] | None]:
    """Stage 2: pseudo-labels ``(N, T, C)`` for audio and visual, and their AVVP scores against
    segment ground truth when the split has it (the planted benchmark; LLP's train split does not)."""
    pa, pv = generate_pseudo_labels(gen, train["gen_audio"], train["gen_visual"], labels,
                                    train["text_a"], train["text_v"], train.get("mask"), device=device)
    metrics = None
    if "gt_a" in train:
        thr = gen.cfg.threshold
        metrics = avvp_metrics((pa >= thr).transpose(0, 2, 1).astype(np.uint8),
                               (pv >= thr).transpose(0, 2, 1).astype(np.uint8), train["gt_a"], train["gt_v"])
    return pa, pv, metrics


def pseudo_label_scores(gen: PseudoLabelGenerator, splits: dict[str, dict[str, np.ndarray]],
                        device: str | torch.device = "cpu") -> dict[str, dict[str, float]]:
    """The paper's Table III: stage 2 run on each split with segment ground truth (LLP: validation and
    test), with that split's own video-level labels, and the pseudo-labels scored by the AVVP metrics."""
    out = {}
    for name, split in splits.items():
        if split is not None and "gt_a" in split:
            _, _, m = pseudo_stage2(gen, split, split["labels"], device=device)
            out[name] = m
    return out


def train_stage3(train: dict[str, np.ndarray], test: dict[str, np.ndarray], ear_cfg: EARConfig, labels: np.ndarray,
                 pseudo_a: np.ndarray | None, pseudo_v: np.ndarray | None, seed: int = 0,
                 log: list[dict[str, Any]] | None = None, device: str | torch.device = "cpu",
                 val: dict[str, np.ndarray] | None = None, selection: dict[str, Any] | None = None
                 ) -> tuple[EAR, dict[str, np.ndarray], dict[str, float] | None]:
    """Stage 3 and the AVVP evaluation: the trained model (the epoch ``ear_cfg.select`` chooses on
    ``val``), test predictions, metrics (if ``gt_a``). ``selection`` (a dict) receives the choice."""
    seed_everything(seed)
    model = EAR(ear_cfg)
    chosen = train_ear(model, train["audio"], train["visual"], labels, pseudo_a, pseudo_v, seed=seed, log=log,
                       device=device, mask=train.get("mask"), val=val)
    if selection is not None:
        selection.update(chosen)
    pred = predict_ear(model, test["audio"], test["visual"], device=device, mask=test.get("mask"))
    metrics = avvp_metrics(pred["pred_a"], pred["pred_v"], test["gt_a"], test["gt_v"]) if "gt_a" in test else None
    return model, pred, metrics


def run_stages(data: dict[str, Any], gen_cfg: GeneratorConfig, ear_cfg: EARConfig, seed: int = 0,
               migrate: bool = True, shuffle_labels: bool = False,
               generator: PseudoLabelGenerator | None = None) -> dict[str, Any]:
    """Stages 1-3 in memory on ``data`` (as :func:`make_demo_data` returns); the CLI runs the same
    functions one stage per process. ``ear_cfg.use_pseudo=False`` skips stages 1-2 (video-level labels
    only); ``shuffle_labels`` permutes the training videos' labels (a control that must score near
    chance); a given ``generator`` (already pre-trained) skips stage 1. The pseudo-labels of the
    validation and test splits are scored too (``pseudo_eval``, the paper's Table III)."""
    train, test, val = data["train"], data["test"], data.get("val")
    labels = shuffled_labels(train["labels"], seed) if shuffle_labels else train["labels"]
    res: dict[str, Any] = {"logs": {}}
    pa = pv = None
    if ear_cfg.use_pseudo:
        gen = generator
        if gen is None:
            res["logs"]["stage1"] = []
            gen = pretrain_stage1(data["dense"], gen_cfg, seed, migrate, res["logs"]["stage1"])
        pa, pv, pm = pseudo_stage2(gen, train, labels)
        res.update(generator=gen, pseudo_a=pa, pseudo_v=pv)
        if pm is not None:
            res["pseudo_metrics"] = pm
        res["pseudo_eval"] = pseudo_label_scores(gen, {"val": val, "test": test})
    res["logs"]["stage3"] = []
    res["selection"] = {}
    model, pred, metrics = train_stage3(train, test, ear_cfg, labels, pa, pv, seed, res["logs"]["stage3"], val=val,
                                        selection=res["selection"])
    res["model"], res["pred"] = model, pred
    if metrics is not None:
        res["metrics"] = metrics
    return res


def _class_names(split: dict[str, np.ndarray], n: int) -> list[str]:
    return [str(x) for x in split["class_names"]] if "class_names" in split else [f"class_{i}" for i in range(n)]


def write_outputs(out_dir: Path, res: dict[str, Any], test: dict[str, Any], class_names: list[str],
                  extra: dict[str, Any] | None = None) -> None:
    """``predictions.json`` (per video, per modality: events as [start_s, end_s, class, score])
    and ``metrics.json``; each written to a temporary file and renamed."""
    pred = res["pred"]
    vids = [str(v) for v in test.get("video_ids", range(pred["pred_a"].shape[0]))]
    videos = {}
    for i, vid in enumerate(vids):
        entry = {}
        for key, bin_ in (("audio", pred["pred_a"][i]), ("visual", pred["pred_v"][i]),
                          ("audio_visual", pred["pred_a"][i] & pred["pred_v"][i])):
            prob = pred["prob_a"][i] if key == "audio" else pred["prob_v"][i]
            if key == "audio_visual":
                prob = np.sqrt(pred["prob_a"][i] * pred["prob_v"][i])
            # LLP: step t is the 1 s segment [t, t+1) s
            entry[key] = [[s, e, class_names[c], round(sc, 6)] for s, e, c, sc in events_from_binary(bin_, prob)]
        videos[vid] = entry
    write_json(out_dir / "predictions.json", {"segment_seconds": 1.0, "videos": videos})
    metrics = {"test": res.get("metrics"), "pseudo_labels_train": res.get("pseudo_metrics"),
               "pseudo_labels": res.get("pseudo_eval"), "selection": res.get("selection"),
               "test_videos": split_coverage(test), "lost_values": LOST_VALUES}
    metrics.update(extra or {})
    write_json(out_dir / "metrics.json", metrics)


def split_coverage(split: dict[str, Any]) -> dict[str, Any]:
    """How many of the split's CSV videos are scored: those left out (no clip or no features, listed in
    ``missing_ids`` by ``models.avvp.inputs split``) shrink the split, and the summary says so."""
    n = int(np.asarray(split["audio"]).shape[0])
    missing = [str(v) for v in split.get("missing_ids", [])]
    return {"scored": n, "listed": n + len(missing), "missing": len(missing), "missing_ids": missing[:50]}


def plot_parses(out_dir: Path, pred: dict[str, np.ndarray], test: dict[str, np.ndarray], class_names: list[str],
                n_videos: int = 4, banner: str | None = None) -> list[Path]:
    """Timelines of the first test videos: one row per (modality, class), ground truth vs. parse."""
    from models.run.plots import plot_timeline

    def events(binary: np.ndarray, prob: np.ndarray, tag: str) -> list[tuple[float, float, str, float]]:
        return [(s, e, f"{tag}: {class_names[c]}", sc) for s, e, c, sc in events_from_binary(binary, prob)]

    vids = [str(v) for v in test.get("video_ids", range(pred["pred_a"].shape[0]))]
    for old in (out_dir / "timelines").glob("*.png"):  # a rerun must not leave another run's plots
        old.unlink()
    paths = []
    for i in range(min(n_videos, len(vids))):
        predicted = events(pred["pred_a"][i], pred["prob_a"][i], "A") + events(pred["pred_v"][i], pred["prob_v"][i], "V")
        truth = None
        if "gt_a" in test:
            ones = np.ones_like(test["gt_a"][i], dtype=np.float32)
            truth = events(test["gt_a"][i], ones, "A") + events(test["gt_v"][i], ones, "V")
        path = out_dir / "timelines" / f"{i:02d}.png"
        plot_timeline(path, float(pred["pred_a"].shape[2]), predicted, truth, title=f"test video {vids[i]}",
                      banner=banner)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- files between stages
def load_generator(path: Path | str) -> tuple[PseudoLabelGenerator, dict[str, Any]]:
    """The stage-1 checkpoint: ``{"config", "state_dict", "migration"}``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    gen = PseudoLabelGenerator(GeneratorConfig(**ckpt["config"]))
    gen.load_state_dict(ckpt["state_dict"])
    return gen.eval(), ckpt


def _overrides(preset: str | None, which: int, inferred: dict[str, Any], user_json: str) -> dict[str, Any]:
    """Config fields: inferred from the data, then the preset's, then the user's JSON."""
    out = dict(inferred)
    if preset:
        out.update(PRESETS[preset][which])
    out.update(json.loads(user_json))
    return out


# ----------------------------------------------------------------------------- CLI
def cmd_planted(a: argparse.Namespace) -> int:
    data = make_demo_data(seed=a.seed)
    names = np.array([f"event_{i}" for i in range(data["train"]["labels"].shape[1])])
    out = Path(a.out_dir)
    save_npz(out / "dense.npz", **data["dense"])
    for split in ("train", "val", "test"):
        save_npz(out / f"{split}.npz", class_names=names, **data[split])
    return 0


def cmd_stage1(a: argparse.Namespace) -> int:
    dense = load_npz(a.dense)
    inferred = {"audio_dim": int(dense["audio"].shape[-1]), "visual_dim": int(dense["visual"].shape[-1])}
    cfg = GeneratorConfig(**_overrides(a.preset, 0, inferred, a.gen))
    log: list[dict[str, Any]] = []
    t0 = time.time()
    gen = pretrain_stage1(dense, cfg, a.seed, migrate=not a.no_migration, log=log, device=resolve_device(a.device))
    atomic_torch_save({"config": dataclasses.asdict(cfg), "state_dict": gen.cpu().state_dict(),
                       "migration": not a.no_migration}, Path(a.out))
    write_json(Path(a.out).with_suffix(".json"), {"config": dataclasses.asdict(cfg), "migration": not a.no_migration,
                                                  "seed": a.seed, "seconds": round(time.time() - t0, 2), "log": log})
    print(json.dumps({"stage": 1, "final_loss": log[-1]["loss"] if log else None}))
    return 0


def cmd_stage2(a: argparse.Namespace) -> int:
    gen, _ = load_generator(a.generator)
    train = load_npz(a.train)
    labels = shuffled_labels(train["labels"], a.seed) if a.shuffle_labels else train["labels"]
    device = resolve_device(a.device)
    pa, pv, metrics = pseudo_stage2(gen, train, labels, device=device)
    save_npz(a.out, pseudo_a=pa, pseudo_v=pv, labels=labels)
    # Table III: the validation/test splits labelled with their own (never shuffled) video-level labels
    evals = {name: load_npz(path) for name, path in (("val", a.val), ("test", a.test)) if path is not None}
    table = pseudo_label_scores(gen, evals, device=device)
    write_json(Path(a.out).with_suffix(".json"), {
        "train_pseudo_labels": metrics, "pseudo_labels": table, "threshold": gen.cfg.threshold,
        "shuffled_labels": a.shuffle_labels, "videos": {k: split_coverage(v) for k, v in evals.items()}})
    print(json.dumps({"stage": 2, "pseudo_label_scores": {"train": metrics, **table}}))
    return 0


def cmd_stage3(a: argparse.Namespace) -> int:
    train, test = load_npz(a.train), load_npz(a.test)
    val = load_npz(a.val) if a.val is not None else None
    inferred = {"num_classes": int(train["labels"].shape[1]), "audio_dim": int(train["audio"].shape[-1]),
                "visual_dim": int(train["visual"].shape[-1]), "t_max": int(train["audio"].shape[1])}
    cfg = EARConfig(**{**_overrides(a.preset, 1, inferred, a.ear), "use_pseudo": a.pseudo is not None})
    labels = shuffled_labels(train["labels"], a.seed) if a.shuffle_labels else train["labels"]
    pa = pv = None
    pseudo_metrics = pseudo_eval = None
    if a.pseudo is not None:
        pl = load_npz(a.pseudo)
        pa, pv = pl["pseudo_a"], pl["pseudo_v"]
        if not np.array_equal(pl["labels"], labels):
            raise SystemExit(f"{a.pseudo}: pseudo-labels were generated from other video labels than this run's "
                             "(shuffled vs. not?); rerun stage 2 with the same --shuffle-labels")
        side = Path(a.pseudo).with_suffix(".json")
        if side.exists():
            scores = json.loads(side.read_text())
            pseudo_metrics, pseudo_eval = scores.get("train_pseudo_labels"), scores.get("pseudo_labels")
    log: list[dict[str, Any]] = []
    t0 = time.time()
    selection: dict[str, Any] = {}
    model, pred, metrics = train_stage3(train, test, cfg, labels, pa, pv, a.seed, log, resolve_device(a.device),
                                        val=val, selection=selection)
    out = Path(a.out)
    names = _class_names(test, cfg.num_classes)
    mode = "pseudo" if a.pseudo is not None else "video"
    res = {"pred": pred, "metrics": metrics, "pseudo_metrics": pseudo_metrics, "pseudo_eval": pseudo_eval,
           "selection": selection}
    coverage = split_coverage(test)
    if coverage["missing"]:
        print(f"[stage3] test split: {coverage['scored']} of {coverage['listed']} CSV videos scored, "
              f"{coverage['missing']} without a clip or features", file=sys.stderr)
    write_outputs(out, res, test, names, extra={
        "seconds": round(time.time() - t0, 2), "mode": mode, "shuffled_labels": a.shuffle_labels,
        "ear_config": dataclasses.asdict(cfg), "log": log, "seed": a.seed,
        "val_videos": split_coverage(val) if val is not None else None})
    atomic_torch_save(model.cpu().state_dict(), out / "ear.pt")
    from models.run.plots import plot_loss_curves

    plot_loss_curves(out / "curve.png", {f"stage 3 ({mode} labels)": [h["loss"] for h in log]},
                     title=f"EAR stage 3 — {mode} labels")
    plot_parses(out, pred, test, names, banner=a.banner)
    print(json.dumps({"stage": 3, "mode": mode, "selection": selection, "test": metrics}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("planted", help="write the planted benchmark as dense/train/test .npz files")
    pl.add_argument("--out-dir", required=True)
    s1 = sub.add_parser("stage1", help="label migration + generator pre-training on dense AV data")
    s1.add_argument("--dense", required=True, help="dense AV data .npz")
    s1.add_argument("--out", required=True, help="generator checkpoint (.pt; a .json log is written beside)")
    s1.add_argument("--no-migration", action="store_true", help="train with AV labels only (w/o LM ablation)")
    s1.add_argument("--gen", default="{}", help="JSON overrides for GeneratorConfig")
    s2 = sub.add_parser("stage2", help="segment-level pseudo-labels for the LLP training split")
    s2.add_argument("--generator", required=True)
    s2.add_argument("--train", required=True, help="LLP train split .npz")
    s2.add_argument("--val", help="validation split .npz: its pseudo-labels are scored (Table III)")
    s2.add_argument("--test", help="test split .npz: its pseudo-labels are scored (Table III)")
    s2.add_argument("--out", required=True, help="pseudo-labels .npz (a .json with their scores beside)")
    s3 = sub.add_parser("stage3", help="train the AVVP model and evaluate it on the test split")
    s3.add_argument("--train", required=True)
    s3.add_argument("--test", required=True, help="test split .npz (gt_a/gt_v for metrics)")
    s3.add_argument("--val", help="validation split .npz (gt_a/gt_v): chooses the epoch (EARConfig.select)")
    s3.add_argument("--pseudo", help="stage-2 pseudo-labels; without it: video-level labels only")
    s3.add_argument("--out", required=True, help="output directory")
    s3.add_argument("--ear", default="{}", help="JSON overrides for EARConfig")
    s3.add_argument("--banner", help="text stamped on the timeline plots (e.g. random-weights warning)")
    for sp in (s1, s3):
        sp.add_argument("--preset", choices=sorted(PRESETS), help="small configs for the planted benchmark")
    for sp in (s2, s3):
        sp.add_argument("--shuffle-labels", action="store_true", help="label-shuffled control")
    for sp in (pl, s1, s2, s3):
        sp.add_argument("--seed", type=int, default=0)
    for sp in (s1, s2, s3):
        sp.add_argument("--device", default="auto", help="auto: CUDA when visible, else CPU")
    a = p.parse_args(argv)
    return {"planted": cmd_planted, "stage1": cmd_stage1, "stage2": cmd_stage2, "stage3": cmd_stage3}[a.cmd](a)


if __name__ == "__main__":
    raise SystemExit(main())
