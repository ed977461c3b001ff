"""RAFT: original-checkpoint conversion, numerical equivalence with an independent re-implementation of the
original princeton-vl/RAFT forward, the sintel padder, batching, and Farneback's flow convention.

Weights here are random (seeded), explicitly: no pretrained checkpoint can be downloaded in tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from extractors.raft import (
    RAFTFlow,
    convert_original_raft,
    farneback_pairs,
    pad_sintel,
    raft_pairs,
    sintel_pad_amounts,
)

FIXTURES = Path(__file__).parent / "fixtures"


def original_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random raft-large state dict in the ORIGINAL key layout (fixture derived from the public source),
    scaled like a trained net (fan-in) so 2-3 updates give non-trivial flow."""
    shapes = json.loads((FIXTURES / "raft_original_keys.json").read_text())["shapes"]
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            sd[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean") or key.endswith(".bias"):
            sd[key] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # BN weight
            sd[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = int(np.prod(shape[1:]))
            sd[key] = torch.randn(shape, generator=g) / fan_in ** 0.5
    for key in list(sd):  # norm3 and downsample.1 are one module in the original: same tensors
        if ".norm3." in key:
            sd[key] = sd[key.replace(".norm3.", ".downsample.1.")]
    return sd


# ------------------------------------------------------------------ independent original RAFT forward


def _conv(sd, name, x, stride=1, padding=None):
    w = sd[name + ".weight"]
    if padding is None:
        padding = (w.shape[2] // 2, w.shape[3] // 2)
    return F.conv2d(x, w, sd[name + ".bias"], stride=stride, padding=padding)


def _norm(sd, name, x, kind):
    if kind == "instance":
        return F.instance_norm(x, eps=1e-5)
    return F.batch_norm(x, sd[name + ".running_mean"], sd[name + ".running_var"], sd[name + ".weight"],
                        sd[name + ".bias"], training=False, eps=1e-5)


def _encoder(sd, p, x, kind):
    x = F.relu(_norm(sd, p + ".norm1", _conv(sd, p + ".conv1", x, stride=2, padding=3), kind))
    for li, stride in ((1, 1), (2, 2), (3, 2)):
        for bi in range(2):
            b = f"{p}.layer{li}.{bi}"
            s = stride if bi == 0 else 1
            y = F.relu(_norm(sd, b + ".norm1", _conv(sd, b + ".conv1", x, stride=s, padding=1), kind))
            y = F.relu(_norm(sd, b + ".norm2", _conv(sd, b + ".conv2", y, padding=1), kind))
            if s != 1:
                x = _norm(sd, b + ".downsample.1", _conv(sd, b + ".downsample.0", x, stride=s, padding=0), kind)
            x = F.relu(x + y)
    return _conv(sd, p + ".conv2", x, padding=0)


def _sample(img, coords):
    h, w = img.shape[-2:]
    xg, yg = coords.split([1, 1], dim=-1)
    return F.grid_sample(img, torch.cat([2 * xg / (w - 1) - 1, 2 * yg / (h - 1) - 1], -1), align_corners=True)


def original_raft(sd: dict[str, torch.Tensor], im1: torch.Tensor, im2: torch.Tensor, iters: int) -> torch.Tensor:
    """princeton-vl/RAFT ``RAFT.forward(test_mode=True)[1]`` written from the paper/source, functional."""
    sd = {k[7:]: v for k, v in sd.items()}
    im1, im2 = 2 * (im1 / 255.0) - 1.0, 2 * (im2 / 255.0) - 1.0
    f = _encoder(sd, "fnet", torch.cat([im1, im2]), "instance")
    f1, f2 = f.chunk(2)
    b, c, h, w = f1.shape
    corr = (f1.view(b, c, h * w).transpose(1, 2) @ f2.view(b, c, h * w)) / c ** 0.5
    pyr = [corr.reshape(b * h * w, 1, h, w)]
    for _ in range(3):
        pyr.append(F.avg_pool2d(pyr[-1], 2, stride=2))
    cn = _encoder(sd, "cnet", im1, "batch")
    net, inp = torch.tanh(cn[:, :128]), F.relu(cn[:, 128:])
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords0 = torch.stack([xs, ys]).float()[None].repeat(b, 1, 1, 1)
    coords1 = coords0.clone()
    r = 4
    lin = torch.linspace(-r, r, 2 * r + 1)
    dy, dx = torch.meshgrid(lin, lin, indexing="ij")
    delta = torch.stack([dy, dx], -1).view(1, 2 * r + 1, 2 * r + 1, 2)  # original: stack(meshgrid(dy, dx))
    u = "update_block"
    for _ in range(iters):
        cen = coords1.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2)
        feats = [_sample(lvl, cen / 2 ** i + delta).view(b, h, w, -1) for i, lvl in enumerate(pyr)]
        cf = torch.cat(feats, -1).permute(0, 3, 1, 2)
        flow = coords1 - coords0
        cor = F.relu(_conv(sd, f"{u}.encoder.convc2", F.relu(_conv(sd, f"{u}.encoder.convc1", cf))))
        flo = F.relu(_conv(sd, f"{u}.encoder.convf2", F.relu(_conv(sd, f"{u}.encoder.convf1", flow))))
        mot = torch.cat([F.relu(_conv(sd, f"{u}.encoder.conv", torch.cat([cor, flo], 1))), flow], 1)
        x = torch.cat([inp, mot], 1)
        for k in ("1", "2"):
            hx = torch.cat([net, x], 1)
            z = torch.sigmoid(_conv(sd, f"{u}.gru.convz{k}", hx))
            rr = torch.sigmoid(_conv(sd, f"{u}.gru.convr{k}", hx))
            q = torch.tanh(_conv(sd, f"{u}.gru.convq{k}", torch.cat([rr * net, x], 1)))
            net = (1 - z) * net + z * q
        coords1 = coords1 + _conv(sd, f"{u}.flow_head.conv2", F.relu(_conv(sd, f"{u}.flow_head.conv1", net)))
    mask = 0.25 * _conv(sd, f"{u}.mask.2", F.relu(_conv(sd, f"{u}.mask.0", net)), padding=0)
    flow = coords1 - coords0
    mask = torch.softmax(mask.view(b, 1, 9, 8, 8, h, w), dim=2)
    up = F.unfold(8 * flow, [3, 3], padding=1).view(b, 2, 9, 1, 1, h, w)
    up = (mask * up).sum(2).permute(0, 1, 4, 2, 5, 3)
    return up.reshape(b, 2, 8 * h, 8 * w)


def reference_pad(x: torch.Tensor) -> torch.Tensor:
    """InputPadder('sintel') written independently: pad to the next multiple of 8 (none if already),
    floor half before, the rest after, edge replication (numpy)."""
    h, w = x.shape[-2:]
    ph, pw = -h % 8, -w % 8
    arr = np.pad(x.numpy(), [(0, 0)] * (x.ndim - 2) + [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)],
                 mode="edge")
    return torch.from_numpy(arr)


def smooth_images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(1, 3, h // 8 + 2, w // 8 + 2, generator=g), size=(h + 16, w + 16),
                         mode="bicubic", align_corners=False)
    frames = [base[..., 2 * i: 2 * i + h, 3 * i: 3 * i + w] for i in range(n)]  # a moving texture
    return (torch.cat(frames).clamp(0, 1) * 255).round()


# ------------------------------------------------------------------ tests


def test_convert_original_keys_load_strict() -> None:
    sd = original_state_dict()
    conv = convert_original_raft(sd)
    model = RAFTFlow()
    model.net.load_state_dict(conv, strict=True)
    # without the DataParallel prefix as well
    conv2 = convert_original_raft({k[7:]: v for k, v in sd.items()})
    assert conv2.keys() == conv.keys()
    n_norm3 = sum(".norm3." in k for k in sd)
    assert n_norm3 > 0 and len(conv) == len(sd) - n_norm3


def test_convert_rejects_unknown_and_inconsistent_alias() -> None:
    sd = original_state_dict()
    with pytest.raises(KeyError, match="unexpected RAFT key"):
        convert_original_raft({**sd, "module.update_block.extra.weight": torch.zeros(1)})
    key = next(k for k in sd if ".norm3.running_mean" in k)
    bad = dict(sd)
    bad[key] = sd[key] + 1
    with pytest.raises(ValueError, match="differs from its alias"):
        convert_original_raft(bad)


@torch.no_grad()
def test_torchvision_raft_equals_original_forward() -> None:
    sd = original_state_dict(seed=1)
    model = RAFTFlow(iters=3).eval()
    model.net.load_state_dict(convert_original_raft(sd), strict=True)
    frames = smooth_images(3, 125, 131)  # odd sizes: padding is exercised (-> 128 x 136)
    ours = model(frames[:2], frames[1:])
    ref = original_raft(sd, reference_pad(frames[:2]), reference_pad(frames[1:]), iters=3)
    assert ours.shape == (2, 2, 128, 136) == ref.shape
    assert ref.abs().max() > 0.05  # non-trivial flow
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4), (ours - ref).abs().max()
    # one more update changes the output: the iteration count is honoured
    assert not torch.allclose(model(frames[:1], frames[1:2], iters=4), ours[:1], atol=1e-4)


