"""``evit-analyze conflicts``: gradient conflicts between subnets of a trained supernet.

    evit-analyze conflicts --checkpoint runs/train/supernet.pt --out runs/conflicts
    evit-analyze conflicts --checkpoint ckpt.pt --data /imagenet --level 500 --n-level 50

Writes conflict_pairs.csv (cosine vs FLOPs difference, the paper's Fig. 2b),
conflict_groups.csv / conflict_scores.csv (top vs random subnets at one level, Fig. 2c and
Table 4), conflicts.png and summary.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from toolkit.checkpoint import CheckpointError, load_supernet
from toolkit.console import HelpFormatter, fail
from toolkit.data.datasets import DataError, build_datasets


def cmd_conflicts(args: argparse.Namespace) -> int:
    from toolkit.train.conflict import analyze

    model = load_supernet(args.checkpoint, use_ema=not args.live_weights)
    data = build_datasets(args.data, args.image_size, args.seed)
    if data.num_classes != model.num_classes:
        raise DataError(f"the data has {data.num_classes} classes but the supernet was trained "
                        f"for {model.num_classes}")
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(data.train), generator=g)
    take = lambda a, b: torch.stack([data.train[int(i)][0] for i in idx[a:b]])  # noqa: E731
    x = take(0, args.batch_size)
    y = torch.tensor([data.train[int(i)][1] for i in idx[:args.batch_size]])
    calib = [take(args.batch_size * (k + 1), args.batch_size * (k + 2)) for k in range(4)]
    score_set = torch.utils.data.Subset(data.val, range(min(args.score_images, len(data.val))))
    loader = torch.utils.data.DataLoader(score_set, batch_size=64)
    rep = analyze(model, x, y, calib, loader, args.out, args.n_pairs, args.level, args.n_level,
                  args.top_k, args.seed)
    (Path(args.out) / "summary.json").write_text(json.dumps(rep.summary, indent=1) + "\n")
    print(json.dumps(rep.summary, indent=1))
    print(f"wrote {rep.pairs_csv}, {rep.groups_csv}, {rep.scores_csv}, {rep.png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    fmt = HelpFormatter
    p = argparse.ArgumentParser(prog="evit-analyze", description=__doc__, formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("conflicts", help="gradient cosine similarity between subnets",
                       formatter_class=fmt)
    c.add_argument("--checkpoint", required=True, help="supernet checkpoint (evit-train)")
    c.add_argument("--data", default=None, help="ImageNet-layout folder; omit for digits")
    c.add_argument("--image-size", type=int, default=224, help="ImageFolder crop size")
    c.add_argument("--out", default="runs/conflicts", help="output folder")
    c.add_argument("--batch-size", type=int, default=64, help="the one batch for gradients")
    c.add_argument("--n-pairs", type=int, default=12, help="subnets spread over 50-1200 MFLOPs")
    c.add_argument("--level", type=float, default=300.0, help="MFLOPs level of the top/random "
                   "comparison (window [level, level+20])")
    c.add_argument("--n-level", type=int, default=30, help="subnets scored at that level")
    c.add_argument("--top-k", type=int, default=8, help="size of the top and random groups")
    c.add_argument("--score-images", type=int, default=360, help="held-out images for scoring")
    c.add_argument("--live-weights", action="store_true", help="use live, not EMA, weights")
    c.add_argument("--seed", type=int, default=0, help="seed of the sampled subnets and images")
    c.set_defaults(func=cmd_conflicts)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CheckpointError, DataError) as e:
        return fail("evit-analyze", e)


if __name__ == "__main__":
    sys.exit(main())
