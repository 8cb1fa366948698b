"""Supernet training loop (``evit-train``).

One step: pick the step's subnets (sampler), run each on the same batch (resized inside the
supernet to the subnet's resolution), accumulate their gradients, clip (AGC), one AdamW step,
EMA update. Uniform/max subnets learn from the teachers' averaged sharpened probabilities
(the release's loss; the labels are not used), or, with no teacher, from the (mixed,
label-smoothed) labels; the HSS/min subnet (and the sandwich's others) learn by
alpha-divergence from the step's other subnets (mean probabilities), or from the max.

Data parallel: launch with ``torchrun --nproc_per_node N -m toolkit.cli.train ...``. Every rank
samples the same subnets (per-step seeds), gradients are averaged with a single all-reduce per
step (cheaper than DDP's per-backward sync with 4 backward passes; no unused-parameter search),
and bank scores are averaged so the banks stay identical.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from toolkit.checkpoint import (
    CheckpointError,
    atomic_save,
    checkpoint_header,
    load_checkpoint,
    supernet_from_checkpoint,
)
from toolkit.data.datasets import BatchStream, build_datasets
from toolkit.evaluate import evaluate_subnets
from toolkit.fileio import atomic_write, atomic_write_json, sweep_temps
from toolkit.flops import flops
from toolkit.space import SPACE, ArchConfig, SearchSpace
from toolkit.supernet import Supernet
from toolkit.train.config import ConfigError, TrainConfig
from toolkit.train.losses import alpha_divergence, soft_cross_entropy
from toolkit.train.mixup import mixup_cutmix
from toolkit.train.samplers import ConflictAwareSampler, make_sampler
from toolkit.train.subspace import level_space
from toolkit.train.teachers import load_teachers, teacher_probs
from toolkit.zoo import hss_archs

__all__ = ["train", "TrainResult", "EMA", "adaptive_clip_grad", "param_groups", "lr_at",
           "eval_archs"]


# --------------------------------------------------------------------------- pieces


class EMA:
    """Exponential moving average of the weights (buffers copied). Decay ramps up as
    min(decay, (1 + n) / (10 + n)) so short runs are not dominated by the initial weights."""

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, m in zip(self.module.parameters(), model.parameters()):
            e.lerp_(m.detach(), 1.0 - d)
        for e, m in zip(self.module.buffers(), model.buffers()):
            e.copy_(m)

    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()


def _unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    if x.ndim <= 1:
        return x.norm(2)
    return x.norm(2, dim=tuple(range(1, x.ndim)), keepdim=True)


@torch.no_grad()
def adaptive_clip_grad(params, clip: float, eps: float = 1e-3) -> None:
    """AGC (Brock et al. 2021): scale each unit's gradient so that ‖g‖ ≤ clip · max(‖w‖, eps)."""
    for p in params:
        if p.grad is None:
            continue
        max_norm = _unitwise_norm(p.detach()).clamp_min(eps) * clip
        g_norm = _unitwise_norm(p.grad.detach())
        scale = (max_norm / g_norm.clamp_min(1e-6)).clamp(max=1.0)
        p.grad.mul_(scale)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on the CNN parts (first conv and every MBConv, as the release) nor on
    1-D tensors (biases, norms). The position-bias tables decay like other weights: the release
    replaces its ``no_weight_decay`` with the CNN list, so timm decays ``attention_bias``."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        conv_part = name.startswith("first_") or ".blocks." in name or ".reduction." in name
        (no_decay if conv_part or p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up from warmup_lr, then cosine from lr to min_lr."""
    if step < cfg.warmup_steps:
        return cfg.warmup_lr + (cfg.lr - cfg.warmup_lr) * step / max(cfg.warmup_steps, 1)
    t = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(t, 1.0)))


def eval_archs(levels: tuple[float, ...], window: float = 20.0, space: SearchSpace = SPACE,
               subspace: str = "off") -> dict[str, ArchConfig]:
    """The subnets evaluated during training: the 3 HSS and one fixed subnet per level,
    drawn where that level trains (``space``'s rules and the level's sub-space)."""
    from toolkit.train.samplers import hss_for_level

    out = dict(hss_archs())
    for f in levels:
        sp = level_space(out[hss_for_level(f)], subspace, space)
        out[f"level_{f:g}"] = sp.sample_at(f, f + window, rng=np.random.default_rng(
            (1234, int(f))))
    return out


# --------------------------------------------------------------------------- distributed


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_dist(device: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    backend = "nccl" if device == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _allreduce_grads(model: nn.Module, d: Dist) -> None:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if d.world == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= d.world
    off = 0
    for g in grads:
        g.copy_(flat[off:off + g.numel()].view_as(g))
        off += g.numel()


def _broadcast_buffers(model: nn.Module, d: Dist) -> None:
    """BN running statistics from rank 0 to all (as DDP's broadcast_buffers does)."""
    bufs = [b for b in model.buffers() if b.is_floating_point()]
    if d.world == 1 or not bufs:
        return
    flat = torch.cat([b.reshape(-1) for b in bufs])
    dist.broadcast(flat, 0)
    off = 0
    for b in bufs:
        b.copy_(flat[off:off + b.numel()].view_as(b))
        off += b.numel()


def _mean_across(value: float, d: Dist, device: torch.device) -> float:
    if d.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / d.world


# --------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    out: Path
    checkpoint: Path
    steps: int
    evals: dict[str, float]
    seconds: float
    images_per_second: float


def _weights_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                disable=not sys.stderr.isatty() and os.environ.get("EVIT_PROGRESS") != "1")


def _truncate_log(path: Path, start_step: int) -> None:
    """On resume, drop log lines a killed run wrote after its last checkpoint."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", -1) < start_step:
                keep.append(line)
        except json.JSONDecodeError:
            continue  # a half-written last line
    atomic_write(path, "".join(k + "\n" for k in keep))


RUN_FILES = ("last.pt", "supernet.pt", "config.json", "log.jsonl", "eval.csv", "summary.json")


def check_run_folder(out: str | Path, resume: bool | str = False,
                     overwrite: bool = False) -> list[Path]:
    """Refuse to start a new run over another one; the old run's files (to delete when
    ``overwrite``). A resumed run is the same run: nothing to refuse."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out = {str(out)!r} is a file, not a folder; choose a folder")
    old = [out / f for f in RUN_FILES if (out / f).exists()]
    old += sorted(out.glob("summary_rank*.json")) if out.is_dir() else []
    if resume:
        if overwrite:
            raise ConfigError("--resume continues the run in --out, --overwrite deletes it: "
                              "give one of them")
        return []
    if old and not overwrite:
        raise ConfigError(
            f"{out} holds another training run ({', '.join(p.name for p in old)}); continue it "
            "with --resume, start over with --overwrite (deletes it), or choose another --out")
    return old


