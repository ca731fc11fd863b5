"""digits tune: a study survives Ctrl-C and a kill, PostgreSQL shares it, mistakes are one line.

The studies here are tiny (the mlp on 1,500 images, one epoch a trial, four
distinct models) so each trial takes about a second on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from digits.cli import main
from digits.errors import DigitsError
from digits.runs import Run
from digits.tuning import parse_space, tune, write_results
from helpers import free_port, skip_or_fail

try:
    import optuna
except ImportError:  # CI installs the test extras: there a missing Optuna is a failure, not a skip
    skip_or_fail("digits tune needs Optuna (pip install optuna)", allow_module_level=True)

# Four programs for XLA to compile (width × batch size), so most trials reuse a compiled one.
QUICK_SPACE = {"learning_rate": 0.001, "batch_size": [32, 64], "epochs": 1,
               "width": [64, 128], "depth": 1, "dropout": 0, "augment": 0}
FINISHED = ("COMPLETE", "PRUNED")


def _tune_command(tmp_path: Path, mnist_dir: Path, storage: str, trials: int, study: str = "s") -> list[str]:
    space = tmp_path / "space.json"
    space.write_text(json.dumps(QUICK_SPACE))
    return [sys.executable, "-m", "digits.cli", "tune", "--model", "mlp", "--trials", str(trials),
            "--study", study, "--storage", storage, "--limit", "1500", "--max-epochs", "2",
            "--space", str(space), "--heartbeat", "1", "--data-dir", str(mnist_dir),
            "--out", str(tmp_path / "results")]


def _env() -> dict:
    return {**os.environ, "KERAS_BACKEND": "jax", "PYTHONUNBUFFERED": "1"}


def _trials(db: Path) -> list[dict]:
    """The study's trials straight from the SQLite file (read-only, while a worker writes)."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute(
            "SELECT t.trial_id, t.number, t.state, v.value, "
            "(SELECT COUNT(*) FROM trial_heartbeats h WHERE h.trial_id = t.trial_id), "
            "(SELECT COUNT(*) FROM trial_user_attributes a WHERE a.trial_id = t.trial_id AND a.key = 'config') "
            "FROM trials t LEFT JOIN trial_values v ON v.trial_id = t.trial_id ORDER BY t.number"
        ).fetchall()
        params = con.execute("SELECT trial_id, param_name, param_value FROM trial_params").fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()
    by_id = {}
    for trial_id, name, value in params:
        by_id.setdefault(trial_id, {})[name] = value
    return [{"number": n, "state": s, "value": v, "training": bool(h and c), "params": by_id.get(i, {})}
            for i, n, s, v, h, c in rows]


