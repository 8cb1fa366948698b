"""``TrainConfig``: every training knob, typed, with JSON round trip and validation."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.space import SPACE
from toolkit.train.samplers import LEVELS, SAMPLERS
from toolkit.train.subspace import SUBSPACES

__all__ = ["TrainConfig", "ConfigError"]


class ConfigError(ValueError):
    pass


@dataclass
class TrainConfig:
    """Defaults are the release's (ImageNet) unless noted here or in docs/deviations.md;
    ``resolved()`` fills the ``None`` fields for the chosen data (the embedded digits get a
    short CPU-sized schedule and the embedded teacher)."""

    data: str | None = None  # ImageNet-layout folder; None = embedded digits
    out: str = "runs/train"
    sampler: str = "conflict-aware"
    layout: str | None = None  # evit | release; None: the --init-from checkpoint's, else evit
    init_from: str | None = None  # start from this supernet checkpoint's (EMA) weights
    levels: tuple[float, ...] | None = None  # MFLOPs; digits: 100-500, else the paper's 8
    level_window: float = 20.0  # release: 2 x flops_bound (10)
    subspace: str = "hss"  # hss | release | off: where a level's subnets come from
    steps: int | None = None  # total optimizer steps; else epochs x steps per epoch
    epochs: float | None = None  # release: 610
    batch_size: int | None = None  # per process; release: 96
    image_size: int = 224  # ImageFolder crop size (digits are 32x32)
    lr: float | None = None  # absolute; release: 5e-4 x global batch / 512
    min_lr: float | None = None
    warmup_lr: float | None = None  # release: 1e-6 x global batch / 512 (lr / 500)
    warmup_steps: int | None = None  # release: 5 epochs
    weight_decay: float = 0.05
    agc_clip: float = 0.1  # adaptive gradient clipping factor; 0 disables
    ema_decay: float | None = None  # release: 0.99985
    label_smoothing: float = 0.1
    mixup: float | None = None  # release: 0.01 (a near no-op); digits: 0
    cutmix: float | None = None
    # teacher specs (toolkit/train/teachers.py), probabilities averaged; None: digits ->
    # the embedded teacher, else none (release: two swsl ResNeXt-101s, downloaded)
    teachers: tuple[str, ...] | None = None
    teacher_temp: float = 0.2  # sharpening: softmax(logits / 0.2)
    alpha_min: float = -1.0
    alpha_max: float = 1.0
    alpha_clip: float = 5.0
    bank_small: int = 150
    bank_big: int = 50
    bank_big_from: float = 500.0
    q_start: float = 0.2
    q_increment: float = 0.15
    q_stages: int = 6
    pref_candidates: int = 5
    # re-score banks at epoch start and quarter-epochs, as the release (digits: off; its
    # 89-step "epochs" would re-score ~20x more often per step than ImageNet's)
    rescore: bool | None = None
    eval_every: int | None = None  # steps; 0 = only at the end
    bn_batches: int | None = None  # BN recalibration batches per evaluated subnet
    eval_images: int | None = None  # evaluate on the first N validation images (None: all)
    seed: int = 0
    workers: int | None = None
    ckpt_every: int | None = None  # steps
    log_every: int = 1
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    threads: int | None = None  # torch CPU threads (None: torch default)

    def __post_init__(self) -> None:
        if self.levels is not None:
            self.levels = tuple(float(v) for v in self.levels)
        if self.teachers is not None and not isinstance(self.teachers, str):
            self.teachers = tuple(self.teachers)

    def validate(self) -> None:
        def bad(name: str, value: Any, allowed: str) -> ConfigError:
            return ConfigError(f"{name} = {value!r} is not allowed; {allowed}")

        if self.sampler not in SAMPLERS:
            raise bad("sampler", self.sampler, f"choose one of {', '.join(SAMPLERS)}")
        for name in ("steps", "batch_size", "warmup_steps", "bn_batches", "ckpt_every",
                     "eval_images"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < (0 if name == "warmup_steps"
                                                               else 1)):
                raise bad(name, v, "use a positive integer")
        lo, hi = SPACE.mflops_range()
        if self.levels is not None and (not self.levels or list(self.levels)
                                        != sorted(self.levels) or self.levels[0] < lo
                                        or self.levels[-1] > hi):
            raise bad("levels", self.levels,
                      f"give increasing MFLOPs levels within [{lo:.1f}, {hi:.1f}]")
        if not -1 <= self.alpha_min <= self.alpha_max <= 1:
            raise bad("alpha_min/alpha_max", (self.alpha_min, self.alpha_max),
                      "need -1 <= alpha_min <= alpha_max <= 1")
        if self.subspace not in SUBSPACES:
            raise bad("subspace", self.subspace, f"choose one of {', '.join(SUBSPACES)}")
        if self.teachers is not None:
            from toolkit.train.teachers import TeacherError, check_spec

            if isinstance(self.teachers, str):
                raise bad("teachers", self.teachers, "give a list of teacher specs")
            for i, spec in enumerate(self.teachers):
                try:
                    check_spec(spec)
                except TeacherError as e:
                    raise ConfigError(f"teachers[{i}]: {e}") from None
        if not (isinstance(self.teacher_temp, (int, float)) and self.teacher_temp > 0):
            raise bad("teacher_temp", self.teacher_temp, "use a positive number (release: 0.2)")
        if self.layout is not None and self.layout not in ("evit", "release"):
            raise bad("layout", self.layout, "choose evit or release")
        if self.init_from is not None and not Path(self.init_from).is_file():
            raise bad("init_from", self.init_from, "give an existing supernet checkpoint (e.g. "
                      "one written by `evit import-release` or evit-train)")
        if self.device not in ("auto", "cpu", "cuda"):
            raise bad("device", self.device, "choose auto, cpu or cuda")

    def resolved(self, num_train: int, world: int = 1) -> TrainConfig:
        """A copy with every ``None`` filled for this data set and world size."""
        digits = self.data is None
        c = dataclasses.replace(self)
        if c.levels is None:
            c.levels = (100.0, 200.0, 300.0, 400.0, 500.0) if digits else tuple(map(float,
                                                                                    LEVELS))
        if c.teachers is None:
            from toolkit.train.teachers import DIGITS_TEACHER

            c.teachers = (DIGITS_TEACHER,) if digits else ()
        if c.batch_size is None:
            c.batch_size = 16 if digits else 96
        steps_per_epoch = max(num_train // (c.batch_size * world), 1)
        if c.steps is None:
            epochs = c.epochs if c.epochs is not None else (3.0 if digits else 610)
            c.steps = max(1, round(epochs * steps_per_epoch))
        c.epochs = c.steps / steps_per_epoch
        if c.lr is None:
            c.lr = 2e-3 if digits else 5e-4 * c.batch_size * world / 512
        if c.min_lr is None:
            c.min_lr = c.lr / 100  # release: 5e-6 x global batch / 512
        if c.warmup_lr is None:
            c.warmup_lr = c.lr / 500  # release: 1e-6, scaled like lr
        if c.warmup_steps is None:
            c.warmup_steps = min(round(5 * steps_per_epoch), c.steps // 10) if not digits \
                else max(1, c.steps // 20)
        if c.ema_decay is None:
            c.ema_decay = 0.99 if digits else 0.99985
        if c.mixup is None:
            c.mixup = 0.0 if digits else 0.01
        if c.cutmix is None:
            c.cutmix = 0.0 if digits else 0.01
        if c.rescore is None:
            c.rescore = not digits
        if c.eval_every is None:
            c.eval_every = 0 if digits else steps_per_epoch
        if c.bn_batches is None:
            c.bn_batches = 16 if digits else 65
        if c.workers is None:
            c.workers = 0 if digits else 8
        if c.ckpt_every is None:
            c.ckpt_every = 50 if digits else steps_per_epoch
        return c

    # -- JSON
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["levels"] = list(self.levels) if self.levels is not None else None
        d["teachers"] = list(self.teachers) if self.teachers is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        if "teacher" in d or "teacher_weights" in d:  # configs written before several teachers
            old, weights = d.pop("teacher", None), d.pop("teacher_weights", None)
            if "teachers" not in d:
                d["teachers"] = [old + (f"@{weights}" if weights else "")] if old else []
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown training option(s) {sorted(unknown)}; known: "
                              f"{', '.join(sorted(names))}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        from toolkit.fileio import atomic_write_json

        atomic_write_json(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read training config {str(path)!r}: {e}") from None
