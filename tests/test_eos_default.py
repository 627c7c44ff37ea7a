"""EOS defaults a transformers user expects: ``TransformersLevel.eos_token_ids`` reads the
model's generation config, and ``HierarchicalDecoder.generate`` stops there when
``eos_token_id`` is not given (``None`` meaning no EOS, as in transformers)."""

import pytest
import torch

from hierspec import HierarchicalDecoder, TransformersLevel
from hierspec.testing import tiny_llama, tiny_llama_family


@pytest.mark.parametrize(
    ("eos", "expected"), [(None, None), (5, (5,)), ([5, 9], (5, 9)), ([], None)]
)
def test_eos_token_ids_from_generation_config(eos, expected):
    model = tiny_llama()
    model.generation_config.eos_token_id = eos
    assert TransformersLevel(model).eos_token_ids == expected


def test_generate_stops_at_the_generation_config_eos_by_default():
    models = tiny_llama_family(2, seed=1)
    prompt = torch.tensor([[1, 2, 3]])
    free = HierarchicalDecoder(models, [3]).generate(
        prompt, max_new_tokens=12, temperature=0, eos_token_id=None
    )
    eos = int(free.sequences[0, 3 + 4])  # the 5th new token
    stop = 3 + int((free.sequences[0, 3:] == eos).nonzero()[0, 0]) + 1
    models[-1].generation_config.eos_token_id = [eos]
    decoder = HierarchicalDecoder(models, [3])
    default = decoder.generate(prompt, max_new_tokens=12, temperature=0)
    assert torch.equal(default.sequences, free.sequences[:, :stop])
    assert torch.equal(default.sequences, models[-1].generate(prompt, max_new_tokens=12))
    named = decoder.generate(
        prompt, max_new_tokens=12, temperature=0, eos_token_id="generation_config"
    )
    assert torch.equal(named.sequences, default.sequences)
    # None means no EOS, as in transformers.
    none = decoder.generate(prompt, max_new_tokens=12, temperature=0, eos_token_id=None)
    assert torch.equal(none.sequences, free.sequences)
    with pytest.raises(ValueError, match="'generation_config' or None; got 'eos'"):
        decoder.generate(prompt, max_new_tokens=2, eos_token_id="eos")
