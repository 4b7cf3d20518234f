"""The command line answers fast: the entry modules import Lightning, torch, open_clip, timm and the
pipeline only inside the task, so --help, --cfg and shell completion never load them. (No timings
asserted here; the measured figures are in the README.) Also: the custom --help, and completion that
works through `python -m deft_lightning.train` and offers the nested experiment=paper/... options."""

import os
import shutil
import subprocess
import sys

import pytest

from cli_runs import clean_env
from deft_lightning.cli import nested_group_options

HEAVY = ("lightning", "torch", "torchvision", "open_clip", "timm", "peft", "wandb", "matplotlib",
         "deft_lightning.pipeline", "deft_lightning.modules")
ENTRY_MODULES = ("deft_lightning.train", "deft_lightning.detect", "deft_lightning.inspect_data",
                 "deft_lightning.aggregate", "deft_lightning.cli")


def _python(code: str, **env) -> str:
    result = subprocess.run([sys.executable, "-c", code], env=clean_env(**env), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("module", ENTRY_MODULES)
def test_importing_an_entry_module_loads_no_heavy_library(module):
    out = _python(f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    assert out.strip() == "", f"{module} imports {out.strip()}"


def _run(*args: str, comp_line: str | None = None) -> subprocess.CompletedProcess:
    env = clean_env(**({} if comp_line is None else {"COMP_LINE": comp_line, "COMP_POINT": str(len(comp_line))}))
    return subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=300)


def test_help_shows_usage_examples_key_options_and_groups_without_loading_lightning():
    # the module itself is run, so a print of sys.modules at exit shows what --help loaded
    code = ("import sys, runpy; sys.argv = ['train', 'experiment=demo', '--help']\n"
            "try:\n    runpy.run_module('deft_lightning.train', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            f"print('HEAVY:', ' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = _python(code)
    assert "python -m deft_lightning.train experiment=demo" in out
    assert "python -m deft_lightning.detect dataset=imagefolder dataset.root=" in out
    assert "python -m deft_lightning.inspect_data" in out
    assert "experiment=demo   debug=None" in out and "detector.epochs=3" in out  # current values, after overrides
    assert "experiment/paper: cifar100, cifar100n" in out and "README.md" in out
    assert out.strip().endswith("HEAVY:"), out[-300:]


def test_cfg_job_does_not_load_lightning():
    code = ("import sys, runpy; sys.argv = ['train', 'experiment=demo', '--cfg', 'job']\n"
            "try:\n    runpy.run_module('deft_lightning.train', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            f"print('HEAVY:', ' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = _python(code)
    assert "detector:" in out and out.strip().endswith("HEAVY:"), out[-300:]


@pytest.mark.parametrize("module", ["deft_lightning.train", "deft_lightning.detect"])
def test_completion_through_python_m_offers_the_nested_experiments(module):
    result = _run(module, "-sc", "query=bash", comp_line=f"python -m {module} experiment=pa")
    assert result.returncode == 0, result.stderr
    choices = result.stdout.split()
    assert "experiment=paper/cifar100" in choices and "experiment=paper/webvision" in choices
    assert all(choice.startswith("experiment=paper/") for choice in choices)
    top = _run(module, "-sc", "query=bash", comp_line=f"python -m {module} experiment=").stdout.split()
    assert {"experiment=demo", "experiment=toy", "experiment=paper/cifar100"} <= set(top)
    groups = _run(module, "-sc", "query=bash", comp_line=f"python -m {module} dete").stdout.split()
    assert "detector=" in groups  # Hydra's own answer is kept


def test_completion_of_an_installed_script_name_and_of_keys():
    result = _run("deft_lightning.train", "-sc", "query=bash", comp_line="deft-train experiment=demo detector.ep")
    assert result.stdout.split() == ["detector.epochs="]


def test_nested_group_options_only_for_a_group_value(tmp_path):
    (tmp_path / "experiment" / "paper").mkdir(parents=True)
    (tmp_path / "experiment" / "demo.yaml").write_text("{}")
    (tmp_path / "experiment" / "paper" / "x.yaml").write_text("{}")
    assert nested_group_options("deft-train +experiment=", tmp_path) == ["+experiment=paper/x"]
    assert nested_group_options("deft-train experiment=paper/y", tmp_path) == []
    assert nested_group_options("deft-train experiment= ", tmp_path) == []  # a new word: nothing to extend
    assert nested_group_options("deft-train nosuchgroup=", tmp_path) == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_installed_bash_function_completes_python_m(tmp_path):
    script = subprocess.run([sys.executable, "-m", "deft_lightning.train", "-sc", "install=bash"],
                            env=clean_env(), capture_output=True, text=True, timeout=300, check=True).stdout
    assert "complete -o nospace -o default -F _deft_lightning_completion python" in script
    (tmp_path / "completion.sh").write_text(script)
    line = f"{sys.executable} -m deft_lightning.train experiment=paper/cif"
    probe = (f'source {tmp_path / "completion.sh"}\n'
             f'COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}\n'
             f'COMP_WORDS=({sys.executable} -m deft_lightning.train experiment=paper/cif); COMP_CWORD=3\n'
             '_deft_lightning_completion; printf "%s\\n" "${COMPREPLY[@]}"\n'
             # another python command is left to the shell's default completion
             'COMPREPLY=(); COMP_LINE="python other.py x"; COMP_WORDS=(python other.py x); COMP_CWORD=2\n'
             '_deft_lightning_completion; echo "other: ${#COMPREPLY[@]}"\n')
    out = subprocess.run(["bash", "-c", probe], env=clean_env(), capture_output=True, text=True, timeout=300).stdout
    assert out.split() == ["experiment=paper/cifar100", "experiment=paper/cifar100n", "other:", "0"], out


def test_slurm_launcher_without_its_plugin_names_the_pip_line():
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401

        pytest.skip("hydra-submitit-launcher is installed here")
    except ImportError:
        pass
    result = _run("deft_lightning.train", "hydra/launcher=slurm", "--cfg", "job")
    assert result.returncode == 2
    assert "hydra-submitit-launcher" in result.stderr and '.[slurm]' in result.stderr
    assert "Traceback" not in result.stderr
