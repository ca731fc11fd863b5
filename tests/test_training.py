"""Training on small subsets: the run directory, repeatability, the fast path, failures."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from digits.backend import native_bfloat16
from digits.errors import DigitsError
from digits.runs import Run
from digits.training import TrainConfig, held_out_images, train
from hypothesis import given, settings
from hypothesis import strategies as st

SMALL = dict(limit=2000, epochs=2, seed=7, verbose=0)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, mnist_dir):
    return train(model="mlp", out=tmp_path_factory.mktemp("runs") / "mlp", data_dir=mnist_dir, **SMALL)


def test_run_directory_holds_everything_a_later_command_needs(small_run):
    names = {p.relative_to(small_run.path).as_posix() for p in small_run.path.rglob("*") if p.is_file()}
    assert {"model.keras", "config.json", "history.csv", "metrics.json", "summary.txt",
            "plots/samples.png", "plots/curves.png"} <= names
    metrics = small_run.metrics
    assert 0.8 < metrics["test_accuracy"] <= 1 and metrics["test_loss"] > 0
    assert metrics["test_images"] == 10_000 and metrics["train_seconds"] > 0
    config = small_run.config
    assert config["model"] == "mlp" and config["epochs"] == 2 and config["batch_size"] == 32
    assert config["seed"] == 7 and config["versions"]["backend"] == config["backend"]
    assert config["optimizer"] == {"name": "adam", "beta_1": 0.9, "beta_2": 0.999}
    assert "keras" in config["versions"] and config["dataset_source"]
    history = small_run.history()
    assert set(history) >= {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]


def test_no_partial_folders_are_left_beside_a_run(small_run):
    assert [p.name for p in small_run.path.parent.iterdir()] == ["mlp"]


def test_a_run_is_shared_as_the_umask_says(small_run):
    """A run folder and its files get the umask's permissions, like any tool's output (not 0700/0600)."""
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(small_run.path.stat().st_mode) == 0o777 & ~umask
    for name in ("config.json", "metrics.json", "summary.txt", "plots/curves.png"):
        assert stat.S_IMODE((small_run.path / name).stat().st_mode) == 0o666 & ~umask, name


def test_a_seeded_run_is_repeatable(small_run, tmp_path, mnist_dir):
    again = train(model="mlp", out=tmp_path / "again", data_dir=mnist_dir, **SMALL)
    assert again.metrics["test_accuracy"] == small_run.metrics["test_accuracy"]
    assert again.metrics["test_loss"] == small_run.metrics["test_loss"]


def test_unseeded_runs_record_the_seed_they_drew(tmp_path, mnist_dir):
    run = train(model="mlp", out=tmp_path / "r", data_dir=mnist_dir, limit=500, epochs=1, verbose=0)
    assert isinstance(run.config["seed"], int)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(2, 100_000), split=st.floats(0.001, 0.999))
def test_held_out_images_are_the_ones_keras_fit_validates_on(n, split):
    from keras.src.trainers.data_adapters.array_slicing import train_validation_split

    held = held_out_images(n, split)
    if held.start in (0, n):
        return  # Keras refuses such a split itself
    _, (validation,) = train_validation_split((np.arange(n),), validation_split=split)
    assert list(held) == validation.tolist()


def test_a_run_counts_the_images_keras_held_out(tmp_path, mnist_dir):
    """1,234 images, 5% held out: Keras keeps floor(1234 × 0.95) = 1,172, not 1234 − int(61.7)."""
    run = train(model="mlp", out=tmp_path / "r", data_dir=mnist_dir, limit=1234, epochs=1, seed=1,
                validation_split=0.05, verbose=0)
    assert (run.metrics["train_images"], run.metrics["validation_images"]) == (1172, 62)
    assert run.metrics["threshold_measured_on"] == "62 validation images"
    assert held_out_images(0, 0.05) == range(0) and held_out_images(10, 0) == range(10, 10)


def test_fast_path_takes_the_same_steps_as_plain_batch_32_fit():
    """MicroBatched runs fit(batch_size=32)'s updates, 64 to a compiled call."""
    import keras

    from digits import fastfit
    from digits.models import build_model

    if keras.backend.backend() != "jax":
        pytest.skip("the micro-batched trainer is the JAX path")
    rng = np.random.default_rng(0)
    x = rng.random((32 * 70 + 5, 28, 28), dtype=np.float32)  # 70 full batches and a short one
    y = rng.integers(0, 10, len(x))
    weights = {}
    for fast in (True, False):
        keras.utils.set_random_seed(1)
        model = build_model("mlp")
        if fast:
            fastfit.fit(model, optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                        x=x, y=y, batch_size=32, epochs=2, shuffle=False, verbose=0)
        else:
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
            model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
        weights[fast] = model.get_weights()
    for a, b in zip(weights[True], weights[False]):
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_one_hot_seed_model_trains(tmp_path, mnist_dir):
    run = train(model="mlp-256-128", out=tmp_path / "r", data_dir=mnist_dir, limit=1000, epochs=1, seed=1, verbose=0)
    assert run.config["batch_size"] == 32 and run.metrics["test_accuracy"] > 0.7


