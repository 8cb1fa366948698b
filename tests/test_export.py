"""Real conversions (litert-torch, torch.onnx) run by the real runtimes (LiteRT, onnxruntime)."""

import json

import pytest
import torch
from conftest import randomize_norms

from converters import ConversionError, check_parity, convert_tflite, graph_report
from toolkit.cli.export import main as export_main
from toolkit.export import export_subnet, optimize_for_export
from toolkit.space import SPACE
from toolkit.supernet import StaticViT
from toolkit.zoo import get_arch

BOUNDS = {"fp32": 1e-4, "fp16": 1e-2}


def _net(arch, seed=0):
    torch.manual_seed(seed)
    return randomize_norms(StaticViT(arch, 10), seed).eval()


def test_optimized_model_is_the_same_function():
    for arch in (SPACE.min(), get_arch("elasticvit_s2"), SPACE.sample(rng=5)):
        net = _net(arch)
        opt = optimize_for_export(net)
        x = torch.randn(2, 3, arch.resolution, arch.resolution)
        with torch.no_grad():
            assert torch.allclose(net(x), opt(x), atol=1e-4, rtol=1e-4)
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                       for m in opt.modules()), "every BN is folded"
        assert not any(n.endswith("rel_bias") for n, _ in opt.named_parameters())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The min subnet and a named model in every tflite precision, the min one in onnx."""
    out = tmp_path_factory.mktemp("exp")
    res = {}
    calib = [torch.randn(1, 3, 128, 128) for _ in range(4)]
    for p in ("fp32", "fp16", "int8-dynamic", "int8"):
        res[("min", "tflite", p)] = export_subnet(_net(SPACE.min()), out / f"min_{p}.tflite",
                                                  "tflite", p, calibration=calib)
    for p in ("fp32", "int8-dynamic", "int8"):
        res[("min", "onnx", p)] = export_subnet(_net(SPACE.min()), out / f"min_{p}.onnx",
                                                "onnx", p, calibration=calib)
    big = get_arch("elasticvit_l1")
    res[("l1", "tflite", "fp32")] = export_subnet(_net(big), out / "l1.tflite")
    s2 = get_arch("elasticvit_s2")  # res 224: odd 7x7 grids exercise the padded residual pool
    res[("s2", "tflite", "fp32")] = export_subnet(_net(s2), out / "s2.tflite")
    res[("l1", "tflite", "fp16")] = export_subnet(_net(big), out / "l1_fp16.tflite",
                                                  precision="fp16")
    return res


def test_every_format_and_precision_runs_with_parity(exported):
    for (name, fmt, prec), r in exported.items():
        par = r.meta["parity"]
        assert r.artifact.is_file() and r.sidecar.is_file(), (name, fmt, prec)
        if prec in BOUNDS:
            assert par["max_abs_error"] <= BOUNDS[prec], (name, fmt, prec, par)
            assert par["top1_agreement"] == 1.0
        else:  # int8: reported and bounded
            assert par["top1_agreement"] >= 0.5, (name, fmt, prec, par)
    sizes = {p: exported[("min", "tflite", p)].meta["size_bytes"]
             for p in ("fp32", "fp16", "int8-dynamic", "int8")}
    assert sizes["fp16"] < 0.6 * sizes["fp32"] and sizes["int8-dynamic"] < 0.35 * sizes["fp32"]


def test_graph_is_builtin_and_fully_xnnpack(exported):
    for key in (("min", "tflite", "fp32"), ("l1", "tflite", "fp32"), ("s2", "tflite", "fp32")):
        g = exported[key].meta["graph"]
        assert g["custom_ops"] == [] and g["flex_ops"] == []
        assert g["fully_xnnpack"] is True
        assert "GATHER" not in g["ops"] and "GATHER_ND" not in g["ops"]  # bias precomputed
        assert g["ops"]["SOFTMAX"] >= 4 and g["ops"]["HARD_SWISH"] > 0
    rep = graph_report(exported[("min", "tflite", "fp32")].artifact)
    assert rep.input_shape == [1, 3, 128, 128] and "CONV_2D" in rep.summary()


def test_sidecar_describes_the_artifact(exported):
    r = exported[("l1", "tflite", "fp32")]
    meta = json.loads(r.sidecar.read_text())
    assert meta["arch"] == get_arch("elasticvit_l1").to_dict()
    assert meta["mflops"] == pytest.approx(517.1 - 1.984 * 0.99, abs=0.01)  # 10 classes
    assert meta["input"]["shape"] == [1, 3, 256, 256]
    assert meta["tools"]["torch"].startswith("2.13") and "litert-torch" in meta["tools"]
    assert 0.95 < meta["size_over_fp32_weights"] < 1.2
    assert len(meta["sha256"]) == 64


def test_unconvertible_model_names_the_op(tmp_path):
    class Bad(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x[0, 0]).real.sum().expand(1, 10) + x.mean()

    with pytest.raises(ConversionError, match="cannot convert Bad to TFLite"):
        convert_tflite(Bad(), (torch.randn(1, 3, 8, 8),), tmp_path / "bad.tflite")
    assert not (tmp_path / "bad.tflite").exists()


def test_cli_from_a_supernet_checkpoint_and_bad_input(tmp_path, capsys):
    from toolkit.checkpoint import save_supernet
    from toolkit.supernet import Supernet

    torch.manual_seed(0)
    ck = tmp_path / "supernet.pt"
    save_supernet(Supernet(num_classes=10), ck)
    SPACE.min().save(tmp_path / "sub.json")
    assert export_main(["--arch", str(tmp_path / "sub.json"), "--supernet", str(ck),
                        "--format", "onnx", "--out", str(tmp_path / "sub.onnx"), "--json",
                        "--parity-samples", "4", "--bn-batches", "2"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["source"]["calibration_data"] == "digits"
    assert meta["parity"]["max_abs_error"] <= 1e-4
    assert len(meta["source"]["supernet_sha256"]) == 64
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert export_main(["--model", "elasticvit_t0", "--supernet", str(bad)]) == 2
    assert "corrupt" in capsys.readouterr().err
    d = SPACE.min().to_dict()
    d["stages"][3]["width"] = 50
    (tmp_path / "out_of_space.json").write_text(json.dumps(d))
    assert export_main(["--arch", str(tmp_path / "out_of_space.json")]) == 2
    assert "t1).width = 50 is not allowed" in capsys.readouterr().err
    assert export_main(["--model", "elasticvit_t0", "--format", "onnx",
                        "--precision", "fp16"]) == 2
    assert "fp16 is offered for .tflite" in capsys.readouterr().err


def test_parity_detects_a_wrong_artifact(exported):
    other = _net(SPACE.min(), seed=7)  # different weights than the artifact
    par = check_parity(other, exported[("min", "tflite", "fp32")].artifact,
                       torch.randn(4, 3, 128, 128))
    assert par.max_abs_error > 1e-3
