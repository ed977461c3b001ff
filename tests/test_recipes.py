"""Issue #15's training recipes and full-length evaluation: optimizer groups and schedule, random crop,
checkpoint selection (validation or a seeded train holdout, never test), EMA weights through resume,
DAVE's UnAV attention convention, CLASP's fp32 heads, and evaluation past ``t_max``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from extractors.recipes import get_recipe
from models.data.annotations import Segment, VideoAnnotation
from models.data.dataset import FeatureDataset
from models.data.store import FeatureStore
from models.data.synthetic import PlantedConfig, make_planted
from models.localizers.ccnet import CCNet, CCNetConfig
from models.localizers.clasp import CLASP, CLASPConfig
from models.localizers.dave import MHCABlock
from models.localizers.pooling import detect_from_probs
from models.run.evaluate import compute_dataset_metrics
from models.run.runtime import VideoSubset, load_checkpoint
from models.run.selection import holdout_split
from models.run.train import train

RECIPE = get_recipe("unav100")
T_MAX = 32
TINY = dict(d_model=16, head_dim=16, n_heads=2, tdm_dim=4, dropout=0.0, pre_nms_topk=100, max_seg_num=30)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    cfg = PlantedConfig(num_classes=3, n_videos=30, t_len=(20, 32), audio_dim=8, visual_dim=12, event_len=(3, 8),
                        seed=5)
    store, ann, classes = make_planted(cfg, tmp_path_factory.mktemp("recipes"), RECIPE)
    return {s: FeatureDataset(store, ann, classes, RECIPE, subset=s, t_max=T_MAX) for s in ("train", "validation", "test")}


def test_param_groups_and_warmup_cosine():
    model = CCNet(CCNetConfig(num_classes=3, audio_dim=8, visual_dim=8, t_max=32, warmup_epochs=1, **TINY))
    opt, sched = model.configure_optimizers(1e-3, epochs=4, steps_per_epoch=10)
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == pytest.approx(1e-4) and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    ids = {id(p) for p in no_decay["params"]}
    assert id(model.embed_a.norms[0].weight) in ids and id(model.heads.scales[0].scale) in ids
    assert id(model.embed_a.layers[0].conv.weight) not in ids
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # one warm-up epoch (10 steps) linear to the peak, then cosine to ~0 at the end of the run
    assert lrs[:10] == pytest.approx([1e-3 * (k + 1) / 10 for k in range(10)])
    assert lrs[10] == pytest.approx(1e-3)
    assert lrs[25] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 15 / 30)))
    assert lrs[-1] < 1e-5


def test_random_crop_windows_segments_and_labels(planted):
    ds = planted["train"]
    crop = FeatureDataset(ds.store, ds.annotations, ds.classes, RECIPE, subset="train", t_max=T_MAX)
    crop.crop_ratio, crop.trunc_thresh = (0.9, 1.0), 0.5
    np.random.seed(0)
    for i in range(len(ds)):
        vid = ds.video_ids[i]
        a16, _ = ds.store.read(vid)
        n = len(a16)
        item = crop[i]
        t = int(item["mask"].sum())
        assert round(0.9 * n) <= t <= n
        starts = [s for s in range(n - t + 1) if np.array_equal(item["audio"][:t].numpy(), a16[s:s + t].astype(np.float32))]
        assert starts, "the window must be a contiguous slice of the video"
        st = starts[0]
        full = ds.segments_in_steps(vid)
        for seg in item["segments"].numpy():
            orig = full[(full[:, 2] == seg[2])]
            assert np.any(np.isclose(np.maximum(orig[:, 0] - st, -0.5), seg[0])), (seg, orig, st)
            assert -0.5 <= seg[0] < seg[1] <= t - 0.5
        labels = np.zeros(len(ds.classes), np.float32)
        labels[item["segments"][:, 2].long().numpy()] = 1
        assert np.array_equal(item["labels"].numpy(), labels)
    # a video longer than t_max: random t_max windows, not always the first one
    crop.t_max = 16
    np.random.seed(1)
    starts = set()
    for _ in range(12):
        item = crop[0]
        assert int(item["mask"].sum()) == 16
        a16, _ = ds.store.read(ds.video_ids[0])
        starts |= {s for s in range(len(a16) - 15) if np.array_equal(item["audio"].numpy(), a16[s:s + 16].astype(np.float32))}
    assert len(starts) > 1


def test_selection_on_seeded_train_holdout_and_never_on_test(planted, tmp_path):
    ds = planted["train"]
    fit, held = holdout_split(ds, 0.25, seed=4)
    fit2, held2 = holdout_split(ds, 0.25, seed=4)
    assert held.video_ids == held2.video_ids and len(held) == round(0.25 * len(ds))
    assert not set(fit.video_ids) & set(held.video_ids) and len(fit) + len(held) == len(ds)
    train("mil", ds, None, tmp_path / "h", {"hidden_dim": 8}, epochs=1, batch_size=8, seed=4, progress=False,
          plot_every=0, holdout_frac=0.25)
    sel = json.loads((tmp_path / "h" / "config.json").read_text())["selection"]
    assert sel["split"] == "train-holdout" and sel["video_ids"] == held.video_ids
    assert json.loads((tmp_path / "h" / "log.jsonl").read_text().splitlines()[0])["val_split"] == "train-holdout"
    assert load_checkpoint(tmp_path / "h" / "best.pt")["selection"]["split"] == "train-holdout"
    with pytest.raises(ValueError, match="refusing to select checkpoints on the test split"):
        train("mil", ds, planted["test"], tmp_path / "t", {"hidden_dim": 8}, epochs=1, progress=False, plot_every=0)


def test_ccnet_recipe_resume_is_bit_exact_with_ema_crop_and_clip(planted, tmp_path):
    sub = VideoSubset(planted["train"], range(12))
    kw = dict(epochs=3, batch_size=4, lr=1e-3, seed=2, progress=False, plot_every=0)
    cfg = dict(TINY)
    train("ccnet", sub, planted["validation"], tmp_path / "a", cfg, **kw)
    train("ccnet", sub, planted["validation"], tmp_path / "b", cfg, **dict(kw, epochs=2))
    train("ccnet", sub, planted["validation"], tmp_path / "b", cfg, **kw)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["ema"] is not None and a["ema"]["updates"] == 9
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
        assert torch.equal(a["ema"]["model"][k], b["ema"]["model"][k]), k
    run = json.loads((tmp_path / "a" / "config.json").read_text())
    assert run["grad_clip"] == 1.0 and run["ema_decay"] == 0.999
    best = load_checkpoint(tmp_path / "a" / "best.pt")
    assert best["ema"] is True
    if best["epoch"] == 2:  # the best epoch is the last one: best.pt holds the EMA weights, not the raw ones
        k = "embed_a.layers.0.conv.weight"
        assert torch.equal(best["model"][k], a["ema"]["model"][k]) and not torch.equal(best["model"][k], a["model"][k])


def test_dave_block_keys_values_from_own_stream_queries_from_other():
    torch.manual_seed(0)
    blk = MHCABlock(8, 2, 0.0).eval()
    mask = torch.ones(2, 10, dtype=torch.bool)
    own = torch.randn(2, 1, 8).expand(2, 10, 8).contiguous()  # the same vector at every step
    q1, q2 = torch.randn(2, 10, 8), torch.randn(2, 10, 8)
    with torch.no_grad():  # centre taps only, so the zero padding of the k/v convs leaves the edges alike
        for proj in (blk.k_proj, blk.v_proj):
            proj.conv.weight[..., 0] = 0.0
            proj.conv.weight[..., 2] = 0.0
    # keys/values of a time-constant stream are identical at every step, so the queries -- the other
    # modality -- cannot change the result; were keys/values taken from the queries' side, they would
    y1, _ = blk(own, q1, mask)
    y2, _ = blk(own, q2, mask)
    assert torch.allclose(y1, y2, atol=1e-5)
    y3, _ = blk(torch.randn(2, 10, 8), q1, mask)
    assert not torch.allclose(y1, y3, atol=1e-3)
    assert blk.k_proj.conv.weight.data_ptr() != blk.v_proj.conv.weight.data_ptr()
    _, m2 = MHCABlock(8, 2, 0.0, stride=2)(own, q1, mask)
    assert m2.shape == (2, 5)


def test_clasp_heads_stay_float32_under_bf16_autocast():
    torch.manual_seed(0)
    model = CLASP(CLASPConfig(num_classes=5, audio_dim=8, visual_dim=8, hidden_dim=16, n_heads=2, n_global=4,
                              n_local=2, n_windows=2)).eval()
    batch = {"audio": torch.randn(3, 64, 8), "visual": torch.randn(3, 64, 8), "mask": torch.ones(3, 64, dtype=torch.bool)}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
    for k in ("p_av", "P_a", "P_v", "video_p", "w_bar"):
        assert out[k].dtype == torch.float32, k
    assert out["p_av"].unique().numel() > 500  # bf16 sigmoids give a few hundred distinct values at most
    pyr = CCNet(CCNetConfig(num_classes=3, audio_dim=8, visual_dim=8, t_max=32, **TINY)).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = pyr({"audio": torch.randn(2, 32, 8), "visual": torch.randn(2, 32, 8),
                   "mask": torch.ones(2, 32, dtype=torch.bool)})
    assert all(lg.dtype == torch.float32 for lg in out["cls_logits"] + out["offsets"])


class _ChannelOracle(nn.Module):
    """Fires class ``c`` where audio channel ``c`` is on: a model whose detections are known exactly."""

    supervision = "weak"

    def forward(self, batch):
        return {"p": (batch["audio"][..., :2] > 0.5).float() * 0.9, "mask": batch["mask"]}

    def detect(self, out, batch):
        return detect_from_probs(out["p"], out["mask"], 0.5)


def test_evaluation_covers_the_whole_video_past_t_max(tmp_path):
    t_max, n = 16, 60
    feats = {}
    anns = {}
    for j, (a, b) in enumerate([(40, 48), (5, 10)]):  # video 0's event lies entirely after t_max
        x = np.zeros((n if j == 0 else 20, 3), np.float32)
        x[a:b, j] = 1.0
        feats[f"v{j}"] = x
        c, s = RECIPE.center_offset_s, RECIPE.step_s
        dur = c + (len(x) - 0.5) * s
        anns[f"v{j}"] = VideoAnnotation(f"v{j}", "test", dur, [Segment(c + (a - 0.5) * s, c + (b - 0.5) * s, f"c{j}")])
    store = FeatureStore.build(tmp_path / "store", list(feats), lambda v: (feats[v], feats[v]))
    ds = FeatureDataset(store, anns, ["c0", "c1"], RECIPE, subset="test", t_max=t_max)
    full, preds = compute_dataset_metrics(_ChannelOracle(), ds, device="cpu", batch_size=2)
    clipped, _ = compute_dataset_metrics(_ChannelOracle(), ds, device="cpu", batch_size=2, full_length=False)
    assert full["full_length"] is True and full["avg"] == pytest.approx(1.0)
    assert [round(s, 2) for s, _, lab, _ in preds["v0"]] == [round(RECIPE.center_offset_s + 39.5 * RECIPE.step_s, 2)]
    assert clipped["avg"] == pytest.approx(0.5)  # video 0's event is lost when clipping at t_max
    assert math.isfinite(full["avg"])
