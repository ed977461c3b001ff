"""Input standardisation (``input_norm: standardize``): statistics equal an independent NumPy
computation, padding stays zero, the statistics travel in the checkpoint, and misuse fails clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from extractors.recipes import get_recipe
from models.data.dataset import FeatureDataset
from models.data.synthetic import PlantedConfig, make_planted
from models.localizers.input_norm import InputStandardizer, fit_input_norm
from models.localizers.registry import build_model
from models.run.runtime import load_checkpoint, model_from_checkpoint
from models.run.train import train


class _Toy(torch.utils.data.Dataset):
    """Features with a large common offset and a small spread, like random-weight extractors give."""

    classes = ["a", "b"]

    def __init__(self, n: int = 6, t: int = 12, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            length = t - (i % 3)
            audio = np.zeros((t, 4), np.float32)
            visual = np.zeros((t, 6), np.float32)
            audio[:length] = 1.75 + 0.4 * rng.standard_normal((length, 4))
            visual[:length] = 0.3 + 0.2 * rng.standard_normal((length, 6))
            mask = np.arange(t) < length
            labels = np.eye(2, dtype=np.float32)[i % 2]
            self.items.append({"audio": torch.from_numpy(audio), "visual": torch.from_numpy(visual),
                               "mask": torch.from_numpy(mask), "labels": torch.from_numpy(labels),
                               "segments": torch.zeros((0, 3)), "video_id": f"v{i}", "duration": float(t),
                               "length": length})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def test_statistics_match_numpy_over_valid_steps_and_padding_stays_zero():
    ds = _Toy()
    std = InputStandardizer(4, 6)
    std.fit(ds[i] for i in range(len(ds)))
    valid = np.concatenate([it["audio"].numpy()[it["mask"].numpy()] for it in ds.items])
    np.testing.assert_allclose(std.mean_audio.numpy(), valid.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std.std_audio.numpy(), valid.std(0) + 1e-5, rtol=1e-4)
    batch = {k: torch.stack([it[k] for it in ds.items]) for k in ("audio", "visual", "mask")}
    out = std.apply(batch)
    z = out["audio"][batch["mask"]].numpy()
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)
    assert torch.all(out["visual"][~batch["mask"]] == 0)


def test_unfitted_and_unknown_settings_fail_clearly():
    with pytest.raises(ValueError, match="input_norm must be one of"):
        build_model("mil", num_classes=2, audio_dim=4, visual_dim=6, input_norm="zscore")
    model = build_model("mil", num_classes=2, audio_dim=4, visual_dim=6, input_norm="standardize", hidden_dim=8)
    batch = {k: torch.stack([it[k] for it in _Toy().items]) for k in ("audio", "visual", "mask")}
    with pytest.raises(RuntimeError, match="never fitted"):
        model(batch)
    assert fit_input_norm(build_model("mil", num_classes=2, audio_dim=4, visual_dim=6, input_norm="none"), _Toy()) is False


def test_statistics_travel_in_the_checkpoint(tmp_path):
    recipe = get_recipe("unav100")
    store, ann, classes = make_planted(PlantedConfig(num_classes=3, n_videos=24, audio_dim=4, visual_dim=6,
                                                     seed=0), tmp_path / "bench", recipe)
    sets = {s: FeatureDataset(store, ann, classes, recipe, subset=s, t_max=32) for s in ("train", "validation")}
    best = train("mil", sets["train"], sets["validation"], tmp_path / "run",
                 {"input_norm": "standardize", "hidden_dim": 8}, epochs=1, batch_size=4, seed=0, device="cpu",
                 progress=False, plot_every=0)
    state = load_checkpoint(best)["model"]
    items = [sets["train"][i] for i in range(len(sets["train"]))]
    valid = np.concatenate([it["visual"].numpy()[it["mask"].numpy()] for it in items])
    np.testing.assert_allclose(state["input_standardizer.mean_visual"].numpy(), valid.mean(0), rtol=1e-4)
    model = model_from_checkpoint(best, "mil").eval()
    raw = build_model("mil", num_classes=3, audio_dim=4, visual_dim=6, t_max=32, hidden_dim=8, input_norm="none").eval()
    raw.load_state_dict({k: v for k, v in state.items() if not k.startswith("input_standardizer.")})
    batch = {k: torch.stack([it[k] for it in items]) for k in ("audio", "visual", "mask")}
    # the restored model standardises: the plain model fed standardised inputs gives the same outputs
    with torch.no_grad():
        a = model(batch)["video_p"]
        b = raw(model.input_standardizer.apply(batch))["video_p"]
        c = raw(batch)["video_p"]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_auto_standardizes_weak_models_only():
    weak = build_model("mil", num_classes=2, audio_dim=4, visual_dim=6, hidden_dim=8)
    assert weak.cfg.input_norm == "auto" and hasattr(weak, "input_standardizer")
    full = build_model("ccnet", num_classes=2, audio_dim=4, visual_dim=6, d_model=16, head_dim=16, n_heads=2,
                       supervision="full")
    assert not hasattr(full, "input_standardizer")  # the references' recipe: features as released
    assert hasattr(build_model("ccnet", num_classes=2, audio_dim=4, visual_dim=6, d_model=16, head_dim=16,
                               n_heads=2, supervision="weak"), "input_standardizer")
    assert not hasattr(build_model("ear"), "input_standardizer")  # LLP's trainer fits no statistics
