"""I3D: checkpoint layout, piergiaj converter, RGB parity with an independent naive recipe, flow store
exactness, time alignment of windows, batching. Random (seeded) weights, explicitly labelled."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import write_lossless_clip
from PIL import Image
from torch import nn

from extractors.flow import compute_flow, crop_quantize
from extractors.flow_store import FlowStoreWriter, quantize_flow, read_flow_store, read_meta
from extractors.i3d import I3D, convert_piergiaj, extract_i3d
from extractors.raft import RAFTFlow, farneback_pairs, raft_pairs
from extractors.recipes import get_recipe

FIXTURES = Path(__file__).parent / "fixtures"
RECIPE = get_recipe("unav100", weights="random", stack=10, step=4, flow="farneback")


def textured_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """A blocky random texture panning 2 px/frame (flow-like content)."""
    rng = np.random.default_rng(seed)
    tex = np.kron(rng.integers(0, 256, ((h + 2 * n) // 6 + 2, (w + 2 * n) // 6 + 2, 3), dtype=np.uint8),
                  np.ones((6, 6, 1), np.uint8))
    return np.stack([tex[i: i + h, 2 * i: 2 * i + w] for i in range(n)])


class StandIn(nn.Module):
    """Cheap stand-in for an I3D stream in pipeline tests: a fixed random projection of the per-frame,
    per-channel mean and mean square over the crop, so every input value of the window can matter."""

    def __init__(self, channels: int, stack: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.randn(2 * channels * stack, 1024, generator=g)

    def forward(self, x: torch.Tensor, features: bool = True) -> torch.Tensor:
        stats = torch.cat([x.mean((3, 4)), (x * x).mean((3, 4))], 1).flatten(1)
        return stats @ self.proj


def standins(stack: int) -> dict[str, nn.Module]:
    return {"rgb": StandIn(3, stack, 1), "flow": StandIn(2, stack, 2)}


def fixture_state_dict(modality: str, seed: int = 0) -> dict[str, torch.Tensor]:
    shapes = json.loads((FIXTURES / f"i3d_{modality}_keys.json").read_text())["shapes"]
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) if not k.endswith("running_var") else torch.rand(s, generator=g) + 0.5
            for k, s in shapes.items()}


# ------------------------------------------------------------------ network layout


@pytest.mark.parametrize("modality", ["rgb", "flow"])
def test_strict_load_matches_checkpoint_layout(modality: str) -> None:
    sd = fixture_state_dict(modality)
    model = I3D(modality)
    model.load_state_dict(sd, strict=True)  # old checkpoints lack num_batches_tracked: torch fills it
    ours = {k: list(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert ours == {k: list(v.shape) for k, v in sd.items()}
    assert all(m.eps == 1e-5 for m in model.modules() if isinstance(m, nn.BatchNorm3d))
    assert all(m.ceil_mode for m in model.modules() if isinstance(m, nn.MaxPool3d))
    with pytest.raises(RuntimeError, match="Missing key"):
        I3D(modality).load_state_dict({k: v for k, v in sd.items() if "mixed_5c" not in k}, strict=True)


def to_piergiaj(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names → piergiaj/pytorch-i3d names (independent inverse table, from pytorch_i3d.py)."""
    top = {"conv3d_1a_7x7": "Conv3d_1a_7x7", "conv3d_2b_1x1": "Conv3d_2b_1x1", "conv3d_2c_3x3": "Conv3d_2c_3x3",
           "conv3d_0c_1x1": "logits"}
    branch = {"branch_0": "b0", "branch_1.0": "b1a", "branch_1.1": "b1b", "branch_2.0": "b2a",
              "branch_2.1": "b2b", "branch_3.1": "b3b"}
    out = {}
    for k, v in sd.items():
        head, _, rest = k.partition(".")
        if head.startswith("mixed"):
            b = rest.split(".conv3d.")[0] if ".conv3d." in rest else rest.split(".batch3d.")[0]
            tail = rest[len(b) + 1:]
            name = f"Mixed_{head[6:]}.{branch[b]}.{tail}"
        else:
            name = f"{top[head]}.{rest}"
        out["module." + name.replace("batch3d.", "bn.") if k.startswith("conv3d_1a") else
            name.replace("batch3d.", "bn.")] = v
    return out


def test_piergiaj_converter_round_trip() -> None:
    sd = fixture_state_dict("rgb", seed=3)
    pier = to_piergiaj(sd)
    assert "Mixed_4f.b2b.bn.running_mean" in pier and "logits.conv3d.bias" in pier
    back = convert_piergiaj(pier)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    I3D("rgb", bn_eps=1e-3).load_state_dict(back, strict=True)
    with pytest.raises(KeyError, match="unexpected piergiaj"):
        convert_piergiaj({"Mixed_3b.b9.conv3d.weight": torch.zeros(1)})


# ------------------------------------------------------------------ RGB parity with a naive recipe


