"""Hierarchical sub-spaces: the subnets a complexity level may train (paper Sec. 3.2).

The hierarchical smallest subnets (HSS) "logically partition the whole search space into N
hierarchical sub-spaces". The release implements it in ``arch_sampling_engine(min_arch=HSS)``
(``models/model.py``, with ``SuperCNNLayer``/``SuperTransformerBlock.arch_sampling``): a
subnet trained at a level is at least the level's HSS (``select_min_arch``) dimension by
dimension, its conv stem is as wide as its first conv (``equal_channels=True``), and no
stage is narrower than the one before (the ``while True`` width loops).

Modes (``--subspace``):

* ``hss`` (default): at least the HSS in resolution, first-conv width and every stage's
  width, depth, expansion ratio, kernel, MLP ratio and V scale, plus the channel rules.
* ``release``: exactly what the release's code enforces. Two of its floors differ from the
  paper's words: the MLP ratio is never floored (``SuperFFN.arch_sampling`` is called without
  ``min_mlp_ratio``), and the kernel floor is the HSS's *expansion ratio*
  (``min_kr_size=min_conv_ratio`` in ``SuperCNNLayer.arch_sampling``). For the three HSS
  (expansion 3, kernel 3) the kernel floor is the same; the MLP floor differs in min_2's t2
  (ratio 3), so at levels 300 and 400 ``release`` may draw t2 with MLP ratio 2.
* ``off``: the FLOPs window only (no HSS floor, no channel rules unless the supernet's
  layout has them): evit's sampler before sub-spaces, kept for ablation.

Within a sub-space the draw is uniform over sub-space ∩ FLOPs window (the release draws
dimension by dimension and re-draws a width until it is wide enough, which is not uniform).
"""

from __future__ import annotations

from toolkit.space import STAGE_SPACES, ArchConfig, ArchError, SearchSpace

__all__ = ["SUBSPACES", "hss_floors", "level_space", "in_subspace"]

SUBSPACES = ("hss", "release", "off")


def hss_floors(hss: ArchConfig, mode: str = "hss") -> dict[str, int]:
    """Per-column minimums (``SearchSpace(floors=...)``) of ``hss``'s sub-space."""
    if mode not in ("hss", "release"):
        raise ArchError(f"subspace = {mode!r} has no floors; choose hss or release")
    out = {"resolution": hss.resolution, "stem_width": hss.stem_width}
    for sp, st in zip(STAGE_SPACES, hss.stages):
        for dim in sp.dims:
            if dim == "expand" and len(sp.expands) == 1:
                continue  # not a column: mbv2_1's expansion is always 1
            value = getattr(st, dim)
            if mode == "release":
                if dim == "mlp_ratio":
                    continue  # the release never passes min_mlp_ratio to its FFN
                if dim == "kernel":
                    if sp.name == "mbv2_1":
                        continue  # the conv stem is sampled with min_conv_ratio=0
                    value = st.expand  # min_kr_size=min_conv_ratio (its typo)
            out[f"{sp.name}.{dim}"] = int(value)
    return out


def level_space(hss: ArchConfig | None, mode: str, base: SearchSpace) -> SearchSpace:
    """The space a level's subnets are drawn from: ``base`` itself when ``mode`` is off,
    else ``hss``'s sub-space with the release's channel rules."""
    if mode not in SUBSPACES:
        raise ArchError(f"subspace = {mode!r} is not allowed; choose one of "
                        f"{', '.join(SUBSPACES)}")
    if mode == "off" or hss is None:
        return base
    floors = hss_floors(hss, mode)
    # floors below the base space's own choices (none today) would let draws leave it
    return SearchSpace(None, rules="release", floors=floors)


def in_subspace(arch: ArchConfig, hss: ArchConfig, mode: str = "hss") -> bool:
    """Whether ``arch`` lies in ``hss``'s sub-space (``mode`` hss or release)."""
    return level_space(hss, mode, SearchSpace()).allows(arch)
