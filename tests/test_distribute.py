"""digits train --distribute: data-parallel on several host devices, same results as one device.

The CPU shows several devices when asked (JAX: XLA_FLAGS=--xla_force_host_platform_device_count=2;
TensorFlow: logical CPU devices), which must happen before the backend starts: every run here
is a fresh Python process.  The models are small (the mlp on 3,000 images, 2 epochs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from digits.runs import Run
from helpers import free_port

TRAIN = ["--limit", "3000", "--epochs", "2", "--seed", "1", "--quiet"]

JAX_SCRIPT = """
import json, sys
import jax, jax.numpy as jnp, keras
from digits.cli import main
from digits import distribute

config, data, out = sys.argv[1:4]
common = ["train", "--config", config, "--data-dir", data, *{train!r}]
assert main([*common, "--out", out + "/one"]) == 0
assert main([*common, "--out", out + "/two", "--distribute"]) == 0

# Inside the compiled step, each micro-batch of 32 images is split 16 + 16 over the devices.
with distribute.data_parallel(True, 32):
    batches = jax.jit(distribute.spread_micro_batches)(jnp.zeros((64, 32, 28, 28)))
print(json.dumps({{
    "devices": jax.device_count(),
    "spec": list(batches.sharding.spec),
    "shard_shapes": sorted({{s.data.shape for s in batches.addressable_shards}}),
}}))
"""


def _run(script: str, *args, env: dict, timeout: int = 240) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _weights(run: Run) -> list[np.ndarray]:
    return [np.asarray(w) for w in run.load_model().get_weights()]


def _assert_same_training(a: Run, b: Run, rtol: float) -> None:
    """Same weights and learning curves up to floating-point noise."""
    for wa, wb in zip(_weights(a), _weights(b), strict=True):
        assert np.linalg.norm(wa - wb) <= rtol * np.linalg.norm(wa)
    ha, hb = a.history(), b.history()
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(ha[key], hb[key], rtol=1e-4)
    assert abs(a.metrics["test_accuracy"] - b.metrics["test_accuracy"]) <= 2e-4  # 2 of 10,000 images


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory, mnist_dir):
    """The mlp (with dropout) trained on 2 host devices with --distribute, and without."""
    out = tmp_path_factory.mktemp("jax")
    config = out / "config.json"
    config.write_text(json.dumps({"model": "mlp", "extra": {"architecture": {"dropout": 0.2}}}))
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = _run(JAX_SCRIPT.format(train=TRAIN), config, mnist_dir, out, env=env)
    return Run(out / "one"), Run(out / "two"), json.loads(result.stdout.strip().splitlines()[-1])


def test_jax_distribute_uses_both_devices_and_splits_every_step(jax_runs):
    one, two, probe = jax_runs
    assert probe["devices"] == 2
    assert one.config["devices"] == 1 and one.config["distribute"] is False
    assert two.config["devices"] == 2 and two.config["distribute"] is True
    assert probe["spec"] == [None, "batch"]
    assert probe["shard_shapes"] == [[64, 16, 28, 28]]


def test_jax_distribute_trains_like_one_device(jax_runs):
    """Dropout included: JAX draws the same masks however the batch is split."""
    one, two, _ = jax_runs
    _assert_same_training(one, two, rtol=1e-3)


def test_tensorflow_distribute_mirrors_over_two_logical_cpus(tmp_path, mnist_dir):
    script = textwrap.dedent("""
        import sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from digits.cli import main
        data, out = sys.argv[1:3]
        common = ["train", "--model", "mlp", "--backend", "tensorflow", "--data-dir", data,
                  "--limit", "2000", "--epochs", "1", "--seed", "1", "--quiet"]
        assert main([*common, "--out", out + "/one"]) == 0
        assert main([*common, "--out", out + "/two", "--distribute"]) == 0
    """)
    _run(script, mnist_dir, tmp_path, env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    one, two = Run(tmp_path / "one"), Run(tmp_path / "two")
    assert one.config["backend"] == two.config["backend"] == "tensorflow"
    assert one.config["devices"] == 1 and two.config["devices"] == 2
    _assert_same_training(one, two, rtol=1e-4)


def test_two_processes_train_as_one_multi_host_job(tmp_path, mnist_dir, jax_runs):
    """docs/SCALING.md's multi-host recipe, both "hosts" on this machine with one CPU device each."""
    _, two_devices, _ = jax_runs
    config = two_devices.path / "config.json"
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "", "TMPDIR": str(tmp_path),
           "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{free_port()}",
           "KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
    cmd = [sys.executable, "-m", "digits.cli", "train", "--config", str(config), "--distribute",
           "--data-dir", str(mnist_dir), "--out", str(tmp_path / "run"), *TRAIN]
    procs = [subprocess.Popen(cmd, env={**env, "KERAS_DISTRIBUTION_PROCESS_ID": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    try:
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-4000:]
    assert f"run saved to {tmp_path / 'run'}" in outputs[0][0]  # process 0 writes the run
    assert f"run saved to {tmp_path}/digits-worker-" in outputs[1][0]  # process 1's copy: a temp folder
    run = Run(tmp_path / "run")
    assert run.config["devices"] == 2
    _assert_same_training(two_devices, run, rtol=1e-3)  # the same as two devices in one process


def test_multi_host_settings_are_checked_before_training(monkeypatch):
    from digits import distribute
    from digits.errors import DigitsError

    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}')
    with pytest.raises(DigitsError, match="keras-team/keras#20585"):
        distribute.is_chief("tensorflow")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.delenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", raising=False)
    monkeypatch.delenv("KERAS_DISTRIBUTION_PROCESS_ID", raising=False)
    with pytest.raises(DigitsError, match="needs KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_PROCESS_ID"):
        distribute.is_chief("jax")
