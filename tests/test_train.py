"""Training end to end on small settings: resume exactness, data parallel, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.checkpoint import CheckpointError, load_checkpoint
from toolkit.cli.train import main as train_main
from toolkit.data.datasets import DataError
from toolkit.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--levels", "100", "--batch-size", "4", "--bn-batches", "1", "--eval-images", "16",
        "--no-progress", "--torch-threads", "1"]


def _weights(path: Path) -> dict:
    return load_checkpoint(path)["model"]


def _run_cli(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "toolkit.cli.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_resume_after_sigkill_is_bitwise_identical(tmp_path):
    common = TINY + ["--steps", "8", "--ckpt-every", "2", "--sampler", "conflict-aware",
                     "--bank-small", "4", "--q-start", "0.5"]
    straight = _run_cli(common + ["--out", str(tmp_path / "a")])
    assert straight.wait(timeout=600) == 0, straight.stdout.read()
    victim = _run_cli(common + ["--out", str(tmp_path / "b")])
    log = tmp_path / "b" / "log.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline:  # kill it once its step-4 checkpoint exists, mid-run
        if log.exists() and any(json.loads(ln).get("event") == "checkpoint" and
                                json.loads(ln)["step"] >= 3
                                for ln in log.read_text().splitlines() if ln.strip()):
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    ck = load_checkpoint(tmp_path / "b" / "last.pt")
    assert 4 <= ck["step"] < 8, "the kill must land mid-run"
    resumed = _run_cli(common + ["--out", str(tmp_path / "b"), "--resume"])
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
    a, b = _weights(tmp_path / "a" / "supernet.pt"), _weights(tmp_path / "b" / "supernet.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa = load_checkpoint(tmp_path / "a" / "supernet.pt")
    sb = load_checkpoint(tmp_path / "b" / "supernet.pt")
    assert sa["sampler"] == sb["sampler"]
    assert all(torch.equal(sa["ema"][k], sb["ema"][k]) for k in sa["ema"])
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "b" / "log.jsonl").read_text()
             .splitlines() if "losses" in ln]
    assert steps == list(range(8))  # the log has each step once


def test_two_process_data_parallel_keeps_ranks_identical(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "toolkit.cli.train", *TINY, "--steps", "3", "--batch-size", "2",
           "--out", str(tmp_path)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    s0 = json.loads((tmp_path / "summary.json").read_text())
    s1 = json.loads((tmp_path / "summary_rank1.json").read_text())
    assert s0["world"] == 2 and s1["rank"] == 1
    assert s0["weights_sha256"] == s1["weights_sha256"]
    assert s0["ema_sha256"] == s1["ema_sha256"]
    log = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()
           if "losses" in ln]
    assert len(log) == 3 and all(r["img_per_s"] > 0 for r in log)


def test_image_folder_training_and_a_teacher(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for c in ("cat", "dog"):
            d = tmp_path / "data" / split / c
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")
    (tmp_path / "teacher.py").write_text(
        "import torch\n"
        "def build(num_classes=2):\n"
        "    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),\n"
        "                               torch.nn.Linear(3, num_classes))\n")
    torch.save(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                   torch.nn.Linear(3, 2)).state_dict(), tmp_path / "t.pt")
    cfg = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), steps=2,
                      batch_size=4, image_size=64, levels=(100.0,), bn_batches=1, workers=0,
                      teachers=(f"{tmp_path / 'teacher.py'}:build@{tmp_path / 't.pt'}",))
    res = train(cfg, progress=False)
    assert res.checkpoint.is_file() and set(res.evals) >= {"min_1", "min_2", "min_3",
                                                           "level_100"}
    assert all(0 <= v <= 1 for v in res.evals.values())
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["teachers"][0].endswith(":build@" + str(tmp_path / "t.pt"))
    assert saved["steps"] == 2


def test_default_config_resolves_for_digits_and_round_trips():
    c = TrainConfig().resolved(1437)
    assert c.levels == (100.0, 200.0, 300.0, 400.0, 500.0) and c.batch_size == 16
    assert c.sampler == "conflict-aware" and c.steps == round(3 * (1437 // 16)) and not c.rescore
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    big = TrainConfig(data="/x").resolved(1_281_167, world=8)
    assert big.levels == (100, 200, 300, 400, 500, 700, 900, 1200)
    assert big.lr == pytest.approx(5e-4 * 96 * 8 / 512) and big.ema_decay == 0.99985


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    assert train_main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "img.png").write_bytes(b"")
    assert train_main(["--data", str(tmp_path / "flat"), "--out", str(tmp_path)]) == 2
    assert "no 'train' sub-folder" in capsys.readouterr().err
    assert train_main(["--sampler", "greedy"]) == 2
    assert "sampler = 'greedy' is not allowed; choose one of conflict-aware" in \
        capsys.readouterr().err
    assert train_main(["--levels", "300", "100"]) == 2
    assert "increasing" in capsys.readouterr().err
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"not a checkpoint")
    assert train_main(TINY + ["--steps", "2", "--out", str(out), "--resume"]) == 2
    assert "corrupt" in capsys.readouterr().err
    with pytest.raises(DataError, match="fewer than one global batch"):
        from toolkit.data.datasets import BatchStream, DigitsDataset

        BatchStream(DigitsDataset("val"), 1000)


def test_resume_refuses_a_different_run(tmp_path, capsys):
    assert train_main(TINY + ["--steps", "2", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert train_main(TINY + ["--steps", "2", "--out", str(tmp_path), "--resume",
                              "--sampler", "sandwich"]) == 2
    assert "trained with sampler='conflict-aware'" in capsys.readouterr().err
    weights_only = tmp_path / "w.pt"
    from toolkit.checkpoint import save_supernet
    from toolkit.supernet import Supernet

    save_supernet(Supernet(10), weights_only)
    with pytest.raises(CheckpointError, match="no training state"):
        train(TrainConfig(out=str(tmp_path), steps=2, levels=(100.0,), batch_size=4),
              resume=str(weights_only), progress=False)
