"""``digits ensemble``: several trained runs combined into one servable model (:func:`digits.ensemble.ensemble`)."""

from __future__ import annotations

from digits.cli.common import add_backend, add_data_dir


def add_parser(subparsers) -> None:
    # digits.ensemble imports Keras, which must wait for --backend: its methods and default are repeated here.
    p = subparsers.add_parser("ensemble", help="combine trained runs into one servable model")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--method", choices=("average", "vote"), default="average",
                   help="average the probabilities (default) or take the majority vote")
    p.add_argument("--select", action="store_true",
                   help="keep only the runs that lower the averaged validation loss, chosen greedily on the "
                        "images every run held out (never the test set)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/ensemble-METHOD-TIMESTAMP)")
    add_data_dir(p)
    add_backend(p)
    p.set_defaults(func=cmd_ensemble)


def cmd_ensemble(args) -> None:
    from digits.backend import use_backend
    from digits.runs import Run

    runs = [Run(path) for path in args.runs]  # a missing run is reported before Keras starts
    use_backend(args.backend)
    from digits.ensemble import ensemble

    run = ensemble(runs, out=args.out, method=args.method, data_dir=args.data_dir, select=args.select)
    m = run.metrics
    if "selection" in m:
        chosen = m["selection"]
        print(f"selected on {chosen['validation_images']} validation images:")
        for step in chosen["steps"]:
            print(f"  + {step['run']}: validation loss {step['validation_loss']:.4f}, "
                  f"accuracy {step['validation_accuracy']:.2%}")
        for path in chosen["left_out"]:
            print(f"  left out {path}")
    members = ", ".join(f"{a:.2%}" for a in m["member_test_accuracies"])
    count = len(m["member_test_accuracies"])
    print(f"test accuracy: {m['test_accuracy']:.2%} ({args.method} of {count} runs: {members})")
    print(f"run saved to {run.path}")
