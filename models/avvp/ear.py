"""EAR's AVVP model (EAR paper §III-C, Eq. 10-16, S-22..S-28): AMDF + ERM + losses.

The paper: *EAR: Enhancing Uni-Modal Representations for Weakly Supervised Audio-Visual Video Parsing*
(docs/recipes.md, "Papers").

Pipeline for one batch (audio ``(B, T, Da)``, visual ``(B, T, Dv)``, mask ``(B, T)``):

1. Projection to ``d`` (Linear + ReLU), giving the temporal-*unaware* static features ``F_a, F_v``.
2. Uni-modal temporal modelling (Eq. 10): one Transformer block (MSA + FFN) per modality gives the
   temporal-aware dynamic features ``F~_a, F~_v``.
3. AMDF, asymmetric audio/visual-driven fusion (Eq. 11-12): the dynamic audio features query the
   *static* visual features (and vice versa) with multi-head cross-attention + FFN, residual on the
   query: ``H_a = F~_a + MCA(F~_a, F_v)``, then ``H_a <- H_a + FFN(H_a)``.
4. Cross-modal aggregation and event decoding (Eq. 13-14): ``E_a = Dec_a([H_a; H_v])``,
   ``E_v = Dec_v([H_v; H_a])``: a Linear to ``C * d_e`` reshaped into one node per class,
   ``(B, T, C, d_e)``.
5. ERM, multi-event relationship modelling (Eq. 15), ``L`` layers (3 by default) alternating
   ``U`` (uni-modal: nodes of one modality exchange information through a learned ``C x C``
   adjacency, one per modality) and ``M`` (multi-modal: all ``2C`` nodes through a learned
   ``2C x 2C`` adjacency). Each module = 1x1 convolution over the node features, adjacency product,
   BatchNorm, LeakyReLU (the paper's list), used with a residual connection.
6. A per-class linear classifier on the nodes gives segment probabilities ``P_a, P_v``
   ``(B, T, C)``; HAN's attentive MMIL pooling (temporal softmax x modality softmax, Tian 2020)
   gives the video-level probability ``P`` and per-modality video-level ``P_a^vid, P_v^vid``.

Losses (Eq. 16): ``L = L_seg_a + L_seg_v + w_mix (L_mix_a + L_mix_v) + w_vid L_video``.

Where the paper's formulas were lost in its text conversion, the choice is a config field, documented
where it is computed: the segment loss's class balance (:meth:`EAR.set_class_weights`), the feature
mixup (:meth:`EAR._mixup_loss`), the decoders' input (:meth:`EAR.encode`), the adjacency start
(:class:`_GraphUnit`) and the inference gate (:meth:`EAR.parse`).

Values the paper names but whose numbers were lost in the text conversion are config fields;
:data:`LOST_VALUES` names the source of each default (written into ``metrics.json``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.localizers.base import Detection, ModelConfig
from models.localizers.registry import register_localizer

GATINGS = ("video", "modality")
SELECTIONS = ("best_val", "last")

# Where each default comes from when the EAR paper names a value that its text lost.
LOST_VALUES: dict[str, str] = {
    "pseudo_threshold": "GeneratorConfig.threshold = 0.5: Eq. 9's theta, value lost; 0.5 is our choice, the "
                        "probability threshold HAN and VALOR apply at inference (main_avvp.py eval, >= 0.5)",
    "class_balance_beta": "EARConfig.class_balance_beta = 0.5: S-24's 'hyper-parameter', value lost (the paper "
                          "follows UWAV, arXiv 2505.09615, whose code we could not read); 0.5 is our choice",
    "mixup_alpha": "EARConfig.mixup_alpha = 1.0: S-26's Beta-distribution hyper-parameter, value lost (UWAV); "
                   "1.0 (uniform lambda) is our choice",
}


@dataclass
class EARConfig(ModelConfig):
    """Defaults follow the paper (ERM 3 layers, AdamW, 80 epochs with 10 warm-up, lr 1e-4 -> 5e-6)."""

    num_classes: int = 25
    audio_dim: int = 128
    visual_dim: int = 2048 + 512
    t_max: int = 10
    input_norm: str = "none"  # the LLP features as released (models.avvp.train fits no input statistics)
    d_model: int = 512
    n_heads: int = 4
    d_event: int = 64
    erm_layers: int = 3
    dropout: float = 0.1
    leaky_slope: float = 0.2
    class_balance_beta: float = 0.5  # LOST_VALUES["class_balance_beta"]
    mixup_alpha: float = 1.0  # LOST_VALUES["mixup_alpha"]
    mixup_certainty_weight: bool = False  # not in the paper (S-27): an option, off by default
    gating: str = "video"  # "video" (HAN/VALOR) or "modality" (the earlier behaviour)
    select: str = "best_val"  # "best_val": the epoch with the best validation seg_type (HAN/VALOR); "last"
    w_mix: float = 1.0
    w_video: float = 1.0
    use_pseudo: bool = True
    threshold: float = 0.5
    lr: float = 1e-4
    min_lr: float = 5e-6
    weight_decay: float = 1e-2
    epochs: int = 80
    warmup_epochs: int = 10
    batch_size: int = 64


class _FusionUnit(nn.Module):
    """MCA + FFN with residuals (one asymmetric fusion unit, Eq. 11/12)."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.n1 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * d, d))
        self.n2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        a, _ = self.attn(q, kv, kv, key_padding_mask=pad, need_weights=False)
        h = self.n1(q + self.drop(a))
        return self.n2(h + self.drop(self.ffn(h)))


