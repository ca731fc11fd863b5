"""``digits train``: train a model and save a run directory (:func:`digits.training.train`)."""

from __future__ import annotations

import argparse

from digits.cli.common import add_backend, add_data_dir, fraction, non_negative_int, positive_float, positive_int

# Flags left out keep the value of --config, else TrainConfig's own default or the model's recipe.
_CONFIG_FLAGS = ("model", "dataset", "epochs", "batch_size", "learning_rate", "lr_schedule", "validation_split",
                 "seed", "early_stopping", "checkpoint_best", "limit", "backend", "distribute", "precision",
                 "tensorboard")


def add_parser(subparsers) -> None:
    from digits.datasets.sources import DATASETS
    from digits.models import MODELS
    from digits.training import PRECISIONS, SCHEDULES, TrainConfig

    p = subparsers.add_parser("train", help="train a model and save a run directory",
                              argument_default=argparse.SUPPRESS)
    p.add_argument("--model", metavar="NAME",
                   help=f"one of {', '.join(MODELS)} (default: {TrainConfig.model})")
    p.add_argument("--dataset", help=f"{', '.join(DATASETS)} (default: {TrainConfig.dataset})")
    p.add_argument("--epochs", type=positive_int, help="default: the model's recipe")
    p.add_argument("--batch-size", type=positive_int, help="default: the model's recipe")
    p.add_argument("--learning-rate", type=positive_float, help="Adam's (peak) learning rate")
    p.add_argument("--lr-schedule", choices=SCHEDULES,
                   help="cosine decay to 0 (the default for most models), the seeds' constant rate, "
                        "or a one-cycle warm-up then decay (the fast model's)")
    p.add_argument("--validation-split", type=fraction,
                   help="fraction of the training images held out for validation "
                        f"(default: {TrainConfig.validation_split})")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="compute dtype while training; the saved model is float32 (default: the model's "
                        "recipe where this processor does bfloat16 natively, else float32)")
    p.add_argument("--seed", type=non_negative_int, help="random seed; a run with a seed is repeatable")
    p.add_argument("--early-stopping", type=positive_int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better val_loss, keep the best weights")
    p.add_argument("--checkpoint-best", action="store_true",
                   help="save best.keras whenever val_loss improves, and keep that epoch's model")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write Keras's TensorBoard logs into RUN_DIR/tensorboard/ "
                        "(see them with `tensorboard --logdir runs/`)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="train on the first N images only")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="a config.json to start from (flags override it)")
    p.add_argument("--out", metavar="DIR", default=None, help="run directory (default: runs/MODEL-TIMESTAMP)")
    p.add_argument("--quiet", action="store_true", default=False, help="print only the result")
    p.add_argument("--report", action="store_true", default=False,
                   help="also write the full HTML report (as `digits report`; adds a few seconds)")
    p.add_argument("--distribute", action="store_true",
                   help="train data-parallel on every local device, the batch split across them "
                        "(multi-host: docs/SCALING.md)")
    add_data_dir(p)
    add_backend(p)
    p.set_defaults(func=cmd_train, data_dir=None)


def cmd_train(args) -> None:
    from digits.training import TrainConfig, load_config_file, train

    base = load_config_file(args.config) if args.config else TrainConfig()
    overrides = {k: getattr(args, k) for k in _CONFIG_FLAGS if hasattr(args, k)}
    run = train(base, out=args.out, data_dir=args.data_dir, verbose=0 if args.quiet else 1, **overrides)
    m = run.metrics
    print(f"test accuracy: {m['test_accuracy']:.2%}   test loss: {m['test_loss']:.4f}   "
          f"training: {m['train_seconds']:.1f} s")
    print(f"run saved to {run.path}")
    if args.report:
        from digits.report import write_report

        print(f"report: {write_report(run, data_dir=args.data_dir)}")
