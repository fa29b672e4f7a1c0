"""Options and action of the `translate` verb: train d2l 1.0's GRU encoder-decoder on
English-French (or load a checkpoint), then translate sentences and score them."""
from __future__ import annotations

from pathlib import Path

from bench.cli.argtypes import fraction_below_one, positive_float, positive_int
from common.config import DTYPES, GRU_VARIANTS
from common.seq2seq import SEQ2SEQ_IMPLS



def add_translate(sub):
    from common.registry import backend_names
    from common.seq2seq import INITS, TranslateConfig
    d = TranslateConfig()
    p = sub.add_parser("translate", help="train a GRU encoder-decoder on English-French "
                                         "(d2l 1.0's settings) and translate")
    a = p.add_argument
    a("--backend", choices=backend_names(), default="torch")
    a("--impl", choices=SEQ2SEQ_IMPLS, help="builtin (d2l's choice, the default) or scratch; with "
                                    "--checkpoint, default: as trained")
    a("--gru-variant", choices=GRU_VARIANTS, default="reset_after",
      help="reset_before exists only in the scratch implementation")
    a("--path", help="fra.txt or its directory (default: d2l's download, SHA-1 checked)")
    a("--embed", type=positive_int, default=256)
    a("--hidden", type=positive_int, default=256)
    a("--layers", type=positive_int, default=2)
    a("--dropout", type=fraction_below_one, default=d.dropout,
      help="between GRU layers, while training")
    a("--lr", type=positive_float, default=d.lr, help="Adam's learning rate")
    a("--epochs", type=positive_int, default=d.epochs)
    a("--batch-size", type=positive_int, default=d.batch_size)
    a("--num-steps", type=positive_int, default=d.num_steps)
    a("--num-train", type=positive_int, default=d.num_train, help="the first N pairs train")
    a("--num-val", type=positive_int, default=d.num_val, help="the next N pairs are held out")
    a("--clip", type=positive_float, default=d.clip, help="global gradient-norm bound")
    a("--no-clip", action="store_true", help="turn clipping off")
    a("--init", choices=INITS, default=d.init, help="xavier: d2l's init_seq2seq")
    a("--dtype", choices=DTYPES, default=d.dtype)
    a("--device", choices=("cpu", "gpu"), default="cpu")
    a("--seed", type=int, default=d.seed)
    given = p.add_mutually_exclusive_group()
    given.add_argument("--sentences", nargs="+", metavar="SENTENCE",
                       help="English sentences (default: d2l's four test sentences, scored)")
    given.add_argument("--file", help="a UTF-8 file of English sentences, one a line")
    a("--checkpoint", help="translate with this checkpoint (any backend's) instead of training")
    a("--out", help="run directory (default: a new rnnbench-results/translate-* directory; "
                    "with --checkpoint, nothing is written unless given)")
    a("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_translate)


def _sentences(args):
    """(sentences, references): the user's (checked before any work), else d2l's four."""
    from bench.translate import runner as translate
    if args.sentences is not None:
        return translate.check_sentences(args.sentences), None
    if args.file:
        return translate.read_sentences(args.file), None
    return [e for e, _ in translate.D2L_EXAMPLES], [f for _, f in translate.D2L_EXAMPLES]


def _print(translations) -> None:
    for t in translations:
        score = "" if t.bleu is None else f"  (BLEU {t.bleu:.3f})"
        print(f"{t.source} => {t.translation}{score}")
        if t.unknown:
            print(f"  note: not in the vocabulary, read as <unk>: {', '.join(t.unknown)}")


def run_translate(args) -> int:
    from bench.core import records
    from bench.translate import runner as translate
    sentences, refs = _sentences(args)
    if args.checkpoint:
        return _from_checkpoint(args, sentences, refs)
    from common.corpora import load_fra_eng
    from common.seq2seq import Seq2SeqConfig, TranslateConfig
    if args.out:
        records.check_new_dir(args.out)
    tcfg = TranslateConfig(args.lr, None if args.no_clip else args.clip, args.epochs,
                           args.batch_size, args.num_steps, args.num_train, args.num_val,
                           args.dropout, args.dtype, args.device, args.seed, args.init)
    data = load_fra_eng(args.path, tcfg.num_steps, tcfg.num_train, tcfg.num_val)
    cfg = Seq2SeqConfig(args.impl or "builtin", len(data.src_vocab), len(data.tgt_vocab),
                        args.embed, args.hidden, args.layers, args.gru_variant)
    out = records.out_dir(args.out, "translate")
    run = translate.train(args.backend, cfg, tcfg, data, out, progress=not args.quiet)
    log = run.log
    if log.epochs:
        last = log.epochs[-1]
        print(f"{log.status} after {last.epoch} epochs ({log.train_seconds:.1f} s training): "
              f"loss {last.train_loss:.3f}, validation loss {last.val_loss:.3f}")
        _score(run, log, sentences, refs, args.backend)
    if log.message:
        print(log.message)
    print(f"wrote {translate.write_log(log, out).parent}")
    return 0 if log.status == "finished" else 1


def _score(run, log, sentences, refs, backend) -> None:
    """Translate, score the held-out and training slices, print; everything goes in the log."""
    from bench.translate import runner as translate
    data = run.data
    log.translations = translate.translate(run.mod, run.model, data.src_vocab, data.tgt_vocab,
                                           sentences, data.num_steps, refs)
    log.heldout_bleu = translate.slice_bleu(run.mod, run.model, data, train=False)
    log.train_bleu = translate.slice_bleu(run.mod, run.model, data, train=True)
    log.d2l_published_bleu = translate.D2L_PUBLISHED_BLEU[backend] if refs else None
    _print(log.translations)
    print(f"mean BLEU (k={translate.BLEU_K}): held-out {log.heldout_bleu:.3f} over "
          f"{log.data['num_val']} pairs, training {log.train_bleu:.3f} over {data.num_train}")


def _from_checkpoint(args, sentences, refs) -> int:
    from bench.translate import runner as translate
    mod, model, src_vocab, tgt_vocab, meta = translate.load_checkpoint(
        args.checkpoint, args.backend, args.impl, args.device)
    translations = translate.translate(mod, model, src_vocab, tgt_vocab, sentences,
                                       meta["train"]["num_steps"], refs)
    _print(translations)
    if args.out:
        log = translate.TranslateLog(args.backend, model.code_path, meta["model"], meta["train"],
                                     {"checkpoint": str(args.checkpoint)}, status="loaded",
                                     checkpoint=str(args.checkpoint), translations=translations)
        print(f"wrote {translate.write_log(log, Path(args.out)).parent}")
    return 0
