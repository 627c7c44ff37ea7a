"""hierspec.corpus: the three splits are disjoint, and each consumer reads only its own."""

from __future__ import annotations

import pytest

from hierspec import corpus


def test_splits_partition_the_documents():
    by_split = {split: corpus.documents(split) for split in corpus.SPLITS}
    names = {split: {(d.source, d.name) for d in docs} for split, docs in by_split.items()}
    every = {(d.source, d.name) for d in corpus.load_documents()}
    assert set.union(*names.values()) == every
    assert sum(len(n) for n in names.values()) == len(every)  # pairwise disjoint
    assert all(names.values())  # none empty


def test_prompt_sets_come_from_disjoint_documents():
    heldout = corpus.heldout_prompts(20)
    calibration = corpus.calibration_prompts(8)
    training = corpus.training_prompts(64)
    documents = [{(p.source, p.name) for p in group} for group in (heldout, calibration, training)]
    assert not documents[0] & documents[1]
    assert not documents[0] & documents[2]
    assert not documents[1] & documents[2]
    splits = {
        split: {(d.source, d.name) for d in corpus.documents(split)} for split in corpus.SPLITS
    }
    assert documents[0] <= splits["heldout"]
    assert documents[1] <= splits["validation"]
    assert documents[2] <= splits["train"]


def test_bad_split_and_counts_are_named():
    with pytest.raises(ValueError, match="split must be one of .*got 'test'"):
        corpus.documents("test")
    with pytest.raises(ValueError, match="count must be <= .* for the validation split"):
        corpus.calibration_prompts(10_000)
