"""Teachers: local models whose averaged, sharpened probabilities the uniform subnets learn.

The release distils from two ImageNet teachers, ``mean_i softmax(teacher_i(x) / 0.2)``, and
never shows the labels to the stochastic subnets. evit does the same with any number of
local teachers (``--teacher`` repeated), each one of:

* ``path/to/module.py:factory[@weights.pt]``: ``factory(num_classes=N)`` (or ``factory()``)
  builds an ``nn.Module``; the optional state dict loads with ``weights_only=True``;
* ``path/to/model.pt`` (or ``.ts``, ``.jit``, ``.pth``): a TorchScript archive (``torch.jit.save``);
* ``path/to/model.onnx``: run with onnxruntime (a fixed input size is met by bicubic resize);
* ``evit:digits``: the embedded digits teacher, a small CNN trained on first use (about 10 s
  on 2 CPU cores) and cached by the hash of its recipe and data.

A Python or TorchScript teacher is code that runs on your machine: use only your own or ones
you trust. Nothing is downloaded. Every teacher is checked on a dummy batch before training:
its output must be ``(batch, num_classes)`` and finite.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.checkpoint import TORCH_LOAD_ERRORS
from toolkit.fileio import cache_dir

__all__ = ["TeacherError", "load_teacher", "load_teachers", "teacher_probs", "check_spec",
           "digits_teacher", "DIGITS_TEACHER", "TEACHER_KINDS"]

DIGITS_TEACHER = "evit:digits"
TEACHER_KINDS = ("python", "torchscript", "onnx", "embedded")
_SCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit", ".torchscript")


class TeacherError(ValueError):
    """A teacher that cannot be used; the message names the spec and how to fix it."""


# --------------------------------------------------------------------------- specs

_FORMS = ("path/to/module.py:factory[@weights.pt], a TorchScript file (.pt/.ts), "
          f"an .onnx file or {DIGITS_TEACHER}")


def check_spec(spec: str) -> str:
    """The teacher kind of ``spec`` (cheap: files exist and look right); TeacherError if not."""
    if not isinstance(spec, str) or not spec:
        raise TeacherError(f"teacher = {spec!r} is not allowed; give {_FORMS}")
    if spec == DIGITS_TEACHER:
        return "embedded"
    if spec.startswith("evit:"):
        raise TeacherError(f"teacher = {spec!r}: the only embedded teacher is {DIGITS_TEACHER}")
    module, weights, factory = _split_python(spec)
    if module is not None:
        if not Path(module).is_file():
            raise TeacherError(f"teacher {spec!r}: module {module!r} does not exist")
        if not factory.isidentifier():
            raise TeacherError(f"teacher {spec!r}: {factory!r} is not a function name; use "
                               "path/to/module.py:factory")
        if weights is not None and not Path(weights).is_file():
            raise TeacherError(f"teacher {spec!r}: weights file {weights!r} does not exist")
        return "python"
    p = Path(spec)
    if not p.is_file():
        raise TeacherError(f"teacher {spec!r} does not exist; give {_FORMS}")
    if p.suffix.lower() == ".onnx":
        return "onnx"
    if p.suffix.lower() in _SCRIPT_SUFFIXES:
        if not zipfile.is_zipfile(p):
            raise TeacherError(f"teacher {spec!r} is not a TorchScript archive (evit never "
                               "unpickles a whole model); save it with torch.jit.save, or give "
                               "module.py:factory@weights.pt")
        with zipfile.ZipFile(p) as z:
            if not any("/code/" in n for n in z.namelist()):
                raise TeacherError(f"teacher {spec!r} holds weights only (a state dict), no "
                                   "model; give the code that builds it: "
                                   f"path/to/module.py:factory@{spec}")
        return "torchscript"
    raise TeacherError(f"teacher {spec!r}: unknown kind (suffix {p.suffix or 'none'}); give "
                       f"{_FORMS}")


def _split_python(spec: str) -> tuple[str | None, str | None, str]:
    """``module.py:factory[@weights]`` -> (module, weights, factory); (None, ..) otherwise."""
    body, at, weights = spec.rpartition("@")
    if not at:
        body, weights = spec, None
    module, colon, factory = body.rpartition(":")
    if not colon or not module.endswith(".py"):
        return None, None, ""
    return module, weights or None, factory


# --------------------------------------------------------------------------- loaders


class OnnxTeacher(nn.Module):
    """An ONNX classifier run by onnxruntime (inputs float32 NCHW; outputs logits)."""

    def __init__(self, path: str):
        super().__init__()
        import onnxruntime as ort

        try:
            self.sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime's own types derive from Exception
            raise TeacherError(f"teacher {path!r} is not a loadable ONNX model: {e}") from None
        ins = self.sess.get_inputs()
        if len(ins) != 1 or ins[0].type != "tensor(float)" or len(ins[0].shape) != 4:
            raise TeacherError(f"teacher {path!r}: need one float32 NCHW input, the model has "
                               f"{[(i.name, i.type, i.shape) for i in ins]}")
        self.input_name, shape = ins[0].name, ins[0].shape
        self.batch = shape[0] if isinstance(shape[0], int) else None
        hw = shape[2:]
        self.hw = tuple(hw) if all(isinstance(v, int) for v in hw) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hw is not None and tuple(x.shape[-2:]) != self.hw:
            x = F.interpolate(x.float(), size=self.hw, mode="bicubic", align_corners=False)
        a = x.detach().float().cpu().numpy()
        if self.batch is None:
            out = self.sess.run(None, {self.input_name: a})[0]
        else:  # a fixed batch size: run in chunks, the last one padded
            parts = []
            for i in range(0, len(a), self.batch):
                chunk = a[i:i + self.batch]
                n = len(chunk)
                if n < self.batch:
                    chunk = np.concatenate([chunk, np.zeros((self.batch - n, *chunk.shape[1:]),
                                                            np.float32)])
                parts.append(self.sess.run(None, {self.input_name: chunk})[0][:n])
            out = np.concatenate(parts)
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)


def _load_python(spec: str, num_classes: int) -> nn.Module:
    module, weights, fn = _split_python(spec)
    p = Path(module)
    loader = importlib.util.spec_from_file_location(
        f"evit_teacher_{hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]}", p)
    mod = importlib.util.module_from_spec(loader)
    try:
        loader.loader.exec_module(mod)
    except Exception as e:  # noqa: BLE001 - the user's module: any error it raises is reported
        raise TeacherError(f"teacher {spec!r}: importing {module!r} failed: "
                           f"{type(e).__name__}: {e}") from None
    if not callable(getattr(mod, fn, None)):
        raise TeacherError(f"teacher {spec!r}: module {module!r} has no function {fn!r}")
    factory = getattr(mod, fn)
    try:
        teacher = factory(num_classes=num_classes)
    except TypeError:
        teacher = factory()
    if not isinstance(teacher, nn.Module):
        raise TeacherError(f"teacher {spec!r}: {fn}() returned {type(teacher).__name__}, "
                           "not a torch.nn.Module")
    if weights:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except TORCH_LOAD_ERRORS as e:
            raise TeacherError(f"teacher {spec!r}: {weights!r} is not a state dict that loads "
                               f"with weights_only=True ({type(e).__name__}: {e})") from None
        if isinstance(state, dict):
            for key in ("state_dict", "model"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                                  for v in state.values()):
            raise TeacherError(f"teacher {spec!r}: {weights!r} holds no state dict of tensors")
        try:
            teacher.load_state_dict(state)
        except RuntimeError as e:
            first = str(e).splitlines()[:3]
            raise TeacherError(f"teacher {spec!r}: the weights do not fit the model "
                               f"{fn}() builds: {' '.join(first)}") from None
    return teacher


def load_teacher(spec: str, num_classes: int, image_size: int,
                 device: torch.device | str = "cpu") -> nn.Module:
    """One teacher, in eval mode without gradients, checked on a dummy batch."""
    kind = check_spec(spec)
    if kind == "embedded":
        if num_classes != 10:
            raise TeacherError(f"teacher {DIGITS_TEACHER} knows the 10 digits, this data has "
                               f"{num_classes} classes; give your own --teacher or --no-teacher")
        teacher: nn.Module = digits_teacher()
    elif kind == "python":
        teacher = _load_python(spec, num_classes)
    elif kind == "torchscript":
        try:
            teacher = torch.jit.load(spec, map_location="cpu")
        except (*TORCH_LOAD_ERRORS, torch.jit.Error) as e:
            raise TeacherError(f"teacher {spec!r} does not load as TorchScript: "
                               f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                               ) from None
    else:
        teacher = OnnxTeacher(spec)
    if kind != "onnx":
        teacher = teacher.to(device)
    teacher.eval()
    for p in teacher.parameters():  # (ScriptModules have no requires_grad_)
        p.requires_grad_(False)
    x = torch.zeros(2, 3, image_size, image_size, device=device)
    try:
        with torch.no_grad():
            out = teacher(x)
    except Exception as e:  # noqa: BLE001 - the user's model: any error it raises is reported
        raise TeacherError(f"teacher {spec!r} fails on a batch of shape {tuple(x.shape)}: "
                           f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                           ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TeacherError(f"teacher {spec!r} returns {shape} for a batch of 2; it must return "
                           f"logits of shape (batch, {num_classes})")
    if not torch.isfinite(out).all():
        raise TeacherError(f"teacher {spec!r} returns non-finite logits")
    return teacher


def load_teachers(specs: tuple[str, ...], num_classes: int, image_size: int,
                  device: torch.device | str = "cpu") -> list[nn.Module]:
    return [load_teacher(s, num_classes, image_size, device) for s in specs]


@torch.no_grad()
def teacher_probs(teachers: list[nn.Module], x: torch.Tensor, temperature: float = 0.2
                  ) -> torch.Tensor:
    """The release's target: mean over teachers of softmax(logits / T) (T = 0.2 sharpens)."""
    return torch.stack([F.softmax(t(x).float() / temperature, dim=-1)
                        for t in teachers]).mean(0)


