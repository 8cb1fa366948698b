"""The ElasticViT release's own code (../shared/reference/elasticvit_release, MIT) as a test oracle.

It is imported in place, never copied. Its only dependency that does not install beside the
pinned CPU torch is ``timm`` (timm requires torchvision, whose wheels pin another torch), so
:func:`release_modules` puts a shim in ``sys.modules`` providing exactly the four timm names the
release's supernet and checkpoint code import, each with timm's semantics:

* ``timm.models.layers.trunc_normal_`` -> ``torch.nn.init.trunc_normal_`` (timm's is the same
  algorithm; only initialisation, which the oracle overwrites anyway);
* ``timm.utils.reduce_tensor`` -> all-reduce mean (used by the release only under DDP);
* ``timm.utils.get_state_dict`` / ``unwrap_model`` -> timm's: unwrap ``ModelEma.ema`` and DDP's
  ``.module``, then ``state_dict()`` (this decides the checkpoint's key names);
* ``timm.utils.ModelEma`` -> timm's update rule ``ema = ema * decay + (1 - decay) * model``
  applied to every state entry, integer buffers included (this is what can change the stored
  relative-position index of a real EMA checkpoint).

Nothing else of the release is changed.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
import types
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import torch

RELEASE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / \
    "elasticvit_release" / "ElasticViT"
PKG = "elasticvit_release"


def available() -> bool:
    return (RELEASE / "models" / "model.py").is_file()


def unwrap_model(model):
    if isinstance(model, ModelEma):
        return unwrap_model(model.ema)
    return model.module if hasattr(model, "module") else model


def get_state_dict(model, unwrap_fn=unwrap_model):
    return unwrap_fn(model).state_dict()


def reduce_tensor(tensor, n):
    rt = tensor.clone()
    torch.distributed.all_reduce(rt, op=torch.distributed.ReduceOp.SUM)
    return rt / n


class ModelEma:
    """timm's (v0.4-0.9) ``ModelEma``: a deep copy updated as ema*decay + (1-decay)*model."""

    def __init__(self, model, decay=0.9999, device="", resume=""):
        self.ema = copy.deepcopy(model).eval()
        self.decay = decay
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model):
        msd = model.state_dict()
        for k, ema_v in self.ema.state_dict().items():
            ema_v.copy_(ema_v * self.decay + (1.0 - self.decay) * msd[k].detach())


def _install_timm_shim() -> None:
    if "timm" in sys.modules and getattr(sys.modules["timm"], "__evit_shim__", False):
        return
    timm = types.ModuleType("timm")
    timm.__evit_shim__ = True
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    layers.trunc_normal_ = torch.nn.init.trunc_normal_
    utils = types.ModuleType("timm.utils")
    utils.reduce_tensor, utils.get_state_dict = reduce_tensor, get_state_dict
    utils.unwrap_model, utils.ModelEma = unwrap_model, ModelEma

    def create_model(*a, **k):
        raise RuntimeError("the timm shim builds no timm models (the oracle needs none)")

    timm.create_model = create_model
    timm.models, timm.utils, models.layers = models, utils, layers
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers,
                        "timm.utils": utils})


def _load(name: str, path: Path, package: bool = False):
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if package else None)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@cache
def release_modules() -> SimpleNamespace:
    """The release's ``models`` package and its ``util/checkpoint.py``, imported in place."""
    if not available():
        raise FileNotFoundError(f"the release's source is not at {RELEASE}")
    _install_timm_shim()
    models = _load(f"{PKG}.models", RELEASE / "models" / "__init__.py", package=True)
    ckpt = _load(f"{PKG}_checkpoint", RELEASE / "util" / "checkpoint.py")
    return SimpleNamespace(models=models, checkpoint=ckpt)


def _ns(d):
    if isinstance(d, dict):
        return SimpleNamespace(**{str(k) if not isinstance(k, int) else k: _ns(v)
                                  for k, v in d.items()}) if all(
            isinstance(k, str) for k in d) else {k: _ns(v) for k, v in d.items()}
    return d


def release_config(name: str = "final_3min_space.yaml") -> dict:
    import yaml

    return yaml.safe_load((RELEASE / "configs" / name).read_text())


def build_release_supernet(num_classes: int = 1000):
    """``FusedSuperNet`` built by the release's ``build_supernet`` from final_3min_space.yaml
    (no offline FLOPs tables: ``lib_dir`` unset, as the release allows)."""
    mods = release_modules()
    cfg = release_config()
    cfg["dataloader"]["num_classes"] = num_classes
    cfg["lib_dir"] = None
    args = _ns(cfg)
    model, _, _ = mods.models.build_supernet(args)
    return model


