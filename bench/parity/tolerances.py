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
