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


def test_selection_adds_members_while_the_validation_loss_falls():
    from digits.ensemble import select_members

    labels = np.array([0, 1, 2, 3])

    def outputs(right: list[float]) -> np.ndarray:  # each image's probability of its true label
        p = np.array([[(1 - r) / 9] * 10 for r in right])
        p[np.arange(4), labels] = right
        return p

    # Two runs each sure where the other is not, and one that is nearly always wrong.
    first, second, weak = outputs([0.99, 0.99, 0.3, 0.3]), outputs([0.3, 0.3, 0.99, 0.99]), outputs([0.05] * 4)
    steps = select_members([weak, first, second], labels)
    assert [s["member"] for s in steps] == [1, 2]  # a tie goes to the run given first; the weak one is left out
    assert steps[1]["validation_loss"] < steps[0]["validation_loss"]
    assert [s["validation_accuracy"] for s in steps] == [1.0, 1.0]


@pytest.fixture(scope="module")
def others(tmp_path_factory, mnist_dir):
    """Beside `members` (1,500 images, the last 75 held out): a weak run, and two that held out other images."""
    root = tmp_path_factory.mktemp("others")
    common = dict(model="mlp", epochs=1, seed=4, data_dir=mnist_dir, verbose=0)
    return {
        "weak": train(limit=1500, learning_rate=1e-7, out=root / "weak", **common),
        "fewer": train(limit=1000, out=root / "fewer", **common),
        "none": train(limit=1500, validation_split=0.0, out=root / "none", **common),
    }


def test_select_leaves_out_a_run_that_would_pull_the_average_down(members, others, tmp_path, mnist_dir, mnist_data):
    from digits.datasets import to_inputs
    from digits.ensemble import ensemble

    runs = [*members, others["weak"]]
    run = ensemble(runs, out=tmp_path / "sel", data_dir=mnist_dir, select=True)
    selection = run.metrics["selection"]
    assert selection["validation_images"] == 75
    kept = [step["run"] for step in selection["steps"]]
    assert str(others["weak"].path) in selection["left_out"] and len(kept) >= 2
    assert sorted(kept + selection["left_out"]) == sorted(str(r.path) for r in runs)
    assert [m["run"] for m in run.config["members"]] == kept
    assert len(run.metrics["member_test_accuracies"]) == len(kept)
    losses = [step["validation_loss"] for step in selection["steps"]]
    assert losses == sorted(losses, reverse=True)
    # The last step's loss is the kept runs' average on the 75 training images they all held out.
    x, y = to_inputs(mnist_data.x_train[1425:1500]), mnist_data.y_train[1425:1500]
    by_path = {str(r.path): r for r in runs}
    average = np.mean([by_path[p].load_model().predict(x, verbose=0) for p in kept], axis=0)
    assert -np.mean(np.log(average[np.arange(75), y])) == pytest.approx(losses[-1], abs=1e-4)


def test_select_refuses_runs_it_cannot_judge_alike(members, others, tmp_path, mnist_dir, capsys):
    from helpers import exit_code

    from digits.ensemble import ensemble

    with pytest.raises(DigitsError, match=r"validation images \(training images 950-999\) are not .*'s "
                                          r"\(training images 1425-1499\); --select needs"):
        ensemble([members[0], others["fewer"]], out=tmp_path / "a", data_dir=mnist_dir, select=True)
    with pytest.raises(DigitsError, match="held out no validation images"):
        ensemble([others["none"], members[0]], out=tmp_path / "b", data_dir=mnist_dir, select=True)
    assert exit_code(["ensemble", str(members[0].path), str(others["none"].path), "--select",
                      "--out", str(tmp_path / "c"), "--data-dir", str(mnist_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--select cannot judge it" in err[0]
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_select_that_keeps_one_run_is_an_error(members, others, tmp_path, mnist_dir):
    from digits.ensemble import ensemble

    with pytest.raises(DigitsError, match=r"--select kept only .*m1: adding any other run raises the validation loss"):
        ensemble([members[0], others["weak"]], out=tmp_path / "one", data_dir=mnist_dir, select=True)
    assert not (tmp_path / "one").exists()


def test_cli_select_prints_what_it_chose(members, others, tmp_path, mnist_dir, capsys):
    from digits.cli import main

    assert main(["ensemble", *[str(m.path) for m in members], str(others["weak"].path), "--select",
                 "--out", str(tmp_path / "cli"), "--data-dir", str(mnist_dir)]) == 0
    out = capsys.readouterr().out
    assert "selected on 75 validation images:" in out and f"left out {others['weak'].path}" in out
    kept = out.count("  + ")
    assert kept >= 2 and f"(average of {kept} runs:" in out
