"""The command line: verbs, one-line errors, the README's commands and CI."""
import re
import subprocess
import sys

import pytest

from bench.cli.main import main
from common.registry import is_available
from conftest import ROOT


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:sh|bash)\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_exactly_two_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    assert "rnnbench" in commands[0] and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _readme_commands()[1] in ci.splitlines()


@pytest.mark.parametrize("argv,needle", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["data", "no_such_corpus"], "invalid choice"),
    (["parity", "--dtypes", "float16"], "invalid choice"),
    (["data", "human_numbers", "--top", "0"], "positive integer"),
    (["data", "time_machine", "--path", "/no/such/file.txt"], "/no/such/file.txt"),
])
def test_bad_input_is_one_line_without_traceback(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "bench", *argv], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert needle in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err


def test_data_human_numbers(capsys):
    assert main(["data", "human_numbers"]) == 0
    out = capsys.readouterr().out
    assert "63,095" in out and re.search(r"vocabulary:\s+30\b", out)


def test_info_lists_every_backend(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("torch", "mxnet", "jax"):
        assert re.search(rf"^{name}\s", out, re.M), out


def test_train_then_generate_in_another_framework(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--backend", "torch", "--cell", "gru", "--hidden", "16", "--epochs", "2",
            "--batch-size", "4", "--num-steps", "8", "--token", "char", "--max-tokens", "3000",
            "--dtype", "float64", "--out", str(out), "--quiet", "--prefix", "one"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "finished after 2 epochs" in printed and (out / "perplexity.png").exists()
    torch_text = printed.strip().splitlines()[-2]
    other = "mxnet" if is_available("mxnet") else "jax"   # the current stack has no MXNet
    if not is_available(other):
        pytest.skip("neither mxnet nor jax is installed to read torch's checkpoint")
    assert main(["generate", str(out / "checkpoint.safetensors"), "--backend", other,
                 "--prefix", "one", "--num-preds", "50"]) == 0
    assert capsys.readouterr().out.strip() == torch_text


def test_train_refuses_bidirectional_lm_with_reason():
    proc = subprocess.run([sys.executable, "-m", "bench", "train", "--bidirectional"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "would read the very tokens it must predict" in proc.stderr
