"""EAR on the planted AVVP benchmark under the evaluation protocol of HAN/VALOR vs. this repository's earlier one.

Why: issue #16 found that our LLP numbers were not comparable with the paper's tables because of the protocol,
not the modules. This script measures what the protocol changes do on the planted benchmark
(``models.avvp.planted.make_demo_data``: 240 train / 80 validation / 160 test videos, six classes), with the
planted presets (``DEMO_GEN``, ``DEMO_EAR``), for each training-label mode (generated pseudo-labels,
video-level labels only, shuffled labels: the control) and three seeds:

- ``earlier``: each modality's segments gated by its own video probability, the last epoch, the mixup loss
  weighted by the mixed certainty (the behaviour before issue #16);
- ``gating only``: the same trained model, segments gated by the overall video prediction (HAN/VALOR);
- ``corrected``: the current defaults: overall gating, the epoch with the best validation segment-level
  Type@AV, plain BCE mixup loss (S-27 as the paper states it).

It also prints the pseudo-labels' own scores on the validation and test splits (the paper's Table III).
One process, one thread; about 2-4 minutes on one core. Run: ``python bench/avvp_protocol_bench.py``
(``--seeds 0 1 2``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.avvp.ear import EARConfig  # noqa: E402
from models.avvp.planted import DEMO_EAR, DEMO_GEN, make_demo_data  # noqa: E402
from models.avvp.pseudo_labels import GeneratorConfig  # noqa: E402
from models.avvp.train import (  # noqa: E402
    avvp_metrics,
    predict_ear,
    pretrain_stage1,
    pseudo_label_scores,
    pseudo_stage2,
    train_stage3,
)
from models.run.controls import shuffled_labels  # noqa: E402

EARLIER = {"gating": "modality", "select": "last", "mixup_certainty_weight": True}
CORRECTED = {"gating": "video", "select": "best_val", "mixup_certainty_weight": False}
MODES = ("pseudo", "video", "shuffled")
KEYS = (("seg_type", "Type@AV seg"), ("seg_event", "Event@AV seg"), ("evt_type", "Type@AV evt"),
        ("evt_event", "Event@AV evt"))


def run_seed(seed: int) -> tuple[dict[tuple[str, str], dict[str, float]], dict[str, dict[str, float]]]:
    """{(mode, protocol): test scores}, {split: pseudo-label scores} for one seed."""
    data = make_demo_data(seed=seed)
    train, val, test = data["train"], data["val"], data["test"]
    gen = pretrain_stage1(data["dense"], GeneratorConfig(**DEMO_GEN), seed)
    table3 = pseudo_label_scores(gen, {"val": val, "test": test})
    out = {}
    for mode in MODES:
        labels = shuffled_labels(train["labels"], seed) if mode == "shuffled" else train["labels"]
        pa = pv = None
        if mode != "video":
            pa, pv, _ = pseudo_stage2(gen, train, labels)
        use_pseudo = mode != "video"
        model, _, out[(mode, "earlier")] = train_stage3(
            train, test, EARConfig(**{**DEMO_EAR, **EARLIER, "use_pseudo": use_pseudo}), labels, pa, pv, seed)
        model.cfg.gating = "video"  # inference only: the same weights, HAN's gating
        pred = predict_ear(model, test["audio"], test["visual"])
        out[(mode, "gating only")] = avvp_metrics(pred["pred_a"], pred["pred_v"], test["gt_a"], test["gt_v"])
        _, _, out[(mode, "corrected")] = train_stage3(
            train, test, EARConfig(**{**DEMO_EAR, **CORRECTED, "use_pseudo": use_pseudo}), labels, pa, pv, seed,
            val=val)
    return out, table3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs = [run_seed(s) for s in a.seeds]
    seconds = time.perf_counter() - t0

    def ms(values: list[float]) -> str:
        return f"{100 * np.mean(values):5.1f} ± {100 * np.std(values):4.1f}"

    print(f"planted AVVP benchmark, seeds {a.seeds}, test split (160 videos), F-score % mean ± std over seeds")
    print("| training labels | protocol | " + " | ".join(k[1] for k in KEYS) + " |")
    print("|---|---|" + "---|" * len(KEYS))
    for mode in MODES:
        for proto in ("earlier", "gating only", "corrected"):
            vals = [ms([r[(mode, proto)][k] for r, _ in runs]) for k, _ in KEYS]
            print(f"| {mode} | {proto} | " + " | ".join(vals) + " |")
    print("\npseudo-labels (stage 2, each split's own video labels) vs segment ground truth, % mean ± std")
    cols = ("seg_a", "seg_v", "seg_av", "seg_type", "seg_event", "evt_a", "evt_v", "evt_av", "evt_type", "evt_event")
    print("| split | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for split in ("val", "test"):
        print(f"| {split} | " + " | ".join(ms([t[split][c] for _, t in runs]) for c in cols) + " |")
    print(f"\n{seconds:.0f} s for {len(a.seeds)} seeds (1 thread)")


if __name__ == "__main__":
    main()