@pytest.mark.parametrize(("h", "w"), [(256, 341), (255, 257), (249, 250), (256, 320), (1, 7)])
def test_sintel_padding_matches_reference(h: int, w: int) -> None:
    x = torch.arange(2 * h * w, dtype=torch.float32).reshape(1, 2, h, w)
    got = pad_sintel(x)
    assert torch.equal(got, reference_pad(x))
    assert got.shape[-2] % 8 == 0 and got.shape[-1] % 8 == 0
    left, right, top, bottom = sintel_pad_amounts(h, w)
    assert right - left in (0, 1) and bottom - top in (0, 1)  # extra pixel on the bottom / right
    if (h, w) == (256, 341):
        assert (left, right, top, bottom) == (1, 2, 0, 0)


@torch.no_grad()
def test_raft_pairs_batch_size_independent() -> None:
    sd = original_state_dict(seed=2)
    model = RAFTFlow(iters=2).eval()
    model.net.load_state_dict(convert_original_raft(sd), strict=True)
    frames = smooth_images(4, 128, 128, seed=3).permute(0, 2, 3, 1).to(torch.uint8).numpy()
    a = raft_pairs(model, frames, "cpu", batch_size=1)
    b = raft_pairs(model, frames, "cpu", batch_size=3)
    assert a.shape == (3, 2, 128, 128)
    assert (a - b).abs().max() <= 1e-5


def test_farneback_convention_dx_dy() -> None:
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, (70, 90), dtype=np.uint8)
    tex = np.kron(tex, np.ones((4, 4), np.uint8))  # 280 x 360, blocky texture
    f0 = tex[20:276, 20:340]
    f1 = tex[20 - 2:276 - 2, 20 - 3:340 - 3]  # content moves +3 px in x, +2 px in y
    frames = np.stack([f0, f1])[..., None].repeat(3, -1)
    flow = farneback_pairs(frames)
    assert flow.shape == (1, 2, 256, 320)
    inner = flow[0, :, 64:192, 64:256]
    assert abs(float(inner[0].median()) - 3) < 0.5 and abs(float(inner[1].median()) - 2) < 0.5
