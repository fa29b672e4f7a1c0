"""fastbook chapter 12's language-model ladder (LMModel1-7) on Human Numbers, framework-neutral:
each model's settings and published figure, its canonical parameters (seeded as PyTorch's
defaults would draw them), its batches in fastbook's order, and fastai's one-cycle schedule in
NumPy (the reference every framework's scheduler is tested against).

Data as fastbook: the 63,095 tokens of `load_human_numbers()`, ids by first appearance
(`L(*tokens).unique()`: 30 tokens, no `<unk>`). Models 1-3 read 3-token samples
`nums[i:i+3] -> nums[i+3]` for i in `range(0, len(nums)-4, 3)`; models 4-7 16-token windows
`nums[i:i+16] -> nums[i+1:i+17]` for i in `range(0, len(nums)-17, 16)`. The first 80% train.
`DataLoaders.from_dsets(..., shuffle=False)` never shuffles; `drop_last` is True for the training
loader (from_dsets' default) and, for models 3-7, for both (`group_chunks` ordering).

Canonical keys (weights `(in, out)`, docs/contract.md): `embedding (V, H)`; models 1-4 `W_hh (H, H)`,
`b_h (H)` (fastbook's `h_h` layer); models 5-7 the layer stack `l{k}.*` (input size H); then
`W_hq (H, V)` and `b_q (V)` (`h_o`). Model 7 ties `h_o.weight` to `i_h.weight`: it has no
`W_hq`, its output weight is `embedding.T`, one array used twice.

Two biases per gate (models 5-7): fastbook's `nn.RNN/nn.LSTM` carry `bias_ih` and `bias_hh`,
each drawn U(±1/sqrt(H)) and each moved by Adam. Only their sum, the canonical `b_*`, enters the
forward, and both get the same gradient, hence the same Adam step: the sum moves by twice that
step and decays once (`b *= 1 - lr * wd` on each). So the canonical bias is drawn as the sum of
two draws, torch and Gluon train their built-ins' two biases as fastbook does (no masking of
the duplicate), and JAX, whose Flax cells have one bias per gate, doubles Adam's step on those
keys (`doubled_bias_keys`) and nothing else.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np

from .batching import group_chunk_order, minibatches
from .config import LayerSpec
from .corpora import load_human_numbers
from .params import Params
from .params import param_shapes as layer_param_shapes

HIDDEN, BATCH_SIZE, SEQ_LEN = 64, 64, 16
VALID_FRACTION = 0.2
BETA2, EPS = 0.99, 1e-5                 # fastai's Adam: sqr_mom 0.99, eps 1e-5
DEFAULT_WD = 0.01                       # fastai's Adam default (Learner's wd=None keeps it)
LEARNER_MOMS = (0.95, 0.85, 0.95)       # Learner's default moms
TEXT_LEARNER_MOMS = (0.8, 0.7, 0.8)     # TextLearner's (LMModel7 is trained by a TextLearner)
BASELINE_TOKEN, BASELINE_ACCURACY = "thousand", 0.15165200855716662
FASTBOOK_SOURCE = "fastbook chapter 12 (12_nlp_dive), final validation accuracy, docs/anchors.md"


@dataclass(frozen=True)
class LadderSpec:
    """One rung: architecture, data, `fit_one_cycle(epochs, lr_max)` settings, fastbook's figure.

    `arch`: unrolled3 (LMModel1, written out), loop3 (LMModel2), stateful3 (LMModel3, state kept
    across batches), window (LMModel4, a prediction per step), rnn/lstm (5-7, built-in layers).
    `no_decay`: keys fastai's `wd_bn_bias=False` spares (biases of `nn.Linear` layers; the
    built-in RNN/LSTM biases are decayed, since `nn.LSTM.bias` is a bool, not a tensor).
    """

    id: int
    name: str
    arch: str
    data: str
    epochs: int
    lr_max: float
    fastbook_accuracy: float
    num_layers: int = 1
    wd: float = DEFAULT_WD
    moms: Tuple[float, float, float] = LEARNER_MOMS
    dropout: float = 0.0
    alpha: float = 0.0                  # AR: alpha * mean(dropped_out ** 2)
    beta: float = 0.0                   # TAR: beta * mean((raw[t+1] - raw[t]) ** 2)
    tied: bool = False
    no_decay: Tuple[str, ...] = ("b_h", "b_q")
    summary: str = ""

    @property
    def stateful(self) -> bool:
        """Whether the state is carried from batch to batch (models 3-7)."""
        return self.arch not in ("unrolled3", "loop3")

    @property
    def builtin(self) -> bool:
        return self.arch in ("rnn", "lstm")

    @property
    def every_step(self) -> bool:
        """Whether the model predicts at every position (logits `(B, T, V)`, models 4-7)."""
        return self.data == "windows"

    @property
    def label(self) -> str:
        return f"{self.id} {self.name}"


MODELS: Dict[int, LadderSpec] = {s.id: s for s in (
    LadderSpec(1, "LMModel1", "unrolled3", "three", 4, 1e-3, 0.494,
               summary="3 tokens -> the next, written out"),
    LadderSpec(2, "LMModel2", "loop3", "three", 4, 1e-3, 0.470, summary="the same as a loop"),
    LadderSpec(3, "LMModel3", "stateful3", "three_chunks", 10, 3e-3, 0.589,
               summary="state kept across batches"),
    LadderSpec(4, "LMModel4", "window", "windows", 15, 3e-3, 0.640,
               summary="16-token windows, a prediction per step"),
    LadderSpec(5, "LMModel5", "rnn", "windows", 15, 3e-3, 0.488, num_layers=2, no_decay=("b_q",),
               summary="2-layer built-in RNN"),
    LadderSpec(6, "LMModel6", "lstm", "windows", 15, 1e-2, 0.759, num_layers=2, no_decay=("b_q",),
               summary="2-layer built-in LSTM"),
    LadderSpec(7, "LMModel7", "lstm", "windows", 15, 1e-2, 0.869, num_layers=2, wd=0.1,
               moms=TEXT_LEARNER_MOMS, dropout=0.4, alpha=2.0, beta=1.0, tied=True,
               no_decay=("b_q",), summary="LSTM, dropout 0.4, AR/TAR, tied weights"),
)}


def get_spec(model_id: int) -> LadderSpec:
    if model_id not in MODELS:
        raise ValueError(f"unknown ladder model {model_id!r}: choose one of {sorted(MODELS)}")
    return MODELS[model_id]


# ---------------------------------------------------------------- parameters

def layer_spec(spec: LadderSpec, hidden: int = HIDDEN) -> LayerSpec:
    """The built-in layer stack of models 5-7: `num_layers` of `hidden`, input `hidden`."""
    if not spec.builtin:
        raise ValueError(f"{spec.name} has no built-in layer stack")
    return LayerSpec(spec.arch, hidden, hidden, spec.num_layers)


def param_shapes(spec: LadderSpec, vocab_size: int, hidden: int = HIDDEN) -> Dict[str, tuple]:
    """Every canonical key of the model with its shape (see the module docstring)."""
    shapes = {"embedding": (vocab_size, hidden)}
    if spec.builtin:
        shapes.update(layer_param_shapes(layer_spec(spec, hidden)))
    else:
        shapes.update({"W_hh": (hidden, hidden), "b_h": (hidden,)})
    if not spec.tied:
        shapes["W_hq"] = (hidden, vocab_size)
    shapes["b_q"] = (vocab_size,)
    return shapes


def doubled_bias_keys(spec: LadderSpec) -> Tuple[str, ...]:
    """The canonical biases of the built-in stack (models 5-7), each standing for the sum of
    two native biases (module docstring); () for models 1-4."""
    if not spec.builtin:
        return ()
    return tuple(k for k in layer_param_shapes(layer_spec(spec)) if k.split(".")[-1][:2] == "b_")


def init_params(spec: LadderSpec, vocab_size: int, hidden: int = HIDDEN, seed: int = 0,
                dtype="float32") -> Params:
    """Seeded canonical parameters drawn as PyTorch initialises fastbook's modules.

    `nn.Embedding`: N(0, 1) (model 7's tied output weight is this embedding). `nn.Linear`
    (kaiming-uniform with a=sqrt(5)) and `nn.RNN/LSTM`: U(±1/sqrt(H)), fan-in H everywhere here;
    a built-in's bias is the sum of its two biases' draws (written to the input side, zero on
    the recurrent side, docs/contract.md).
    """
    rng = np.random.default_rng([seed, spec.id])
    bound = 1.0 / np.sqrt(hidden)
    draw = lambda shape: rng.uniform(-bound, bound, shape)
    doubled = doubled_bias_keys(spec)
    out = {}
    for key, shape in param_shapes(spec, vocab_size, hidden).items():
        if key == "embedding":
            value = rng.normal(0.0, 1.0, shape)
        else:
            value = draw(shape) + draw(shape) if key in doubled else draw(shape)
        out[key] = value.astype(dtype)
    return out


# ---------------------------------------------------------------- data

@dataclass(frozen=True)
class HumanNumbersIds:
    """fastbook's `vocab` (first-seen order, 30 tokens) and `nums` `(N,)` int64."""

    vocab: List[str]
    nums: np.ndarray


def first_seen_vocab(tokens) -> List[str]:
    """fastai's `L(*tokens).unique()`: each distinct token once, in order of first appearance."""
    return list(dict.fromkeys(tokens))


def load_ids(directory=None) -> HumanNumbersIds:
    """Human Numbers (generated, or read from `directory`) as fastbook's vocab and nums."""
    tokens = load_human_numbers(directory)
    vocab = first_seen_vocab(tokens)
    word2idx = {w: i for i, w in enumerate(vocab)}
    return HumanNumbersIds(vocab, np.array([word2idx[t] for t in tokens], dtype=np.int64))


def three_token_samples(nums) -> Tuple[np.ndarray, np.ndarray]:
    """fastbook's `(nums[i:i+3], nums[i+3])` for i in `range(0, len(nums)-4, 3)`: X (N, 3), y (N,)."""
    nums = np.asarray(nums, dtype=np.int64)
    starts = np.arange(0, len(nums) - 4, 3)
    return nums[starts[:, None] + np.arange(3)], nums[starts + 3]


def window_samples(nums, seq_len: int = SEQ_LEN) -> Tuple[np.ndarray, np.ndarray]:
    """fastbook's `(nums[i:i+sl], nums[i+1:i+sl+1])` for i in `range(0, len(nums)-sl-1, sl)`:
    X, Y (N, sl)."""
    nums = np.asarray(nums, dtype=np.int64)
    idx = np.arange(0, len(nums) - seq_len - 1, seq_len)[:, None] + np.arange(seq_len)
    return nums[idx], nums[idx + 1]


@dataclass(frozen=True)
class LadderData:
    """One model's train and validation arrays, rows already in fastbook's order.

    x: (N, 3) or (N, 16) ids; y: (N,) or (N, 16). `drop_last_valid`: fastbook's validation
    loader drops a partial batch only for models 3-7 (where none is left by `group_chunks`).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    valid_x: np.ndarray
    valid_y: np.ndarray
    batch_size: int
    drop_last_valid: bool

    def train_batches(self) -> Iterator[tuple]:
        """(x, y) batches of one epoch: in order, partial last batch dropped (fastai's default)."""
        return minibatches((self.train_x, self.train_y), self.batch_size, False, drop_last=True)

    def valid_batches(self) -> Iterator[tuple]:
        return minibatches((self.valid_x, self.valid_y), self.batch_size, False,
                           drop_last=self.drop_last_valid)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_x) // self.batch_size


def ladder_data(spec: LadderSpec, nums, batch_size: int = BATCH_SIZE,
                seq_len: int = SEQ_LEN) -> LadderData:
    """`spec`'s samples, split at 80%, `group_chunks`-ordered for models 3-7."""
    X, Y = window_samples(nums, seq_len) if spec.every_step else three_token_samples(nums)
    cut = int(len(X) * (1 - VALID_FRACTION))
    parts = [X[:cut], Y[:cut], X[cut:], Y[cut:]]
    if spec.data != "three":
        orders = [group_chunk_order(len(parts[0]), batch_size),
                  group_chunk_order(len(parts[2]), batch_size)]
        parts = [a[orders[i // 2]] for i, a in enumerate(parts)]
    return LadderData(*parts, batch_size, spec.data != "three")


def most_common_target(data: LadderData) -> Tuple[int, float]:
    """(id, fraction) of the most common validation target over the batches validated."""
    ys = np.concatenate([y.ravel() for _, y in data.valid_batches()])
    token, count = collections.Counter(ys.tolist()).most_common(1)[0]
    return int(token), count / len(ys)


# ---------------------------------------------------------------- one-cycle schedule

@dataclass(frozen=True)
class OneCycle:
    """fastai's `fit_one_cycle` schedule over `total_steps` optimizer steps.

    lr: cosine from lr_max/div up to lr_max over the first pct_start of training, then cosine
    down to lr_max/div_final. Momentum (Adam's beta1): cosine moms[0] -> moms[1] -> moms[2].
    """

    lr_max: float
    total_steps: int
    moms: Tuple[float, float, float] = LEARNER_MOMS
    pct_start: float = 0.25
    div: float = 25.0
    div_final: float = 1e5

    def __post_init__(self):
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be positive, got {self.total_steps}")
        if not 0 < self.pct_start < 1:
            raise ValueError(f"pct_start must lie in (0, 1), got {self.pct_start}")

    def lrs(self) -> np.ndarray:
        """The lr of every step, (total_steps,) float64."""
        lr = self.lr_max
        return one_cycle_curve(lr / self.div, lr, lr / self.div_final, self.total_steps,
                               self.pct_start)

    def momentums(self) -> np.ndarray:
        """Adam's beta1 of every step, (total_steps,) float64."""
        return one_cycle_curve(*self.moms, self.total_steps, self.pct_start)


def one_cycle_curve(start: float, middle: float, end: float, total_steps: int,
                    pct_start: float = 0.25) -> np.ndarray:
    """fastai's `combined_cos(pct_start, start, middle, end)` at pos = i / total_steps.

    fastai's ParamScheduler sets the value for step i (0-based) from `pct_train = i / total`,
    so the last step sits at (total-1)/total, just short of `end`. Returns (total_steps,).
    """
    pos = np.arange(total_steps) / total_steps
    first = pos < pct_start
    frac = np.where(first, pos / pct_start, (pos - pct_start) / (1 - pct_start))
    a, b = np.where(first, start, middle), np.where(first, middle, end)
    return a + (1 + np.cos(np.pi * (1 - frac))) * (b - a) / 2


def one_cycle_for(spec: LadderSpec, total_steps: int) -> OneCycle:
    return OneCycle(spec.lr_max, total_steps, spec.moms)


# ---------------------------------------------------------------- forwards, states, references

class Forward(NamedTuple):
    """What every backend's rung forward returns, in that framework's arrays: logits `(B, V)`
    (models 1-3) or `(B, T, V)`; the final state (None for models 1-2); raw and out: the last
    layer's outputs `(T, B, H)` before and after dropout (models 5-7, else None)."""

    logits: Any
    state: Optional[list]
    raw: Any = None
    out: Any = None


DROPOUT_STREAM = 0xD50  # keeps the masks' random stream apart from init_params' (seed, model)


def dropout_keep(spec: LadderSpec, ids_shape, hidden: int, seed: int, step: int,
                 dtype="float32") -> Optional[np.ndarray]:
    """The dropout keep mask of training step `step` (0-based) for ids `(B, T)`: `(T, B, H)`
    `dtype` of 0s and 1s, 1 with probability 1 - spec.dropout, drawn in NumPy from (seed, step)
    so that every framework drops the same units (in either dtype); None for a rung without
    dropout."""
    if not spec.dropout:
        return None
    B, T = ids_shape
    rng = np.random.default_rng([seed, step, DROPOUT_STREAM])
    return (rng.random((T, B, hidden)) >= spec.dropout).astype(dtype)


def map_state(fn, state):
    """`fn` applied to every array of a state in the contract's layout (a list of arrays or of
    LSTM `(H, C)` pairs); None stays None."""
    if state is None:
        return None
    return [tuple(map(fn, s)) if isinstance(s, tuple) else fn(s) for s in state]


def ar_tar(raw: np.ndarray, out: np.ndarray, alpha: float, beta: float) -> float:
    """fastai's RNNRegularizer on time-major `(T, B, H)` outputs of the last layer:
    alpha * mean(out**2) + beta * mean((raw[1:] - raw[:-1])**2) (`out`: after dropout)."""
    raw, out = np.asarray(raw, np.float64), np.asarray(out, np.float64)
    return float(alpha * np.mean(out ** 2) + beta * np.mean((raw[1:] - raw[:-1]) ** 2))

