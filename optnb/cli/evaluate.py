"""``optnb evaluate``: train a genotype from scratch (paper §9.3; notebook 09 without Jupyter).

    optnb evaluate --genotype DARTS_V2 --profile quick
    optnb evaluate --search-run 08_nas_search-1a2b3c4d --task imagenet
"""

from __future__ import annotations

import argparse

from optnb.cli.common import add_run_options, compile_choice, run_parameters

NAME = "evaluate"
HELP = "train a searched or named cell from scratch (notebook 09 without Jupyter)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--genotype", default="", help="name (DARTS_V2, ...), JSON or Genotype(...) text")
    p.add_argument("--search-run", default="", help="an 08_nas_search run id")
    p.add_argument("--task", default="cifar10", help="cifar10 (Table 4) | imagenet (Table 5)")
    add_run_options(p)
    p.add_argument("--no-resume", action="store_true", help="start over, replacing a checkpoint")


def run(args: argparse.Namespace) -> int:
    # deferred: torch loads only when a command needs it (a fast `optnb list`)
    from optnb.experiments import record, resolve
    from optnb.experiments.profiles import registered
    from optnb.experiments.results import mark_complete
    from optnb.nas.evaluate import train_genotype
    from optnb.nas.experiment import eval_loaders, eval_summary, resolve_genotype
    from optnb.nas.params import eval_config

    params = {**run_parameters(args), "TASK": args.task, "GENOTYPE": args.genotype,
              "SEARCH_RUN": args.search_run}
    cfg = resolve(params, notebook="09_nas_evaluate", register=False)
    # checked before the run folder is claimed: a refused evaluation writes nothing
    genotype, source = resolve_genotype(cfg.genotype, cfg.search_run, cfg.results_dir)
    settings = eval_config(cfg).checked()
    with registered(cfg):  # claims the run folder, writes the sidecar; a failure marks it failed
        train, test, num_classes = eval_loaders(cfg, settings)
        result = train_genotype(genotype, settings, train, test, cfg.device, cfg.run_dir,
                                resume=not args.no_resume, num_classes=num_classes,
                                compile=compile_choice(args, cfg.profile, "evaluate"))
        for name, value, unit in eval_summary(result, cfg.task, source):
            record(name, value, unit)
        mark_complete(cfg.run_dir)
    print(f"run folder: {cfg.run_dir}")
    return 0