def _run_until(cmd, db: Path, *, finished: int, sig: int, timeout: float = 120):
    """Start `cmd`; once `finished` trials are done and the next one trains, send `sig`."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            trials = _trials(db)
            done = [t for t in trials if t["state"] in FINISHED]
            running = [t for t in trials if t["state"] == "RUNNING" and t["training"]]
            if len(done) >= finished and running:
                proc.send_signal(sig)
                out, err = proc.communicate(timeout=60)
                return proc.returncode, out, err, done, running[0]
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the study never reached {finished} finished trials:\n{out}\n{err[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_study_survives_ctrl_c_and_a_kill_and_resumes_with_every_finished_trial(tmp_path, mnist_dir):
    db = tmp_path / "study.db"
    storage = f"sqlite:///{db}"
    cmd = _tune_command(tmp_path, mnist_dir, storage, trials=5)

    # Ctrl-C: a clean stop; the interrupted trial is recorded as failed and queued to run again.
    rc, out, err, done_1, interrupted = _run_until(cmd, db, finished=1, sig=signal.SIGINT)
    assert rc == 130, err[-2000:]
    assert "run the same command again to resume" in out
    assert err.strip().splitlines()[-1] == "digits tune: interrupted"
    study = optuna.load_study(study_name="s", storage=storage)
    assert study.trials[interrupted["number"]].state.name == "FAIL"
    queued = [t for t in study.trials if t.state.name == "WAITING"]
    assert [t.user_attrs["retry_of"] for t in queued] == [interrupted["number"]]

    # SIGKILL: no chance to clean up; the trial it ran stays RUNNING until its heartbeat is stale.
    rc, out, err, done_2, killed = _run_until(cmd, db, finished=2, sig=signal.SIGKILL)
    killed_at = time.monotonic()
    assert rc == -signal.SIGKILL
    assert {t["number"] for t in done_1} <= {t["number"] for t in done_2}
    assert {t["number"]: t["state"] for t in _trials(db)}[killed["number"]] == "RUNNING"
    time.sleep(max(0.0, killed_at + 3.5 - time.monotonic()))  # 3 heartbeats of 1 s: stale

    # Resume: same command, same study.  Nothing finished is lost; the two cut trials run again.
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{len(done_2)} finished trial(s), running {5 - len(done_2)} more" in result.stdout
    final = _trials(db)
    by_number = {t["number"]: t for t in final}
    for t in done_2:  # every trial finished before the kill is still there, unchanged
        assert by_number[t["number"]]["state"] == t["state"]
        assert by_number[t["number"]]["value"] == t["value"] and by_number[t["number"]]["params"] == t["params"]
    assert sum(t["state"] in FINISHED for t in final) == 5
    assert by_number[killed["number"]]["state"] == "FAIL"
    study = optuna.load_study(study_name="s", storage=storage)
    retried = {t.user_attrs.get("retry_of"): t for t in study.trials if "retry_of" in t.user_attrs}
    for cut in (interrupted, killed):
        assert retried[cut["number"]].state.name in FINISHED
        assert retried[cut["number"]].params == study.trials[cut["number"]].params
        assert set(retried[cut["number"]].params) == {"batch_size", "width"}

    # Results: the table, the best configuration, the plots.
    results = tmp_path / "results"
    assert "*best" in result.stdout and "default" in result.stdout
    written = {p.name for p in results.iterdir()}
    assert {"best.json", "trials.csv", "history.png"} <= written
    best = json.loads((results / "best.json").read_text())
    assert best["model"] == "mlp" and best["limit"] == 1500 and best["extra"]["architecture"]["augment"] == 0
    assert best["validation_split"] == 0.1 and best["seed"] == 0

    # `digits train --config best.json` repeats the best trial exactly: same images, seed, settings.
    assert main(["train", "--config", str(results / "best.json"), "--out", str(tmp_path / "run"),
                 "--data-dir", str(mnist_dir), "--quiet"]) == 0
    run = Run(tmp_path / "run")
    assert max(run.history()["val_accuracy"]) == pytest.approx(study.best_value, abs=1e-6)
    assert run.config["extra"]["architecture"] == {"width": study.best_params["width"], "depth": 1,
                                                   "dropout": 0, "augment": 0}
    assert run.config["batch_size"] == study.best_params["batch_size"] and run.config["learning_rate"] == 0.001


def _finished_study(params: list[dict], values: list[float]):
    """An in-memory study holding one finished trial per (params, value), as `digits tune` records them."""
    from optuna.distributions import CategoricalDistribution

    distributions = {name: CategoricalDistribution(sorted({p[name] for p in params})) for name in params[0]}
    study = optuna.create_study(direction="maximize")
    for number, (p, value) in enumerate(zip(params, values)):
        study.add_trial(optuna.trial.create_trial(params=p, distributions=distributions, value=value,
                                                  user_attrs={"config": {"model": "mlp", "trial": number}}))
    return study


def test_results_draw_parameter_importances_when_trials_differ(tmp_path):
    """Eight trials, wider models scoring higher: the importances plot is drawn."""
    from PIL import Image

    params = [{"width": w, "batch_size": b} for w in (64, 128) for b in (32, 64, 128, 256)]
    study = _finished_study(params, [0.90 + (p["width"] == 128) * 0.02 + p["batch_size"] / 1e5 for p in params])
    lines = []
    result = write_results(study, "memory", tmp_path, log=lines.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "history.png", "importances.png", "trials.csv"]
    assert result.files["importances"] == tmp_path / "importances.png"
    assert f"importances: {tmp_path / 'importances.png'}" in lines
    with Image.open(tmp_path / "importances.png") as img:
        assert img.format == "PNG" and img.width > 200
    assert json.loads((tmp_path / "best.json").read_text()) == {"model": "mlp", "trial": 7}


def test_results_leave_out_importances_when_no_parameter_varied(tmp_path):
    study = _finished_study([{"width": 64}] * 4, [0.90, 0.91, 0.92, 0.93])
    result = write_results(study, "memory", tmp_path, log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "history.png", "trials.csv"]
    assert "importances" not in result.files


@pytest.mark.parametrize("space, message", [
    ({"dropout": {"low": 0.5, "high": 0.1}}, "search space: dropout: low must be below high"),
    ({"dropout": {"low": 0.0, "high": 1.5}}, "dropout must stay in [0.0, 0.9]"),
    ({"learning_rate": {"low": 0, "high": 0.1, "log": True}}, "a log range needs low above 0"),
    ({"batch_size": []}, "the list of choices is empty"),
    ({"batch_size": [32, 48.5]}, "batch_size takes whole numbers"),
    ({"epochs": {"low": 1, "hihg": 3}}, "unknown key hihg"),
    ({"filters": [16, 32]}, "'filters' is not a setting of model 'mlp'"),
    ({"width": "wide"}, "search space: width: expected a number"),
    ([1, 2], "expected a JSON object"),
])
def test_a_broken_search_space_is_one_clear_error(space, message):
    with pytest.raises(DigitsError) as caught:
        parse_space(space, "mlp", max_epochs=3)
    assert message in str(caught.value)


def test_the_cli_reports_a_broken_space_file_in_one_line(tmp_path, capsys):
    bad = tmp_path / "space.json"
    bad.write_text('{"dropout": {"low": 0.2, "high": 0.1}}')
    assert main(["tune", "--model", "mlp", "--trials", "2", "--space", str(bad),
                 "--storage", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "search space: dropout: low must be below high" in err
    bad.write_text("{not json")
    assert main(["tune", "--model", "mlp", "--trials", "2", "--space", str(bad)]) == 2
    assert "not a readable JSON search space" in capsys.readouterr().err


@pytest.mark.parametrize("url, message", [
    ("studies.db", "is not a database URL"),
    ("nosuchdb://host/x", "cannot open study storage nosuchdb://host/x"),
    ("postgresql://tuner:s3cret@127.0.0.1:9/nowhere", "cannot open study storage postgresql://tuner:***@"),
])
def test_a_broken_storage_url_is_one_clear_error(url, message, capsys):
    assert main(["tune", "--model", "mlp", "--trials", "2", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "s3cret" not in err


def test_a_study_refuses_to_resume_with_different_settings(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.set_user_attr("setup", {"model": "mlp", "limit": 999})
    assert main(["tune", "--model", "mlp", "--trials", "2", "--study", "s", "--storage", storage]) == 2
    assert "study 's' was started with limit=999" in capsys.readouterr().err


# --- PostgreSQL: a real server, started here -------------------------------------------------------

def _postgres_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    """A throwaway PostgreSQL cluster on 127.0.0.1 (Debian's postgresql package); its URL."""
    import tempfile

    bin_dir = _postgres_bin()
    if bin_dir is None:
        skip_or_fail("PostgreSQL server binaries not found (apt-get install postgresql)")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="digits-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root: use the package's postgres user
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def pg(*args, check=True):
        return subprocess.run([*as_user, *map(str, args)], capture_output=True, text=True, check=check,
                              timeout=60)

    pg(bin_dir / "initdb", "-D", root / "data", "-U", "tuner", "--auth=trust", "-E", "UTF8")
    pg(bin_dir / "pg_ctl", "-D", root / "data", "-l", root / "log", "-w", "-t", "30", "-o",
       f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off", "start")
    try:
        pg(bin_dir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "tuner", "studies")
        yield f"postgresql://tuner@127.0.0.1:{port}/studies"
    finally:
        pg(bin_dir / "pg_ctl", "-D", root / "data", "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_tune_one_postgresql_study_together(postgres_url, tmp_path, mnist_dir):
    """Two `digits tune` processes on one PostgreSQL study share its trials (as two machines would)."""
    cmd = _tune_command(tmp_path, mnist_dir, postgres_url, trials=4, study="shared")
    workers = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=240) for w in workers]
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    finished = [t for t in study.trials if t.state.name in FINISHED]
    assert 4 <= len(finished) <= 5  # each worker stops once 4 are finished; one may be mid-trial then
    assert len({t.user_attrs["worker"] for t in finished}) == 2
    assert sum(bool(t.user_attrs.get("baseline")) for t in study.trials) == 1
    # Resuming adds nothing: the study is done.
    lines = []
    again = tune("mlp", trials=4, study="shared", storage=postgres_url, out=tmp_path / "again",
                 limit=1500, max_epochs=2, space=QUICK_SPACE, log=lines.append)
    assert again.ran == 0 and "nothing left to run" in lines[0] and again.best is not None
