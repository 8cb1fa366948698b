"""The release's arch format, and the subnets its sampler could have trained.

The release describes a subnet as a 10-field list (``FusedSuperNet.set_arch``)::

    [res, channels[7], depths[7], conv_ratio[], kernel_size[], mlp_ratio[], num_heads[],
     window_size[], qk_scale[], v_scale[]]

``channels``/``depths`` run over (first conv + conv stem, C1, C2, T1..T4); ``conv_ratio`` and
``kernel_size`` have one entry per conv layer, stem layers included (stem ratios are 1);
``mlp_ratio``/``num_heads``/``window_size``/``qk_scale``/``v_scale`` one per transformer layer.
The release samples one value per stage and ignores ``num_heads`` (it uses C // 16); window
and qk scale are always 1. evit's ``ArchConfig`` holds one value per stage, so a list whose
layers differ inside a stage is refused with the stage and the values named.

The release's sampler also keeps two channel rules (``arch_sampling_engine``): the conv stem
is as wide as the first conv (``equal_channels=True``), and no stage is narrower than the one
before it (``sampled_channels >= in_channels``). :func:`release_violations` names the rules a
subnet breaks; a release-layout supernet's search keeps to them unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.space import (
    HEAD_DIM,
    STAGE_NAMES,
    STAGE_SPACES,
    ArchConfig,
    ArchError,
    ConvStage,
    TransformerStage,
)

__all__ = ["from_release", "to_release", "release_violations", "release_named_models",
           "RELEASE_FIELDS"]

RELEASE_FIELDS = ("res", "channels", "depths", "conv_ratio", "kernel_size", "mlp_ratio",
                  "num_heads", "window_size", "qk_scale", "v_scale")
_N_CONV = 3  # conv stem + C1 + C2 in the release's channels/depths lists


def _ints(name: str, v: Any, n: int | None = None) -> list[int]:
    if not isinstance(v, (list, tuple)) or not all(
            isinstance(e, int) and not isinstance(e, bool) for e in v):
        raise ArchError(f"release arch field {name} must be a list of integers, got {v!r}")
    if n is not None and len(v) != n:
        raise ArchError(f"release arch field {name} has {len(v)} entries; it needs {n}")
    return [int(e) for e in v]


def _per_stage(name: str, values: list[int], depths: list[int],
               stages: Sequence[str]) -> list[int]:
    """One value per stage from per-layer values, refusing stages whose layers differ."""
    out, i = [], 0
    for st, d in zip(stages, depths):
        layer_vals = values[i:i + d]
        if len(set(layer_vals)) != 1:
            raise ArchError(f"release arch: stage {st} has {name} {layer_vals} per layer; evit "
                            "holds one value per stage (the release's sampler draws one per "
                            "stage too)")
        out.append(layer_vals[0])
        i += d
    return out


def from_release(arch: Sequence[Any]) -> ArchConfig:
    """An ``ArchConfig`` from the release's 10-field list (or tuple)."""
    if not isinstance(arch, (list, tuple)) or len(arch) != len(RELEASE_FIELDS):
        raise ArchError(f"a release arch is a list of {len(RELEASE_FIELDS)} fields "
                        f"({', '.join(RELEASE_FIELDS)}), got {arch!r}"[:400])
    res = arch[0]
    if isinstance(res, bool) or not isinstance(res, int):
        raise ArchError(f"release arch field res must be an integer, got {res!r}")
    channels = _ints("channels", arch[1], 7)
    depths = _ints("depths", arch[2], 7)
    n_conv, n_t = sum(depths[:_N_CONV]), sum(depths[_N_CONV:])
    ratios = _ints("conv_ratio", arch[3], n_conv)
    kernels = _ints("kernel_size", arch[4], n_conv)
    mlp = _ints("mlp_ratio", arch[5], n_t)
    _ints("num_heads", arch[6], n_t)  # ignored by the release too: heads = C // 16
    windows = _ints("window_size", arch[7], n_t)
    qk = _ints("qk_scale", arch[8], n_t)
    vs = _ints("v_scale", arch[9], n_t)
    if set(windows) - {1}:
        raise ArchError(f"release arch window_size {windows}: only 1 (global attention) exists; "
                        "the release has no windowed attention either")
    if set(qk) - {1}:
        raise ArchError(f"release arch qk_scale {qk}: only 1 exists in the search space")
    if ratios[:depths[0]] != [1] * depths[0]:
        raise ArchError(f"release arch conv_ratio {ratios[:depths[0]]} for the conv stem: its "
                        "layers have no expansion (ratio 1)")
    conv_names, t_names = STAGE_NAMES[:_N_CONV], STAGE_NAMES[_N_CONV:]
    k_stage = _per_stage("kernel_size", kernels, depths[:_N_CONV], conv_names)
    e_stage = _per_stage("conv_ratio", ratios, depths[:_N_CONV], conv_names)
    m_stage = _per_stage("mlp_ratio", mlp, depths[_N_CONV:], t_names)
    v_stage = _per_stage("v_scale", vs, depths[_N_CONV:], t_names)
    stages: list[ConvStage | TransformerStage] = []
    for i in range(_N_CONV):
        stages.append(ConvStage(depths[i], channels[i], k_stage[i], e_stage[i]))
    for j in range(len(t_names)):
        i = _N_CONV + j
        stages.append(TransformerStage(depths[i], channels[i], m_stage[j], v_stage[j]))
    return ArchConfig(res, channels[0], tuple(stages))


