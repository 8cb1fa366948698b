"""Real conversions (litert-torch, torch.onnx) run by the real runtimes (LiteRT, onnxruntime)."""

import json

import numpy as np
import pytest
import torch
from conftest import randomize_norms

from converters import ConversionError, check_parity, convert_tflite, graph_report
from toolkit.cli.export import main as export_main
from toolkit.export import export_subnet, optimize_for_export
from toolkit.fileio import sha256_file
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
    res[("min", "tflite", "int8-uint8")] = export_subnet(  # int8 on camera bytes
        _net(SPACE.min()), out / "min_int8_u8.tflite", "tflite", "int8", calibration=calib,
        input_type="uint8")
    for fmt in ("tflite", "onnx"):  # what an Android app feeds: NHWC camera bytes
        res[("min", fmt, "uint8-input")] = export_subnet(
            _net(SPACE.min()), out / f"min_u8.{fmt}", fmt, input_layout="nhwc",
            input_type="uint8", labels=[f"class {i}" for i in range(10)])
    return res


def test_every_format_and_precision_runs_with_parity(exported):
    for (name, fmt, prec), r in exported.items():
        par = r.meta["parity"]
        assert r.artifact.is_file() and r.sidecar.is_file(), (name, fmt, prec)
        if prec == "uint8-input":
            prec = "fp32"
        if prec == "int8-uint8":
            prec = "int8"
        if prec in BOUNDS:
            assert par["max_abs_error"] <= BOUNDS[prec], (name, fmt, prec, par)
            assert par["top1_agreement"] == 1.0
        else:  # int8: reported and bounded
            assert par["top1_agreement"] >= 0.5, (name, fmt, prec, par)
    sizes = {p: exported[("min", "tflite", p)].meta["size_bytes"]
             for p in ("fp32", "fp16", "int8-dynamic", "int8")}
    assert sizes["fp16"] < 0.6 * sizes["fp32"] and sizes["int8-dynamic"] < 0.35 * sizes["fp32"]


def test_graph_is_builtin_and_fully_xnnpack(exported):
    for key in (("min", "tflite", "fp32"), ("l1", "tflite", "fp32"), ("s2", "tflite", "fp32"),
                ("min", "tflite", "uint8-input")):
        g = exported[key].meta["graph"]
        assert g["custom_ops"] == [] and g["flex_ops"] == []
        assert g["fully_xnnpack"] is True
        assert "GATHER" not in g["ops"] and "GATHER_ND" not in g["ops"]  # bias precomputed
        assert g["ops"]["SOFTMAX"] >= 4 and g["ops"]["HARD_SWISH"] > 0
    rep = graph_report(exported[("min", "tflite", "fp32")].artifact)
    assert rep.input_shape == [1, 128, 128, 3] and "CONV_2D" in rep.summary()  # NHWC default
    assert rep.input_dtype == "float32"
    u8 = graph_report(exported[("min", "tflite", "uint8-input")].artifact)
    assert u8.input_dtype == "uint8" and "CAST" not in u8.ops  # DEQUANTIZE stays on XNNPACK


def test_sidecar_describes_the_artifact(exported):
    r = exported[("l1", "tflite", "fp32")]
    meta = json.loads(r.sidecar.read_text())
    assert meta["arch"] == get_arch("elasticvit_l1").to_dict()
    assert meta["mflops"] == pytest.approx(517.1 - 1.984 * 0.99, abs=0.01)  # 10 classes
    assert meta["input"]["shape"] == [1, 256, 256, 3] and meta["input"]["layout"] == "NHWC"
    assert meta["tools"]["torch"].startswith("2.13") and "litert-torch" in meta["tools"]
    assert 0.95 < meta["size_over_fp32_weights"] < 1.2
    assert meta["sha256"] == sha256_file(r.artifact)  # the file as written, metadata inside
    assert meta["size_bytes"] == r.artifact.stat().st_size


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
    from converters.app_input import AppInput

    other = AppInput(_net(SPACE.min(), seed=7), "nhwc")  # other weights than the artifact's
    par = check_parity(other, exported[("min", "tflite", "fp32")].artifact,
                       torch.randn(4, 128, 128, 3))
    assert par.max_abs_error > 1e-3


