"""Weights registry: clear errors, digest checks, atomic fetch, deterministic labelled random mode."""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from extractors import io, weight_files, weight_loading, weight_registry, weights
from extractors.weight_registry import REGISTRY, WeightsError, WeightSpec


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 2)


def _register(monkeypatch: pytest.MonkeyPatch, **kw: object) -> WeightSpec:
    spec = WeightSpec(**{"name": "tiny", "filename": "tiny-test.pth", "url": "file:///nonexistent/tiny.pth",
                         "sha256": None, **kw})  # type: ignore[arg-type]
    monkeypatch.setitem(REGISTRY, spec.name, spec)
    return spec


def _save_tiny(path: Path, seed: int = 0) -> tuple[dict[str, torch.Tensor], str]:
    torch.manual_seed(seed)
    sd = Tiny().state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return sd, hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- registry content
def test_registry_urls_names_and_hash_prefixes() -> None:
    expected = {
        "vggish": "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
        "vggish_pca": "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
                      "vggish_pca_params-970ea276.pth",
        "r2plus1d_34_32_ig65m_ft_kinetics": "https://github.com/moabitcoin/ig65m-pytorch/releases/download/"
                                            "v1.0.0/r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth",
        "r2plus1d_34_8_ig65m_ft_kinetics": "https://github.com/moabitcoin/ig65m-pytorch/releases/download/"
                                           "v1.0.0/r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth",
        "raft_large_C_T_SKHT_V1": "https://download.pytorch.org/models/raft_large_C_T_SKHT_V1-0b8c9e55.pth",
        "resnet152": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
        "r2plus1d_18": "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
    }
    for name, url in expected.items():
        assert REGISTRY[name].url == url
    for spec in REGISTRY.values():
        assert spec.url.startswith("https://")
        if spec.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
        if spec.sha256_prefix is not None:
            # torch.hub convention: the prefix is embedded in the official file name
            assert f"-{spec.sha256_prefix}." in spec.filename
            if spec.sha256 is not None:
                assert spec.sha256.startswith(spec.sha256_prefix)
    assert REGISTRY["rgb_imagenet"].converter == "extractors.i3d:convert_piergiaj"
    assert REGISTRY["flow_imagenet"].converter == "extractors.i3d:convert_piergiaj"
    assert REGISTRY["raft-sintel"].converter == "extractors.raft:convert_original_raft"
    assert REGISTRY["raft-sintel"].archive_member == "models/raft-sintel.pth"
    assert REGISTRY["raft-things"].filename == "raft-things.pth"
    assert REGISTRY["i3d_rgb"].filename == "i3d_rgb.pt" and REGISTRY["i3d_flow"].filename == "i3d_flow.pt"


def test_registered_full_digest_matches_the_public_pca_npz(tmp_path: Path) -> None:
    src = Path(__file__).parent / "data" / "vggish_pca_params.npz"  # Google's file, see tests/data/README.md
    dst = weight_registry.weights_path("vggish_pca_npz", tmp_path)
    dst.write_bytes(src.read_bytes())
    assert weight_files.verify("vggish_pca_npz", tmp_path) == REGISTRY["vggish_pca_npz"].sha256
    sd = weight_loading.load_state_dict("vggish_pca_npz", tmp_path)
    assert tuple(sd["pca_eigen_vectors"].shape) == (128, 128) and tuple(sd["pca_means"].shape) == (128,)
    assert not (tmp_path / (dst.name + ".sha256")).exists()  # a full registered digest needs no pin


# ---------------------------------------------------------------- errors
def test_missing_file_error_names_file_url_and_path(tmp_path: Path) -> None:
    spec = REGISTRY["vggish"]
    with pytest.raises(WeightsError) as ei:
        weight_loading.load_state_dict("vggish", tmp_path)
    msg = str(ei.value)
    assert spec.filename in msg
    assert spec.url in msg
    assert str(tmp_path / spec.filename) in msg
    # commands that work as written: the fetch CLI for this file, or the workflow's fetch-everything target
    # (`snakemake fetch_weights` has a wildcard and fails: tests/test_workflow.py dry-runs fetch_all_weights)
    assert f"`python -m extractors.weights fetch vggish --root {tmp_path}`" in msg
    assert "`snakemake fetch_all_weights --cores 1`" in msg and "fetch_weights`" not in msg