def naive_rgb_windows(path: Path, stack: int, step: int) -> list[torch.Tensor]:
    """The documented recipe by a separate code path: read every frame, BGR→RGB, PIL bilinear resize of
    the short side to 256 (long side truncated), centre crop 224 with floor offsets, 2x/255-1."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        img = Image.fromarray(bgr[:, :, ::-1].copy())
        w, h = img.size
        if min(w, h) != 256:
            img = img.resize((256, int(256 * h / w)) if w < h else (int(256 * w / h), 256), Image.BILINEAR)
        frames.append(np.asarray(img, dtype=np.float32))
    cap.release()
    out = []
    t = 0
    while t * step + stack + 1 <= len(frames):
        clip = np.stack(frames[t * step: t * step + stack])
        h, w = clip.shape[1:3]
        top, left = (h - 224) // 2, (w - 224) // 2
        clip = clip[:, top:top + 224, left:left + 224] / 255.0 * 2 - 1
        out.append(torch.from_numpy(clip).permute(3, 0, 1, 2)[None])
        t += 1
    return out


@torch.no_grad()
def test_rgb_features_match_naive_recipe_and_are_batch_independent(tmp_path: Path) -> None:
    from extractors.weight_loading import build_model_weights

    clip = write_lossless_clip(tmp_path / "clip.mkv", textured_frames(15, 240, 320))  # resized to 256x341
    rgb, again = I3D("rgb").eval(), I3D("rgb")
    prov = build_model_weights(rgb, "i3d_rgb", "random", seed=5)
    build_model_weights(again, "i3d_rgb", "random", seed=5)
    assert prov["weights"] == "random"
    assert all(torch.equal(a, b) for a, b in zip(rgb.state_dict().values(), again.state_dict().values(), strict=True))
    g = torch.Generator().manual_seed(5)  # He-scaled weights keep activations O(1) through 60 layers
    for m in rgb.modules():
        if isinstance(m, nn.Conv3d):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / m.weight[0].numel()) ** 0.5)
    mods = {"rgb": rgb, "flow": StandIn(2, RECIPE.stack, 2)}
    feats, prov = extract_i3d(clip, RECIPE, batch_size=2, modules=mods)
    assert feats.shape == (2, 2048) and feats.dtype == np.float32 and prov["weights"] == "injected"
    naive = torch.cat([rgb(x, features=True) for x in naive_rgb_windows(clip, RECIPE.stack, RECIPE.step)])
    assert naive.shape == (2, 1024)
    assert 0.05 < np.abs(naive.numpy()).mean() < 50
    assert np.abs(feats[:, :1024] - naive.numpy()).max() <= 1e-5 * max(1.0, float(naive.abs().max()))
    assert np.abs(feats[0, :1024] - feats[1, :1024]).max() > 1e-2  # windows differ


# ------------------------------------------------------------------ flow store


def test_quantize_flow_reference_formula() -> None:
    g = torch.Generator().manual_seed(0)
    flow = torch.randn(3, 2, 16, 16, generator=g) * 15
    flow[0, 0, 0, :4] = torch.tensor([20.0, -20.0, 0.0, 35.0])
    q = quantize_flow(flow)
    ref = np.round(128 + 255 / 40 * np.clip(flow.numpy(), -20, 20))
    assert np.array_equal(q.numpy(), ref.astype(np.int16))
    assert q[0, 0, 0, :4].tolist() == [256, 0, 128, 256]


def test_flow_store_round_trip_with_overflow(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    q = rng.integers(0, 257, (7, 2, 9, 11)).astype(np.int16)
    q[2, 1, 3, 4] = 256
    path = tmp_path / "flow ü.npz"
    with FlowStoreWriter(path, meta={"stack": 3}, chunk_pairs=3) as w:
        w.append(q[:2])
        w.append(torch.from_numpy(q[2:]))
    assert np.array_equal(read_flow_store(path), q)
    meta = read_meta(path)
    assert meta["n_pairs"] == 7 and meta["n_chunks"] == 3 and meta["stack"] == 3
    assert np.load(path)["q_000000"].dtype == np.uint8  # a plain npz archive
    with pytest.raises(RuntimeError, match="boom"), FlowStoreWriter(tmp_path / "x.npz") as w:
        w.append(q)
        raise RuntimeError("boom")
    assert not list(tmp_path.glob("*x.npz*"))  # nothing left behind, not even the temporary
    with pytest.raises(ValueError, match="0..256"), FlowStoreWriter(tmp_path / "y.npz") as w:
        w.append(q + 1)


def test_i3d_from_store_equals_in_memory_exactly(tmp_path: Path) -> None:
    frames = textured_frames(23, 256, 300, seed=1)
    clip = write_lossless_clip(tmp_path / "a b'c.mkv", frames)
    store = tmp_path / "flow" / "a b'c.npz"
    prov = compute_flow(clip, RECIPE, store, batch_size=2)
    n_win = (23 - RECIPE.stack - 1) // RECIPE.step + 1
    assert prov["n_windows"] == n_win == 4 and prov["n_pairs"] == (n_win - 1) * RECIPE.step + RECIPE.stack
    stored = read_flow_store(store)
    direct = crop_quantize(farneback_pairs(frames), 224)[: prov["n_pairs"]].numpy()
    assert np.array_equal(stored, direct)
    mem, _ = extract_i3d(clip, RECIPE, batch_size=2, modules=standins(RECIPE.stack))
    disk, p = extract_i3d(clip, RECIPE, batch_size=2, flow_path=store, modules=standins(RECIPE.stack))
    assert p["flow"]["flow_source"] == "store" and p["flow"]["computed_with"]["flow"] == "farneback"
    assert mem.shape == (4, 2048)
    assert np.array_equal(mem[:, 1024:], disk[:, 1024:])  # the same flow in the same batches: bit for bit
    assert np.abs(mem - disk).max() <= 1e-5
    # another grouping of the windows changes only float rounding (the convolution kernels oneDNN picks
    # depend on the batch size on some CPUs: bit-equal across batch sizes is not a property of the network)
    mem3, _ = extract_i3d(clip, RECIPE, batch_size=3, modules=standins(RECIPE.stack))
    assert np.abs(mem3 - disk).max() <= 1e-5
    with pytest.raises(ValueError, match="another recipe"):
        extract_i3d(clip, RECIPE.replace(step=8), flow_path=store, modules=standins(RECIPE.stack))


@torch.no_grad()
def test_compute_flow_raft_stores_cropped_quantized_padded_flow(tmp_path: Path) -> None:
    frames = textured_frames(5, 224, 236, seed=2)  # padded to 224 x 240; crop offsets (0, 8)
    clip = write_lossless_clip(tmp_path / "r.mkv", frames)
    recipe = get_recipe("unav100", weights="random", stack=2, step=2, short_side=224, raft_iters=1)
    net = RAFTFlow(iters=1).eval()
    from extractors.weight_loading import build_model_weights

    build_model_weights(net.net, "raft-sintel", "random", seed=0)
    compute_flow(clip, recipe, tmp_path / "r.npz", batch_size=4, flow_net=net)
    flow = raft_pairs(net, frames, "cpu", batch_size=4)
    assert flow.shape == (4, 2, 224, 240)
    expected = quantize_flow(flow[..., :, 8:232]).numpy()
    assert np.array_equal(read_flow_store(tmp_path / "r.npz"), expected)


# ------------------------------------------------------------------ time alignment


def test_feature_index_aligns_with_frames(tmp_path: Path) -> None:
    n, c = 40, 18
    base = textured_frames(1, 256, 300, seed=4).repeat(n, 0)  # static scene
    flash = base.copy()
    flash[c, 80:180, 100:200] = 255 - flash[c, 80:180, 100:200]  # one changed frame
    a, _ = extract_i3d(write_lossless_clip(tmp_path / "static.mkv", base), RECIPE, batch_size=3,
                       modules=standins(RECIPE.stack))
    b, _ = extract_i3d(write_lossless_clip(tmp_path / "flash.mkv", flash), RECIPE, batch_size=3,
                       modules=standins(RECIPE.stack))
    stack, step = RECIPE.stack, RECIPE.step
    assert a.shape == b.shape == ((n - stack - 1) // step + 1, 2048)
    rgb_changed = {t for t in range(len(a)) if np.abs(a[t, :1024] - b[t, :1024]).max() > 0}
    flow_changed = {t for t in range(len(a)) if np.abs(a[t, 1024:] - b[t, 1024:]).max() > 0}
    # RGB window t uses frames [step t, step t + stack); flow uses pairs (j, j+1), j in that range
    assert rgb_changed == {t for t in range(len(a)) if step * t <= c < step * t + stack} == {3, 4}
    assert flow_changed == {t for t in range(len(a)) if step * t <= c <= step * t + stack} == {2, 3, 4}


@pytest.mark.parametrize(("stack", "step"), [(24, 8), (10, 4), (5, 6), (3, 1), (8, 8)])
def test_window_groups_equal_plain_windows(stack: int, step: int) -> None:
    """Batched grouping (used by extraction) yields exactly the reference windows, for any group size."""
    from extractors.frames import window_groups

    for n in (0, stack, stack + 1, 33, 58):
        fr = [np.full((1, 1, 3), i, np.uint8) for i in range(n)]
        plain = [list(range(t * step, t * step + stack + 1)) for t in range((n - stack - 1) // step + 1)]
        for group in (1, 2, 5):
            grouped = [np.stack(f)[t * step - base: t * step - base + stack + 1, 0, 0, 0].tolist()
                       for ts, base, f in window_groups(iter(fr), stack + 1, step, group) for t in ts]
            assert grouped == plain
