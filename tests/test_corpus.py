"""hierspec.family.corpus: the three splits partition the real documents, a document's split does
not depend on the other documents, and each consumer reads only its own split."""

from __future__ import annotations

import math
import random

import pytest

from hierspec.family import corpus


@pytest.fixture(scope="module")
def real_documents() -> tuple[corpus.Document, ...]:
    return corpus.load_documents()


def _split_by_name(split_documents) -> dict[tuple[str, str], str]:
    by_name: dict[tuple[str, str], str] = {}
    for split, documents in split_documents.items():
        for document in documents:
            key = (document.source, document.name)
            assert key not in by_name, f"{key} is in both {by_name[key]} and {split}"
            by_name[key] = split
    return by_name


def test_splits_are_disjoint_and_cover_every_document(real_documents):
    every = [(d.source, d.name) for d in real_documents]
    assert len(set(every)) == len(every) > 500  # names identify documents
    by_name = _split_by_name({split: corpus.documents(split) for split in corpus.SPLITS})
    assert sorted(by_name) == sorted(every)
    counts = {split: list(by_name.values()).count(split) for split in corpus.SPLITS}
    # Not train with probability heldout_fraction = 0.1, then validation or held out with
    # probability 1/2 each: binomial counts, within 4 standard deviations.
    total = len(every)
    not_train = counts["validation"] + counts["heldout"]
    assert abs(not_train - 0.1 * total) < 4 * math.sqrt(total * 0.1 * 0.9)
    assert abs(counts["validation"] - not_train / 2) < 4 * math.sqrt(not_train / 4)


def test_a_documents_split_is_stable_under_reordering_and_added_documents(
    real_documents, monkeypatch
):
    before = _split_by_name({split: corpus.documents(split) for split in corpus.SPLITS})
    shuffled = list(real_documents)
    random.Random(0).shuffle(shuffled)
    kept = shuffled[: len(shuffled) // 2]
    added = [
        corpus.Document("stdlib", f"added/module_{index}.py", f"x = {index}\n")
        for index in range(200)
    ]
    mixed = kept + added
    random.Random(1).shuffle(mixed)
    monkeypatch.setattr(corpus, "load_documents", lambda sources=corpus.SOURCES: tuple(mixed))
    after = _split_by_name({split: corpus.documents(split) for split in corpus.SPLITS})
    assert len(after) == len(mixed)
    assert {key: after[key] for key in before if key in after} == {
        (d.source, d.name): before[(d.source, d.name)] for d in kept
    }
    # The added documents land in every split too (the rule is a hash, not a position).
    assert {after[(d.source, d.name)] for d in added} == set(corpus.SPLITS)


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
