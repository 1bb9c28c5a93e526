"""The console command and the runnable examples stay working."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import mrdiffusion
from mrdiffusion.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert mrdiffusion.__version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out


def test_info_lists_every_scheme(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("EulerMaruyama", "TwoStepEuler", "Heun", "Milstein", "SRA1", "ExponentialEuler",
                 "DriftImplicitEuler", "RK4"):
        assert name in out


def test_console_entry_point_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "mrdiffusion", "--version"], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert mrdiffusion.__version__ in out.stdout


@pytest.mark.parametrize("script,args", [("custom_process.py", ["--paths", "16"]),
                                         ("forward_reverse.py", ["--paths", "200", "--steps", "32"])])
def test_examples_run(script, args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [script, *args])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "scheme" in out or "reverse" in out


def test_readme_python_examples_run():
    import re

    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
