"""``evit-train``: conflict-aware ElasticViT supernet training.

With no arguments it trains on the embedded handwritten digits (about 10 minutes on 2 CPU
cores) and writes runs/train/{supernet.pt,last.pt,config.json,log.jsonl,eval.csv,summary.json}.

    evit-train                                   # embedded digits, conflict-aware sampler
    evit-train --data /imagenet --out runs/in1k  # ImageNet layout: train/ and val/ class folders
    evit-train --sampler sandwich                # the baseline (also: complexity)
    evit-train --resume                          # continue runs/train/last.pt exactly
    evit-train --overwrite                       # start over in runs/train (deletes the old run)
    evit-train --teacher a.onnx --teacher b.pt   # distil from the mean of several teachers
    evit-train --no-teacher                      # learn from the labels (digits: ablation)
    torchrun --nproc_per_node 8 -m toolkit.cli.train --data /imagenet   # data parallel
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from toolkit.checkpoint import CheckpointError
from toolkit.console import HelpFormatter, deprecated_option, fail
from toolkit.data.datasets import DataError
from toolkit.space import ArchError
from toolkit.train.config import ConfigError, TrainConfig
from toolkit.train.teachers import TeacherError

HELP = {
    "data": "ImageNet-layout folder (train/<class>/*, val/<class>/*); omit for embedded digits",
    "out": "output folder",
    "sampler": "conflict-aware | complexity | sandwich",
    "levels": "complexity levels in MFLOPs (default: 100..500 on digits, else the paper's 8)",
    "steps": "total optimizer steps (overrides --epochs)",
    "epochs": "training length in epochs (default: 3 on digits, 610 otherwise)",
    "batch_size": "images per process per step (default: 16 on digits, 96 otherwise)",
    "lr": "peak learning rate (default: 2e-3 on digits, 5e-4 x global batch / 512 otherwise)",
    "subspace": "where a level's subnets come from: hss (at least the level's hierarchical "
                "smallest subnet in every dimension, the paper's rule), release (the release "
                "code's floors: no MLP floor), off (the FLOPs window only; for ablation)",
    "eval_every": "evaluate the HSS and one subnet per level every N steps (0: only at the end)",
    "ckpt_every": "write last.pt every N steps",
    "device": "torch device to train on: auto | cpu | cuda",
    "layout": "supernet weight layout: evit | release (the release's, so the authors' "
              "checkpoint loads) (default: the --init-from checkpoint's, else evit)",
    "min_lr": "learning rate at the end of the cosine schedule (default: lr / 100)",
    "warmup_lr": "learning rate at the start of the warm-up (default: lr / 500)",
    "warmup_steps": "linear warm-up steps (default: 5 epochs, at most a tenth of the run; a "
                    "twentieth on digits)",
    "ema_decay": "decay of the EMA weights the checkpoint ships (default: 0.99985 as the "
                 "release; 0.99 on digits)",
    "mixup": "mixup alpha (default: 0.01 as the release; 0 on digits)",
    "cutmix": "cutmix alpha (default: 0.01 as the release; 0 on digits)",
    "rescore": "re-score the conflict-aware sampler's candidates during an epoch, not only "
               "at its start (default: true; false on digits)",
    "bn_batches": "BN recalibration batches per evaluated subnet (default: 65; 16 on digits)",
    "eval_images": "evaluate on the first N validation images (default: all)",
    "workers": "data-loading worker processes (default: 8; 0 on digits)",
    "threads": "torch CPU threads of this process (default: torch's own)",
    "init_from": "start from this supernet checkpoint's EMA weights, e.g. `evit import-release`'s "
                 "output, to fine-tune on your data (a classifier of another size starts anew)",
}


# --device always names a phone/host profile, --threads a measured model's threads, --workers
# conversion processes: the training process's own get the torch- prefix
FLAGS = {"device": "--torch-device", "threads": "--torch-threads", "workers": "--data-workers"}


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a config.json to start from (command-line flags override)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue from OUT/last.pt (or the given checkpoint)")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in --out even though it holds another (deletes it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration as JSON and exit")
    p.add_argument("--teacher", dest="teachers", action="append", default=None,
                   metavar="SPEC",
                   help="a local teacher (repeat for several; their sharpened probabilities "
                        "are averaged): path/to/module.py:factory[@weights.pt] (factory("
                        "num_classes=N), weights loaded with weights_only=True), a TorchScript "
                        "file, an .onnx file, or evit:digits (default on digits: evit:digits, "
                        "trained once and cached; else none)")
    p.add_argument("--no-teacher", action="store_true",
                   help="no teacher: the uniform subnets learn from the labels")


def _config_args(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (default None: the config's value stands)."""
    g = p.add_argument_group("training configuration (TrainConfig)")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "teachers":
            continue
        flag = FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
        help_ = HELP.get(f.name, "") + (f" (default: {f.default})" if f.default is not None
                                        and f.name not in HELP else "")
        base = _base_type(hints[f.name])
        if base is bool:
            g.add_argument(flag, dest=f.name, type=_bool, default=None, metavar="{true,false}",
                           help=help_)
        elif f.name == "levels":
            g.add_argument(flag, dest=f.name, type=float, nargs="+", default=None, help=help_)
        else:
            g.add_argument(flag, dest=f.name, type=base, default=None, help=help_)
    deprecated_option(p, "--device", "--torch-device", "device", type=str)
    deprecated_option(p, "--threads", "--torch-threads", "threads", type=int)
    deprecated_option(p, "--workers", "--data-workers", "workers", type=int)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evit-train", description=__doc__,
                                formatter_class=HelpFormatter)
    _run_args(p)
    _config_args(p)
    return p


def _bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{v!r} is not a boolean; use true or false")


def _base_type(t):
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return args[0] if args else t


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    cfg = TrainConfig.load(args.config) if args.config else TrainConfig()
    if args.no_teacher and args.teachers:
        raise ConfigError("--no-teacher and --teacher contradict each other: give one")
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            setattr(cfg, f.name, tuple(v) if f.name in ("levels", "teachers") else v)
    if args.no_teacher:
        cfg.teachers = ()
    cfg.__post_init__()
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        cfg.validate()
        if args.print_config:
            from toolkit.data.datasets import build_datasets

            n = len(build_datasets(cfg.data, cfg.image_size, cfg.seed).train)
            print(json.dumps(cfg.resolved(n).to_dict(), indent=1))
            return 0
        from toolkit.train.trainer import train

        res = train(cfg, resume=args.resume, progress=not args.no_progress,
                    overwrite=args.overwrite)
    except (ConfigError, DataError, CheckpointError, ArchError, TeacherError,
            FileNotFoundError) as e:
        return fail("evit-train", e)
    print(f"trained {res.steps} steps in {res.seconds:.0f} s "
          f"({res.images_per_second:.1f} images/s over all subnet passes)")
    for name, acc in res.evals.items():
        print(f"  {name:<12} top-1 {acc * 100:5.1f}%")
    print(f"supernet: {res.checkpoint}   (logs, config, eval.csv in {res.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
