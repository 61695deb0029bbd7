"""`tunelab train`: one config of a search file in this process, with no Ray and no MLflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.search.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "spaces" / "ptb_smoke.yaml")
TINY = ["--set", "hidden_size=16", "--set", "train_fraction=0.01", "--set", "eval_fraction=0.05",
        "--set", "epochs=2"]
# Ray (and MLflow, and Optuna) made unimportable, as on a GPU machine that has torch and nothing else.
NO_RAY = "import sys\nfor m in ('ray', 'mlflow', 'optuna'): sys.modules[m] = None\nfrom tunelab.search.cli import main\n"


@pytest.mark.slow
def test_train_runs_a_config_without_ray(tmp_path):
    code = NO_RAY + f"sys.exit(main(['train', {SMOKE!r}, *{TINY!r}]))\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    first, header, *rows = out.stdout.splitlines()
    assert first.startswith("training rnn") and "cell=lstm" in first  # the file's first warm-start point
    assert header.split()[:2] == ["epoch", "optimizer_steps"]
    assert [r.split()[0] for r in rows] == ["1", "2"]
    assert rows[-1].split()[header.split().index("finished")] == "1" and "test_ppl=" in rows[-1]
    assert not (tmp_path / "runs").exists()  # nothing recorded anywhere


def test_train_refuses_an_infeasible_config(capsys):
    code = main(["train", SMOKE, *TINY, "--set", "constraints.params=[0, 10]"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"tunelab: error: {SMOKE}: config: the config to train is infeasible: params")


def test_train_refuses_missing_data(tmp_path, capsys):
    code = main(["train", SMOKE, *TINY, "--set", f"data.dir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"{SMOKE}: data:" in err and len(err.splitlines()) == 1