def test_missing_file_never_falls_back_to_random(tmp_path: Path) -> None:
    with pytest.raises(WeightsError):
        weight_loading.build_model_weights(Tiny(), "vggish", "pretrained", tmp_path)


def test_full_sha256_mismatch_detected(tmp_path: Path) -> None:
    p = weight_registry.weights_path("r2plus1d_18", tmp_path)
    p.write_bytes(b"not the torchvision checkpoint")
    with pytest.raises(WeightsError, match="SHA-256 mismatch"):
        weight_loading.load_state_dict("r2plus1d_18", tmp_path)


def test_prefix_mismatch_detected(tmp_path: Path) -> None:
    p = weight_registry.weights_path("vggish", tmp_path)
    p.write_bytes(b"corrupt download")
    with pytest.raises(WeightsError, match="starting with 10086976"):
        weight_loading.load_state_dict("vggish", tmp_path)


def test_trust_on_first_use_pin_then_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch)
    p = weight_registry.weights_path("tiny", tmp_path)
    sd, digest = _save_tiny(p)
    loaded = weight_loading.load_state_dict("tiny", tmp_path)
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())
    pin = tmp_path / "tiny-test.pth.sha256"
    assert pin.read_text().split()[0] == digest
    _save_tiny(p, seed=1)  # the file changes after it was pinned
    with pytest.raises(WeightsError, match="pinned"):
        weight_loading.load_state_dict("tiny", tmp_path)


# ---------------------------------------------------------------- fetch
def test_fetch_unreachable_url_raises_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere" / "tiny.pth"
    spec = _register(monkeypatch, url=missing.as_uri())
    root = tmp_path / "root"
    with pytest.raises(WeightsError) as ei:
        weight_files.fetch("tiny", root)
    msg = str(ei.value)
    assert spec.filename in msg and spec.url in msg and str(root / spec.filename) in msg
    assert not (root / spec.filename).exists()
    assert list(root.iterdir()) == []  # no partial files left behind


def test_fetch_unreachable_via_cli_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _register(monkeypatch, url=(tmp_path / "missing.pth").as_uri())
    assert weights.main(["fetch", "tiny", "--root", str(tmp_path / "r")]) == 1
    assert "tiny-test.pth" in capsys.readouterr().err


def test_fetch_file_url_verifies_and_renames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src" / "tiny.pth"
    sd, digest = _save_tiny(src)
    _register(monkeypatch, url=src.as_uri(), sha256=digest)
    root = tmp_path / "root"
    path = weight_files.fetch("tiny", root)
    assert path == root / "tiny-test.pth" and path.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in root.iterdir()) == ["tiny-test.pth"]  # temp file renamed, nothing else
    model = Tiny()
    prov = weight_loading.build_model_weights(model, "tiny", "pretrained", root)
    assert prov["weights"] == "tiny" and prov["sha256"] == digest
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
    assert weight_files.fetch("tiny", root) == path  # present and valid: no second download


def test_fetch_rejects_wrong_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "tiny.pth"
    _save_tiny(src)
    _register(monkeypatch, url=src.as_uri(), sha256="0" * 64)
    root = tmp_path / "root"
    with pytest.raises(WeightsError, match="SHA-256 mismatch"):
        weight_files.fetch("tiny", root)
    assert list(root.iterdir()) == []


def test_fetch_extracts_archive_member_and_uses_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inner = tmp_path / "raw.pth"
    _, digest = _save_tiny(inner)
    zpath = tmp_path / "models.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(inner, "models/tiny.pth")
    _register(monkeypatch, url=(tmp_path / "gone.zip").as_uri(), archive_member="models/tiny.pth",
              mirrors=((zpath.as_uri(), "models/tiny.pth"),), sha256=digest)
    path = weight_files.fetch("tiny", tmp_path / "root")
    assert io.sha256_file(path) == digest