class _GraphUnit(nn.Module):
    """1x1 conv -> learned adjacency -> BatchNorm -> LeakyReLU over event nodes (ERM's U / M).

    Adjacencies are row-softmax of learned logits initialised with a +2 diagonal: they start close to
    self-loops, as an untrained GCN should not blur classes.
    """

    def __init__(self, n_nodes: int, d: int, slope: float, blocks: int = 1) -> None:
        super().__init__()
        self.blocks = blocks
        size = n_nodes // blocks
        logits = torch.zeros(blocks, size, size) + 2.0 * torch.eye(size)
        self.adj_logits = nn.Parameter(logits)
        self.conv = nn.Conv1d(d, d, kernel_size=1)
        self.bn = nn.BatchNorm1d(d)
        self.slope = slope

    def adjacency(self) -> torch.Tensor:
        """Dense ``(n_nodes, n_nodes)`` matrix (block-diagonal for the uni-modal unit)."""
        return torch.block_diag(*torch.softmax(self.adj_logits, dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, nodes, d)
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)
        h = torch.einsum("ij,njd->nid", self.adjacency(), h)
        h = self.bn(h.reshape(-1, h.shape[-1])).reshape(h.shape)
        return F.leaky_relu(h, self.slope)


@register_localizer("ear", config=EARConfig, supervision=("weak",), section="avvp")  # trained by avvp: stages
class EAR(nn.Module):
    """AVVP model with AMDF + ERM; see the module docstring for the equations."""

    supervision = "weak"

    def __init__(self, cfg: EARConfig) -> None:
        super().__init__()
        if cfg.gating not in GATINGS:
            raise ValueError(f"EARConfig.gating={cfg.gating!r}; one of {GATINGS}")
        if cfg.select not in SELECTIONS:
            raise ValueError(f"EARConfig.select={cfg.select!r}; one of {SELECTIONS}")
        self.cfg = cfg
        d, c, de = cfg.d_model, cfg.num_classes, cfg.d_event
        self.proj_a = nn.Sequential(nn.Linear(cfg.audio_dim, d), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.proj_v = nn.Sequential(nn.Linear(cfg.visual_dim, d), nn.ReLU(), nn.Dropout(cfg.dropout))
        mk = lambda: nn.TransformerEncoderLayer(  # noqa: E731
            d, cfg.n_heads, 2 * d, cfg.dropout, batch_first=True)
        self.temporal_a, self.temporal_v = mk(), mk()
        self.fuse_a = _FusionUnit(d, cfg.n_heads, cfg.dropout)
        self.fuse_v = _FusionUnit(d, cfg.n_heads, cfg.dropout)
        self.dec_a = nn.Linear(2 * d, c * de)
        self.dec_v = nn.Linear(2 * d, c * de)
        self.uni = nn.ModuleList(_GraphUnit(2 * c, de, cfg.leaky_slope, blocks=2) for _ in range(cfg.erm_layers))
        self.multi = nn.ModuleList(_GraphUnit(2 * c, de, cfg.leaky_slope) for _ in range(cfg.erm_layers))
        bound = 1.0 / math.sqrt(de)
        self.cls_w = nn.Parameter(torch.empty(c, de).uniform_(-bound, bound))
        self.cls_b = nn.Parameter(torch.zeros(c))
        self.att_t = nn.Parameter(torch.empty(c, de).uniform_(-bound, bound))
        self.att_m = nn.Parameter(torch.empty(c, de).uniform_(-bound, bound))
        self.register_buffer("class_weight_a", torch.ones(c))
        self.register_buffer("class_weight_v", torch.ones(c))

    # ---------------------------------------------------------------- forward
    def _mask(self, batch: dict[str, Any]) -> torch.Tensor:
        m = batch.get("mask")
        if m is None:
            a = batch["audio"]
            return torch.ones(a.shape[:2], dtype=torch.bool, device=a.device)
        return m.bool()

    def encode(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """ERM node features ``(B, T, 2C, d_e)`` (audio nodes first) and the mask.

        The decoders read ``[H_a; H_v]`` (Eq. 13-14 only say "cross-modal aggregation"): concatenation keeps
        both modalities available while each branch has its own decoder (asymmetric, soft constraint).
        """
        mask = self._mask(batch)
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every video in the batch needs at least one valid (unmasked) step")
        pad = ~mask
        fa, fv = self.proj_a(batch["audio"].float()), self.proj_v(batch["visual"].float())
        da = self.temporal_a(fa, src_key_padding_mask=pad)
        dv = self.temporal_v(fv, src_key_padding_mask=pad)
        ha = self.fuse_a(da, fv, pad)
        hv = self.fuse_v(dv, fa, pad)
        b, t, _ = ha.shape
        c, de = self.cfg.num_classes, self.cfg.d_event
        ea = self.dec_a(torch.cat([ha, hv], -1)).view(b, t, c, de)
        ev = self.dec_v(torch.cat([hv, ha], -1)).view(b, t, c, de)
        nodes = torch.cat([ea, ev], dim=2)
        valid = nodes[mask]  # ERM (and its BatchNorm) only sees valid steps
        for u, m in zip(self.uni, self.multi, strict=True):
            valid = valid + u(valid)
            valid = valid + m(valid)
        out = torch.zeros_like(nodes)
        out[mask] = valid
        return out, mask

    def classify(self, nodes: torch.Tensor) -> torch.Tensor:
        """Per-class linear classifier on nodes ``(..., C, d_e)`` -> logits ``(..., C)``."""
        return (nodes * self.cls_w).sum(-1) + self.cls_b

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        nodes, mask = self.encode(batch)
        c = self.cfg.num_classes
        b, t = mask.shape
        x = nodes.view(b, t, 2, c, -1)  # modality axis: 0 audio, 1 visual
        prob = torch.sigmoid(self.classify(x))  # (B, T, 2, C)
        att_t = (x * self.att_t).sum(-1).masked_fill(~mask[:, :, None, None], float("-inf"))
        att_t = torch.softmax(att_t, dim=1)
        att_m = torch.softmax((x * self.att_m).sum(-1), dim=2)
        video = (prob * att_t * att_m).sum(dim=(1, 2)).clamp(1e-6, 1 - 1e-6)
        mod_video = (prob * att_t).sum(dim=1).clamp(1e-6, 1 - 1e-6)  # (B, 2, C)
        return {"nodes": nodes, "mask": mask, "prob_a": prob[:, :, 0], "prob_v": prob[:, :, 1],
                "video": video, "video_a": mod_video[:, 0], "video_v": mod_video[:, 1]}

    # ---------------------------------------------------------------- losses
    def set_class_weights(self, pseudo_a: np.ndarray, pseudo_v: np.ndarray) -> None:
        """Class-balance weights from the training-set pseudo-labels ``(N, T, C)``.

        The segment loss (S-22..S-24, "class-balanced supervision with uncertainty") is BCE against the soft
        pseudo-label (its value is the generator's confidence, so uncertain positives pull less); the
        positive term of class ``c`` is weighted by ``w_c = (N / max(n_c, 1)) ** beta`` normalised to mean 1
        over classes, with ``N`` the number of training videos and ``n_c`` the number of training videos
        whose pseudo-labels contain ``c`` in that modality (``beta = class_balance_beta = 0.5``; the paper
        names N and a hyper-parameter, which is what this inverse-frequency form needs). Rare classes get
        more weight.
        """
        for arr, buf in ((pseudo_a, self.class_weight_a), (pseudo_v, self.class_weight_v)):
            n = arr.shape[0]
            n_c = (np.asarray(arr) > 0).any(axis=1).sum(axis=0).astype(np.float64)
            w = (n / np.maximum(n_c, 1.0)) ** self.cfg.class_balance_beta
            buf.copy_(torch.as_tensor(w / w.mean(), dtype=torch.float32))

    @staticmethod
    def _bce(p: torch.Tensor, y: torch.Tensor, pos_w: torch.Tensor | float = 1.0) -> torch.Tensor:
        p = p.clamp(1e-6, 1 - 1e-6)
        return -(pos_w * y * torch.log(p) + (1 - y) * torch.log(1 - p))

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
        """Eq. 16, ``L = L_seg_a + L_seg_v + w_mix (L_mix_a + L_mix_v) + w_vid L_video``; the video-level loss
        (S-28) is BCE between the MMIL video probability and the video-level label."""
        cfg = self.cfg
        labels = batch["labels"].float()
        terms: dict[str, torch.Tensor] = {}
        terms["video"] = F.binary_cross_entropy(out["video"], labels)
        total = cfg.w_video * terms["video"]
        if cfg.use_pseudo:
            mask = out["mask"]
            b, t = mask.shape
            c = cfg.num_classes
            nodes = out["nodes"].view(b, t, 2, c, -1)[mask]  # (Nv, 2, C, de)
            for i, (key, w) in enumerate((("a", self.class_weight_a), ("v", self.class_weight_v))):
                y = batch[f"pseudo_{key}"].float()[mask]
                p = out[f"prob_{key}"][mask]
                terms[f"seg_{key}"] = self._bce(p, y, w).mean()
                terms[f"mix_{key}"] = self._mixup_loss(nodes[:, i], y)
                total = total + terms[f"seg_{key}"] + cfg.w_mix * terms[f"mix_{key}"]
        out["loss_terms"] = {k: float(v.detach()) for k, v in terms.items()}
        return total

    def _mixup_loss(self, nodes: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Uncertainty-weighted feature mixup on segment node features ``(Nv, C, d_e)`` (S-25..S-27).

        Pairs of valid segments (a random permutation within the batch), ``lam ~ Beta(alpha, alpha)``
        (``alpha = mixup_alpha = 1``), mixing the ERM node features and the (soft, hence
        uncertainty-carrying) pseudo-labels; BCE of the mixed prediction against the mixed label, as S-27
        states. An extra per-element certainty weight ``u = lam u_i + (1 - lam) u_j`` with
        ``u = max(y, 1 - y)`` is *not* in the paper; it is the option ``mixup_certainty_weight`` (off by
        default).
        """
        n = nodes.shape[0]
        if n < 2 or not self.training:
            return nodes.sum() * 0.0
        perm = torch.randperm(n, device=nodes.device)
        lam = torch.distributions.Beta(self.cfg.mixup_alpha, self.cfg.mixup_alpha).sample((n, 1))
        lam = lam.to(nodes.device)
        x = lam[..., None] * nodes + (1 - lam[..., None]) * nodes[perm]
        ym = lam * y + (1 - lam) * y[perm]
        p = torch.sigmoid(self.classify(x))
        loss = self._bce(p, ym)
        if self.cfg.mixup_certainty_weight:  # not in the paper (see above)
            u = torch.maximum(y, 1 - y)
            loss = (lam * u + (1 - lam) * u[perm]) * loss
        return loss.mean()

    # ---------------------------------------------------------------- inference
    def parse(self, out: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Binary segment predictions ``(B, C, T)`` for audio and visual, gated by the video-level prediction.

        As HAN and VALOR (``YapengTian/AVVP-ECCV20`` ``main_avvp.py`` ``eval``; ``Franklin905/VALOR``
        ``main_avvp.py`` ``eval``), segment predictions of *both* modalities are gated by the overall
        video-level prediction, ``pred_m = (P_m >= thr) & (P >= thr)``; AV = audio AND visual
        (``gating="video"``). ``gating="modality"`` gates each modality by its own video-level probability
        ``P_m^vid`` instead (this repository's earlier behaviour, kept to measure the change).
        """
        thr = self.cfg.threshold
        m = out["mask"][:, :, None]
        if self.cfg.gating == "video":
            gate_a = gate_v = out["video"][:, None, :] >= thr
        else:
            gate_a, gate_v = out["video_a"][:, None, :] >= thr, out["video_v"][:, None, :] >= thr
        pa = (out["prob_a"] >= thr) & gate_a & m
        pv = (out["prob_v"] >= thr) & gate_v & m
        return (pa.transpose(1, 2).cpu().numpy().astype(np.uint8),
                pv.transpose(1, 2).cpu().numpy().astype(np.uint8))

    def detect(self, out: dict[str, Any], batch: dict[str, Any]) -> list[list[Detection]]:
        """Audio-visual events (audio AND visual) as ``(start_step, end_step, class, score)``
        (events of the whole-step runs, end exclusive)."""
        pa, pv = self.parse(out)
        av = pa & pv
        score = (out["prob_a"] * out["prob_v"]).sqrt().transpose(1, 2).detach().cpu().numpy()
        # a run of whole steps a..b is the segment [a - 0.5, b + 0.5) in the repository's
        # feature-step convention (models.data.steps), i.e. seconds [a, b + 1) with LLP's 1 s steps
        return [[(s - 0.5, e - 0.5, c, sc) for s, e, c, sc in events_from_binary(av[i], score[i])]
                for i in range(av.shape[0])]


def events_from_binary(pred: np.ndarray, score: np.ndarray) -> list[Detection]:
    """Merge consecutive positive steps per class of ``(C, T)``; score = mean probability inside."""
    dets: list[Detection] = []
    for c in range(pred.shape[0]):
        row = np.concatenate([[0], pred[c].astype(np.int8), [0]])
        d = np.diff(row)
        for s, e in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True):
            dets.append((float(s), float(e), int(c), float(score[c, s:e].mean())))
    return dets


def warmup_cosine(step: int, total: int, warmup: int, peak: float, floor: float) -> float:
    """Learning rate at ``step``: linear warm-up to ``peak``, then cosine annealing to ``floor``."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, total - warmup)
    prog = min(1.0, (step - warmup) / span)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * prog))


def fit_minibatches(model: nn.Module, n: int, cfg: Any, batch_loss: Callable[[torch.Tensor], torch.Tensor],
                    seed: int = 0, log: list[dict[str, Any]] | None = None, min_batch: int = 1,
                    on_epoch: Callable[[int], dict[str, Any]] | None = None) -> nn.Module:
    """The training loop EAR's stage 1 and stage 3 share: AdamW, shuffled minibatches of ``n`` items,
    learning rate from :func:`warmup_cosine` updated every optimizer step (warm-up over
    ``cfg.warmup_epochs`` epochs of steps). ``cfg`` carries ``lr, min_lr, weight_decay, epochs,
    warmup_epochs, batch_size``; ``batch_loss(indices)`` returns the minibatch loss. Batches smaller than
    ``min_batch`` are skipped (BatchNorm needs two samples). Appends ``{"epoch", "loss"}`` to ``log``
    (epochs numbered from 1); ``on_epoch(epoch)`` (same numbering; e.g. a validation pass; it may switch
    the model to eval mode) runs after each epoch and its returned dict is merged into that epoch's log entry."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, -(-n // cfg.batch_size))
    total, warm = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    g = torch.Generator().manual_seed(seed)
    model.train()
    step = 0
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        run = 0.0
        for s in range(0, n, cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            if len(idx) < min_batch:
                continue
            for pg in opt.param_groups:
                pg["lr"] = warmup_cosine(step, total, warm, cfg.lr, cfg.min_lr)
            loss = batch_loss(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run += float(loss.detach()) * len(idx)
            step += 1
        entry: dict[str, Any] = {"epoch": epoch + 1, "loss": run / n}  # 1-based, as models.run.train's log.jsonl
        if on_epoch is not None:
            entry.update(on_epoch(epoch + 1))
            model.train()
        if log is not None:
            log.append(entry)
    model.eval()
    return model
