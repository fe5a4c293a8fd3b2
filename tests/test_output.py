"""What a user gets out of moeplan: files (mode, never replaced silently, checked before work), tables that
keep every digit at 80 columns and in a pipe, a closed pipe, progress only on stderr, the docs (issue 16)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QWEN3 = ROOT / "moeplan" / "examples" / "qwen3-30b-a3b.config.json"
ARCH = {"n_layers": 2, "d_hidden": 64, "n_heads": 4, "d_expert": 32, "n_experts": 8, "top_k": 2, "vocab_size": 100}
MAIN = "from moeplan.cli.script import run; run()"
SMALL_PLAN = ("plan", "--flops", "1e19", "--max-d-hidden", "1024", "--max-experts", "32", "--storage", ":memory:")


def moeplan(*args, env=None, cwd=None, timeout=300, code: str = MAIN) -> subprocess.CompletedProcess:
    """`moeplan ARGS` through the console script's own path (or `code`) in a child process with stdout a pipe."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)} | (env or {}))


@pytest.fixture
def arch(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(ARCH))
    return path


# -- files: umask, no silent replacement, folders, checked before work (issue 16 item 5, issue 15 item 9) --
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_honour_the_umask(cli, arch, tmp_path, mask):
    old = os.umask(mask)
    try:
        assert cli("export", arch, "--out", tmp_path / "model/").code == 0
    finally:
        os.umask(old)
    assert (tmp_path / "model" / "config.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_export_never_replaces_a_file_without_force(cli, arch, tmp_path):
    config = tmp_path / "model" / "config.json"
    config.parent.mkdir()
    config.write_text("hand-written")
    out = cli("export", arch, "--out", f"{tmp_path / 'model'}/")
    assert out.code == 2 and out.err.strip() == f"moeplan: error: {config} exists; add --force to replace it"
    assert config.read_text() == "hand-written"
    assert cli("export", arch, "--out", tmp_path / "model", "--force").code == 0
    assert json.loads(config.read_text())["hidden_size"] == 64


def test_megatron_export_into_a_new_folder(cli, arch, tmp_path):
    out = cli("export", arch, "--format", "megatron", "--out", f"{tmp_path / 'newdir'}/")
    assert out.code == 0, out.err
    assert (tmp_path / "newdir").is_dir()
    assert "--num-experts 8" in (tmp_path / "newdir" / "megatron-args.txt").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (("--out", ""), "--out needs a file or folder name"),
    (("--out", "{tmp}/missing/x.json"), "--out {tmp}/missing/x.json: no folder {tmp}/missing"),
    (("--format", "megatron", "--out", "{arch}/"), "--out {arch}/: {arch} is a file, not a folder"),
])
def test_export_bad_out_is_one_usage_line(cli, arch, tmp_path, args, message):
    fill = {"tmp": tmp_path, "arch": arch}
    out = cli("export", arch, *(a.format(**fill) for a in args))
    assert (out.code, out.err.strip()) == (2, "moeplan: error: " + message.format(**fill))