# --------------------------------------------------------------------------- embedded teacher


class DigitsCNN(nn.Module):
    """The embedded digits teacher: three conv blocks at 16x16 (the digits are 8x8 upscaled)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        self.features = nn.Sequential(nn.AvgPool2d(2), *block(3, 32), *block(32, 32),
                                      nn.MaxPool2d(2), *block(32, 64), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 32:
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        return self.fc(self.features(x).flatten(1))


_RECIPE = {"model": "DigitsCNN-v1", "epochs": 30, "batch": 64, "lr": 3e-3,
           "weight_decay": 1e-4, "seed": 0}


def _cache_path(data_digest: str) -> Path:
    key = json.dumps({**_RECIPE, "data": data_digest,
                      "torch": ".".join(torch.__version__.split(".")[:2])}, sort_keys=True)
    return cache_dir("teachers") / f"digits-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def digits_teacher(cache: bool = True, verbose: bool = True) -> DigitsCNN:
    """The embedded digits teacher: loaded from the cache, or trained (and cached) now."""
    from toolkit.data.datasets import DigitsDataset

    train_set = DigitsDataset("train", seed=_RECIPE["seed"])
    digest = hashlib.sha256(train_set.x.numpy().tobytes()
                            + train_set.y.numpy().tobytes()).hexdigest()
    path = _cache_path(digest)
    model = DigitsCNN()
    if cache and path.is_file():
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
            if ck.get("format") != "evit-teacher" or ck.get("recipe") != _RECIPE:
                raise ValueError("another recipe")
            model.load_state_dict(ck["state_dict"])
            return model.eval()
        except (*TORCH_LOAD_ERRORS, AttributeError, TypeError) as e:  # rebuilt, never trusted
            print(f"evit: the cached digits teacher {path} is unusable ({e}); training it again",
                  file=sys.stderr)
    t0 = time.time()
    top1 = _fit_digits(model, train_set)
    if verbose:
        print(f"evit: trained the embedded digits teacher in {time.time() - t0:.1f} s "
              f"(held-out top-1 {top1 * 100:.1f}%); cached at {path}", file=sys.stderr)
    if cache:
        from toolkit.checkpoint import atomic_save

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save({"format": "evit-teacher", "recipe": _RECIPE, "val_top1": top1,
                     "state_dict": model.state_dict()}, path)
    return model.eval()


def _fit_digits(model: DigitsCNN, train_set) -> float:
    from toolkit.data.datasets import DigitsDataset

    g = torch.Generator().manual_seed(_RECIPE["seed"])
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(_RECIPE["seed"])  # seeded (CPU kernels may still differ in the last bits)
    opt = torch.optim.AdamW(model.parameters(), lr=_RECIPE["lr"],
                            weight_decay=_RECIPE["weight_decay"])
    n, bs, epochs = len(train_set), _RECIPE["batch"], _RECIPE["epochs"]
    total = epochs * (n // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, _RECIPE["lr"], total_steps=total)
    model.train()
    for epoch in range(epochs):
        train_set.set_epoch(epoch)
        perm = torch.randperm(n, generator=g)
        for i in range(n // bs):
            idx = perm[i * bs:(i + 1) * bs]
            x = torch.stack([train_set[int(j)][0] for j in idx])
            y = train_set.y[idx]
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    torch.random.set_rng_state(torch_state)
    model.eval()
    val = DigitsDataset("val")
    with torch.no_grad():
        return float((model(val.x).argmax(1) == val.y).float().mean())
