"""Local teachers: the formats users have, averaged as the release does, checked before work."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from toolkit.cli.train import main as train_main
from toolkit.train import TrainConfig, train
from toolkit.train.config import ConfigError
from toolkit.train.teachers import (
    DIGITS_TEACHER,
    TeacherError,
    digits_teacher,
    load_teacher,
    teacher_probs,
)

TEACHER_PY = """
import torch
class Pool(torch.nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.fc = torch.nn.Linear(3, num_classes)
    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))
def build(num_classes=10):
    return Pool(num_classes)
def wrong(num_classes=10):
    return torch.nn.Linear(3, num_classes)  # fails on images
def not_a_module(num_classes=10):
    return 42
"""


def _onnx_pool(path, w: np.ndarray, b: np.ndarray, batch=None, hw=None) -> None:
    """GlobalAveragePool -> Flatten -> Gemm: the same function as TEACHER_PY's Pool."""
    dims = [batch or "N", 3, *(hw or ("H", "W"))]
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1)],
        "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch or "N", len(b)])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.fixture
def formats(tmp_path):
    """One function in three formats: Python builder + weights, TorchScript, ONNX."""
    (tmp_path / "teacher.py").write_text(TEACHER_PY)
    torch.manual_seed(0)
    fc = torch.nn.Linear(3, 10)
    with torch.no_grad():
        fc.weight.mul_(20)
    torch.save({"state_dict": {"fc.weight": fc.weight.detach(), "fc.bias": fc.bias.detach()}},
               tmp_path / "w.pt")
    py = f"{tmp_path / 'teacher.py'}:build@{tmp_path / 'w.pt'}"
    scripted = torch.jit.script(load_teacher(py, 10, 32))
    torch.jit.save(scripted, tmp_path / "t.ts")
    w, b = fc.weight.detach().numpy(), fc.bias.detach().numpy()
    _onnx_pool(tmp_path / "t.onnx", w, b)
    _onnx_pool(tmp_path / "fixed.onnx", w, b, batch=4, hw=(64, 64))
    return {"python": py, "torchscript": str(tmp_path / "t.ts"),
            "onnx": str(tmp_path / "t.onnx"), "fixed": str(tmp_path / "fixed.onnx"),
            "dir": tmp_path}


def test_three_formats_give_the_same_logits(formats):
    x = torch.randn(7, 3, 32, 32)
    ref = load_teacher(formats["python"], 10, 32)(x)
    for kind in ("torchscript", "onnx"):
        got = load_teacher(formats[kind], 10, 32)(x)
        assert torch.allclose(got, ref, atol=1e-5), kind
    # a fixed-size ONNX model (batch 4, 64x64): chunked and resized, same function (the mean
    # of a bicubic upsampling is close to the input's mean)
    got = load_teacher(formats["fixed"], 10, 32)(x)
    assert got.shape == (7, 10) and torch.allclose(got, ref, atol=0.5)


def test_several_teachers_average_their_sharpened_probabilities(formats):
    x = torch.randn(5, 3, 32, 32)
    a = load_teacher(formats["python"], 10, 32)
    b = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    la, lb = a(x), b(x)
    want = (F.softmax(la / 0.2, -1) + F.softmax(lb / 0.2, -1)) / 2  # the release's rule
    got = teacher_probs([a, b], x, 0.2)
    assert torch.allclose(got, want, atol=1e-6) and torch.allclose(got.sum(-1), torch.ones(5))
    assert torch.allclose(teacher_probs([a], x, 1.0), F.softmax(la, -1), atol=1e-6)