def _truncate_eval(path: Path, start_step: int) -> None:
    """On resume, drop evaluation rows the killed run wrote after its checkpoint (an
    evaluation at the checkpoint's own step came before it and stays)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    keep = lines[:1] + [ln for ln in lines[1:]
                        if ln.split(",", 1)[0].isdigit() and int(ln.split(",", 1)[0]) <= start_step]
    atomic_write(path, "".join(k + "\n" for k in keep))


def train(cfg: TrainConfig, resume: bool | str = False, progress: bool = True,
          overwrite: bool = False) -> TrainResult:
    """Train a supernet as configured; ``resume=True`` continues ``cfg.out/last.pt``; a new
    run into a folder holding another one needs ``overwrite=True`` (it deletes the old)."""
    cfg.validate()
    old_run = check_run_folder(cfg.out, resume, overwrite)  # before any work, on every rank
    t_start = time.time()
    device_name = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available()
                                                          else "cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d = _init_dist(device_name)
    device = torch.device(device_name, d.local_rank) if device_name == "cuda" \
        else torch.device("cpu")
    data = build_datasets(cfg.data, cfg.image_size, cfg.seed)
    cfg = cfg.resolved(len(data.train), d.world)
    out = Path(cfg.out)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        for f in old_run:  # --overwrite: the old run goes before the new one writes anything
            f.unlink(missing_ok=True)
        sweep_temps(out)  # what a killed checkpoint write left (a .last.pt.*.tmp)

    torch.manual_seed(cfg.seed)
    init = None
    if cfg.init_from and not resume:
        init = load_checkpoint(cfg.init_from)
        if cfg.layout is not None and cfg.layout != init.get("layout", "evit"):
            raise CheckpointError(f"--init-from {cfg.init_from} has layout "
                                  f"{init.get('layout', 'evit')!r}, this run asks for "
                                  f"--layout {cfg.layout}; drop --layout or make them agree")
    if cfg.layout is None:
        if resume:  # a resumed run keeps the layout it was started with
            rpath = Path(resume) if isinstance(resume, (str, Path)) else out / "last.pt"
            if rpath.is_file():
                cfg.layout = load_checkpoint(rpath).get("layout", "evit")
        elif init is not None:
            cfg.layout = init.get("layout", "evit")
        cfg.layout = cfg.layout or "evit"
    model = Supernet(num_classes=data.num_classes, layout=cfg.layout)
    if init is not None:
        _start_from(model, init, cfg.init_from)
        del init
    model = model.to(device)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    ema = EMA(model, cfg.ema_decay)
    extra: dict[str, Any] = {"subspace": cfg.subspace}
    if cfg.sampler == "conflict-aware":
        extra.update(bank_small=cfg.bank_small, bank_big=cfg.bank_big,
                     bank_big_from=cfg.bank_big_from, q_start=cfg.q_start,
                     q_increment=cfg.q_increment, q_stages=cfg.q_stages,
                     candidates=cfg.pref_candidates)
    if model.subnet_rules != "none":  # release layout: the subnets the release's sampler draws
        extra["space"] = SearchSpace(cfg.seed, rules=model.subnet_rules)
    sampler = make_sampler(cfg.sampler, cfg.seed, cfg.levels, cfg.level_window, **extra)
    teachers = load_teachers(cfg.teachers, data.num_classes, data.image_size, device)

    start = 0
    ckpt_path = out / "last.pt"
    if resume:
        rpath = Path(resume) if isinstance(resume, (str, Path)) else ckpt_path
        ck = load_checkpoint(rpath, map_location=device)
        if "optimizer" not in ck or "sampler" not in ck:
            raise CheckpointError(f"{str(rpath)!r} holds weights only, no training state; "
                                  "it cannot be resumed")
        saved = ck.get("config", {})
        if "subspace" not in saved:
            saved["subspace"] = "off"  # runs from before sub-spaces drew without them
        for key in ("sampler", "levels", "batch_size", "steps", "seed", "data", "layout",
                    "subspace"):
            old = saved.get(key)
            new = cfg.to_dict()[key]
            if old is not None and old != new:
                raise CheckpointError(f"cannot resume {str(rpath)!r}: it was trained with "
                                      f"{key}={old!r}, this run has {key}={new!r}")
        model.load_state_dict(ck["model"])
        ema.module.load_state_dict(ck["ema"])
        ema.updates = int(ck.get("ema_updates", 0))
        opt.load_state_dict(ck["optimizer"])
        sampler.load_state_dict(ck["sampler"])
        start = int(ck["step"])
    if d.main:
        cfg.save(out / "config.json")
        _truncate_log(out / "log.jsonl", start)
        _truncate_eval(out / "eval.csv", start)

    stream = BatchStream(data.train, cfg.batch_size, cfg.seed, d.rank, d.world, cfg.workers)
    spe = stream.steps_per_epoch
    val_set = data.val if cfg.eval_images is None else torch.utils.data.Subset(
        data.val, range(min(cfg.eval_images, len(data.val))))
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=64, num_workers=cfg.workers)
    calib = [x for _, x, _ in _take(stream, cfg.bn_batches, start=0)]
    archs_eval = eval_archs(cfg.levels, cfg.level_window, SearchSpace(rules=model.subnet_rules),
                            cfg.subspace if cfg.sampler != "sandwich" else "off")
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and cfg.amp
           else contextlib.nullcontext())  # the one place for mixed precision
    log = (out / "log.jsonl").open("a") if d.main else None
    bar = _progress(cfg.steps, start, progress and d.main)
    evals: dict[str, float] = {}
    images = 0
    t_loop = time.time()

    def score(arch: ArchConfig, x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad(), amp:
            s = -float(F.cross_entropy(model(x, arch).float(), y))
        return _mean_across(s, d, device)

    try:
        for step, x, y in stream.iterate(start):
            if step >= cfg.steps:
                break
            t0 = time.time()
            model.train()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            xm, soft = mixup_cutmix(x, y, data.num_classes, cfg.seed, step, cfg.mixup,
                                    cfg.cutmix, cfg.label_smoothing)
            progress_frac = step / cfg.steps
            epoch, pos = divmod(step, spe)
            rescore = isinstance(sampler, ConflictAwareSampler) and cfg.rescore
            batch_score = lambda a, x=x, y=y: score(a, x, y)  # noqa: E731
            if rescore and pos == 0 and step > 0:  # epoch start: every bank on this batch
                sampler.rescore(batch_score)
            plan = sampler.plan(step, progress_frac)
            if rescore and pos > 0 and pos in {spe // 4, spe // 2, 3 * spe // 4}:
                sampler.rescore(batch_score, plan.level)  # quarter epochs: this level's bank
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            t_probs = None
            if teachers:  # the release's target: mean of the teachers' sharpened softmax
                with amp:
                    t_probs = teacher_probs(teachers, xm, cfg.teacher_temp)
            losses: list[float] = []
            probs: list[torch.Tensor] = []
            max_probs = None
            for sub in plan.subnets:
                with amp:
                    logits = model(xm, sub.arch)
                if sub.role in ("uniform", "max"):
                    loss = soft_cross_entropy(logits, t_probs if t_probs is not None else soft)
                    p = F.softmax(logits.detach().float(), dim=-1)
                    probs.append(p)
                    if sub.role == "max":
                        max_probs = p
                else:  # "min" (HSS) or sandwich "random": distil from the others
                    target = max_probs if max_probs is not None else torch.stack(probs).mean(0)
                    loss = alpha_divergence(logits, target, cfg.alpha_min, cfg.alpha_max,
                                            cfg.alpha_clip)
                loss.backward()
                losses.append(float(loss.detach()))
                if sub.explored and isinstance(sampler, ConflictAwareSampler):
                    if xm is x:  # no mixing: the training forward already has these logits
                        s = _mean_across(-float(F.cross_entropy(logits.detach().float(), y)),
                                         d, device)
                    else:  # release: an extra forward on the un-mixed batch
                        s = score(sub.arch, x, y)
                    sampler.observe(plan.level, sub.arch, s)
            _allreduce_grads(model, d)
            if cfg.agc_clip > 0:
                adaptive_clip_grad(model.parameters(), cfg.agc_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            _broadcast_buffers(model, d)
            ema.update(model)
            images += len(x) * len(plan.subnets) * d.world
            dt = time.time() - t0
            done = step + 1
            if log is not None and done % cfg.log_every == 0:
                rec = {"step": step, "epoch": epoch, "lr": lr_at(step, cfg), "losses": losses,
                       "level": None if plan.level is None else cfg.levels[plan.level],
                       "q": plan.q, "mflops": [round(flops(s.arch), 1) for s in plan.subnets],
                       "roles": [s.role for s in plan.subnets],
                       "explored": [s.explored for s in plan.subnets], "seconds": round(dt, 3),
                       "img_per_s": round(len(x) * d.world * len(plan.subnets) / dt, 1)}
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(level=None if plan.level is None else cfg.levels[plan.level],
                                loss=f"{np.mean(losses):.3f}")
            last = done == cfg.steps
            if cfg.eval_every and done % cfg.eval_every == 0 and not last:
                evals = _evaluate(ema.module, archs_eval, calib, val_loader, device, out, done, d)
            if d.main and (done % cfg.ckpt_every == 0 or last):
                _save(ckpt_path, model, ema, opt, sampler, done, cfg, data.num_classes)
                if log is not None:
                    log.write(json.dumps({"step": step, "event": "checkpoint",
                                          "path": str(ckpt_path)}) + "\n")
                    log.flush()
        loop_seconds = time.time() - t_loop
        evals = _evaluate(ema.module, archs_eval, calib, val_loader, device, out, cfg.steps, d)
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    final = out / "supernet.pt"
    if d.main:
        _save(final, model, ema, opt, sampler, cfg.steps, cfg, data.num_classes)
    summary = {"steps": cfg.steps, "resumed_from": start, "evals": evals,
               "seconds": round(time.time() - t_start, 1),
               "train_images_per_second": round(images / max(loop_seconds, 1e-9), 2),
               "weights_sha256": _weights_digest(model), "ema_sha256": _weights_digest(ema.module),
               "sampler": cfg.sampler, "subspace": cfg.subspace,
               "teachers": list(cfg.teachers), "world": d.world, "rank": d.rank}
    summary_name = "summary.json" if d.main else f"summary_rank{d.rank}.json"
    if d.world > 1 or d.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / summary_name, summary, indent=1)
    return TrainResult(out, final, cfg.steps, evals, summary["seconds"],
                       summary["train_images_per_second"])


def _start_from(model: Supernet, ckpt: dict, path: str) -> None:
    """Load ``ckpt``'s (EMA) weights into ``model`` for fine-tuning; a classifier for another
    number of classes is left fresh (the usual transfer to one's own data)."""
    n = int(ckpt.get("num_classes", 1000))
    src = supernet_from_checkpoint({**ckpt, "num_classes": n}, path).state_dict()
    own = model.state_dict()
    keep = {k: v for k, v in src.items() if not (k.startswith("head.classifier.")
                                                 and v.shape != own[k].shape)}
    model.load_state_dict(keep, strict=False)
    if len(keep) < len(src):
        print(f"init from {path}: {n} classes there, {model.num_classes} here: the classifier "
              "starts fresh, every other weight is the checkpoint's", file=sys.stderr)


def _take(stream: BatchStream, n: int, start: int):
    it = stream.iterate(start)
    return [next(it) for _ in range(min(n, stream.steps_per_epoch))]


def _save(path: Path, model, ema, opt, sampler, step: int, cfg: TrainConfig,
          num_classes: int) -> None:
    atomic_save({**checkpoint_header(model.layout, num_classes), "model": model.state_dict(),
                 "ema": ema.state_dict(), "ema_updates": ema.updates, "optimizer": opt.state_dict(),
                 "sampler": sampler.state_dict(), "step": step, "config": cfg.to_dict()}, path)


def _evaluate(model, archs, calib, val_loader, device, out: Path, step: int,
              d: Dist) -> dict[str, float]:
    res = evaluate_subnets(model, archs, calib, val_loader, device)
    if d.main:
        path = out / "eval.csv"
        new = not path.exists()
        with path.open("a") as f:
            if new:
                f.write("step,subnet,mflops,top1\n")
            for name, acc in res.items():
                f.write(f"{step},{name},{flops(archs[name], model.num_classes):.2f},{acc:.4f}\n")
    return res
