import numpy as np
import pytest

from digits.errors import DigitsError
from digits.training import train


@pytest.fixture(scope="module")
def members(tmp_path_factory, mnist_dir):
    root = tmp_path_factory.mktemp("members")
    return [train(model="mlp", limit=1500, epochs=1, seed=s, out=root / f"m{s}", data_dir=mnist_dir, verbose=0)
            for s in (1, 2, 3)]


def test_average_ensemble_is_a_servable_run(members, tmp_path, mnist_dir):
    from digits.ensemble import ensemble
    from digits.inference import Predictor

    run = ensemble(members, out=tmp_path / "avg", data_dir=mnist_dir)
    assert run.config["method"] == "average" and len(run.config["members"]) == 3
    model = run.load_model()
    x = np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)
    expected = np.mean([m.load_model().predict(x, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(Predictor(model).probabilities(x), expected, atol=1e-6)
    assert run.metrics["test_accuracy"] >= min(run.metrics["member_test_accuracies"]) - 0.005


def test_vote_ensemble_follows_the_majority(members, tmp_path, mnist_dir):
    from digits.ensemble import ensemble

    run = ensemble(members, out=tmp_path / "vote", method="vote", data_dir=mnist_dir)
    model = run.load_model()  # the custom layer reloads from model.keras
    x = np.random.default_rng(1).random((20, 28, 28), dtype=np.float32)
    member_labels = np.stack([m.load_model().predict(x, verbose=0).argmax(1) for m in members])
    got = model.predict(x, verbose=0)
    for i in range(len(x)):
        counts = np.bincount(member_labels[:, i], minlength=10)
        if counts.max() >= 2:  # a real majority
            assert got[i].argmax() == counts.argmax()


def test_bad_ensembles_are_one_line_errors(members, tmp_path, mnist_dir):
    from digits.ensemble import ensemble

    with pytest.raises(DigitsError, match="at least two runs"):
        ensemble(members[:1], out=tmp_path / "one", data_dir=mnist_dir)
    with pytest.raises(DigitsError, match="unknown ensemble method 'median'"):
        ensemble(members, out=tmp_path / "m", method="median", data_dir=mnist_dir)
    with pytest.raises(DigitsError, match="no such run directory"):
        ensemble([members[0].path, tmp_path / "nope"], out=tmp_path / "x", data_dir=mnist_dir)
    assert not (tmp_path / "one").exists() and not (tmp_path / "m").exists()


def test_cli_ensemble_then_evaluate_in_a_fresh_process(members, tmp_path, mnist_dir):
    """The vote layer must load where digits.ensemble was never imported."""
    import json
    import os
    import subprocess
    import sys

    from digits.cli import main

    out = tmp_path / "cli-vote"
    assert main(["ensemble", *[str(m.path) for m in members], "--method", "vote", "--out", str(out),
                 "--data-dir", str(mnist_dir)]) == 0
    env = {**os.environ, "DIGITS_DATA_DIR": str(mnist_dir)}
    proc = subprocess.run([sys.executable, "-m", "digits.cli", "evaluate", str(out), "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["test_accuracy"] == json.loads((out / "metrics.json").read_text())["test_accuracy"]