def to_release(arch: ArchConfig) -> list[Any]:
    """The release's 10-field list for ``arch`` (heads C // 16, window and qk scale 1)."""
    stem = arch.stages[0]
    if arch.stem_width != stem.width:
        raise ArchError(f"stem_width = {arch.stem_width} differs from the conv stem's width "
                        f"{stem.width}; the release ties them (its conv stem has no width of "
                        "its own), so this subnet has no release arch")
    channels = [st.width for st in arch.stages]
    depths = [st.depth for st in arch.stages]
    ratios, kernels, mlp, heads, vs = [], [], [], [], []
    for st in arch.conv_stages:
        ratios += [st.expand] * st.depth
        kernels += [st.kernel] * st.depth
    for st in arch.transformer_stages:
        mlp += [st.mlp_ratio] * st.depth
        heads += [st.width // HEAD_DIM] * st.depth
        vs += [st.v_scale] * st.depth
    n_t = len(mlp)
    return [arch.resolution, channels, depths, ratios, kernels, mlp, heads, [1] * n_t,
            [1] * n_t, vs]


def release_violations(arch: ArchConfig) -> list[str]:
    """The release sampler's rules that ``arch`` breaks (empty: the release could train it)."""
    out = []
    if arch.stem_width != arch.stages[0].width:
        out.append(f"the conv stem ({arch.stages[0].width}) must be as wide as the first conv "
                   f"({arch.stem_width})")
    prev_name, prev = "first conv", arch.stem_width
    for sp, st in zip(STAGE_SPACES, arch.stages):
        if st.width < prev:
            out.append(f"{sp.name} ({st.width}) is narrower than {prev_name} ({prev})")
        prev_name, prev = sp.name, st.width
    return out


def release_named_models(path: str | Path) -> dict[str, ArchConfig]:
    """The named models (``elastic_*`` keys) of a release YAML such as
    ``final_3min_space_eval.yaml``."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ArchError(f"release config {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ArchError(f"{str(p)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ArchError(f"{str(p)!r} is not a release config (no top-level mapping)")
    out = {}
    for k, v in data.items():
        if isinstance(k, str) and k.startswith("elastic_"):
            try:
                out[k] = from_release(v)
            except ArchError as e:
                raise ArchError(f"{str(p)!r}, {k}: {e}") from None
    if not out:
        raise ArchError(f"{str(p)!r} names no models (keys elastic_*); "
                        "final_3min_space_eval.yaml of the release has nine")
    return out
