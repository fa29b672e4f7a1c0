"""Options and actions of the `train` and `generate` verbs."""
from __future__ import annotations

from pathlib import Path

from bench.cli.argtypes import positive_float, positive_int

from common.config import ACTIVATIONS, CELLS, DTYPES, GRU_VARIANTS, IMPLS, OPTIMIZERS, PARTITIONS

BIDIRECTIONAL_REFUSAL = ("a left-to-right language model cannot be bidirectional: the backward "
                         "direction would read the very tokens it must predict. Bidirectional "
                         "stacks are for encoders (the seq2seq encoder)")


def add_train(sub):
    from bench.lm.data import LM_CORPORA
    from common.registry import backend_names
    p = sub.add_parser("train", help="train a character/word language model")
    a = p.add_argument
    a("--backend", choices=backend_names(), default="torch")
    a("--impl", choices=IMPLS, default="scratch",
      help="scratch (d2l's cell step by step), fast (fused, hoisted, hand-written backward) "
           "or builtin (the framework's own layer)")
    a("--cell", choices=CELLS, default="rnn")
    a("--gru-variant", choices=GRU_VARIANTS, default="reset_after")
    a("--activation", choices=ACTIVATIONS, default="tanh",
      help="the rnn cell's nonlinearity (lstm and gru keep tanh)")
    a("--layers", type=positive_int, default=1)
    a("--bidirectional", action="store_true", help="refused for a language model (says why)")
    a("--hidden", type=positive_int, default=256)
    a("--embed", type=positive_int, default=None, help="embedding size (default: one-hot inputs)")
    a("--num-steps", type=positive_int, default=35)
    a("--batch-size", type=positive_int, default=32)
    a("--lr", type=positive_float, default=1.0)
    a("--optimizer", choices=OPTIMIZERS, default="sgd")
    a("--epochs", type=positive_int, default=500)
    a("--clip", type=positive_float, default=1.0, help="global gradient-norm bound")
    a("--no-clip", action="store_true", help="turn clipping off (to watch gradients explode)")
    a("--partition", choices=PARTITIONS, default="sequential")
    a("--num-train", type=positive_int, default=10000, help="windows partition: train windows")
    a("--num-val", type=positive_int, default=5000, help="windows partition: validation windows")
    a("--dtype", choices=DTYPES, default="float32")
    a("--device", choices=("cpu", "gpu"), default="cpu")
    a("--seed", type=int, default=0)
    a("--init", choices=("normal", "uniform"), default="normal",
      help="normal: d2l's N(0, 0.01^2), zero biases; uniform: U(±1/sqrt(H))")
    a("--target-ppl", type=positive_float, default=None, help="stop once train perplexity <= this")
    a("--corpus", choices=LM_CORPORA, default="human_numbers")
    a("--path", help="corpus file (default: generated for human_numbers, downloaded otherwise)")
    a("--token", choices=("char", "word"), help="token kind (default: the corpus's own)")
    a("--max-tokens", type=positive_int, default=None, help="use only the first N tokens")
    a("--prefix", help="generate from this prefix at the end")
    a("--out", help="run directory, new or empty (default: a new rnnbench-results/train-* "
                    "directory)")
    a("--resume", metavar="DIR", help="continue the run stopped in DIR from its checkpoint, with "
                                      "its own settings (only --quiet, --prefix may be added)")
    a("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train, train_defaults={x.dest: x.default for x in p._actions})


def add_generate(sub):
    from common.registry import backend_names
    p = sub.add_parser("generate", help="generate text from a checkpoint, in any framework")
    a = p.add_argument
    a("checkpoint", help="checkpoint.safetensors (or an older checkpoint.npz) written by `rnnbench train`, any backend")
    a("--backend", choices=backend_names(), default="torch")
    a("--impl", choices=IMPLS, help="scratch, fast or builtin (default: as trained)")
    a("--prefix", required=True)
    a("--num-preds", type=positive_int, default=50)
    a("--alpha", type=positive_float, default=None,
      help="sample from q ∝ p^alpha (default: greedy decoding)")
    a("--seed", type=int, default=0)
    a("--device", choices=("cpu", "gpu"), default="cpu")
    p.set_defaults(func=run_generate)


def train_config(args):
    """The TrainConfig of parsed options (refusing a bidirectional LM first)."""
    from common.config import TrainConfig
    if args.bidirectional:
        raise ValueError(BIDIRECTIONAL_REFUSAL)
    return TrainConfig(args.optimizer, args.lr, None if args.no_clip else args.clip,
                             args.epochs, args.batch_size, args.num_steps, args.partition,
                             args.num_train, args.num_val, args.dtype, args.device, args.seed,
                             args.target_ppl)


RESUME_KEEPS = ("resume", "quiet", "prefix", "help", "func", "train_defaults", "verb")
EXIT_STATUS = {"finished": 0, "target reached": 0, "diverged": 1}


def _check_resume_alone(args) -> None:
    given = [d for d, default in args.train_defaults.items()
             if d not in RESUME_KEEPS and getattr(args, d, default) != default]
    if given:
        names = ", ".join("--" + d.replace("_", "-") for d in given)
        raise ValueError(f"--resume continues a run with the settings it was started with: "
                         f"drop {names} (or start a new run with another --out)")


def _new_run(args):
    """Everything checked before any work: --out, settings, corpus, memory -> (out, log)."""
    from bench.core import records
    from bench.lm.data import check_fits, load_corpus
    from bench.lm.train import check_memory, check_out_free, train
    from common.config import LMConfig
    from common.params import init_lm_params

    if args.out:
        check_out_free(Path(args.out))
    tcfg = train_config(args)
    data = load_corpus(args.corpus, args.path, args.token, args.max_tokens or -1)
    cfg = LMConfig(args.cell, args.impl, len(data.vocab), args.hidden, args.layers,
                   args.gru_variant, args.embed, args.activation)
    check_fits(data, tcfg)
    check_memory(cfg, tcfg)
    out = records.out_dir(args.out, "train")
    params = init_lm_params(cfg, tcfg.seed, tcfg.dtype, init=args.init)
    return out, train(args.backend, cfg, tcfg, data, out, params, progress=not args.quiet)


def run_train(args) -> int:
    from bench.lm.generate import generate, load_checkpoint
    from bench.lm.train import resume

    if args.resume:
        _check_resume_alone(args)
        out = Path(args.resume)
        log = resume(out, progress=not args.quiet)
    else:
        out, log = _new_run(args)
    last = log.epochs[-1] if log.epochs else None
    if last:
        val = f", validation perplexity {last.val_ppl:.3f}" if last.val_ppl is not None else ""
        print(f"{log.status} after {last.epoch} epochs: train perplexity {last.train_ppl:.3f}{val}, "
              f"{log.tokens_per_second:,.0f} tokens/s")
    if log.message:
        print(log.message)
    if args.prefix and last and log.status != "diverged":
        be, model, vocab, token, _ = load_checkpoint(log.checkpoint, log.backend, None,
                                                     log.train["device"])
        print(generate(be, model, vocab, token, args.prefix, 50))
    print(f"wrote {out}")
    return EXIT_STATUS.get(log.status, 143 if "SIGTERM" in log.message else 130)


def run_generate(args) -> int:
    from bench.lm.generate import generate, load_checkpoint
    be, model, vocab, token, _ = load_checkpoint(args.checkpoint, args.backend, args.impl, args.device)
    print(generate(be, model, vocab, token, args.prefix, args.num_preds, args.alpha, args.seed))
    return 0


def add_quality(sub):
    from bench.lm.quality import PRESETS
    from common.registry import backend_names
    p = sub.add_parser("lm-quality", help="d2l's LM settings in every framework, beside d2l's figures")
    a = p.add_argument
    a("--preset", choices=tuple(PRESETS), default="d2l-1.0")
    a("--backends", nargs="+", choices=backend_names(),
      help="default: every installed one of " + ", ".join(backend_names()))
    a("--models", nargs="+", metavar="NAME", help="model names of the preset (default: all)")
    a("--path", help="timemachine.txt (default: download with SHA-1 check)")
    a("--dtype", choices=DTYPES, default="float32")
    a("--device", choices=("cpu", "gpu"), default="cpu")
    a("--seed", type=int, default=0)
    a("--epochs", type=positive_int, help="override every model's epochs (for a quick look)")
    a("--out", help="directory (default: a new rnnbench-results/quality-* directory)")
    p.set_defaults(func=run_quality)


def run_quality(args) -> int:
    from bench.core import records
    from bench.lm import quality as lm_quality
    from common.registry import chosen_backends
    known = [m.name for m in lm_quality.PRESETS[args.preset]["models"]]
    unknown = [m for m in args.models or [] if m not in known]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown} for {args.preset}: choose from {known}")
    out = records.out_dir(args.out, "quality")
    backends = chosen_backends(args.backends, "lm-quality")
    return lm_quality.main(args.preset, backends, args.models, out, args.path, args.dtype,
                           args.device, args.seed, args.epochs)


def add_trajectory(sub):
    from common.registry import backend_names
    p = sub.add_parser("trajectory", help="per-step training losses compared across frameworks")
    p.add_argument("--backends", nargs="+", choices=backend_names(), default=list(backend_names()),
                   help="default: all; one that is not installed is a row saying so")
    p.add_argument("--steps", type=positive_int, default=50)
    p.add_argument("--out", help="also write trajectory.json into this new directory")
    p.set_defaults(func=run_trajectory)


def run_trajectory(args) -> int:
    from bench.lm import trajectory
    return trajectory.main(args.backends, args.steps, args.out)
