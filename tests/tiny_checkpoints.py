"""Tiny checkpoints for the command-line tests: random Llamas saved with ``save_pretrained``
next to a word-level tokenizer (words ``w0`` .. ``w61``, ``<eos>`` id 1)."""

from __future__ import annotations

from pathlib import Path

from hierspec.testing import tiny_llama_family

VOCAB = ["<unk>", "<eos>"] + [f"w{index}" for index in range(62)]


def write_tokenizer(directory: str | Path) -> None:
    """Saves the word-level tokenizer to ``directory``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(
        models.WordLevel({word: i for i, word in enumerate(VOCAB)}, unk_token="<unk>")
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", eos_token="<eos>"
    ).save_pretrained(directory)


def write_checkpoints(root: Path, names: list[str], seed: int = 0) -> list[str]:
    """One tiny Llama per name (cheapest first, the target last) saved under ``root / name``,
    each with the tokenizer; returns the paths."""
    paths = []
    family = tiny_llama_family(len(names), vocab_size=len(VOCAB), seed=seed, noise=0.2)
    for name, model in zip(names, family):
        path = root / name
        model.save_pretrained(path)
        write_tokenizer(path)
        paths.append(str(path))
    return paths
