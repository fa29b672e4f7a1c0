"""The lm-quality presets and table (the runs themselves are benchmarks, not tests)."""

from bench.lm import quality as lm_quality
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


def test_d2l017_concise_models_start_as_d2ls_gluon_chapter():
    """d2l 0.17's Gluon train_ch8 re-initialises with init.Normal(0.01); its PyTorch chapter keeps
    the framework default. The preset runs both starts, under different names."""
    models = {m.name: m for m in lm_quality.PRESETS["d2l-0.17"]["models"]}
    assert models["RNN concise"].init == "normal" and models["GRU concise"].init == "normal"
    assert models["RNN concise, framework init"].init == "uniform"
    assert models["GRU concise, framework init"].init == "uniform"
    assert {m.target_ppl for m in models.values() if m.cell == "rnn"} == {1.2}


def test_run_directories_are_plain_names():
    assert lm_quality.slug("RNN concise, framework init") == "RNN_concise_framework_init"
    assert lm_quality.slug("2-layer GRU concise") == "2-layer_GRU_concise"


def test_an_unknown_model_name_is_an_error_that_lists_the_preset():
    import pytest
    with pytest.raises(ValueError, match="its models: 'RNN scratch'"):
        lm_quality.choose_models("d2l-0.17", ["RNN sratch"])
    assert [m.name for m in lm_quality.choose_models("d2l-0.17", ["GRU concise"])] == ["GRU concise"]
    assert len(lm_quality.choose_models("d2l-1.0", None)) == 7


def test_step_agreement_reads_the_runs_train_logs(tmp_path):
    import json
    losses = {"torch": [2.0, 1.0, 0.5, 0.25], "jax": [2.0, 1.0, 0.5 * (1 + 1e-6), 0.25 * 1.01]}
    recs = []
    for backend, steps in losses.items():
        run = tmp_path / f"RNN_scratch-{backend}"
        run.mkdir()
        (run / "train_log.json").write_text(json.dumps({"step_losses": steps}))
        recs.append({"model": "RNN scratch", "backend": backend, "run_dir": run.name})
    recs.append({"model": "GRU concise", "backend": "torch", "run_dir": "missing"})
    text = lm_quality.step_agreement(recs, tmp_path, first=3)
    assert "| jax vs torch |" in text
    assert "| RNN scratch | 1.0e-06 (first 3), 1.0e-02 (all 4) |" in text
    assert "| GRU concise | — |" in text
