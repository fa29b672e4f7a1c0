"""What `rnnbench train --resume DIR` reads, each file checked before it is trusted: the run's
log (its settings, how it ended), its checkpoint (finite weights, the epoch and step it holds)
and the same corpus (the same tokens and vocabulary as the checkpoint's)."""
from __future__ import annotations

import json
from pathlib import Path

from bench.core import records
from bench.lm.data import LMData, load_corpus
from bench.lm.run_files import GENERATED, LOG, find_checkpoint
from common.checkpoint import check_finite
from common.config import LMConfig, TrainConfig
from common.errors import DataError, RnnbenchError
from common.params import load_params

NEEDED = ("backend", "model", "train", "corpus", "epochs", "step_losses")


def read_log(out: Path) -> dict:
    """The stopped run's log; refuses finished and diverged runs, saying why."""
    path = out / LOG
    if not out.is_dir():
        raise RnnbenchError(f"--resume {out}: no such run directory")
    doc = records.read_json(path, "a train_log.json written by `rnnbench train`")
    if not isinstance(doc, dict) or any(k not in doc for k in NEEDED):
        raise DataError(f"{path} is not a training log (it lacks some of {', '.join(NEEDED)}): "
                        "it was edited or damaged")
    status = doc.get("status")
    if status in ("finished", "target reached"):
        raise RnnbenchError(f"the run in {out} ended ({status}): nothing to resume; start a "
                            "new run with another --out")
    if status == "diverged":
        raise RnnbenchError(f"the run in {out} diverged ({doc.get('message', '')}); resuming "
                            "with the same settings would diverge again: start a new run with "
                            "another --out and a lower --lr (or clipping on)")
    return doc


def read_checkpoint(out: Path):
    """(path, params, meta) of the run's checkpoint, finite and with its epoch and step."""
    path = find_checkpoint(out)
    if path is None:
        raise RnnbenchError(f"{out} has no checkpoint: the run stopped before its first epoch "
                            "ended; start it again with another --out")
    params, meta = load_params(path)
    check_finite(path, params)
    if not all(isinstance(meta.get(k), int) and meta[k] >= 1 for k in ("epoch", "step")):
        raise DataError(f"{path} does not say which epoch and step it holds: its metadata was "
                        "edited or damaged")
    return path, params, meta


def same_corpus(doc: dict, meta: dict, ckpt: Path) -> LMData:
    """The corpus the run trained on, loaded again and checked against the checkpoint."""
    corpus = doc["corpus"]
    try:
        source = corpus.get("source")       # logs written before "path" was recorded
        path = corpus.get("path", None if source in GENERATED else source)
        data = load_corpus(corpus["name"], path, corpus["token"], int(corpus["tokens"]))
    except (KeyError, TypeError) as exc:
        raise DataError(f"the corpus entry of the log in {ckpt.parent} was edited or damaged "
                        f"({exc})") from None
    saved = json.loads(json.dumps(data.vocab.to_dict()))
    if len(data.ids) != corpus["tokens"] or saved != meta.get("vocab"):
        raise DataError(f"the corpus {corpus['name']} ({data.source}) is not the one the run in "
                        f"{ckpt.parent} trained on (its tokens or vocabulary differ)")
    return data


def configs(doc: dict, path: Path):
    """(LMConfig, TrainConfig) of the log."""
    try:
        return LMConfig(**doc["model"]), TrainConfig(**doc["train"])
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}'s settings were edited or damaged ({exc})") from None


def read_stopped_run(out: Path):
    """(log, LMConfig, TrainConfig, checkpoint path, params, meta, data) of the run in `out`."""
    doc = read_log(out)
    cfg, tcfg = configs(doc, out / LOG)
    ckpt, params, meta = read_checkpoint(out)
    return doc, cfg, tcfg, ckpt, params, meta, same_corpus(doc, meta, ckpt)
