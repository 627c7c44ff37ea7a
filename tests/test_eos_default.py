"""EOS defaults a transformers user expects: ``TransformersLevel.eos_token_ids`` reads the
model's generation config, and ``HierarchicalDecoder.generate`` stops there when
``eos_token_id`` is not given (``None`` meaning no EOS, as in transformers)."""

import pytest

from hierspec import TransformersLevel
from hierspec.testing import tiny_llama


@pytest.mark.parametrize(
    ("eos", "expected"), [(None, None), (5, (5,)), ([5, 9], (5, 9)), ([], None)]
)
def test_eos_token_ids_from_generation_config(eos, expected):
    model = tiny_llama()
    model.generation_config.eos_token_id = eos
    assert TransformersLevel(model).eos_token_ids == expected
