"""The lm-quality presets and table (the runs themselves are benchmarks, not tests)."""

from bench import lm_quality
from common.config import LMConfig


def test_d2l10_preset_matches_the_book():
    preset = lm_quality.PRESETS["d2l-1.0"]
    assert preset["hidden"] == 32 and preset["train"]["batch_size"] == 1024
    models = {m.name: m for m in preset["models"]}
    assert set(models) == set(lm_quality.D2L10_ANCHORS)
    assert models["GRU scratch"].variant == "reset_before"       # d2l's scratch GRU
    assert (models["LSTM concise"].lr, models["LSTM concise"].epochs) == (4, 50)
    assert models["2-layer GRU concise"].layers == 2 and models["RNN scratch"].init == "normal"


def test_configs_use_windows_and_clip():
    model = lm_quality.PRESETS["d2l-1.0"]["models"][0]
    cfg, tcfg = lm_quality.configs("d2l-1.0", model, 28, "float32", "cpu", 0)
    assert isinstance(cfg, LMConfig) and cfg.hidden_size == 32 and cfg.embed_size is None
    assert (tcfg.partition, tcfg.num_train, tcfg.num_val, tcfg.clip) == ("windows", 10000, 5000, 1.0)


def _rec(model, backend, val, anchor):
    return {"model": model, "backend": backend, "val_ppl": val, "train_ppl": val - 1,
            "anchor_val": anchor, "anchor_train": None}


def test_table_shows_anchor_and_spread():
    table = lm_quality.markdown_table([_rec("RNN scratch", "torch", 7.0, 7.24),
                                       _rec("RNN scratch", "jax", 7.07, None)])
    row = table.splitlines()[2]
    assert "7.00 (7.24)" in row and "| 7.07 |" in row and "1.0%" in row
