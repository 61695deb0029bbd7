"""tunelab as users get it: the wheel, installed into a fresh virtualenv outside the repository, run
from a folder that holds a lab's own ``analysis/`` and ``spaces/`` packages; and the README's "Tune
your own model" section run as written there.

Slow: the virtualenv installs every dependency (from pip's cache once ``make setup`` has run).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    (path,) = out.glob("tunelab-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel and its dependencies (pinned by constraints.txt)."""
    folder = tmp_path_factory.mktemp("venv")
    env = folder / "v"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=300)
    # Isolated (-I: no PYTHONPATH, no current folder on the path) and from outside the checkout: pip takes
    # any tunelab it can import (the checkout's tunelab.egg-info, say) for an installed one, and then
    # installs the wheel's dependencies but not the wheel.
    proc = subprocess.run([str(env / "bin" / "python"), "-I", "-m", "pip", "install", "-c",
                           str(ROOT / "constraints.txt"), str(wheel)], capture_output=True, text=True, timeout=1800,
                          cwd=folder, env=_clean_env())
    log = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines() if "tunelab" in line or "rror" in line)
    assert proc.returncode == 0, log
    assert (env / "bin" / "tunelab").exists(), log
    return env


@pytest.fixture
def user_folder(tmp_path) -> Path:
    """A lab's folder, outside the repository, holding packages named like tunelab's old top-level ones."""
    folder = tmp_path / "lab"
    for name in ("analysis", "spaces"):
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(f"OWNER = 'the lab's {name}'\n".replace("lab's", "labs"))
    return folder


def _clean_env() -> dict[str, str]:
    """This process's environment less what points Python or Ray elsewhere."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "RAY_ADDRESS")}


def _run(venv: Path, folder: Path, command: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = _clean_env()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # as after `source v/bin/activate`
    return subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_wheel_holds_one_top_level_package_with_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"tunelab", f"{wheel.name.split('-py3')[0]}.dist-info"}
    for sub in ("search", "spaces", "analysis", "trainables", "trainables/rnn", "trainables/gpt", "trainables/vit",
                "trainables/arith"):
        assert f"tunelab/{sub}/__init__.py" in names, sub
    assert "tunelab/spaces/ptb_smoke.yaml" in names
    assert {f"tunelab/analysis/notebooks/{n}.ipynb" for n in ("compare_trials", "ptb_rnn")} <= set(names)
    assert "tunelab/trainables/curve_banks/gpt_shakespeare_char/runs.parquet" in names


def test_the_installed_wheel_runs_from_a_folder_with_the_lab_s_own_packages(venv, user_folder):
    listed = _run(venv, user_folder, "tunelab trainables")
    assert listed.returncode == 0, listed.stderr
    for name in ("arith", "curves", "gpt", "rnn", "synthetic", "vit", "hpobench"):
        assert re.search(rf"^{name}  \(built-in", listed.stdout, re.M), name
    assert _run(venv, user_folder, "tunelab spaces").stdout.count("\n    ") > 20  # each file with its comment
    assert _run(venv, user_folder, "tunelab show ptb_smoke").stdout.startswith("#")
    # the lab's own packages are still theirs
    own = _run(venv, user_folder, "python -c 'import analysis, spaces, tunelab.analysis; print(analysis.OWNER, spaces.OWNER)'")
    assert own.stdout.strip() == "the labs analysis the labs spaces", own.stderr
    ran = _run(venv, user_folder, "tunelab run ptb_smoke --set budget.trials=2 --set hidden_size=16 "
                                  "--set train_fraction=0.01 --set eval_fraction=0.05 --set epochs=1 "
                                  "--set points_to_evaluate=[]")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "ptb-smoke: 2 trials" in ran.stdout
    assert (user_folder / "runs" / "ptb-smoke" / "tunelab.json").exists()
    hint = next(line for line in ran.stdout.splitlines() if line.startswith("open the UI: "))
    assert hint.startswith("open the UI: tunelab ui ptb-smoke --storage ")  # tunelab is on this shell's PATH


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Tune your own model"):].split("\n## ", 1)[0]


def test_the_readme_example_runs_as_written_through_tunelab_run_and_as_a_plugin(venv, user_folder):
    blocks = re.findall(r"```(\w+)\n(.*?)```", _readme_section(), re.S)
    assert [lang for lang, _ in blocks] == ["python", "toml", "yaml", "sh"]
    python = blocks[0][1]
    assert len(python.strip().splitlines()) < 30
    for lang, text in blocks[:3]:
        path = user_folder / text.splitlines()[0].removeprefix("# ").split(":")[0]  # its first line names it
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    proc = _run(venv, user_folder, "set -e\n" + blocks[3][1], timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "diabetes  (plugin mylab.train:train from mylab 0.1.0" in out
    assert re.search(r"^diabetes: 6 trials \(completed \d", out, re.M), out[-3000:]
    best = re.search(r"^best val_mae (\d\.\d+) with \{'lr': [\d.e-]+, 'width': \d+\}$", out, re.M)
    assert best and float(best.group(1)) < 0.55, out[-3000:]  # predicting the mean: 0.64; measured 0.43
    assert "Traceback" not in proc.stderr
