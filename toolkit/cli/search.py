"""``evit-search``: the most accurate subnet within a latency (or MFLOPs) budget.

    evit-search --latency-ms 25 --device pixel4 --supernet runs/train/supernet.pt
    evit-search --latency-ms 10 15 20 --device host --export tflite --measure
    evit-search --budget-mflops 200 400
    evit-search --latency-ms 8 11 14 --fitness predictor --json

Fitness is top-1 with the supernet's weights after BN recalibration, on a search split held
out from training (never the validation set). ``--fitness predictor`` measures a few hundred
subnets once per supernet (cached, resumable), fits an accuracy predictor, searches with it
and measures the final top-k for real. Several budgets give a Pareto front. Outputs in --out:
best_<budget>.json per budget, front.csv (every subnet measured for real), front.png,
accuracy_predictor.json (with --fitness predictor), job.json (the resolved job) and the
resumable search state.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from toolkit.console import HelpFormatter, deprecated_option, fail
from toolkit.search.evolution import OPERATORS, SearchConfig, SearchError
from toolkit.search.run import EXPORT_FORMATS, FITNESS, STRATEGIES, SearchJob, run_search

_EVOLUTION_HELP = {
    "population": "initial subnets per budget",
    "generations": "evolution generations",
    "parents": "best subnets kept as parents each generation",
    "mutations": "children by mutation each generation",
    "crossovers": "children by crossover each generation",
    "mutation_prob": "probability of re-drawing each value in a mutation",
    "lower_frac": "feasible = cost in [lower_frac * budget, budget]",
    "max_retries": "draws to find a feasible child before giving up on it",
    "seed": "seed of the search (and of the fitness images)",
    "dim_mutation_prob": "release operators: a re-drawn value is uniform with this "
                         "probability, else the smallest choice",
    "depth_mutation_prob": "release operators: probability of re-drawing all depths together",
}


def _budget_args(p: argparse.ArgumentParser) -> None:
    b = p.add_argument_group("budgets (give one kind)")
    b.add_argument("--latency-ms", type=float, nargs="+", metavar="MS",
                   help="latency budget(s) in ms, on --device's latency predictor")
    b.add_argument("--budget-mflops", type=float, nargs="+", metavar="B",
                   help="MFLOPs budget(s)")
    deprecated_option(p, "--mflops", "--budget-mflops", "budget_mflops", type=float, nargs="+")
    b.add_argument("--device", default=SearchJob.device,
                   help="whose latency predictor (pixel1/4/6, xiaomi11, or host after a campaign)")
    b.add_argument("--predictor", help="a latency predictor file to use instead of the one "
                   "installed for --device (e.g. runs/profile_host/host.json)")


def _data_args(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("supernet and data")
    d.add_argument("--supernet", default=SearchJob.supernet,
                   help="supernet checkpoint (evit-train)")
    d.add_argument("--data", default=None, help="ImageNet-layout folder (default: the "
                   "checkpoint's training data; the embedded digits for evit-train's default)")
    d.add_argument("--any-subnet", action="store_true",
                   help="with a release-layout supernet: search the whole space, not only the "
                        "subnets the release's sampler could have trained")
    d.add_argument("--no-bank-seeds", action="store_true",
                   help="start the search from uniform draws only, not from the supernet's "
                        "memory banks (the release seeds its first population from them)")


def _evolution_args(p: argparse.ArgumentParser) -> None:
    e = p.add_argument_group("evolution")
    s = SearchConfig()
    for f in fields(SearchConfig):
        if f.name != "operators":
            e.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(s, f.name)),
                           default=getattr(s, f.name), help=_EVOLUTION_HELP[f.name])
    e.add_argument("--operators", choices=OPERATORS, default=s.operators,
                   help="release: mutation biased toward the smallest choice and whole-kind "
                        "crossover, as the release's searcher; uniform: unbiased re-draws")
    e.add_argument("--strategy", choices=STRATEGIES, default=SearchJob.strategy,
                   help="random: as many uniform feasible subnets as evolution evaluates "
                        "(population + generations x (mutations + crossovers)), the best wins")


def _fitness_args(p: argparse.ArgumentParser) -> None:
    f = p.add_argument_group("fitness")
    f.add_argument("--fitness", choices=FITNESS, default=SearchJob.fitness,
                   help="measured: real top-1 of every candidate; predictor: an accuracy "
                        "predictor's top-1, then the final --top-k measured for real")
    f.add_argument("--predictor-subnets", type=int, default=SearchJob.predictor_subnets,
                   help="--fitness predictor: subnets measured for real to fit the predictor "
                        "(in the budgets' cost window; cached per supernet, resumable)")
    f.add_argument("--top-k", type=int, default=SearchJob.top_k,
                   help="--fitness predictor: best predicted subnets measured for real")
    f.add_argument("--accuracy-predictor", help="--fitness predictor: use this accuracy "
                   "predictor file instead of measuring and fitting one")
    f.add_argument("--calib-images", type=int, default=None,
                   help="BN recalibration images (default: 6,240 for a folder, the release's 65 "
                        "batches of 96; 128 for the digits)")
    f.add_argument("--search-images", type=int, default=None,
                   help="fitness images from the search split (default: 10,000 for a folder, "
                        "standard error <= 0.5%%; the digits' whole search split, 287)")


def _output_args(p: argparse.ArgumentParser) -> None:
    o = p.add_argument_group("output")
    o.add_argument("--out", default=SearchJob.out, help="the search folder")
    o.add_argument("--overwrite", action="store_true",
                   help="start over in --out even though it holds another search (deletes it)")
    o.add_argument("--json", action="store_true",
                   help="print the results as JSON on stdout (messages go to stderr)")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    o.add_argument("--export", choices=EXPORT_FORMATS, help="export each budget's best")
    o.add_argument("--measure", action="store_true",
                   help="run the exported best subnets on --device and compare with the predictor")
    o.add_argument("--benchmark-binary", help="benchmark_model for --measure on a phone")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evit-search", description=__doc__,
                                formatter_class=HelpFormatter)
    for add in (_budget_args, _data_args, _evolution_args, _fitness_args, _output_args):
        add(p)
    return p


def job_from_args(args: argparse.Namespace) -> SearchJob:
    a = vars(args)
    cfg = SearchConfig(**{f.name: a[f.name] for f in fields(SearchConfig)})
    return SearchJob(
        latency_ms=tuple(args.latency_ms or ()), budget_mflops=tuple(args.budget_mflops or ()),
        config=cfg, bank_seeds=not args.no_bank_seeds, progress=not args.no_progress,
        **{k: a[k] for k in ("device", "predictor", "supernet", "data", "out", "strategy",
                             "fitness", "predictor_subnets", "top_k", "accuracy_predictor",
                             "calib_images", "search_images", "export", "measure",
                             "benchmark_binary", "overwrite", "any_subnet")})


def main(argv: list[str] | None = None) -> int:
    from toolkit.devices.base import DeviceError
    from toolkit.latency import PredictorError

    args = build_parser().parse_args(argv)
    try:
        res = run_search(job_from_args(args))
    except (SearchError, PredictorError, DeviceError, ValueError, OSError) as e:
        return fail("evit-search", e)
    if args.json:
        print(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