def test_main_fetch_success(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "tiny.pth"
    _, digest = _save_tiny(src)
    _register(monkeypatch, url=src.as_uri(), sha256=digest)
    assert weights.main(["fetch", "tiny", "--root", str(tmp_path / "r")]) == 0
    assert digest in capsys.readouterr().out


# ---------------------------------------------------------------- loading details
def test_numpy_arrays_in_pth_load_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvggish's PCA .pth stores numpy arrays; they load through an explicit allowlist."""
    _register(monkeypatch)
    p = weight_registry.weights_path("tiny", tmp_path)
    rng = np.random.default_rng(0)
    arrays = {"pca_eigen_vectors": rng.standard_normal((4, 4)), "pca_means": rng.standard_normal((4, 1))}
    torch.save(arrays, p)
    sd = weight_loading.load_state_dict("tiny", tmp_path)
    assert np.array_equal(sd["pca_eigen_vectors"].numpy(), arrays["pca_eigen_vectors"])
    assert sd["pca_means"].dtype == torch.float64


def test_numpy1_pickled_arrays_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written under numpy 1 name ``numpy.core.multiarray._reconstruct`` (numpy 2: ``numpy._core``)."""
    _register(monkeypatch)
    p = weight_registry.weights_path("tiny", tmp_path)
    torch.save({"pca_means": np.arange(3.0)}, tmp_path / "np2.pth")
    with zipfile.ZipFile(tmp_path / "np2.pth") as zin, zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as zout:
        for n in zin.namelist():
            data = zin.read(n)
            if n.endswith("data.pkl"):
                data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
                assert b"cnumpy.core.multiarray\n" in data
            zout.writestr(n, data)
    assert np.array_equal(weight_loading.load_state_dict("tiny", tmp_path)["pca_means"].numpy(), np.arange(3.0))


def test_arbitrary_pickles_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch)
    p = weight_registry.weights_path("tiny", tmp_path)
    torch.save({"w": torch.zeros(1), "obj": Path("x")}, p)
    with pytest.raises(WeightsError, match="weights_only"):
        weight_loading.load_state_dict("tiny", tmp_path)


def test_converter_is_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = tmp_path / "conv_mod_for_test.py"
    mod.write_text("def strip(sd):\n    return {k.removeprefix('module.'): v for k, v in sd.items()}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _register(monkeypatch, converter="conv_mod_for_test:strip")
    p = weight_registry.weights_path("tiny", tmp_path / "root")
    torch.manual_seed(0)
    sd = {f"module.{k}": v for k, v in Tiny().state_dict().items()}
    p.parent.mkdir(parents=True)
    torch.save(sd, p)
    model = Tiny()
    weight_loading.build_model_weights(model, "tiny", "pretrained", tmp_path / "root")
    assert torch.equal(model.fc.weight, sd["module.fc.weight"])


def test_pretrained_load_is_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch)
    p = weight_registry.weights_path("tiny", tmp_path)
    sd = Tiny().state_dict()
    sd.pop("fc.bias")
    torch.save(sd, p)
    with pytest.raises(RuntimeError, match="fc.bias"):
        weight_loading.build_model_weights(Tiny(), "tiny", "pretrained", tmp_path)


# ---------------------------------------------------------------- random mode
def test_random_mode_deterministic_labelled_and_leaves_global_rng(tmp_path: Path) -> None:
    a, b, c = Tiny(), Tiny(), Tiny()
    a.bn.running_mean.fill_(5.0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    pa = weight_loading.build_model_weights(a, "vggish", "random", tmp_path, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    weight_loading.build_model_weights(b, "vggish", "random", tmp_path, seed=7)
    weight_loading.build_model_weights(c, "vggish", "random", tmp_path, seed=8)
    assert pa["weights"] == "random" and pa["seed"] == 7
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not torch.equal(a.conv.weight, c.conv.weight)
    assert torch.equal(a.bn.running_mean, torch.zeros(3))  # buffers reset too
    assert list(tmp_path.iterdir()) == []  # random mode touches no weight file


def test_unknown_mode_and_name() -> None:
    with pytest.raises(ValueError):
        weight_loading.build_model_weights(Tiny(), "vggish", "pretrianed", seed=0)  # type: ignore[arg-type]
    with pytest.raises(WeightsError, match="unknown weights name"):
        weight_registry.weights_path("nope")