def test_checkpoint_best_keeps_the_best_validation_epoch(tmp_path, mnist_dir):
    run = train(model="mlp", out=tmp_path / "r", data_dir=mnist_dir, limit=1000, epochs=3, seed=1,
                checkpoint_best=True, early_stopping=2, validation_split=0.2, verbose=0)
    assert (run.path / "best.keras").is_file()
    import keras

    best = keras.saving.load_model(run.path / "best.keras", compile=False)
    final = run.load_model()
    for a, b in zip(best.get_weights(), final.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("overrides,message", [
    (dict(epochs=0), "epochs must be at least 1, got 0"),
    (dict(epochs=-3), "epochs must be at least 1, got -3"),
    (dict(batch_size=0), "batch size must be at least 1"),
    (dict(learning_rate=-1.0), "learning rate must be positive"),
    (dict(validation_split=1.5), r"validation split must be in \[0, 1\)"),
    (dict(model="resnet"), "unknown model 'resnet'"),
    (dict(early_stopping=3, validation_split=0.0), "need a validation split"),
])
def test_bad_settings_fail_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(DigitsError, match=message):
        train(out=tmp_path / "run", verbose=0, **overrides)
    assert list(tmp_path.iterdir()) == []


def test_out_folder_that_holds_files_is_refused(tmp_path, mnist_dir):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(DigitsError, match="already exists"):
        train(out=tmp_path, data_dir=mnist_dir, **SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_a_crash_mid_run_leaves_nothing_behind(tmp_path, mnist_dir, monkeypatch):
    import digits.evaluation

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(digits.evaluation, "evaluate_arrays", broken)
    with pytest.raises(RuntimeError):
        train(out=tmp_path / "run", data_dir=mnist_dir, limit=500, epochs=1, verbose=0)
    assert list(tmp_path.iterdir()) == []


def test_missing_dataset_fails_before_anything_is_written(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DigitsError, match="train-images-idx3-ubyte"):
        train(out=tmp_path / "run", data_dir=empty, verbose=0, limit=500, epochs=1)
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]


def test_config_round_trips_through_config_json(small_run, tmp_path):
    from digits.training import load_config_file

    cfg = load_config_file(small_run.path / "config.json")
    assert cfg == TrainConfig(**{k: v for k, v in small_run.config.items() if k in TrainConfig.__dataclass_fields__})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "mlp", "epochz": 3}))
    with pytest.raises(DigitsError, match="unknown config keys epochz"):
        load_config_file(bad)


@pytest.mark.slow
def test_seed_001_reproduced_reaches_97_5_percent(tmp_path, mnist_dir):
    """digits train --model mlp --epochs 5 on all 60k images: the seed's recipe, at least as accurate."""
    run = train(model="mlp", epochs=5, seed=0, out=tmp_path / "seed001", data_dir=mnist_dir, verbose=0)
    assert run.metrics["test_accuracy"] >= 0.975


def test_learning_rate_schedules():
    import keras

    from digits.training import learning_rate_schedule

    assert learning_rate_schedule("constant", 0.01, 100) == 0.01
    cosine = learning_rate_schedule("cosine", 0.01, 100)
    assert float(cosine(0)) == pytest.approx(0.01) and float(cosine(100)) == pytest.approx(0.0, abs=1e-8)
    one = learning_rate_schedule("onecycle", 0.01, 100)
    rates = [float(one(keras.ops.convert_to_tensor(s))) for s in (0, 25, 60, 100)]
    assert rates[0] == pytest.approx(0.001) and rates[1] == pytest.approx(0.01)
    assert rates[2] < rates[1] and rates[3] == pytest.approx(0.0, abs=1e-8)


def test_fast_recipe_trains_with_its_own_schedule(tmp_path, mnist_dir):
    """Its two epochs on a tenth of the images: 94.7% and 94.8% measured (seeds 1, 2)."""
    run = train(model="fast", out=tmp_path / "fast", data_dir=mnist_dir, limit=6000, seed=1, verbose=0)
    config = run.config
    assert (config["lr_schedule"], config["batch_size"], config["learning_rate"]) == ("onecycle", 256, 0.01)
    assert (config["optimizer"]["beta_1"], config["optimizer"]["beta_2"]) == (0.7, 0.9)
    assert config["precision"] == ("mixed_bfloat16" if native_bfloat16() else "float32")
    assert run.metrics["parameters"] == 113_898 and run.metrics["epochs_run"] == 2
    assert run.metrics["test_accuracy"] >= 0.93


def test_recipes_give_adam_their_betas(mnist_data, monkeypatch):
    """`fast` trains with Adam's betas at (0.7, 0.9); the other recipes keep Keras's defaults."""
    from digits import fastfit
    from digits.datasets import to_inputs
    from digits.training import fit_model

    optimizers, fit = [], fastfit.fit
    monkeypatch.setattr(fastfit, "fit", lambda model, **kw: optimizers.append(kw["optimizer"]) or fit(model, **kw))
    x, y = to_inputs(mnist_data.x_train[:512]), mnist_data.y_train[:512]
    for name in ("fast", "mlp"):
        fit_model(TrainConfig(model=name, epochs=1, seed=1).resolved(), x, y)
    assert [(o.beta_1, o.beta_2) for o in optimizers] == [(0.7, 0.9), (0.9, 0.999)]


