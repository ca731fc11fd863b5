"""``digits models``: the model registry (:data:`digits.models.MODELS`) with parameter counts."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the model registry with parameter counts")
    p.set_defaults(func=cmd_models)


def cmd_models(args) -> None:
    from digits.backend import use_backend
    from digits.models import MODELS

    use_backend(None)
    print(f"{'name':<13} {'parameters':>10}  {'epochs':>6}  {'batch':>5}  {'backend':<10}  architecture")
    for spec in MODELS.values():
        params = spec.build().count_params()
        seed = f"  (seed {spec.seed})" if spec.seed else ""
        print(f"{spec.name:<13} {params:>10,}  {spec.epochs:>6}  {spec.batch_size:>5}  "
              f"{spec.backend:<10}  {spec.description}{seed}")
