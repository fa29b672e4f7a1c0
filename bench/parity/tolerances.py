"""Parity tolerances, in one table keyed by dtype, separate for values and gradients.

A pair agrees when `max|a - b| <= atol + rtol * max|b|` for every quantity group.

- float64: the two sides must compute the same math; only summation order differs, which costs
  a few ulps (1e-16) times the O(T * (I + H)) terms that feed each value. 1e-9 absolute (the
  contract's bar) leaves room for that with no relative slack, so any real difference (a swapped
  gate, a bias on the wrong side, the other GRU variant at ~1e-2) fails.
- float32: the unit roundoff is 6e-8. Values are tanh/sigmoid outputs of order 1 accumulated over
  T steps and (I + H) products per gate; measured cross-framework errors are 1e-7..2.4e-6
  (see the parity report). 1e-5 absolute for values keeps a 4x margin above that and stays 3
  orders of magnitude below the effect of any wrong weight. Gradients sum over T*B products and
  can reach O(10), so they get 2e-5 absolute plus 1e-5 relative to the largest entry.
"""

TOLERANCES = {
    "float64": {"value": (1e-9, 0.0), "grad": (1e-9, 0.0)},
    "float32": {"value": (1e-5, 0.0), "grad": (2e-5, 1e-5)},
}

# Quantity groups compared for a pair, and whether each is a value or a gradient.
GROUPS = {
    "outputs": "value",       # Y with a zero and with a non-zero initial state
    "states": "value",        # final states, both initial states
    "grad_params": "grad",    # VJP w.r.t. canonical parameters
    "grad_inputs": "grad",    # VJP w.r.t. X
    "grad_state": "grad",     # VJP w.r.t. the initial state
}


def tolerance(dtype: str, group: str):
    """(atol, rtol) for a quantity group in a dtype."""
    return TOLERANCES[dtype][GROUPS[group]]


def describe() -> str:
    """One line per dtype, for reports."""
    lines = []
    for dtype, kinds in TOLERANCES.items():
        parts = [f"{kind}: atol {a:g}" + (f" + rtol {r:g}·max|b|" if r else "")
                 for kind, (a, r) in kinds.items()]
        lines.append(f"{dtype}: " + "; ".join(parts))
    return "\n".join(lines)


# The tests' own comparisons of values and gradients, beside the pairs above: one table, so no
# test inlines a tolerance. name -> dtype -> (atol, rtol); `allclose(name, dtype)` gives them as
# keyword arguments. Where a test left numpy's rtol at its default, the entry says 1e-7.
NUMPY_DEFAULT_RTOL = 1e-7
TEST_TOLERANCES = {
    # an implementation against tests/reference.py's NumPy model, or MXNet's hybridized graph
    # against its imperative run: the float32 bar is the parity table's gradient bar
    "reference": {"float64": (1e-10, 0.0), "float32": (2e-5, 0.0)},
    # gradients against central finite differences, which limit float64 to ~1e-8
    "finite differences": {"float64": (1e-6, 1e-6), "float32": (1e-4, 1e-4)},
    # the same function computed twice in float64 where only summation order may differ: parameter
    # conversions, states in a framework's layout, Adam steps and dropout across frameworks
    "same function": {"float64": (1e-12, 0.0)},
    # the same, with numpy's default rtol (built-in against scratch VJPs, ReLU layers)
    "same function, default rtol": {"float64": (1e-12, NUMPY_DEFAULT_RTOL),
                                    "float32": (1e-5, NUMPY_DEFAULT_RTOL)},
    # the same, relative too (a bias's gradient, summed on its input and its hidden side)
    "same function, relative too": {"float64": (1e-12, 1e-12)},
    # the same operations in the same order (a masked input changed, one SGD step by hand,
    # JAX's autodiff against a hand-written VJP): a few ulps
    "same operations": {"float64": (1e-13, 0.0)},
    "default state": {"float64": (1e-14, 0.0)},       # JAX: no initial state against zeros
    "one rounding": {"float64": (1e-15, 0.0)},        # a bias sum, one parameter update
    # several SGD steps with clipping against the NumPy reference run
    "reference run": {"float64": (1e-8, 0.0)},
    # 50 SGD steps' losses against torch scratch; a resumed run's losses against a straight one
    "trajectory": {"float64": (0.0, 1e-8)},
    "resumed run": {"float64": (0.0, 1e-12)},
    # MXNet hands lr, beta2 and eps to its Adam kernel as float32: ~1e-8 on the step
    "float32 optimizer constants": {"float64": (1e-7, 0.0)},
    # explain's rungs against the built-in layer, forward and gradients
    "explain rungs": {"float64": (1e-9, 0.0), "float32": (2e-5, 0.0)},
    # a hand-written LSTM on packed against plain sequences
    "packed sequences": {"float32": (1e-5, 1e-5)},
    # fastbook's models: float32 against float64 logits, an optimizer step against the formula,
    # dropout off against no dropout, a dropped-and-scaled activation
    "fastbook logits": {"float32": (1e-5, 1e-4)},
    "fastbook step": {"float32": (1e-6, 1e-4)},
    "fastbook dropout": {"float32": (1e-6, 1e-5)},
    "fastbook dropout scale": {"float32": (0.0, 1e-5)},
    # fastbook's 4-step trajectories against torch: losses, then parameters
    "fastbook trajectory losses": {"float64": (0.0, 1e-10), "float32": (0.0, 2e-5)},
    "fastbook trajectory parameters": {"float64": (1e-12, 1e-10), "float32": (1e-5, 1e-4)},
}


def allclose(name: str, dtype: str = "float64") -> dict:
    """`{"atol": ..., "rtol": ...}` of a test comparison, for `assert_allclose(a, b, **...)`."""
    atol, rtol = TEST_TOLERANCES[name][dtype]
    return {"atol": atol, "rtol": rtol}
