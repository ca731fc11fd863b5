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


def test_vote_ensemble_follows_the_majority(members, tmp_path, mnist_dir, mnist_data):
    """On real test digits the members mostly agree; wherever two or three do, the vote is their label."""
    from digits.datasets import to_inputs
    from digits.ensemble import ensemble

    run = ensemble(members, out=tmp_path / "vote", method="vote", data_dir=mnist_dir)
    model = run.load_model()  # the custom layer reloads from model.keras
    x = to_inputs(mnist_data.x_test[:100])
    member_labels = np.stack([m.load_model().predict(x, verbose=0).argmax(1) for m in members])  # (3, 100)
    votes = np.stack([np.bincount(labels, minlength=10) for labels in member_labels.T])  # (100, 10)
    majority = votes.max(1) >= 2
    assert majority.sum() >= 80  # measured: 95 of 100 (all three agree on 72)
    got = model.predict(x, verbose=0).argmax(1)
    np.testing.assert_array_equal(got[majority], votes.argmax(1)[majority])


def test_vote_layer_counts_votes_and_breaks_ties_by_mean_probability():
    from digits.layers import MajorityVote

    def sure_of(label: int, p: float) -> np.ndarray:
        row = np.full(10, (1 - p) / 9, np.float32)
        row[label] = p
        return row

    stacked = np.stack([  # (3 members, 2 images, 10 classes)
        [sure_of(3, 0.5), sure_of(2, 0.4)],
        [sure_of(3, 0.5), sure_of(4, 0.5)],
        [sure_of(5, 1.0), sure_of(8, 0.9)],
    ])
    out = np.asarray(MajorityVote()(stacked))
    # Image 0: two votes for 3 beat one sure vote for 5 (the average would say 5).
    # Image 1: one vote each: the highest mean probability wins, not the lowest label.
    assert out.argmax(1).tolist() == [3, 8]
    assert stacked.mean(0).argmax(1).tolist() == [5, 8]


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