def test_bad_teachers_are_refused_with_what_to_do(formats, tmp_path):
    d = formats["dir"]
    torch.save({"fc.weight": torch.zeros(10, 3)}, d / "sd.pt")  # weights, no model
    (d / "old.pt").write_bytes(b"\x80\x02}q\x00.")  # a legacy pickle
    cases = {
        str(d / "nope.onnx"): "does not exist",
        str(d / "sd.pt"): "holds weights only",
        str(d / "old.pt"): "not a TorchScript archive",
        f"{d / 'teacher.py'}:missing": "has no function 'missing'",
        f"{d / 'teacher.py'}:wrong": "fails on a batch of shape (2, 3, 32, 32)",
        f"{d / 'teacher.py'}:not_a_module": "not a torch.nn.Module",
        f"{d / 'teacher.py'}:build@{d / 'sd.pt'}": "do not fit the model",
        f"{d / 'teacher.py'}:build@{d / 'none.pt'}": "does not exist",
        "evit:imagenet": "the only embedded teacher is evit:digits",
        str(d / "teacher.py"): "unknown kind",
    }
    for spec, msg in cases.items():
        with pytest.raises(TeacherError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            load_teacher(spec, 10, 32)
    with pytest.raises(TeacherError, match=r"returns \(2, 10\) for a batch of 2"):
        load_teacher(formats["torchscript"], 5, 32)
    with pytest.raises(TeacherError, match="knows the 10 digits"):
        load_teacher(DIGITS_TEACHER, 2, 32)
    # the config checks specs before any work, naming the entry
    with pytest.raises(ConfigError, match=r"teachers\[1\]: .*does not exist"):
        TrainConfig(teachers=(formats["onnx"], str(d / "gone.ts"))).validate()


def test_cli_teacher_flags(formats, tmp_path, capsys):
    assert train_main(["--teacher", formats["onnx"], "--no-teacher"]) == 2
    assert "contradict" in capsys.readouterr().err
    assert train_main(["--teacher", str(tmp_path / "x.onnx"), "--out", str(tmp_path / "r")]) == 2
    assert "teachers[0]" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert train_main(["--teacher", formats["onnx"], "--teacher", formats["torchscript"],
                       "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["teachers"] == [formats["onnx"], formats["torchscript"]]
    assert train_main(["--no-teacher", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["teachers"] == []
    assert train_main(["--print-config"]) == 0  # the default on digits: the embedded teacher
    assert json.loads(capsys.readouterr().out)["teachers"] == [DIGITS_TEACHER]


def test_old_configs_with_one_teacher_still_load():
    c = TrainConfig.from_dict({"teacher": "m.py:build", "teacher_weights": "w.pt"})
    assert c.teachers == ("m.py:build@w.pt",)
    assert TrainConfig.from_dict({"teacher": None, "teacher_weights": None}).teachers == ()


def test_embedded_teacher_is_trained_once_then_cached(capsys):
    m = digits_teacher()
    first = capsys.readouterr().err
    from toolkit.data.datasets import DigitsDataset

    val = DigitsDataset("val")
    with torch.no_grad():
        top1 = float((m(val.x).argmax(1) == val.y).float().mean())
    assert top1 > 0.95
    again = digits_teacher()
    assert "trained" not in capsys.readouterr().err  # from the cache
    x = val.x[:8]
    assert torch.equal(m(x), again(x))
    if "trained" in first:  # this session trained it: the message says where it went
        assert "cached at" in first


def test_a_damaged_cached_teacher_is_rebuilt(tmp_path, monkeypatch, capsys):
    import os
    import shutil
    from pathlib import Path

    src = Path(os.environ["EVIT_CACHE"]) / "teachers"
    digits_teacher()  # make sure the session's cache holds it
    monkeypatch.setenv("EVIT_CACHE", str(tmp_path / "c"))
    shutil.copytree(src, tmp_path / "c" / "teachers")
    (f,) = (tmp_path / "c" / "teachers").glob("digits-*.pt")
    f.write_bytes(b"garbage")
    capsys.readouterr()
    m = digits_teacher()
    err = capsys.readouterr().err
    assert "unusable" in err and "trained the embedded digits teacher" in err
    assert torch.load(f, weights_only=True)["format"] == "evit-teacher"
    assert m(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_training_with_teachers_never_uses_the_labels_for_uniform_subnets(formats, tmp_path,
                                                                         monkeypatch):
    import toolkit.train.trainer as tr

    given, targets = [], []
    real_probs, real_ce = tr.teacher_probs, tr.soft_cross_entropy
    monkeypatch.setattr(tr, "teacher_probs", lambda *a: given.append(real_probs(*a)) or given[-1])
    monkeypatch.setattr(tr, "soft_cross_entropy",
                        lambda logits, t: targets.append(t) or real_ce(logits, t))
    cfg = TrainConfig(out=str(tmp_path / "run"), steps=2, levels=(100.0,), bn_batches=1,
                      eval_images=8, teachers=(formats["onnx"], formats["python"]))
    train(cfg, progress=False)
    assert len(given) == 2 and len(targets) == 6  # 3 uniform subnets per step
    assert all(any(t is g for g in given) for t in targets)
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["teachers"] == [formats["onnx"], formats["python"]] and s["subspace"] == "hss"