def _photo_crops(r: int) -> np.ndarray:
    """Real photographs (scikit-learn's bundled china.jpg and flower.jpg), cropped and resized
    to r x r as an app would: NHWC uint8."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    crops = []
    for img in load_sample_images().images:
        h, w, _ = img.shape
        for y0, x0, s in ((0, 0, h), (h // 4, w // 3, h // 2), (0, w - h, h)):
            tile = Image.fromarray(img[y0:y0 + s, x0:x0 + s]).resize((r, r), Image.BICUBIC)
            crops.append(np.asarray(tile, dtype=np.uint8))
    return np.stack(crops)


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_a_photo_as_nhwc_uint8_gets_pytorchs_top1(exported, fmt):
    from converters.runtime import runner_for

    r = exported[("min", fmt, "uint8-input")]
    assert r.meta["input"]["shape"] == [1, 128, 128, 3] and r.meta["input"]["dtype"] == "uint8"
    photos = _photo_crops(128)
    run = runner_for(r.artifact)
    net = _net(SPACE.min())  # the same weights the fixture exported
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 255 - mean) / std  # by hand
    with torch.no_grad():
        ref = net(x).numpy()
    got = np.concatenate([run(photos[i:i + 1]) for i in range(len(photos))])
    assert np.abs(got - ref).max() <= 1e-4
    assert (got.argmax(1) == ref.argmax(1)).all()
    assert len(set(ref.argmax(1))) > 1, "the crops must not all look alike to the net"


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_metadata_is_inside_the_file_and_evit_inspect_reads_it(exported, fmt, capsys):
    from converters.metadata import read_metadata
    from toolkit.cli.main import main as evit_main

    r = exported[("min", fmt, "uint8-input")]
    side = json.loads(r.sidecar.read_text())
    inside = read_metadata(r.artifact)
    for k in ("size_bytes", "size_over_fp32_weights", "sha256", "graph",  # the file itself
              "timing_s"):  # and how long this export took: the sidecar's alone
        side.pop(k, None)
    assert inside == side
    assert inside["labels"][3] == "class 3" and inside["input"]["layout"] == "NHWC"
    r.sidecar.unlink()  # the sidecar lost on the way into an app: the file still knows
    assert evit_main(["inspect", str(r.artifact)]) == 0
    out = capsys.readouterr().out
    assert "[1, 128, 128, 3] NHWC uint8" in out and "in the graph" in out
    assert "class 0, class 1" in out and f"format          {fmt} fp32" in out
    assert evit_main(["inspect", str(r.artifact), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == inside


def test_inspect_refuses_bad_files_clearly(exported, tmp_path, capsys):
    from converters.metadata import METADATA_NAME
    from converters.tflite_edit import load_model, save_model
    from toolkit.cli.main import main as evit_main

    plain = tmp_path / "plain.tflite"  # converted without evit-export: no metadata
    convert_tflite(torch.nn.Linear(4, 2).eval(), (torch.randn(1, 4),), plain)
    assert evit_main(["inspect", str(plain)]) == 1
    assert "holds no evit metadata" in capsys.readouterr().err
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    assert evit_main(["inspect", str(junk)]) == 2
    assert "not a .tflite file" in capsys.readouterr().err
    # a tampered entry: not JSON
    model, size = load_model(exported[("min", "tflite", "fp32")].artifact)
    entry = next(m for m in model.metadata if m.name in (METADATA_NAME, METADATA_NAME.encode()))
    model.buffers[entry.buffer].data = np.frombuffer(b"\xff\x00{", dtype=np.uint8)
    bad = tmp_path / "bad.tflite"
    save_model(model, bad, size)
    assert evit_main(["inspect", str(bad)]) == 2
    assert "is not JSON" in capsys.readouterr().err
    for name, msg in (("x.pt", "unknown model type"), ("gone.onnx", "no file at")):
        assert evit_main(["inspect", str(tmp_path / name)]) == 2
        assert msg in capsys.readouterr().err


def _tensor_types(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    td = {t["index"]: t for t in it.get_tensor_details()}
    return it, {(o["op_name"], td[int(o["inputs"][1])]["dtype"].__name__)
                for o in it._get_ops_details() if o["op_name"] in ("CONV_2D", "FULLY_CONNECTED")
                and len(o["inputs"]) > 1}


@pytest.mark.parametrize("prec", ["int8", "int8-dynamic"])
def test_int8_runs_in_int8_fully_on_xnnpack_with_float_io(exported, prec):
    r = exported[("min", "tflite", prec)]
    assert r.meta["graph"]["fully_xnnpack"] is True, r.meta["graph"]  # no CPU islands
    it, weights = _tensor_types(r.artifact)
    assert ("CONV_2D", "int8") in weights and ("FULLY_CONNECTED", "int8") in weights
    assert it.get_input_details()[0]["dtype"] == np.float32  # the app's input is unchanged
    assert it.get_output_details()[0]["dtype"] == np.float32
    q = r.meta["quantization"]
    assert "int8" in q["weights"] and q["kept_float"]
    if prec == "int8":
        assert q["calibration_images"] == 4 and "LayerNorm" in q["kept_float"]
        assert "QUANTIZE" in r.meta["graph"]["ops"]
        td = {t["index"]: t for t in it.get_tensor_details()}
        fcs = [o for o in it._get_ops_details() if o["op_name"] == "FULLY_CONNECTED"]
        assert td[int(fcs[-1]["inputs"][1])]["dtype"] == np.float32  # the logits stay float
        assert int(fcs[-1]["outputs"][0]) == it.get_output_details()[0]["index"]


def test_int8_takes_camera_bytes_fully_on_xnnpack(exported):
    r = exported[("min", "tflite", "int8-uint8")]
    g = graph_report(r.artifact)
    assert g.input_dtype == "uint8" and "CAST" not in g.ops and g.fully_xnnpack is True


def test_quantize_refuses_bad_requests_before_work(tmp_path):
    from converters.quantize import quantize_tflite

    with pytest.raises(ValueError, match="fp16, int8-dynamic, int8"):
        quantize_tflite(tmp_path / "none.tflite", tmp_path / "o.tflite", "int4")
    with pytest.raises(ValueError, match="calibration"):
        quantize_tflite(tmp_path / "none.tflite", tmp_path / "o.tflite", "int8", [])
    with pytest.raises(ValueError, match="calibration"):
        export_subnet(_net(SPACE.min()), tmp_path / "o.tflite", precision="int8")
    assert not (tmp_path / "o.tflite").exists()


def test_quantize_checks_calibration_images_against_the_input(exported, tmp_path):
    from converters.quantize import quantize_tflite

    src = exported[("min", "tflite", "fp32")].artifact  # input (1, 128, 128, 3) float32
    for bad in (np.zeros((4, 128, 128, 3), np.float32), np.zeros((1, 3, 128, 128), np.float32),
                np.zeros((1, 128, 128, 3), np.float64)):
        with pytest.raises(ValueError, match="calibration image 0"):
            quantize_tflite(src, tmp_path / "o.tflite", "int8", [bad])
    assert not (tmp_path / "o.tflite").exists()


def test_lean_graph_layout_changes_only_at_head_splits(exported):
    """Tokens are NHWC pixels: no transposes at the conv <-> token boundaries or around the
    V conv, one per head split/merge (q, k, v, out) per attention block; LayerNorm as its
    normalization only (the affine folded into the next linear)."""
    for key in (("min", "tflite", "fp32"), ("l1", "tflite", "fp32")):
        arch = get_arch("elasticvit_l1") if key[0] == "l1" else SPACE.min()
        blocks = sum(st.depth for st in arch.stages if getattr(st, "v_scale", None))
        ops = exported[key].meta["graph"]["ops"]
        assert ops["TRANSPOSE"] <= 4 * blocks + 1, (key, ops["TRANSPOSE"], blocks)
        assert "SQUARED_DIFFERENCE" not in ops and ops["RSQRT"] == 2 * blocks


def test_calibration_images_are_fixed_unaugmented_training_images():
    from toolkit.data.datasets import DigitsDataset, calibration_images

    a, b = calibration_images(None, 8), calibration_images(None, 8)
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b)
    train = DigitsDataset("train", augment=False)  # the deterministic preprocessing, no shifts
    assert all(any(torch.equal(x, t) for t in train.x) for x in a)
    assert len(calibration_images(None, 10_000)) == len(train)