# --------------------------------------------------------------------------- oracle weights


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights whose outputs depend strongly on the input: std 1/sqrt(fan-in) for every conv
    and linear weight, small biases (std 0.05, so they do not dominate the logits), non-trivial
    BN statistics and affines, LN affines, and position-bias tables of std 1 (a tiny fresh
    init would hide most mistakes)."""
    g = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict(keep_vars=True).items():
        if not t.dtype.is_floating_point:
            continue
        leaf = name.rsplit(".", 1)[-1]
        shape = t.shape
        if "attention_bias" in name:
            v = torch.randn(shape, generator=g)
        elif leaf == "running_var":
            v = torch.rand(shape, generator=g) * 1.5 + 0.5
        elif leaf == "running_mean":
            v = torch.randn(shape, generator=g) * 0.2
        elif leaf == "weight" and t.ndim == 1:  # BN / LN scale
            v = torch.rand(shape, generator=g) + 0.5
        elif leaf == "bias":
            v = torch.randn(shape, generator=g) * 0.05
        else:
            fan_in = t[0].numel()
            v = torch.randn(shape, generator=g) / fan_in ** 0.5
        t.copy_(v)
    return model


def _bank_entries(model, n: int, seed: int) -> list:
    """``n`` entries per bank in the release's form (``[arch tuple, -loss]``) holding subnets
    its training could put there: the release's channel rules, MFLOPs in [F, F + 2·bound] for
    a bank at level F (drawn by evit's sampler: the release's own rejection sampler takes
    ~25 s for these 24 draws)."""
    import numpy as np

    from toolkit.release.arch import to_release
    from toolkit.space import SearchSpace

    space, rng = SearchSpace(seed, rules="release"), np.random.default_rng(seed)
    banks = []
    for level in model.bank_flops_ranges:
        entries = []
        for i in range(n):
            a = to_release(space.sample_at(level, level + 2 * model.flops_bound, rng))
            entries.append([tuple(tuple(f) if isinstance(f, list) else f for f in a),
                            -2.0 - 0.01 * i])
        banks.append(entries)
    return banks


def write_release_checkpoint(out_dir: Path, num_classes: int = 1000, seed: int = 0,
                             ema_updates: int = 3) -> tuple[Path, dict]:
    """A release checkpoint written by the release's own ``save_checkpoint``.

    EMA slot: weights ``randomize(seed)``; live slot: ``randomize(seed + 1)`` (so reading the
    wrong slot is visible). The EMA slot gets ``ema_updates`` updates of timm's rule towards
    the live weights, which also changes some entries of its integer position-index buffers,
    as a real EMA does (so a recomputed index is visible too).
    """
    mods = release_modules()
    ema_src = randomize(build_release_supernet(num_classes), seed)
    live = randomize(build_release_supernet(num_classes), seed + 1)
    ema = ModelEma(ema_src, decay=0.99985)
    for _ in range(ema_updates):
        ema.update(live)
    changed = sum(int((e != lv).sum()) for k, e in ema.ema.state_dict().items()
                  if k.endswith("relative_position_index")
                  for lv in [live.state_dict()[k]])
    live.banks = _bank_entries(live, 3, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    mods.checkpoint.save_checkpoint(600, "supernet", live, {"top1": 80.0, "top5": 95.0},
                                    False, "oracle", str(out_dir), optimizer=None,
                                    model_ema=ema)
    return out_dir / "oracle_checkpoint.pth.tar", {"index_entries_changed_by_ema": changed}


def load_release_for_eval(path: Path, num_classes: int = 1000):
    """The release's supernet with the checkpoint loaded by the release's ``load_checkpoint``
    (which reads the EMA slot). Its final ``model.cuda()`` is made a no-op on this object: the
    only change, needed on a machine without a GPU."""
    mods = release_modules()
    model = build_release_supernet(num_classes)
    model.cuda = lambda *a, **k: model
    model, _, _ = mods.checkpoint.load_checkpoint(model, str(path), strict=True)
    return model.eval()


@torch.no_grad()
def release_logits(model, arch: list, x: torch.Tensor) -> torch.Tensor:
    model.set_arch(*arch)
    return model(x)


def oracle_inputs(n: int = 4, seed: int = 5) -> torch.Tensor:
    """224x224 inputs that differ in structure, contrast and colour (i.i.d. noise images all
    pool to nearly the same features, which would hide mistakes)."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.randn(n, 3, 7, 7, generator=g), size=224, mode="bicubic")
    noise = torch.randn(n, 3, 224, 224, generator=g) * torch.rand(n, 1, 1, 1, generator=g)
    return 1.5 * smooth + 2 * noise + torch.randn(n, 3, 1, 1, generator=g)


def oracle_subnets() -> dict[str, list]:
    """The subnets compared, as release arch lists: the nine named models of
    final_3min_space_eval.yaml, the space's min (T0) and max, one subnet the release's sampler
    could draw at each of the six resolutions, and two it would not draw (a stage narrower than
    the one before: the shortcut convs of the downsample blocks at work)."""
    import numpy as np

    from toolkit.release.arch import release_named_models, to_release
    from toolkit.space import SPACE, SearchSpace, TransformerStage

    out = {k: to_release(a) for k, a in release_named_models(
        RELEASE / "configs" / "final_3min_space_eval.yaml").items()}
    out["space_min"], out["space_max"] = to_release(SPACE.min()), to_release(SPACE.max())
    rs = SearchSpace(seed=7, rules="release")
    rng = np.random.default_rng(7)

    def draw():  # batches of 64 uniform subnets, the first the release's rules allow (the
        while True:  # draw these stored figures were recorded with)
            enc = SPACE.sample_encoded(64, rng)
            ok = enc[rs.allowed_encoded(enc)]
            if len(ok):
                return SPACE.decode(ok[0])

    for res in (128, 160, 176, 192, 224, 256):
        while True:
            a = draw()
            if a.resolution == res:
                break
        out[f"random_{res}"] = to_release(a)
    free = SearchSpace(seed=8)
    for res in (176, 224):
        while True:
            a = free.sample(rng)
            if a.resolution == res:
                break
        a = a.replace(stem_width=a.stages[0].width,
                      t3=TransformerStage(a.stage("t3").depth, 288, a.stage("t3").mlp_ratio, 4),
                      t4=TransformerStage(2, 160, a.stage("t4").mlp_ratio, 3))
        out[f"narrowing_{res}"] = to_release(a)
    return out


def summarize(logits: torch.Tensor) -> dict:
    """The figures kept per subnet: the first 8 logits of each input, row sums, argmax, max."""
    return {"first8": [[round(float(v), 7) for v in row[:8]] for row in logits],
            "row_sum": [round(float(v), 5) for v in logits.sum(1)],
            "argmax": [int(v) for v in logits.argmax(1)],
            "max_abs": round(float(logits.abs().max()), 6)}
