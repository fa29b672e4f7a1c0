"""`rnnbench data NAME`: corpus statistics."""
from __future__ import annotations

from common.corpora import corpus_stats


def format_stats(stats: dict, top: int) -> str:
    lines = [f"corpus:      {stats['name']}",
             f"source:      {stats['source']}",
             f"token kind:  {stats['token']}",
             f"tokens:      {stats['num_tokens']:,}",
             f"vocabulary:  {stats['vocab_size']:,} distinct tokens"
             + (f" ({stats['vocab_size_with_unk']:,} with <unk>)"
                if "vocab_size_with_unk" in stats else "")]
    if "num_pairs" in stats:
        lines.append(f"pairs:       {stats['num_pairs']:,}")
    lines.append("top tokens:  " + ", ".join(f"{t!r} {c:,}" for t, c in stats["top"][:top]))
    return "\n".join(lines)


def main(name: str, path=None, token=None, top: int = 10) -> int:
    stats = corpus_stats(name, path=path, token=token, top=top)
    print(format_stats(stats, top))
    return 0
