"""The bundled family's cache directory: where it is, its layout, and its checkpoints.

Cache directory (first match): the ``cache`` argument, the ``HIERSPEC_CACHE`` environment
variable, ``~/.cache/hierspec``. Layout::

    <cache>/smollm2-135m-instruct/     converted target + tokenizer + SOURCE_MARKER
    <cache>/ngram/corpus-<key>.npz     corpus n-gram statistics
    <cache>/teacher/<split>-<key>.pt   distillation / evaluation data (the target's predictions)
    <cache>/drafts/<name>-<key>/       distilled draft + tokenizer + DRAFT_MARKER (its record)

A checkpoint folder is complete exactly when its marker file is there: the folder is written
to a staging folder and renamed into place (:func:`hierspec.io.atomic_directory`), the marker
last. The keys are :func:`hierspec.io.content_key` s of everything that went into the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from hierspec.io import atomic_directory, cache_dir

__all__ = ["DRAFT_MARKER", "SOURCE_MARKER", "cache_dir", "save_checkpoint"]

SOURCE_MARKER = "hierspec-source.json"  # the converted target's origin (GGUF file and sha256)
DRAFT_MARKER = "hierspec-draft.json"  # a distilled draft's spec, configuration and metrics


def save_checkpoint(destination: Path, model, tokenizer, marker_name: str, marker: dict) -> None:
    """Writes a checkpoint folder atomically.

    Parameters
    ----------
    destination
        The checkpoint folder; replaced if it exists.
    model, tokenizer
        Saved with their ``save_pretrained``.
    marker_name
        :data:`SOURCE_MARKER` or :data:`DRAFT_MARKER`: the JSON file that marks the folder
        complete.
    marker
        Its content.
    """
    with atomic_directory(destination) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / marker_name).write_text(json.dumps(marker, indent=2) + "\n")
