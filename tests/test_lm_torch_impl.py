"""torch_impl's language model: what only torch has (the shared tests: test_lm_backends.py)."""
import pytest

from test_lm_backends import H, adam_trained_builtin_and_scratch

BACKEND = "torch"


@pytest.mark.parametrize("cell_id", ["lstm", "gru_after"],
                         ids=[f"{BACKEND}-builtin-lstm", f"{BACKEND}-builtin-gru_after"])
def test_builtin_keeps_duplicate_biases_zero(cell_id):
    """torch's layers hold a second, recurrent-side copy of every gate bias: under Adam those
    copies stay exactly zero, except GRU's `b_hn` block, which trains (builtin follows scratch:
    test_lm_backends.test_builtin_follows_scratch_under_adam)."""
    cfg, builtin, _ = adam_trained_builtin_and_scratch(BACKEND, cell_id)
    for name, value in builtin.module.named_parameters():
        if name.startswith("bias_hh"):
            blocks = value.detach().numpy().reshape(-1, H)
            trains = cfg.cell == "gru"  # torch's GRU rows r, z, n: n is b_hn
            assert not blocks[:2 if trains else None].any(), name
            assert not trains or blocks[2].any(), name
