"""Prompts: a text prompt as token ids (with or without the tokenizer's chat template), prompt
files, and the checked list of prompts the profiler takes.

Terms:
    chat-formatted   the prompt as one user turn of the tokenizer's chat template, ending with the
                     assistant header (``add_generation_prompt=True``): what an instruct model
                     answers;
    raw              the prompt's plain encoding (``tokenizer(prompt)["input_ids"]``), used when
                     asked for or when the tokenizer has no chat template;
    token ids        ``[1, num_tokens]`` int64 tensors, one row per prompt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["chat_input_ids", "encode_prompt", "prompt_token_ids", "read_prompts"]


def chat_input_ids(tokenizer: Any, message: str) -> torch.Tensor:
    """Token ids ``[1, num_tokens]`` (int64) of ``message`` as one user turn in the tokenizer's
    chat template, ending with the assistant header (generation prompt).

    Parameters
    ----------
    tokenizer
        A transformers tokenizer with a chat template.
    message
        The user message (a non-empty string).
    """
    if not isinstance(message, str) or not message:
        raise ValueError(f"message must be a non-empty string, got {message!r}")
    encoded = tokenizer.apply_chat_template(
        [{"role": "user", "content": message}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    return encoded["input_ids"].to(torch.int64)


def encode_prompt(tokenizer: Any, prompt: str, raw: bool = False) -> torch.Tensor:
    """``[1, num_tokens]`` int64: ``prompt`` chat-formatted (:func:`chat_input_ids`) unless
    ``raw`` or the tokenizer has no chat template, else its plain encoding.

    Examples
    --------
    >>> class Characters:  # a tokenizer without a chat template
    ...     chat_template = None
    ...     def __call__(self, text):
    ...         return {"input_ids": [ord(character) - 97 for character in text]}
    >>> encode_prompt(Characters(), "abc")
    tensor([[0, 1, 2]])
    """
    if not raw and getattr(tokenizer, "chat_template", None):
        return chat_input_ids(tokenizer, prompt)
    return torch.tensor([tokenizer(prompt)["input_ids"]], dtype=torch.int64)


def read_prompts(path: str | os.PathLike[str]) -> list[str]:
    """Prompts from a file: ``.json`` (a list of strings), ``.jsonl`` (one JSON string or object
    with a ``"prompt"`` key per line) or plain text (one prompt per non-empty line).

    Raises
    ------
    ValueError
        The file holds no non-empty prompt string, or a line / the list has another type.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    prompts: list[Any]
    if path.suffix == ".json":
        prompts = json.loads(text)
        if not isinstance(prompts, list):
            raise ValueError(f"--prompts {path}: a .json prompts file must hold a list of strings")
    elif path.suffix == ".jsonl":
        prompts = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                item = json.loads(line)
                prompts.append(item.get("prompt") if isinstance(item, dict) else item)
                if not isinstance(prompts[-1], str):
                    raise ValueError(
                        f'--prompts {path}:{number}: expected a string or {{"prompt": ...}}'
                    )
    else:
        prompts = [line for line in text.splitlines() if line.strip()]
    if not prompts or not all(isinstance(prompt, str) and prompt for prompt in prompts):
        raise ValueError(f"--prompts {path} must hold at least one non-empty prompt string")
    return prompts


def prompt_token_ids(
    prompts: Sequence[object], tokenizer: Any | None, vocab_size: int
) -> list[torch.Tensor]:
    """Each prompt as checked token ids ``[1, P]`` int64.

    Parameters
    ----------
    prompts
        Token id tensors ``[1, P]`` or ``[P]`` (int64 or int32) or strings (encoded by
        :func:`encode_prompt`: chat-formatted when ``tokenizer`` has a chat template).
    tokenizer
        Required when a prompt is a string.
    vocab_size
        Every token id must lie in ``[0, vocab_size)``.
    """
    if isinstance(prompts, (str, bytes, torch.Tensor)) or not isinstance(prompts, Sequence):
        raise TypeError(
            "prompts must be a sequence of prompts (token id tensors [1, P] or strings), got "
            f"{type(prompts).__name__}"
        )
    if len(prompts) == 0:
        raise ValueError("prompts must hold at least one prompt, got an empty sequence")
    result = []
    for index, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            if tokenizer is None:
                raise ValueError(
                    f"prompts[{index}] is a string; pass tokenizer= to tokenize it (or token ids)"
                )
            if not prompt:
                raise ValueError(f"prompts[{index}] is an empty string")
            ids = encode_prompt(tokenizer, prompt)
        elif isinstance(prompt, torch.Tensor):
            ids = prompt
            if ids.dim() == 1:
                ids = ids[None]
            if ids.dim() != 2 or ids.shape[0] != 1:
                raise ValueError(
                    f"prompts[{index}] must have shape [1, P] or [P], got {tuple(prompt.shape)}"
                )
            if ids.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"prompts[{index}] must hold int64 token ids, got {ids.dtype}")
        else:
            raise TypeError(
                f"prompts[{index}] must be a token id tensor or a string, got "
                f"{type(prompt).__name__}"
            )
        ids = ids.to(torch.int64)
        if ids.shape[1] == 0:
            raise ValueError(f"prompts[{index}] is empty (shape {tuple(ids.shape)})")
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"prompts[{index}] contains token id {low if low < 0 else high}, outside "
                f"[0, vocab_size={vocab_size})"
            )
        result.append(ids)
    return result
