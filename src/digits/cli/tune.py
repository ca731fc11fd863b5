"""``digits tune``: hyperparameter search with Optuna (:func:`digits.tuning.tune`)."""

from __future__ import annotations

from digits.cli.common import (add_backend, add_data_dir, default_of, fraction, non_negative_int, positive_float,
                               positive_int)


def add_parser(subparsers) -> None:
    from digits.datasets.sources import DATASETS
    from digits.models import MODELS
    from digits.tuning import tune

    def default(name: str):
        return default_of(tune, name)

    p = subparsers.add_parser("tune", help="search hyperparameters with Optuna; resumable, shareable studies")
    p.add_argument("--model", required=True, metavar="NAME", help=f"one of {', '.join(MODELS)}")
    p.add_argument("--trials", type=positive_int, required=True, metavar="N",
                   help="run until the study has N finished (complete or pruned) trials")
    p.add_argument("--timeout", type=positive_float, metavar="S",
                   help="start no new trial after S seconds (the running one finishes)")
    p.add_argument("--study", metavar="NAME", help="study name (default: the model's name)")
    p.add_argument("--storage", metavar="URL",
                   help="sqlite:///FILE.db or postgresql://USER:PASSWORD@HOST/DB "
                        "(default: sqlite:///studies/STUDY.db); the same URL on several machines "
                        "tunes one study together")
    p.add_argument("--space", metavar="FILE",
                   help="JSON search space replacing the defaults per setting, e.g. "
                        '{"batch_size": [64, 128], "dropout": {"low": 0, "high": 0.5}, "augment": 0}')
    p.add_argument("--max-epochs", type=positive_int, metavar="E",
                   help="epochs are searched in 1..E (default: the model's recipe); an epochs entry "
                        "in --space replaces that range and must stay within E")
    p.add_argument("--limit", type=positive_int, metavar="N", help="tune on the first N training images")
    p.add_argument("--validation-split", type=fraction, default=default("validation_split"), metavar="F",
                   help="fraction of the training images scored in every trial (default: %(default)s)")
    p.add_argument("--early-stopping", type=positive_int, default=default("early_stopping"), metavar="PATIENCE",
                   help="stop a trial after PATIENCE epochs without a better val_loss (default: %(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=default("seed"),
                   help="every trial's seed (default: %(default)s)")
    p.add_argument("--dataset", default=default("dataset"),
                   help=f"{', '.join(DATASETS)} (default: %(default)s)")
    p.add_argument("--out", metavar="DIR", help="results folder (default: studies/STUDY)")
    p.add_argument("--heartbeat", type=positive_int, default=default("heartbeat"), metavar="S",
                   help="a running trial's heartbeat; one silent for 3×S seconds (killed process, "
                        "lost machine) is run again (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="print only the results")
    add_data_dir(p)
    add_backend(p)
    p.set_defaults(func=cmd_tune)


def cmd_tune(args) -> None:
    from digits.tuning import load_space_file, tune

    tune(
        args.model, trials=args.trials, timeout=args.timeout, study=args.study, storage=args.storage,
        out=args.out, data_dir=args.data_dir, dataset=args.dataset, limit=args.limit,
        max_epochs=args.max_epochs, validation_split=args.validation_split,
        early_stopping=args.early_stopping, seed=args.seed,
        space=load_space_file(args.space) if args.space else None, backend=args.backend,
        heartbeat=args.heartbeat, verbose=0 if args.quiet else 1,
    )
