"""EAR's three training stages and a CLI (papers/ear-avvp.txt Fig. 2, §IV-A).

1. Stage 1 (:func:`models.pseudo_labels.pretrain_generator`): label migration on dense AV data
   (UnAV-100 CLAP/CLIP features), then generator pre-training.
2. Stage 2 (:func:`models.pseudo_labels.generate_pseudo_labels`): the frozen generator labels the
   LLP training set (CLAP/CLIP features + class-prompt text embeddings), filtered by video labels.
3. Stage 3 (:func:`train_ear`): the AVVP model (:class:`models.ear.EAR`) on the LLP features
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
  embeddings), optional ``gt_a``/``gt_v (N,C,T)`` for evaluation, optional ``video_ids``.

``python -m models.ear_train --demo --out DIR`` runs all three stages on a planted benchmark
(:func:`make_demo_data`) and writes ``metrics.json`` and ``predictions.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from extractors.io import write_json
from models.ear import EAR, EARConfig, warmup_cosine
from models.pseudo_labels import (
    GeneratorConfig,
    PseudoLabelGenerator,
    generate_pseudo_labels,
    pretrain_generator,
)


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
) -> EAR:
    """Stage 3. ``pseudo_*`` ``(N, T, C)`` are required when ``model.cfg.use_pseudo``."""
    cfg = model.cfg
    if cfg.use_pseudo and (pseudo_a is None or pseudo_v is None):
        raise ValueError("EARConfig.use_pseudo=True needs pseudo_a and pseudo_v (run stage 2 first)")
    torch.manual_seed(seed)
    n = audio.shape[0]
    tens = {"audio": torch.as_tensor(audio, dtype=torch.float32),
            "visual": torch.as_tensor(visual, dtype=torch.float32),
            "labels": torch.as_tensor(labels, dtype=torch.float32)}
    if cfg.use_pseudo:
        model.set_class_weights(pseudo_a, pseudo_v)
        tens["pseudo_a"] = torch.as_tensor(pseudo_a, dtype=torch.float32)
        tens["pseudo_v"] = torch.as_tensor(pseudo_v, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    spe = max(1, -(-n // cfg.batch_size))
    total, warm = cfg.epochs * spe, cfg.warmup_epochs * spe
    g = torch.Generator().manual_seed(seed)
    model.train()
    step = 0
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        run = 0.0
        for s in range(0, n, cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm in ERM needs more than one sample
                continue
            for pg in opt.param_groups:
                pg["lr"] = warmup_cosine(step, total, warm, cfg.lr, cfg.min_lr)
            batch = {k: v[idx] for k, v in tens.items()}
            out = model(batch)
            loss = model.loss(out, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run += float(loss.detach()) * len(idx)
            step += 1
        if log is not None:
            log.append({"epoch": epoch, "loss": run / n})
    model.eval()
    return model


@torch.no_grad()
def predict_ear(model: EAR, audio: np.ndarray, visual: np.ndarray, batch_size: int = 256
                ) -> dict[str, np.ndarray]:
    """Binary ``pred_a``/``pred_v`` ``(N, C, T)`` plus segment and video probabilities."""
    model.eval()
    keys = ("pred_a", "pred_v", "prob_a", "prob_v", "video")
    acc: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for s in range(0, audio.shape[0], batch_size):
        batch = {"audio": torch.as_tensor(audio[s:s + batch_size], dtype=torch.float32),
                 "visual": torch.as_tensor(visual[s:s + batch_size], dtype=torch.float32)}
        out = model(batch)
        pa, pv = model.parse(out)
        acc["pred_a"].append(pa)
        acc["pred_v"].append(pv)
        acc["prob_a"].append(out["prob_a"].transpose(1, 2).numpy())
        acc["prob_v"].append(out["prob_v"].transpose(1, 2).numpy())
        acc["video"].append(out["video"].numpy())
    return {k: np.concatenate(v) for k, v in acc.items()}


def avvp_metrics(pred_a: np.ndarray, pred_v: np.ndarray, gt_a: np.ndarray, gt_v: np.ndarray) -> dict[str, float]:
    """AVVP F-scores from the shared evaluator (``models.avvp_metrics``)."""
    from models.avvp_metrics import avvp_scores

    return {k: float(v) for k, v in avvp_scores(pred_a, pred_v, gt_a, gt_v).items()}


def dense_arrays(videos: list[tuple[Any, np.ndarray, np.ndarray]], classes: list[str], recipe: Any,
                 t_max: int) -> dict[str, np.ndarray]:
    """Stage-1 arrays from UnAV-style data: ``videos`` = ``[(VideoAnnotation, audio (T, Da),
    visual (T, Dv)), ...]`` (CLAP / CLIP features on the recipe's steps), AV segments in seconds.

    Segments map to feature steps with the repository convention (``models.data``): step
    ``x = (seconds - recipe.center_offset_s) / recipe.step_s``, a step is covered when its centre lies
    inside the segment. Sequences are cut or zero-padded to ``t_max`` with a mask.
    """
    from models.data import render_segments

    cidx = {c: i for i, c in enumerate(classes)}
    n = len(videos)
    da, dv = videos[0][1].shape[1], videos[0][2].shape[1]
    out = {"audio": np.zeros((n, t_max, da), np.float32), "visual": np.zeros((n, t_max, dv), np.float32),
           "av_labels": np.zeros((n, t_max, len(classes)), np.float32), "mask": np.zeros((n, t_max), bool)}
    for i, (ann, fa, fv) in enumerate(videos):
        t = min(len(fa), len(fv), t_max)
        out["audio"][i, :t], out["visual"][i, :t] = fa[:t], fv[:t]
        out["mask"][i, :t] = True
        rows = [((sg.start - recipe.center_offset_s) / recipe.step_s, (sg.end - recipe.center_offset_s) / recipe.step_s,
                 cidx[sg.label]) for sg in ann.segments]
        out["av_labels"][i, :t] = render_segments(np.array(rows, np.float64).reshape(-1, 3), t, len(classes))
    return out


# ----------------------------------------------------------------------------- planted data
def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _plant_events(rng: np.random.Generator, n: int, c: int, t: int, max_events: int, p_av: float,
                  min_len: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random events per video: AV (both), audio-only or visual-only, contiguous spans.

    Returns labels ``(N, C)`` and ``gt_a``, ``gt_v`` ``(N, C, T)``.
    """
    labels = np.zeros((n, c), np.float32)
    gt_a = np.zeros((n, c, t), np.uint8)
    gt_v = np.zeros((n, c, t), np.uint8)
    for i in range(n):
        k = rng.integers(1, max_events + 1)
        for cls in rng.choice(c, size=k, replace=False):
            labels[i, cls] = 1
            kind = rng.choice(3, p=[p_av, (1 - p_av) / 2, (1 - p_av) / 2])
            for arr, on in ((gt_a, kind in (0, 1)), (gt_v, kind in (0, 2))):
                if on:
                    ln = rng.integers(min_len, t + 1)
                    s = rng.integers(0, t - ln + 1)
                    arr[i, cls, s:s + ln] = 1
            if kind == 0 and not (gt_a[i, cls] & gt_v[i, cls]).any():  # an AV event must overlap
                s = int(np.flatnonzero(gt_a[i, cls])[0])
                gt_v[i, cls, s] = 1
    return labels, gt_a, gt_v


def embed_segments(gt: np.ndarray, protos: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Encoder-space segment features ``(N, T, D)`` = sum of active class prototypes + noise."""
    feats = np.einsum("nct,cd->ntd", gt.astype(np.float32), protos)
    return (feats + noise * rng.standard_normal(feats.shape)).astype(np.float32)


def make_demo_data(seed: int = 0, n_dense: int = 160, c_dense: int = 12, t_dense: int = 20,
                   n_train: int = 240, n_test: int = 160, c: int = 6, t: int = 10,
                   gen_dim: int = 32, da: int = 16, dv: int = 24, dense_noise: float = 0.05,
                   gen_noise: float = 0.05, feat_noise: float = 1.0,
                   target: tuple[np.ndarray, ...] | None = None) -> dict[str, Any]:
    """Planted three-stage benchmark.

    - dense (stage 1): ``c_dense`` classes in a 'CLAP/CLIP' space of ``gen_dim`` dims; only the AV
      events are labelled, audio-only / visual-only events are present in the features but
      unlabelled (label migration has to recover them);
    - target (stages 2-3): ``c`` *other* classes; stage-3 features (``da``/``dv`` dims, prototypes
      plus heavy noise) and generator-space features (the target classes' text embeddings plus
      noise ``gen_noise``, which only temporal context averages away).

    ``target`` may pass ``(audio, visual, labels, gt_a, gt_v)`` from another planted generator
    (``models.synthetic.make_planted_avvp``); its train/test split is then the first ``n_train``
    videos / the rest.
    """
    rng = np.random.default_rng(seed)
    # ---- dense pre-training data
    ta_d, tv_d = _unit(rng, c_dense, gen_dim), _unit(rng, c_dense, gen_dim)
    _, da_gt, dv_gt = _plant_events(rng, n_dense, c_dense, t_dense, max_events=3, p_av=0.5)
    dense = {"audio": embed_segments(da_gt, ta_d, dense_noise, rng),
             "visual": embed_segments(dv_gt, tv_d, dense_noise, rng),
             "av_labels": (da_gt & dv_gt).transpose(0, 2, 1).astype(np.float32),
             "gt_a": da_gt, "gt_v": dv_gt, "text_a": ta_d.astype(np.float32), "text_v": tv_d.astype(np.float32)}
    # ---- target (LLP-like) data
    if target is None:
        n = n_train + n_test
        labels, gt_a, gt_v = _plant_events(rng, n, c, t, max_events=2, p_av=0.4)
        pa, pv = rng.standard_normal((c, da)), rng.standard_normal((c, dv))
        audio = embed_segments(gt_a, pa, feat_noise, rng)
        visual = embed_segments(gt_v, pv, feat_noise, rng)
    else:
        audio, visual, labels, gt_a, gt_v = (np.asarray(x) for x in target)
        n, c, t = gt_a.shape
    ta, tv = _unit(rng, c, gen_dim), _unit(rng, c, gen_dim)
    gen_a = embed_segments(gt_a, ta, gen_noise, rng)
    gen_v = embed_segments(gt_v, tv, gen_noise, rng)
    split = {"train": slice(0, n_train), "test": slice(n_train, n)}
    out: dict[str, Any] = {"dense": dense}
    for name, sl in split.items():
        out[name] = {"audio": audio[sl].astype(np.float32), "visual": visual[sl].astype(np.float32),
                     "gen_audio": gen_a[sl], "gen_visual": gen_v[sl], "labels": labels[sl].astype(np.float32),
                     "gt_a": gt_a[sl], "gt_v": gt_v[sl], "text_a": ta.astype(np.float32),
                     "text_v": tv.astype(np.float32),
                     "video_ids": np.array([f"{name}_{i:05d}" for i in range(sl.stop - sl.start)])}
    return out


# ----------------------------------------------------------------------------- driver
# Small configs for the planted benchmark (CPU, seconds). The planted encoder space is isotropic,
# unlike CLIP/CLAP whose features all share a large common direction, so the paper's 0.98 / 0.95
# migration thresholds are replaced by 0.85 there (same-event segments have cos ~0.92, different
# single events ~0).
DEMO_GEN: dict[str, Any] = {"audio_dim": 32, "visual_dim": 32, "epochs": 15, "warmup_epochs": 2, "lr": 3e-3,
                            "min_lr": 1e-4, "batch_size": 40, "tau_audio": 0.85, "tau_visual": 0.85}
DEMO_EAR: dict[str, Any] = {"num_classes": 6, "audio_dim": 16, "visual_dim": 24, "d_model": 32, "n_heads": 2,
                            "d_event": 8, "epochs": 20, "warmup_epochs": 2, "lr": 5e-3, "min_lr": 5e-5,
                            "batch_size": 24}

def run_stages(data: dict[str, Any], gen_cfg: GeneratorConfig, ear_cfg: EARConfig, seed: int = 0,
               migrate: bool = True, shuffle_labels: bool = False,
               generator: PseudoLabelGenerator | None = None) -> dict[str, Any]:
    """Stages 1-3 on ``data`` (as :func:`make_demo_data` returns). ``ear_cfg.use_pseudo=False`` skips
    stages 1-2 (video-level labels only); ``shuffle_labels`` permutes the training videos' labels
    (a control that must score near chance); a given ``generator`` (already pre-trained) skips
    stage 1."""
    train, test = data["train"], data["test"]
    labels = train["labels"]
    if shuffle_labels:
        labels = labels[np.random.default_rng(seed + 1).permutation(labels.shape[0])]
    res: dict[str, Any] = {"logs": {}}
    pa = pv = None
    if ear_cfg.use_pseudo:
        gen = generator
        if gen is None:
            dense = data["dense"]
            torch.manual_seed(seed)
            gen = PseudoLabelGenerator(gen_cfg)
            res["logs"]["stage1"] = []
            pretrain_generator(gen, dense["audio"], dense["visual"], dense["av_labels"], dense["text_a"],
                               dense["text_v"], dense.get("mask"), migrate=migrate, seed=seed,
                               log=res["logs"]["stage1"])
        pa, pv = generate_pseudo_labels(gen, train["gen_audio"], train["gen_visual"], labels,
                                        train["text_a"], train["text_v"])
        res["generator"] = gen
        res["pseudo_a"], res["pseudo_v"] = pa, pv
        if "gt_a" in train:
            thr = gen_cfg.threshold
            res["pseudo_metrics"] = avvp_metrics((pa >= thr).transpose(0, 2, 1).astype(np.uint8),
                                                 (pv >= thr).transpose(0, 2, 1).astype(np.uint8),
                                                 train["gt_a"], train["gt_v"])
    torch.manual_seed(seed)
    model = EAR(ear_cfg)
    res["logs"]["stage3"] = []
    train_ear(model, train["audio"], train["visual"], labels, pa, pv, seed=seed, log=res["logs"]["stage3"])
    pred = predict_ear(model, test["audio"], test["visual"])
    res["model"], res["pred"] = model, pred
    if "gt_a" in test:
        res["metrics"] = avvp_metrics(pred["pred_a"], pred["pred_v"], test["gt_a"], test["gt_v"])
    return res


def write_outputs(out_dir: Path, res: dict[str, Any], test: dict[str, Any], class_names: list[str],
                  extra: dict[str, Any] | None = None) -> None:
    """``predictions.json`` (per video, per modality: events as [start_s, end_s, class, score])
    and ``metrics.json``; each written to a temporary file and renamed."""
    pred = res["pred"]
    vids = [str(v) for v in test.get("video_ids", range(pred["pred_a"].shape[0]))]
    from models.ear import events_from_binary

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
    metrics = {"test": res.get("metrics"), "pseudo_labels_train": res.get("pseudo_metrics")}
    metrics.update(extra or {})
    write_json(out_dir / "metrics.json", metrics)


def _load_npz(path: str | None) -> dict[str, np.ndarray] | None:
    if path is None:
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--demo", action="store_true", help="planted three-stage benchmark (no input files)")
    p.add_argument("--dense", help="stage-1 dense AV data .npz")
    p.add_argument("--train", help="LLP train split .npz")
    p.add_argument("--test", help="LLP test split .npz (with gt_a/gt_v for metrics)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--mode", choices=["pseudo", "video"], default="pseudo",
                   help="stage 3 with generated pseudo-labels (default) or video-level labels only")
    p.add_argument("--no-migration", action="store_true", help="stage 1 without label migration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gen", default="{}", help="JSON overrides for GeneratorConfig")
    p.add_argument("--ear", default="{}", help="JSON overrides for EARConfig")
    a = p.parse_args(argv)
    if a.demo:
        data = make_demo_data(seed=a.seed)
        gen_over, ear_over = dict(DEMO_GEN), dict(DEMO_EAR)
    else:
        if not (a.dense or a.mode == "video") or not a.train or not a.test:
            p.error("give --demo, or --train and --test (and --dense unless --mode video)")
        data = {"dense": _load_npz(a.dense), "train": _load_npz(a.train), "test": _load_npz(a.test)}
        tr = data["train"]
        gen_over = {"audio_dim": int(tr["gen_audio"].shape[-1]), "visual_dim": int(tr["gen_visual"].shape[-1])} \
            if "gen_audio" in tr else {}
        ear_over = {"num_classes": int(tr["labels"].shape[1]), "audio_dim": int(tr["audio"].shape[-1]),
                    "visual_dim": int(tr["visual"].shape[-1]), "t_max": int(tr["audio"].shape[1])}
    gen_over.update(json.loads(a.gen))
    ear_over.update(json.loads(a.ear))
    ear_over["use_pseudo"] = a.mode == "pseudo"
    gen_cfg, ear_cfg = GeneratorConfig(**gen_over), EARConfig(**ear_over)
    t0 = time.time()
    res = run_stages(data, gen_cfg, ear_cfg, seed=a.seed, migrate=not a.no_migration)
    test = data["test"]
    names = [str(x) for x in test["class_names"]] if "class_names" in test else \
        [f"class_{i}" for i in range(ear_cfg.num_classes)]
    out = Path(a.out)
    write_outputs(out, res, test, names, extra={
        "seconds": round(time.time() - t0, 2), "mode": a.mode, "migration": not a.no_migration,
        "generator_config": dataclasses.asdict(gen_cfg),
        "ear_config": dataclasses.asdict(ear_cfg), "logs": res["logs"]})
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".tmp")
    os.close(fd)
    torch.save(res["model"].state_dict(), tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out / "ear.pt")
    print(json.dumps({"test": res.get("metrics"), "pseudo_labels_train": res.get("pseudo_metrics")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