def test_fast_aug_trains_with_its_own_recipe(tmp_path, mnist_dir):
    run = train(model="fast-aug", out=tmp_path / "faug", data_dir=mnist_dir, limit=3000, epochs=2, seed=1, verbose=0)
    config = run.config
    assert (config["lr_schedule"], config["batch_size"], config["learning_rate"]) == ("onecycle", 256, 0.01)
    assert run.metrics["parameters"] == 225_834 and run.metrics["test_accuracy"] > 0.5


def test_fast_keeps_its_earlier_shape_as_a_setting():
    from digits.models import build_model

    assert build_model("fast").count_params() == 113_898
    assert build_model("fast", {"filters": 64}).count_params() == 225_546  # before its second convolution was halved


@pytest.mark.slow
def test_fast_reaches_99_percent_in_its_two_epochs(tmp_path, mnist_dir):
    """`digits train --model fast` as a user runs it, on its own backend (TensorFlow), on all 60k images.

    A few seconds on two cores; the final model, no test-set choice.  (On JAX, this process's
    backend, the same seed gave 98.94%: the recipe was chosen and measured on TensorFlow.)
    """
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"} | {"DIGITS_DATA_DIR": str(mnist_dir)}
    proc = subprocess.run([sys.executable, "-m", "digits.cli", "train", "--model", "fast", "--seed", "1", "--quiet",
                           "--out", str(tmp_path / "fast")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    run = Run(tmp_path / "fast")
    assert run.config["backend"] == "tensorflow" and run.metrics["epochs_run"] == 2
    assert run.metrics["test_accuracy"] >= 0.99


def test_mixed_precision_run_saves_a_float32_model_that_scores_as_reported(tmp_path, mnist_dir, mnist_data):
    import keras

    from digits.evaluation import evaluate_arrays
    from digits.datasets import to_inputs

    run = train(model="fast", precision="mixed_bfloat16", out=tmp_path / "bf16", data_dir=mnist_dir,
                limit=1000, epochs=1, seed=3, verbose=0)
    assert run.config["precision"] == "mixed_bfloat16"
    assert _saved_state(run.path / "model.keras") == (False, ["layers", "vars"])  # TensorFlow-trained, too
    model = keras.saving.load_model(run.path / "model.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    accuracy = evaluate_arrays(model, to_inputs(mnist_data.x_test), mnist_data.y_test).accuracy
    assert accuracy == run.metrics["test_accuracy"]


def test_inference_copy_keeps_the_weights_and_the_answers_in_float32():
    from digits.models import build_model
    from digits.training import _dtype_policy, inference_copy

    with _dtype_policy("mixed_bfloat16"):
        mixed = build_model("fast")
    copy = inference_copy(mixed)
    assert copy.name == mixed.name and copy.count_params() == mixed.count_params()
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    x = np.random.default_rng(0).random((8, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(copy.predict(x, verbose=0), mixed.predict(x, verbose=0), atol=0.05)


def _saved_state(model_file) -> tuple[bool, list[str]]:
    """(whether a compile config was saved, the top-level groups of the weights file)."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(model_file) as archive:
        compiled = bool(json.loads(archive.read("config.json")).get("compile_config"))
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            return compiled, list(weights)


def test_a_run_saves_no_optimizer_state(small_run):
    assert _saved_state(small_run.path / "model.keras") == (False, ["layers", "vars"])
    weights = (small_run.path / "model.keras").stat().st_size
    assert weights < 101_770 * 4 * 1.5  # the mlp's float32 weights and little else (Adam would triple it)


def test_unknown_precision_is_one_clear_error(tmp_path):
    with pytest.raises(DigitsError, match="unknown precision 'float16'"):
        train(out=tmp_path / "r", precision="float16", verbose=0)
    assert not (tmp_path / "r").exists()


def test_unknown_schedule_is_one_clear_error(tmp_path):
    with pytest.raises(DigitsError, match="unknown learning-rate schedule 'linear'"):
        train(out=tmp_path / "r", lr_schedule="linear", verbose=0)


def test_keras_loads_on_jax_without_matplotlib_which_still_imports_afterwards():
    """use_backend keeps Keras from importing Matplotlib (and TensorFlow); Digits' figures import it later."""
    import subprocess
    import sys

    code = ("import sys; from digits.backend import use_backend; use_backend('jax'); import keras; "
            "print('matplotlib' in sys.modules, 'tensorflow' in sys.modules); "
            "from digits import plots; import numpy as np; "
            "print(plots.samples_png(np.zeros((3, 28, 28), np.uint8), np.arange(3))[:4] == b'\\x89PNG')")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False", "True"], out.stdout
