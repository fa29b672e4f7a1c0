"""Every backend is one shape: the same hooks with the same signatures on a `Backend` subclass,
one `info()` schema, and the same public function names in the modules the packages share.

The module check reads the sources (no framework is imported), so it runs on any stack; the
hook and info checks skip a backend whose framework is not installed, saying so.
"""
import ast
import inspect
import json
from pathlib import Path

import pytest

from common.backend import HOOKS, INFO_KEYS, Backend
from common.registry import BACKENDS, get_backend, install_hint, is_available

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [package for package, _, _ in BACKENDS.values()]
# Functions only one or two packages have, by module: framework-specific kernels and helpers
# that no counterpart needs. The check fails on a new one, and on an entry that has gone.
FRAMEWORK_ONLY = {
    "adapter": {"mxnet_impl": {"mxnet_error_text"}, "jax_impl": {"forward_jit", "vjp_jit"}},
    "cells": {"mxnet_impl": {"matmul"},
              "jax_impl": {"gru_pointwise", "lstm_pointwise", "reset_before_fused_step",
                           "rnn_pointwise", "rnn_relu_pointwise", "split_of"}},
    "convert": {"torch_impl": {"native_suffixes"}, "mxnet_impl": {"native_names", "native_prefix"},
                "jax_impl": {"cell_table", "name_map", "native_scopes"}},
    "devices": {"torch_impl": {"device_names", "set_tf32"}, "mxnet_impl": {"device_name"},
                "jax_impl": {"compute_scope", "device_names", "is_gpu"}},
    "ladder": {"torch_impl": {"cross_entropy", "detach", "one_cycle_scheduler"},
               "mxnet_impl": {"dense", "detach", "embed", "token_nll"},
               "jax_impl": {"embed", "fastai_adam", "schedules", "token_nll", "zero_state"}},
    "layers": {"torch_impl": {"fast_recurrence", "relu_loop"},
               "mxnet_impl": {"builtin_from_native", "check_builtin_activation",
                              "fast_recurrence", "pack_states", "relu_loop", "unpack_states"},
               "jax_impl": {"builtin_module", "run_direction_hoisted", "run_direction_split",
                            "scratch_code_path"}},
    "lm": {"torch_impl": {"detach_state"}, "mxnet_impl": {"detach_state", "output_layer"},
           "jax_impl": {"loss_and_grads"}},
    "recurrence": {"torch_impl": {
        "backward_loop", "backward_weight", "forward_loop", "forward_weight", "gru_backward_loop",
        "gru_forward_loop", "gru_local_derivatives", "hand_gru", "hand_lstm", "hand_rnn",
        "local_derivatives", "onednn_matmul_t", "pack", "packable", "previous_hidden", "product",
        "product_add", "reset_before_loop", "rnn_backward_loop", "rnn_forward_loop", "scripted",
        "scripted_cells", "scripted_reset_before", "weight_grad"},
        "mxnet_impl": {"cached_blocks", "cached_loops", "cols", "loops_for", "make_loops",
                       "previous", "sigmoid", "tanh", "unstack", "weight_grad"},
        "jax_impl": {"scan_split"}},
    "rungs": {"torch_impl": {"hand_vjp_layer", "hoisted_loop", "lstm_pointwise", "packed_layer",
                             "scripted_loop"},
              "mxnet_impl": {"fc", "hand_forward_backward", "lstm_pointwise", "onednn_layer",
                             "split_steps"},
              "jax_impl": {"grads_fn", "hand_vjp_layer", "hlo_kernels", "jaxpr_ops"}},
    "runtime": {"mxnet_impl": {"enabled_features", "num_gpus", "openmp_counts"}},
    "seq2seq": {"torch_impl": {"bias_masks"}, "mxnet_impl": {"bias_masks"},
                "jax_impl": {"greedy_tokens", "run_layer"}},
}


def public_functions(package: str, module: str) -> set:
    tree = ast.parse((ROOT / package / f"{module}.py").read_text())
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}


def shared_modules() -> list:
    names = [{p.stem for p in (ROOT / package).glob("*.py")} for package in PACKAGES]
    return sorted(set.intersection(*names) - {"__init__"})


def backend_or_skip(name: str):
    if not is_available(name):
        pytest.skip(f"{name} is not installed ({install_hint(name)})")
    return get_backend(name)


def shape(fn) -> list:
    """A signature's parameter names, kinds and defaults (annotations may differ)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("module", shared_modules())
def test_shared_modules_define_the_same_public_functions(module):
    names = {package: public_functions(package, module) for package in PACKAGES}
    shared = set.intersection(*names.values())
    extra = {package: found - shared for package, found in names.items() if found - shared}
    assert extra == FRAMEWORK_ONLY.get(module, {})


def test_the_packages_share_the_capability_modules():
    assert {"arrays", "cells", "layers", "model", "runtime", "trainer",
            "adapter"} <= set(shared_modules())


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_backend_implements_every_hook_with_the_same_signature(name):
    cls = type(backend_or_skip(name))
    assert issubclass(cls, Backend) and cls.name == name and cls.builtin_gru
    for hook in HOOKS:
        mine = getattr(cls, hook)
        assert mine is not getattr(Backend, hook), f"{cls.__name__} lacks {hook}"
        assert shape(mine) == shape(getattr(Backend, hook)), hook


@pytest.mark.parametrize("name", list(BACKENDS))
def test_info_has_one_schema(name):
    info = backend_or_skip(name).info()
    json.dumps(info)
    assert {k: type(v) for k, v in info.items()} == INFO_KEYS
    assert info["framework"] == name and info["devices"]


def arguments(package: str, module: str) -> dict:
    """Public function name -> its parameter names and default count, read from the source."""
    tree = ast.parse((ROOT / package / f"{module}.py").read_text())
    return {node.name: ([a.arg for a in node.args.args], len(node.args.defaults))
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}


@pytest.mark.parametrize("module", ["arrays", "runtime", "model", "trainer", "cells", "convert",
                                    "devices"])
def test_shared_functions_take_the_same_arguments(module):
    found = [arguments(package, module) for package in PACKAGES]
    for name in set.intersection(*map(set, found)):
        assert found[0][name] == found[1][name] == found[2][name], name


def test_the_layer_entry_points_take_the_same_arguments():
    found = [arguments(package, "layers") for package in PACKAGES]
    for name in ("zero_states", "builtin_forward", "make_builtin", "scratch_forward",
                 "fast_forward", "stack_forward", "forward_of"):
        # MXNet's make_builtin adds `hybridize` after the four shared arguments
        assert len({tuple(f[name][0][:4]) for f in found}) == 1, name
