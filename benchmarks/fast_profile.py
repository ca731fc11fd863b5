"""Where `fast`'s training time goes: each layer's share of a step, and the fixed cost of the first call.

One process trains the registry's `fast` (or ``--model``, another recipe of
batch 256) as ``digits train`` does (TensorFlow without XLA, batch 256, 64
steps per compiled call), in float32.  It prints:

- the first ``fit`` call on 2 batches (tracing the training step, building
  the graph) and then the first ``evaluate`` (tracing the validation step),
  each beside the same call made again;
- a steady compiled call of 64 steps (the fastest of three), as milliseconds per step;
- each layer's forward and backward pass alone, in its own compiled function
  at batch 256, in training mode, with the gradients training needs: its
  weights, and its input from the first layer with weights on (layers before
  it, such as random shifts of the images, run forward only).

Times per step are also shown per epoch (223 steps: 57,000 images).

    python benchmarks/fast_profile.py [--model fast] [--data-dir DIR] [--repeats 50]
"""

from __future__ import annotations

import argparse
import os
import time

BATCH, STEPS_PER_EPOCH = 256, 223


def per_step(fn, repeats: int) -> float:
    """Seconds per call of `fn` after one warm-up call, its results fetched."""
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    [t.numpy() for t in result]
    return (time.perf_counter() - started) / repeats


def layer_step(layer, shape, input_gradient: bool):
    """A compiled forward + backward pass of `layer` alone on a random batch of `shape`."""
    import tensorflow as tf

    x = tf.random.uniform((BATCH, *shape))
    wrt = layer.trainable_variables + ([x] if input_gradient else [])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y)
        return tape.gradient(loss, wrt) if wrt else [y]

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast", help="a registry recipe that trains with batch 256")
    parser.add_argument("--data-dir", default=os.environ.get("DIGITS_DATA_DIR"))
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per layer")
    args = parser.parse_args()
    if not 1 <= args.repeats <= 10_000:
        parser.error(f"--repeats must be between 1 and 10000, got {args.repeats}")
    from digits.backend import use_backend

    use_backend("tensorflow")
    import keras

    from digits.datasets import load_dataset, to_inputs
    from digits.models import build_model, get_model_spec

    if get_model_spec(args.model).batch_size != BATCH:
        parser.error(f"--model {args.model} trains with batch {get_model_spec(args.model).batch_size}, not {BATCH}")

    data = load_dataset("mnist", data_dir=args.data_dir or None, progress=False)
    x, y = to_inputs(data.x_train[: BATCH * 64]), data.y_train[: BATCH * 64].astype("int32")
    keras.utils.set_random_seed(1)
    model = build_model(args.model)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=False, steps_per_execution=64)

    def timed(call):
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    two = dict(x=x[: 2 * BATCH], y=y[: 2 * BATCH], batch_size=BATCH, verbose=0)
    fit_first, fit_again = timed(lambda: model.fit(epochs=1, **two)), timed(lambda: model.fit(epochs=1, **two))
    two.pop("batch_size")
    eval_first, eval_again = (timed(lambda: model.evaluate(batch_size=1000, **two)) for _ in range(2))
    full = [timed(lambda: model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)) / 64 for _ in range(3)]
    steady = min(full)  # the first full call may still build (a new shape of the last call)
    print(f"first fit call (2 steps): {fit_first:.2f} s, again: {fit_again:.2f} s")
    print(f"first evaluate call: {eval_first:.2f} s, again: {eval_again:.2f} s")
    print(f"one step inside a compiled call of 64: {steady * 1e3:.2f} ms ({steady * STEPS_PER_EPOCH:.2f} s an epoch)")
    print()
    print("| layer | output | forward + backward, ms per step | s per epoch |")
    print("| --- | --- | --- | --- |")
    shape, weighted = (28, 28), False
    for layer in model.layers:
        out = tuple(layer.output.shape[1:])
        if type(layer).__name__ not in ("Reshape", "Flatten"):  # views, no arithmetic
            seconds = per_step(layer_step(layer, shape, input_gradient=weighted), args.repeats)
            print(f"| {layer.name} | {out} | {seconds * 1e3:.2f} | {seconds * STEPS_PER_EPOCH:.2f} |", flush=True)
        weighted = weighted or bool(layer.trainable_variables)
        shape = out


if __name__ == "__main__":
    main()
