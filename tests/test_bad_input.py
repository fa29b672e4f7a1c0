"""Every verb, fed bad input or damaged files: exit status 2, one line on stderr that names the
option or file at fault, no traceback, and nothing written or lost (the files around it and the
working directory are byte for byte as they were)."""
import dataclasses
import hashlib
import json
import zipfile

import numpy as np
import pytest

from bench.cli.main import main
from common.checkpoint import save_params
from common.config import LMConfig
from common.params import init_lm_params
from common.vocab import Vocab

VOCAB = Vocab(list("one two three"))
CFG = LMConfig("gru", "scratch", len(VOCAB), 4)


def _meta(**model):
    return {"model": {**dataclasses.asdict(CFG), **model}, "vocab": VOCAB.to_dict(),
            "token": "char", "epoch": 1, "step": 3, "backend": "torch"}


def _corrupt(data: bytes) -> bytes:
    middle = len(data) - 40                      # inside the last array's bytes
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def _npz_bad_crc(path):
    save_params(path, init_lm_params(CFG), _meta())
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("W_hq.npy")
    at = info.header_offset + 30 + len(info.filename) + 100      # a byte of the stored array
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A directory of good and damaged inputs, built once."""
    d = tmp_path_factory.mktemp("inputs")
    params = init_lm_params(CFG)
    good = d / "good.safetensors"
    save_params(good, params, _meta())
    data = good.read_bytes()
    (d / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (d / "empty.safetensors").write_bytes(b"")
    (d / "flipped.safetensors").write_bytes(_corrupt(data))
    (d / "text.safetensors").write_text("not a checkpoint\n")
    save_params(d / "edited_size.safetensors", params, _meta(vocab_size=99))
    save_params(d / "edited_key.safetensors", params, _meta(colour="red"))
    save_params(d / "no_vocab.safetensors", params, {"model": _meta()["model"]})
    save_params(d / "nan.safetensors", {**params, "W_hq": params["W_hq"] * np.nan}, _meta())
    save_params(d / "truncated.npz", params, _meta())
    npz = (d / "truncated.npz").read_bytes()
    (d / "truncated.npz").write_bytes(npz[: len(npz) // 2])
    _npz_bad_crc(d / "badcrc.npz")
    (d / "a_dir").mkdir()
    (d / "a_file.txt").write_text("x\n")
    (d / "parity_list" / "parity.json").parent.mkdir()
    (d / "parity_list" / "parity.json").write_text("[]\n")
    (d / "parity_shape" / "parity.json").parent.mkdir()
    (d / "parity_shape" / "parity.json").write_text('{"records": 5}\n')
    (d / "parity_bad" / "parity.json").parent.mkdir()
    (d / "parity_bad" / "parity.json").write_bytes(b'{"records": [\xff\xfe')
    (d / "stopped" / "train_log.json").parent.mkdir()
    (d / "stopped" / "train_log.json").write_text('{"status": "running"')
    for status in ("finished", "diverged"):
        (d / status).mkdir()
        (d / status / "train_log.json").write_text(json.dumps(
            {"backend": "torch", "model": {}, "train": {}, "corpus": {}, "epochs": [],
             "step_losses": [], "status": status, "message": "the loss became nan at step 7"}))
    (d / "edited_log").mkdir()
    (d / "edited_log" / "train_log.json").write_text(json.dumps(
        {"backend": "torch", "model": {"colour": "red"}, "train": {}, "corpus": {},
         "epochs": [], "step_losses": [], "status": "interrupted"}))
    (d / "no_ckpt").mkdir()
    (d / "no_ckpt" / "train_log.json").write_text(json.dumps(
        {"backend": "torch", "model": dataclasses.asdict(CFG), "train": {}, "corpus": {},
         "epochs": [], "step_losses": [], "status": "interrupted"}))
    return d


def _tree(root):
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file()
            else "dir" for p in sorted(root.rglob("*"))}


GEN = ["generate", "{d}/%s", "--prefix", "one"]
CASES = [
    # options: refused by the parser, naming the option and what it accepts
    (["train", "--lr", "inf"], "--lr", "positive finite"),
    (["train", "--lr", "nan"], "--lr", "positive finite"),
    (["train", "--clip", "inf"], "--clip", "positive finite"),
    (["train", "--target-ppl", "-1"], "--target-ppl", "positive"),
    (["train", "--max-tokens", "0"], "--max-tokens", "positive integer"),
    (["train", "--max-tokens", "-5"], "--max-tokens", "positive integer"),
    (["train", "--hidden", "0"], "--hidden", "positive integer"),
    (["generate", "{d}/good.safetensors", "--prefix", "one", "--alpha", "inf"], "--alpha",
     "positive finite"),
    (["lm-quality", "--epochs", "0"], "--epochs", "positive integer"),
    (["trajectory", "--steps", "0"], "--steps", "positive integer"),
    (["translate", "--lr", "inf"], "--lr", "positive finite"),
    (["speed", "--budget", "inf"], "--budget", "finite"),
    (["explain", "--budget", "inf"], "--budget", "positive"),
    # corpora and paths
    (["train", "--corpus", "war_of_the_worlds"], "war_of_the_worlds", "--path"),
    (["train", "--corpus", "time_machine", "--path", "{d}/a_dir"], "a_dir", "not a file"),
    (["train", "--corpus", "time_machine", "--path", "{d}/missing.txt"], "missing.txt",
     "not a file"),
    (["data", "war_of_the_worlds"], "war_of_the_worlds", "path"),
    (["data", "time_machine", "--path", "{d}/a_dir"], "a_dir", "not a file"),
    (["data", "fra_eng", "--path", "{d}/a_dir"], "a_dir", "no fra.txt"),
    (["data", "human_numbers", "--path", "{d}/a_dir"], "train.txt", "not a file"),
    (["train", "--corpus", "time_machine", "--path", "{d}/a_file.txt"], "corpus", "tokens"),
    (["generate", "{d}/good.safetensors", "--prefix", "one", "--num-preds", "0"], "--num-preds",
     "positive integer"),
    (["ladder", "--epochs", "0"], "--epochs", "positive integer"),
    (["translate", "--dropout", "1"], "--dropout", "[0, 1)"),
    (["translate", "--file", "{d}/a_file.txt", "--checkpoint", "{d}/text.safetensors"],
     "text.safetensors", "not a checkpoint"),
    # run directories: never replaced, never resumed blindly
    (["train", "--out", "{d}/finished"], "finished", "--resume"),
    (["train", "--out", "{d}/a_file.txt"], "a_file.txt", "is a file"),
    (["parity", "--quick", "--out", "{d}/a_file.txt"], "a_file.txt", "is a file"),
    (["speed", "--quick", "--out", "{d}/a_file.txt"], "a_file.txt", "is a file"),
    (["explain", "--quick", "--out", "{d}/a_file.txt"], "a_file.txt", "is a file"),
    (["ladder", "--epochs", "1", "--out", "{d}/a_file.txt"], "a_file.txt", "is a file"),
    (["lm-quality", "--out", "{d}/a_file.txt"], "a_file.txt", "is a file"),
    (["translate", "--sentences", "go .", "--out", "{d}/a_file.txt"], "a_file.txt", "is a file"),
    (["run", "--out", "{d}/a_file.txt"], "a_file.txt", "is a file"),
    (["train", "--out", "{d}/parity_list"], "parity_list", "not empty"),
    (["translate", "--sentences", "go .", "--out", "{d}/finished"], "finished", "not empty"),
    (["train", "--resume", "{d}/nowhere"], "nowhere", "no such run directory"),
    (["train", "--resume", "{d}/finished"], "finished", "nothing to resume"),
    (["train", "--resume", "{d}/diverged"], "diverged", "diverge again"),
    (["train", "--resume", "{d}/stopped"], "train_log.json", "not valid JSON"),
    (["train", "--resume", "{d}/no_ckpt"], "no_ckpt", "no checkpoint"),
    (["train", "--resume", "{d}/edited_log"], "train_log.json", "edited"),
    (["train", "--resume", "{d}/no_ckpt", "--epochs", "3"], "--epochs", "drop"),
    (["train", "--resume", "{d}/no_ckpt", "--out", "{d}/x"], "--out", "drop"),
    # sizes that cannot fit
    (["train", "--hidden", "10000000"], "--hidden", "GiB"),
    (["train", "--hidden", "16", "--batch-size", "100000"], "batch_size", "corpus"),
    # checkpoints: damaged, doctored, or not checkpoints at all
    ([GEN[0], GEN[1] % "missing.safetensors", *GEN[2:]], "missing.safetensors", "no such"),
    ([GEN[0], GEN[1] % "a_dir", *GEN[2:]], "a_dir", "directory"),
    ([GEN[0], GEN[1] % "empty.safetensors", *GEN[2:]], "empty.safetensors", "empty"),
    ([GEN[0], GEN[1] % "truncated.safetensors", *GEN[2:]], "truncated.safetensors", "damaged"),
    ([GEN[0], GEN[1] % "flipped.safetensors", *GEN[2:]], "flipped.safetensors", "SHA-256"),
    ([GEN[0], GEN[1] % "text.safetensors", *GEN[2:]], "text.safetensors", "not a checkpoint"),
    ([GEN[0], GEN[1] % "truncated.npz", *GEN[2:]], "truncated.npz", "damaged"),
    ([GEN[0], GEN[1] % "badcrc.npz", *GEN[2:]], "badcrc.npz", "CRC"),
    ([GEN[0], GEN[1] % "edited_size.safetensors", *GEN[2:]], "edited_size", "edited"),
    ([GEN[0], GEN[1] % "edited_key.safetensors", *GEN[2:]], "edited_key", "colour"),
    ([GEN[0], GEN[1] % "no_vocab.safetensors", *GEN[2:]], "no_vocab", "not a language-model"),
    ([GEN[0], GEN[1] % "nan.safetensors", *GEN[2:]], "nan.safetensors", "NaN"),
    (["generate", "{d}/good.safetensors", "--prefix", "Zq"], "'Z'", "outside the vocabulary"),
    (["translate", "--checkpoint", "{d}/truncated.safetensors", "--sentences", "go ."],
     "truncated.safetensors", "damaged"),
    (["translate", "--checkpoint", "{d}/good.safetensors", "--sentences", "go ."],
     "good.safetensors", "checkpoint"),
    (["translate", "--file", "{d}/a_dir", "--checkpoint", "{d}/good.safetensors"], "a_dir", ""),
    # results given to report
    (["report", "{d}/parity_list"], "parity.json", "parity"),
    (["report", "{d}/parity_shape"], "parity.json", "parity"),
    (["report", "{d}/parity_bad"], "parity.json", "not valid JSON"),
    (["report", "{d}/a_file.txt"], "a_file.txt", ""),
    (["report", "{d}/a_dir"], "a_dir", "speed.jsonl"),
]


def _main(argv):
    """`main`'s exit status, the parser's `sys.exit(2)` included."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("argv,names,says", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_gets_one_line_and_exit_2(argv, names, says, files, tmp_path, monkeypatch,
                                            capsys):
    monkeypatch.chdir(tmp_path)
    before = _tree(files)
    status = _main([a.replace("{d}", str(files)) for a in argv])
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert names in err and says in err, err
    assert _tree(files) == before and list(tmp_path.iterdir()) == []


def test_an_unexpected_error_is_one_line_and_a_traceback_file(tmp_path, monkeypatch, capsys):
    import bench.core.info

    def broken(**kw):
        raise TypeError("a bug")
    monkeypatch.setattr(bench.core.info, "main", broken)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert main(["info"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "TypeError: a bug" in err, err
    logs = list(tmp_path.glob("rnnbench-error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    assert "Traceback" in logs[0].read_text() and "a bug" in logs[0].read_text()