@pytest.mark.parametrize(("args", "message"), [
    (("--plot", "x.pdf"), "x.pdf: plots are written as .png or .svg"),
    (("--plot", "x.jpg"), "x.jpg: plots are written as .png or .svg"),
    (("--export", "hf", "--out", "missing/config.json"), "--out missing/config.json: no folder missing"),
    (("--export", "hf", "--out", ""), "--out needs a file or folder name"),
    (("--plot", "old.png"), "old-isoflop.png exists; add --force to replace it"),
])
def test_plan_checks_outputs_before_any_work(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old-isoflop.png").write_text("kept")
    out = cli("plan", "--flops", "1e21", *args)  # the CLI's default store: sqlite:///moeplan.db here
    assert (out.code, out.err.strip()) == (2, f"moeplan: error: {message}")
    assert sorted(os.listdir(tmp_path)) == ["old-isoflop.png"]  # no study store: no work was done
    assert (tmp_path / "old-isoflop.png").read_text() == "kept"


def test_fit_out_is_never_replaced_without_force(cli, tmp_path):
    fitted = tmp_path / "fitted.json"
    fitted.write_text("mine")
    out = cli("fit", ROOT / "moeplan" / "examples" / "runs.csv", "--out", fitted, "--starts", "4")
    assert (out.code, out.err.strip()) == (2, f"moeplan: error: {fitted} exists; add --force to replace it")
    assert fitted.read_text() == "mine"


def test_frontier_checks_plot_and_csv_before_work(cli, tmp_path):
    (tmp_path / "f.csv").write_text("kept")
    out = cli("frontier", "--from", "1e20", "--to", "1e21", "--csv", tmp_path / "f.csv")
    assert (out.code, out.err.strip()) == (2, f"moeplan: error: {tmp_path / 'f.csv'} exists; add --force to replace it")
    assert cli("frontier", "--plot", tmp_path / "no" / "f.png").err.strip() == \
        f"moeplan: error: --plot {tmp_path / 'no' / 'f.png'}: no folder {tmp_path / 'no'}"


# -- tables at 80 columns and in a pipe (item 4) ------------------------------------------------------------
def test_count_keeps_every_digit_at_80_columns_in_a_pipe():
    r = moeplan("count", QWEN3, "--convention", "torchtitan", "--seq-len", "8192", env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    assert "37,578,559,488" in r.stdout and "30,532,122,624" in r.stdout and "3,353,032,704" in r.stdout
    assert "…" not in r.stdout and max(map(len, r.stdout.splitlines())) <= 80


def test_frontier_keeps_every_digit_at_80_columns_in_a_pipe(cli):
    r = moeplan("frontier", "--from", "1e26", "--to", "1e26", env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    point = cli("frontier", "--from", "1e26", "--to", "1e26", "--json").json()["points"][0]
    for value in (f"{point['n_layers']}x{point['d_hidden']}", f"{point['extrapolation']:,.0f}x", "1e+26"):
        assert value in r.stdout
    assert "…" not in r.stdout and max(map(len, r.stdout.splitlines())) <= 80


def test_derive_prints_every_formula_whole():
    r = moeplan("derive", env={"COLUMNS": "80"})
    from moeplan.laws import get_law
    from moeplan.laws.reports import derive

    forms = [f for o in derive(get_law("hy"), None, None, 0.001).optima for f in o.sympy]
    assert max(map(len, forms)) > 200  # long enough that a table cell cut it before
    assert all(f in r.stdout for f in forms) and "…" not in r.stdout and "..." not in r.stdout


# -- a closed stdout (item 6) -------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["count", "ARCH"], [], ["--help"], ["plan", "--help"]])
def test_closed_stdout_exits_0_silently(monkeypatch, capsys, arch, args):
    """The reader of the pipe is gone, as after `| head -1`: exit 0 and nothing on stderr (was exit 1), also for
    help, which rich prints and on a closed stdout ends with an exit 1 of its own."""
    from moeplan.cli.main import main

    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        monkeypatch.setattr(sys, "argv", ["moeplan", *(str(arch) if a == "ARCH" else a for a in args)])
        with pytest.raises(SystemExit) as exit_:
            main()
        monkeypatch.undo()
    assert exit_.value.code == 0 and capsys.readouterr().err == ""


@pytest.mark.parametrize(("args", "command"), [
    (["plan", "--flops", "1e22"], "plan"), (["--debug", "count", "x"], "count"), (["--help"], None),
    (["--version", "plan"], None), (["nosuch"], None), ([], None), (["--debug"], None)])
def test_the_invoked_command_is_found_before_any_import(args, command):
    from moeplan.cli.main import _invoked

    assert _invoked(args) == command


def test_a_command_imports_no_other_commands_code():
    """`moeplan plan` builds and imports the plan command alone (the other commands cost start-up time)."""
    code = (f"import sys; sys.argv = ['moeplan', *{list(SMALL_PLAN)!r}]\n"
            "from moeplan.cli.main import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('moeplan.cli.')), file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    loaded = eval(r.stderr.strip().splitlines()[-1])
    assert "moeplan.cli.plan" in loaded
    assert not {"moeplan.cli.sweep", "moeplan.cli.fit", "moeplan.cli.serve", "moeplan.cli.assess"} & set(loaded)


def test_the_console_script_writes_everything_and_keeps_exit_codes(cli):
    """No output is lost by skipping the teardown: the JSON equals main()'s, and 0, 1, 2 keep their meaning."""
    whole = moeplan(*SMALL_PLAN, "--json")
    assert whole.returncode == 0 and whole.stderr == ""
    assert json.loads(whole.stdout) == cli(*SMALL_PLAN, "--json").json()
    usage = moeplan("plan", "--flops", "-1")
    assert (usage.returncode, usage.stdout, usage.stderr.count("\n")) == (2, "", 1)
    domain = moeplan("plan", "--flops", "1e10", "--storage", ":memory:")
    assert domain.returncode == 1 and domain.stderr.startswith("moeplan: error:") and domain.stderr.count("\n") == 1


def test_the_console_script_runs_atexit_handlers_and_collects_garbage_in_commands():
    code = ("import atexit, gc, sys\n"
            "atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
            "import moeplan.cli.main as m\n"
            "again = m._collect_again\n"
            "def spy():\n    again()\n    print('gc', gc.isenabled(), gc.get_freeze_count() > 0, file=sys.stderr)\n"
            "m._collect_again = spy\n"
            "from moeplan.cli.script import run\nrun()")
    r = moeplan("laws", code=code)
    assert r.returncode == 0 and "gc True True" in r.stderr and "atexit ran" in r.stderr


def test_ctrl_c_during_start_up_is_one_line():
    """SIGINT while the console script imports the CLI (before main runs): one line and exit 130, not a
    KeyboardInterrupt traceback out of whichever module was loading. The import is held open for the test."""
    import signal

    code = ("import sys, time\n"
            "class Hold:\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'moeplan.cli.main':\n"
            "            print('importing', file=sys.stderr, flush=True)\n"
            "            time.sleep(60)\n"
            "sys.meta_path.insert(0, Hold())\n"
            "from moeplan.cli.script import run\nrun()")
    p = subprocess.Popen([sys.executable, "-c", code, "laws"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stderr.readline() == "importing\n"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert (p.returncode, out, err) == (130, "", "moeplan: error: interrupted\n")


def test_python_dash_m_moeplan_runs_the_cli():
    r = subprocess.run([sys.executable, "-m", "moeplan", "--version"], capture_output=True, text=True, timeout=60,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0 and r.stdout.startswith("moeplan ")


def test_head_1_of_plan_exits_0():
    r = subprocess.run(f"set -o pipefail; {sys.executable} -c '{MAIN}' {' '.join(SMALL_PLAN)} | head -1",
                       shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (r.returncode, r.stderr) == (0, "") and r.stdout.startswith("moeplan plan: 1e+19 FLOPs")


# -- the plan's own lines (items 3, 7, 8) --------------------------------------------------------------------
def test_plan_shows_itself_in_its_table_with_separators_and_its_gpu(cli):
    out = cli("plan", "--gpu-hours", "30", "--gpu", "h100", "--max-d-hidden", "1024", "--max-experts", "32",
              "--storage", ":memory:", "--tolerance", "0.2")
    assert out.code == 0, out.err
    assert "GPU-hours x h100 at 989 TFLOP/s peak x MFU 0.4" in out.out
    band = re.search(r"; ([\d,]+) configurations within", out.out).group(1)
    assert int(band.replace(",", "")) >= 1000 and "," in band
    star = [line for line in out.out.splitlines() if line.lstrip().startswith("*")]
    assert len(star) == 1 and "near-optimal alternatives" in out.out and "front" not in out.out


def test_pareto_objective_prints_the_exact_fronts_not_the_band(cli):
    """Item 3: the band was once shown as a "front"; `--objective pareto` now computes the exact fronts
    (moeplan/planner/pareto.py, issue 13) and says so, and the band is never titled a front."""
    out = cli(*SMALL_PLAN, "--objective", "pareto")
    assert out.code == 0, out.err
    assert "exact Pareto fronts" in out.out and "non-dominated trials of the band" not in out.out
    band = cli(*SMALL_PLAN)
    assert "near-optimal alternatives" in band.out and "front" not in band.out.lower()


@pytest.mark.parametrize("extra", [("--gpu", "h100"), ("--mfu", "0.5"), ("--gpu-flops", "1e15")])
def test_flops_with_gpu_options_is_a_usage_error(cli, extra):
    out = cli("plan", "--flops", "1e21", *extra)
    assert out.code == 2 and "only for --gpu-hours" in out.err and len(out.err.strip().splitlines()) == 1


# -- progress on stderr only (item 9) -------------------------------------------------------------------------
def test_progress_goes_to_stderr_and_never_into_json():
    r = moeplan(*SMALL_PLAN, "--trials", "12", "--json", env={"TTY_COMPATIBLE": "1"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["search"]["trials"] == 12  # stdout is exactly the model
    assert "planning: trials" in r.stderr and "12/12" in r.stderr
    quiet = moeplan(*SMALL_PLAN, "--json", env={"TTY_COMPATIBLE": "0"})
    assert quiet.stderr == ""  # not a terminal: no bar at all


# -- the Python API (item 15) -----------------------------------------------------------------------------------
def test_api_exports_and_describes_every_field(tmp_path, monkeypatch):
    import moeplan
    from moeplan.planner import Plan, PlanRequest, Priors
    from moeplan.planner.result import Counts, LawPrediction, Search, Training

    assert moeplan.Priors is Priors and callable(moeplan.frontier)
    assert (ROOT / "moeplan" / "py.typed").exists()
    for model in (Plan, Counts, Training, LawPrediction, Search, Priors, PlanRequest):
        assert [n for n, f in model.model_fields.items() if not f.description] == [], model.__name__
    monkeypatch.chdir(tmp_path)
    p = moeplan.plan(PlanRequest(flops=1e19, priors=Priors(max_d_hidden=1024, max_experts=32)))
    assert p.search.storage == ":memory:" and os.listdir(tmp_path) == []  # no moeplan.db written silently


# -- docs (items 12, 14) ------------------------------------------------------------------------------------------
def test_code_cites_the_repositorys_own_science_reference():
    science = (ROOT / "docs" / "science.md").read_text()
    cited = set()
    for path in (ROOT / "moeplan").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"(?<!docs/)science\.md", text), path
        cited |= set(re.findall(r"\[(HY|LING|HOL|CHIN|EPOCH|KRAJ|JOINT|CLARK|ABNAR)\]", text))
    for key in cited:
        assert f"**[{key}]**" in science, key
    for section in range(1, 8):
        assert f"\n## {section}. " in science


def test_example_runs_are_synthetic_and_fit(cli, tmp_path):
    lines = (ROOT / "moeplan" / "examples" / "runs.csv").read_text().splitlines()
    assert lines[0].endswith(",source") and all(line.endswith(",synthetic") for line in lines[1:])
    out = cli("fit", ROOT / "moeplan" / "examples" / "runs.csv", "--law", "hy", "--holdout-column", "split",
              "--starts", "2", "--out", tmp_path / "fitted.json", "--json")
    assert out.code == 0, out.err
    derived = {d["name"]: d["value"] for d in out.json()["derived"]}
    assert derived["G*"] == pytest.approx(6.78, rel=0.2)  # the published law it was drawn from


def test_readme_commands_exist_and_name_real_files():
    """Every `moeplan ...` line in README's code blocks names a real command and, where it reads a file that
    ships with moeplan, an existing one; plan.json is explained."""
    readme = (ROOT / "README.md").read_text()
    commands = [line.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", readme, re.S)
                for line in block.splitlines() if line.startswith("moeplan ")]
    from moeplan.cli.main import app

    names = {c.name for c in app.registered_commands}
    for command in commands:
        assert command.split()[1] in names, command
        for word in command.split():
            if word.startswith("moeplan/examples/"):
                assert (ROOT / word).exists(), word
    assert "--json > plan.json" in readme
    assert any(c.startswith("moeplan predict") for c in commands)
    assert any(c.startswith("moeplan leverage") for c in commands)

