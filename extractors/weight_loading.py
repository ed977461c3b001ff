"""Verified checkpoints into networks: ``torch.load(weights_only=True)`` (numpy arrays through an allowlist),
the registry's converters, seeded random weights, and the networks a long-lived process keeps built."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from extractors.weight_files import verify
from extractors.weight_registry import DEFAULT_ROOT, WeightsError, get_spec, weights_path

if TYPE_CHECKING:  # torch is imported where weights are loaded: the workflow reads the registry without it
    import torch
    from torch import nn


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
_M = TypeVar("_M")  # a network module


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



def resident_model(key: tuple[Any, ...], make: Callable[[], _M], name: str, mode: str, root: Path | str, seed: int,
                   device: Any, random_init: RandomInit = "default",
                   weights_of: Callable[[_M], nn.Module] | None = None) -> tuple[_M, dict[str, Any]]:
    """``make()`` with checkpoint ``name`` (or seeded random weights, :func:`build_model_weights`) in it, or in
    ``weights_of(model)`` when the checkpoint holds one part (RAFT's ``net``), on ``device`` in eval mode, and
    its provenance; resident under ``(*key, device)`` (:func:`resident_network`). The one build path of the
    feature networks (I3D, R(2+1)D, RAFT, VGGish)."""

    def build() -> tuple[_M, dict[str, Any]]:
        model = make()
        prov = build_model_weights(model if weights_of is None else weights_of(model), name, mode, root, seed,
                                   random_init)
        return model.to(device).eval(), prov

    return resident_network((*key, str(device)), [name], mode, root, build)

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


