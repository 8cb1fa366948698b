"""Release compatibility, proven against the release's own code (tests/release_oracle).

The authors' checkpoint cannot be downloaded here, so the release's ``FusedSuperNet`` is built
with its own code from final_3min_space.yaml, filled with seeded random weights, written with
its own ``save_checkpoint`` and loaded with its own ``load_checkpoint``; evit imports the same
file and must compute the same logits on every subnet of ``oracle_subnets``.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import release_oracle as ro
import torch

from toolkit.checkpoint import CheckpointError, checkpoint_banks, load_supernet
from toolkit.cli.main import main as evit_main
from toolkit.flops import flops
from toolkit.release.arch import (
    from_release,
    release_named_models,
    release_violations,
    to_release,
)
from toolkit.release.checkpoint import import_release
from toolkit.space import SPACE, ArchError
from toolkit.supernet.layers import ElasticJointLayerNorm
from toolkit.supernet.release import ReleaseElasticAttention
from toolkit.supernet.static import relative_index
from toolkit.zoo import _registry

pytestmark = pytest.mark.skipif(not ro.available(), reason="../shared/reference/"
                                "elasticvit_release is not beside the checkout")
REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "release_oracle" /
                        "reference.json").read_text())
EVAL_YAML = ro.RELEASE / "configs" / "final_3min_space_eval.yaml"


def tol(ref: torch.Tensor) -> float:
    return 1e-5 + 1e-5 * float(ref.abs().max())


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    d = tmp_path_factory.mktemp("release")
    src, info = ro.write_release_checkpoint(d, num_classes=1000, seed=0)
    release = ro.load_release_for_eval(src)
    ckpt, report = import_release(src, d / "evit.pt")
    x = ro.oracle_inputs()
    subnets = ro.oracle_subnets()
    with torch.no_grad():
        ref = {n: ro.release_logits(release, a, x) for n, a in subnets.items()}
    return {"src": src, "evit": d / "evit.pt", "report": report, "x": x, "subnets": subnets,
            "ref": ref, "info": info, "net": load_supernet(d / "evit.pt").eval()}


def _max_err(net, oracle) -> tuple[float, str]:
    worst, name = 0.0, ""
    with torch.no_grad():
        for n, a in oracle["subnets"].items():
            e = float((net(oracle["x"], from_release(a)) - oracle["ref"][n]).abs().max())
            if e / tol(oracle["ref"][n]) > worst:
                worst, name = e / tol(oracle["ref"][n]), n
    return worst, name


def test_oracle_covers_named_models_min_random_and_every_resolution(oracle):
    subs = oracle["subnets"]
    assert len(subs) >= 12
    assert {a[0] for a in subs.values()} == {128, 160, 176, 192, 224, 256}
    assert set(release_named_models(EVAL_YAML)) <= set(subs)
    assert list(subs) == list(REFERENCE["subnets"])  # the figures are of these subnets
    # the EMA slot's index differs from the live one (timm's EMA truncates integer buffers)
    assert oracle["info"]["index_entries_changed_by_ema"] > 0
    # the inputs matter: the logits of different images differ by far more than the tolerance
    for n, r in oracle["ref"].items():
        assert float((r - r.mean(0)).abs().max()) > 1000 * tol(r), n


def test_imported_supernet_and_extracted_subnets_match_the_release(oracle):
    net, x = oracle["net"], oracle["x"]
    with torch.no_grad():
        for n, a in oracle["subnets"].items():
            arch, ref = from_release(a), oracle["ref"][n]
            got = net(x, arch)
            assert float((got - ref).abs().max()) <= tol(ref), n
            static = net.extract(arch).eval()
            assert float((static(x) - ref).abs().max()) <= tol(ref), n
            assert torch.equal(got.argmax(1), ref.argmax(1)), n


def test_release_output_matches_the_stored_figures(oracle):
    """The fixture's figures (regenerate.py) guard the oracle itself: the release's code on
    this machine still computes what it computed when they were recorded, and so does evit."""
    with torch.no_grad():
        for n, fig in REFERENCE["subnets"].items():
            assert fig["release_arch"] == oracle["subnets"][n]
            for logits in (oracle["ref"][n], oracle["net"](oracle["x"], from_release(
                    fig["release_arch"]))):
                s = ro.summarize(logits)
                t = 1e-4 * (1 + fig["max_abs"])
                assert np.allclose(s["first8"], fig["first8"], atol=t), n
                assert np.allclose(s["row_sum"], fig["row_sum"], atol=1000 * t), n
                assert abs(s["max_abs"] - fig["max_abs"]) <= t, n


def test_the_oracle_catches_the_known_mistakes(oracle, monkeypatch):
    """Each deviation the release compatibility depends on, put back, fails the comparison."""
    src = oracle["src"]
    live = load_supernet(oracle["evit"], use_ema=False).eval()  # the wrong slot
    assert _max_err(live, oracle)[0] > 100
    recomputed = copy.deepcopy(oracle["net"])
    for m in recomputed.modules():
        if isinstance(m, ReleaseElasticAttention):
            m.rel_index.copy_(relative_index(m.max_grid))
    assert _max_err(recomputed, oracle)[0] > 100
    import torch.nn.functional as F

    def per_token(self, x):
        c = x.shape[-1]
        return F.layer_norm(x, (c,), self.weight[:c], self.bias[:c], self.eps)

    monkeypatch.setattr(ElasticJointLayerNorm, "forward", per_token)
    assert _max_err(oracle["net"], oracle)[0] > 100
    assert src.is_file()


def test_import_report_banks_and_weights_slot(oracle):
    rep = oracle["report"]
    assert rep["ema"] and rep["epoch"] == 600 and rep["num_classes"] == 1000
    assert rep["extras"] == {"top1": 80.0, "top5": 95.0}
    assert [b["level"] for b in rep["banks"]] == [100, 200, 300, 400, 500, 700, 900, 1200]
    assert all(b["entries"] == 3 for b in rep["banks"]) and rep["bank_entries_skipped"] == 0
    assert rep["dropped_unused"] == 10  # shortcut convs of MBConvs after a stage's first
    ck = torch.load(oracle["evit"], weights_only=True)
    assert ck["layout"] == "release" and ck["version"] == 2
    raw = torch.load(oracle["src"], weights_only=True)
    first = raw["bank"][0][0]
    assert ck["banks"][0]["archs"][0] == from_release(list(first[0])).to_dict()
    assert ck["banks"][0]["scores"][0] == pytest.approx(first[1])
    banks = checkpoint_banks(ck)  # what search reads
    assert [b["level"] for b in banks] == [b["level"] for b in rep["banks"]]
    assert from_release(list(first[0])) in banks[0]["archs"]
    assert banks[0]["scores"] == sorted(banks[0]["scores"], reverse=True)
    # the evit checkpoint keeps both slots; evaluation (load_supernet) reads the EMA one
    assert not torch.equal(ck["model"]["head.classifier.weight"],
                           ck["ema"]["head.classifier.weight"])


def test_import_refuses_bad_files_with_what_is_wrong(oracle, tmp_path):
    src = oracle["src"]
    with pytest.raises(CheckpointError, match="does not exist.*Supernet Weight"):
        import_release(tmp_path / "none.pth")
    trunc = tmp_path / "truncated.pth"
    trunc.write_bytes(src.read_bytes()[: 5_000_000])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        import_release(trunc, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    not_ckpt = tmp_path / "list.pth"
    torch.save([1, 2], not_ckpt)
    with pytest.raises(CheckpointError, match="not a release checkpoint"):
        import_release(not_ckpt)
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": {}, "opts": argparse_namespace()}, pickled)
    with pytest.raises(CheckpointError, match="never unpickles"):
        import_release(pickled)
    no_slots = tmp_path / "weights.pth"
    torch.save({"epoch": 1, "weights": {}}, no_slots)
    with pytest.raises(CheckpointError, match="neither 'state_dict' nor 'model_ema'"):
        import_release(no_slots)
    with pytest.raises(CheckpointError, match="already an evit checkpoint"):
        import_release(oracle["evit"])
    with pytest.raises(CheckpointError, match="is the release checkpoint itself"):
        import_release(src, src)
    raw = torch.load(src, weights_only=True)
    bad = copy.deepcopy(raw["model_ema"])
    bad["feature_exactor.2.layers.0.qkv.weight"] = torch.zeros(5, 96)
    del bad["feature_exactor.3.layers.1.fc1.bias"]
    bad["extra.weight"] = torch.zeros(1)
    bad["feature_exactor.4.layers.0.relative_position_index"] += 10_000
    wrong = tmp_path / "wrong.pth"
    torch.save({**raw, "model_ema": bad}, wrong)
    with pytest.raises(CheckpointError) as e:
        import_release(wrong, tmp_path / "out.pt")
    msg = str(e.value)
    for part in ("'model_ema'", "missing", "feature_exactor.3.layers.1.fc1.bias",
                 "feature_exactor.2.layers.0.qkv.weight: shape (5, 96), expected (576, 96)",
                 "relative_position_index: index values", "unexpected", "extra.weight"):
        assert part in msg
    assert not (tmp_path / "out.pt").exists()


def test_banks_holding_numpy_numbers_import(oracle, tmp_path):
    """Subnets drawn from the release's pickled FLOPs tables can carry numpy ints: such a
    file still loads with weights_only (numpy scalars only), and its banks convert."""
    raw = torch.load(oracle["src"], weights_only=True)
    raw["bank"] = [[[[np.int64(a[0]), *[[np.int64(v) for v in f] for f in a[1:]]],
                     np.float64(score)] for a, score in bank] for bank in raw["bank"]]
    raw["epoch"] = np.int64(599)
    path = tmp_path / "numpy_bank.pth"
    torch.save(raw, path)
    _, rep = import_release(path)
    assert rep["epoch"] == 599 and rep["bank_entries_skipped"] == 0
    assert sum(b["entries"] for b in rep["banks"]) == 24


def test_numpy_1x_pickle_names_load_too(oracle, tmp_path):
    """A file written under numpy 1.x names numpy.core.multiarray.scalar (numpy 2:
    numpy._core): both are allowed, nothing else is."""
    import zipfile

    raw = torch.load(oracle["src"], weights_only=True)
    raw["extras"] = {"top1": np.float64(80.5)}
    raw["bank"] = raw["bank"][:1]
    path = tmp_path / "np2.pth"
    torch.save(raw, path)
    old = tmp_path / "np1.pth"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(old, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(item, data)
    _, rep = import_release(old)
    assert rep["extras"] == {"top1": 80.5}
    evil = tmp_path / "evil.pth"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(evil, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray\nscalar", b"os\nsystem")
            zout.writestr(item, data)
    with pytest.raises(CheckpointError, match="unsupported GLOBAL os.system"):
        import_release(evil)


def test_bank_levels_follow_the_entries_when_the_config_differs():
    from toolkit.release.checkpoint import _banks
    from toolkit.space import SearchSpace

    rs, rng = SearchSpace(1, rules="release"), np.random.default_rng(1)
    # 8 banks, but holding subnets of 150..850 MFLOPs: not the release's 100..1200 levels
    raw = [[[to_release(rs.sample_at(f, f + 5, rng)), -1.0]] for f in range(150, 951, 100)]
    banks, skipped, _ = _banks(raw, 1000)
    assert skipped == 0 and [b["level"] for b in banks] == [float(round(flops(
        from_release(b[0][0])))) for b in raw]


def argparse_namespace():
    import argparse

    return argparse.Namespace(lr=0.1)


def test_search_and_export_of_an_imagenet_supernet_ask_for_its_data(oracle, tmp_path):
    for mod, args in (("toolkit.cli.search", ["--budget-mflops", "300"]),
                      ("toolkit.cli.export", ["--model", "elasticvit_t1"])):
        out = _cli(mod, *args, "--supernet", str(oracle["evit"]), "--out",
                   str(tmp_path / "x.tflite" if "export" in mod else tmp_path / "s"),
                   cwd=tmp_path)
        assert out.returncode == 2 and "pass --data" in out.stderr, (mod, out.stderr[-500:])
    assert not (tmp_path / "x.tflite").exists()


def test_import_release_cli(oracle, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    assert evit_main(["import-release", str(oracle["src"]), "--out", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["tensors"] == oracle["report"]["tensors"] and out.is_file()
    assert evit_main(["import-release", str(tmp_path / "no.pth"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- arch format


def test_release_named_models_are_evits_and_round_trip():
    import yaml

    raw = yaml.safe_load(EVAL_YAML.read_text())
    ours = {m.source.split()[-1]: m.arch for m in _registry().values() if m.source}
    for name, arch in release_named_models(EVAL_YAML).items():
        assert arch == ours[name], name
        assert to_release(arch) == raw[name], name  # the YAML's list, field for field
        assert release_violations(arch) == []


def test_release_arch_errors_name_the_problem():
    s1 = to_release(release_named_models(EVAL_YAML)["elastic_S1"])
    mixed = copy.deepcopy(s1)
    mixed[5][2] = 5  # per layer [2, 2, 5, 2, ...]: T2's two layers now differ
    with pytest.raises(ArchError, match="stage t2 has mlp_ratio"):
        from_release(mixed)
    short = copy.deepcopy(s1)
    short[3] = short[3][:-1]
    with pytest.raises(ArchError, match="conv_ratio has 6 entries; it needs 7"):
        from_release(short)
    with pytest.raises(ArchError, match="10 fields"):
        from_release(s1[:9])
    window = copy.deepcopy(s1)
    window[7][0] = 2
    with pytest.raises(ArchError, match="window_size"):
        from_release(window)
    arch = from_release(s1)
    untied = arch.replace(stem_width=24)
    with pytest.raises(ArchError, match="ties them"):
        to_release(untied)
    assert "as wide as the first conv" in release_violations(untied)[0]


def test_arch_cli_both_ways(tmp_path, capsys):
    assert evit_main(["arch", "elasticvit_s1", "--to-release"]) == 0
    lst = json.loads(capsys.readouterr().out)
    assert lst[0] == 192 and lst[1] == [16, 24, 40, 64, 96, 192, 272]
    assert evit_main(["arch", "--from-release", json.dumps(lst), "--out",
                      str(tmp_path / "s1.json")]) == 0
    capsys.readouterr()
    assert evit_main(["arch", str(tmp_path / "s1.json")]) == 0
    assert json.loads(capsys.readouterr().out)["resolution"] == 192
    assert evit_main(["arch", "--from-release", str(EVAL_YAML), "--name", "elastic_M"]) == 0
    assert json.loads(capsys.readouterr().out)["mflops"] == pytest.approx(415.58, abs=0.01)
    assert evit_main(["arch", "--from-release", str(EVAL_YAML), "--name", "nope"]) == 2
    assert "elastic_T1" in capsys.readouterr().err
    assert evit_main(["arch", "--from-release", "[1, 2"]) == 2
    assert "neither a YAML file nor a JSON list" in capsys.readouterr().err
    big = json.dumps(to_release(SPACE.max()))  # longer than a file name may be
    assert len(big) > 255 and evit_main(["arch", "--from-release", big]) == 0
    assert json.loads(capsys.readouterr().out)["resolution"] == 256


# --------------------------------------------------------------------------- the workflow


@pytest.fixture(scope="module")
def imported10(tmp_path_factory):
    """A release checkpoint of 10 classes (the embedded digits), imported."""
    d = tmp_path_factory.mktemp("release10")
    src, _ = ro.write_release_checkpoint(d, num_classes=10, seed=3)
    import_release(src, d / "evit.pt")
    return d / "evit.pt"


def _cli(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_imported_subnet_exports_with_parity_against_the_supernet(oracle, tmp_path):
    from converters.runtime import OnnxRunner, TFLiteRunner
    from toolkit.export import export_subnet

    net = oracle["net"]
    arch = release_named_models(EVAL_YAML)["elastic_T2"]  # res 160: T4's input grid is 5x5,
    x = torch.nn.functional.interpolate(oracle["x"], size=160, mode="bicubic")  # odd: padded pool
    res = export_subnet(net.extract(arch).eval(), tmp_path / "t2.tflite", "tflite", "fp32", x)
    assert res.meta["graph"]["fully_xnnpack"]
    tfl = TFLiteRunner(tmp_path / "t2.tflite")
    with torch.no_grad():
        ref = net(x, arch).numpy()
    xh = x.permute(0, 2, 3, 1).numpy()  # .tflite takes NHWC, as apps hand images over
    got = np.concatenate([tfl(xh[i:i + 1]) for i in range(len(x))])
    assert np.abs(got - ref).max() <= 1e-4
    onnx = export_subnet(net.extract(arch).eval(), tmp_path / "t2.onnx", "onnx", "fp32", x)
    assert onnx.meta["layout"] == "release" and onnx.meta["parity"]["max_abs_error"] <= 1e-4
    ort = OnnxRunner(tmp_path / "t2.onnx")
    got = np.concatenate([ort(x[i:i + 1].numpy()) for i in range(len(x))])
    assert np.abs(got - ref).max() <= 1e-4


def test_search_finetune_and_export_on_an_imported_checkpoint(imported10, tmp_path):
    out = _cli("toolkit.cli.search", "--budget-mflops", "220", "--supernet", str(imported10),
               "--population", "6", "--parents", "3", "--mutations", "2", "--crossovers", "2",
               "--generations", "1", "--calib-images", "32", "--search-images", "64", "--out",
               str(tmp_path / "search"), "--export", "tflite", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "release's sampler" in out.stderr
    assert "of the first population from the supernet's memory banks" in out.stderr
    best = json.loads((tmp_path / "search" / "best_mflops_220.json").read_text())
    assert best["rules"] == "release"
    side = json.loads((tmp_path / "search" / "best_mflops_220.tflite.json").read_text())
    assert side["parity"]["max_abs_error"] <= 1e-4 and side["graph"]["fully_xnnpack"]
    from toolkit.space import ArchConfig

    assert release_violations(ArchConfig.from_dict(best["arch"])) == []
    ft = _cli("toolkit.cli.train", "--init-from", str(imported10), "--steps", "2", "--levels",
              "60", "100", "--bn-batches", "2", "--eval-images", "32", "--no-progress",
              "--out", str(tmp_path / "ft"), cwd=tmp_path)
    assert ft.returncode == 0, ft.stderr[-2000:]
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg["layout"] == "release" and cfg["init_from"] == str(imported10)
    tuned = load_supernet(tmp_path / "ft" / "supernet.pt")
    assert tuned.layout == "release"
    clash = _cli("toolkit.cli.train", "--init-from", str(imported10), "--layout", "evit",
                 "--steps", "1", "--out", str(tmp_path / "clash"), cwd=tmp_path)
    assert clash.returncode == 2 and "layout 'release'" in clash.stderr
    # an interrupted fine-tuning run resumes (in its layout) and continues to more steps
    resumed = _cli("toolkit.cli.train", "--resume", "--init-from", str(imported10), "--steps",
                   "2", "--levels", "60", "100", "--bn-batches", "2", "--eval-images", "32",
                   "--no-progress", "--out", str(tmp_path / "ft"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # and a release-layout supernet trains from scratch
    fresh = _cli("toolkit.cli.train", "--layout", "release", "--steps", "1", "--levels", "60",
                 "--bn-batches", "1", "--eval-images", "16", "--no-progress", "--out",
                 str(tmp_path / "fresh"), cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert load_supernet(tmp_path / "fresh" / "supernet.pt").layout == "release"


def test_init_from_with_another_number_of_classes_keeps_all_but_the_classifier(oracle,
                                                                              tmp_path):
    from toolkit.supernet import Supernet
    from toolkit.train.trainer import _start_from

    ck = torch.load(oracle["evit"], weights_only=True)
    model = Supernet(10, layout="release")
    fresh = model.head.classifier.weight.detach().clone()
    _start_from(model, ck, str(oracle["evit"]))
    assert torch.equal(model.head.classifier.weight, fresh)
    assert torch.equal(model.stages[3].attns[0].qkv, ck["ema"]["stages.3.attns.0.qkv"])
