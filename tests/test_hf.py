"""hierspec.hf.hierarchical inside transformers' generate: same tokens as the target's own greedy
generate and as HierarchicalDecoder (greedy and seeded sampling), transformers' return types,
EOS / max length / stop strings / streamer, and the refusals."""

import pytest
import torch
from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor
from transformers.generation import (
    GenerateDecoderOnlyOutput,
    MaxTimeCriteria,
    StoppingCriteriaList,
    StopStringCriteria,
)

from hierspec import HierarchicalDecoder, plan
from hierspec.hf import hierarchical
from hierspec.testing import tiny_llama_family

PROMPTS = [[1, 2, 3, 4], [7], [5, 9, 11, 13, 2, 8]]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def family():
    return tiny_llama_family(3, seed=3)


class RecordingStreamer:
    def __init__(self):
        self.puts = []
        self.ended = 0

    def put(self, value):
        self.puts.append(value.flatten().tolist())

    def end(self):
        self.ended += 1


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_target_generate_and_decoder(family, prompt):
    *drafts, target = family
    input_ids = torch.tensor([prompt])
    custom = hierarchical(drafts=drafts, draft_lengths=[2, 3])
    spec = target.generate(input_ids, custom_generate=custom, max_new_tokens=16, do_sample=False)
    own = target.generate(input_ids, max_new_tokens=16, do_sample=False)
    decoder = HierarchicalDecoder(family, [2, 3]).generate(
        input_ids, max_new_tokens=16, temperature=0, eos_token_id=None
    )
    assert spec.shape == (1, len(prompt) + 16)
    assert torch.equal(spec, own)
    assert torch.equal(spec, decoder.sequences)
    assert custom.last_output.stats.new_tokens == 16


def test_seeded_sampling_equals_decoder(family):
    *drafts, target = family
    input_ids = torch.tensor([PROMPTS[0]])
    custom = hierarchical(drafts=drafts, draft_lengths=[2, 3], seed=11)
    sampling = {"temperature": 0.8, "top_k": 20, "top_p": 0.9}
    first = target.generate(
        input_ids, custom_generate=custom, max_new_tokens=20, do_sample=True, **sampling
    )
    again = target.generate(
        input_ids, custom_generate=custom, max_new_tokens=20, do_sample=True, **sampling
    )
    reference = HierarchicalDecoder(family, [2, 3]).generate(
        input_ids, max_new_tokens=20, seed=11, eos_token_id=None, **sampling
    )
    assert torch.equal(first, reference.sequences)
    assert torch.equal(again, reference.sequences)
    # A per-call seed overrides the callable's; do_sample=True alone gets transformers' global
    # defaults (temperature 1, top_k 50), read from the warpers it builds.
    per_call = target.generate(
        input_ids, custom_generate=custom, max_new_tokens=20, do_sample=True, seed=12
    )
    plain = HierarchicalDecoder(family, [2, 3]).generate(
        input_ids, max_new_tokens=20, seed=12, top_k=50, eos_token_id=None
    )
    assert torch.equal(per_call, plain.sequences)


def test_plan_and_return_dict(family):
    *drafts, target = family
    best = plan([1.0, 2.0, 10.0], [[1, 0.6, 0.5], [0, 1, 0.8], [0, 0, 1]], 4)
    input_ids = torch.tensor([PROMPTS[2]])
    custom = hierarchical(drafts=drafts, plan=best)
    output = target.generate(
        input_ids,
        custom_generate=custom,
        max_new_tokens=12,
        do_sample=False,
        return_dict_in_generate=True,
    )
    assert isinstance(output, GenerateDecoderOnlyOutput)
    own = target.generate(input_ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(output.sequences, own)
    assert len(custom.last_output.stats.levels) == len(best.chain)


def test_eos_and_max_length(family):
    *drafts, target = family
    input_ids = torch.tensor([PROMPTS[0]])
    custom = hierarchical(drafts=drafts, draft_lengths=[2, 3])
    free = target.generate(input_ids, custom_generate=custom, max_new_tokens=16, do_sample=False)
    eos = int(free[0, 4 + 5])  # the 6th new token
    stop_at = 4 + int((free[0, 4:] == eos).nonzero()[0, 0]) + 1
    stopped = target.generate(
        input_ids,
        custom_generate=custom,
        max_new_tokens=16,
        do_sample=False,
        eos_token_id=eos,
    )
    own = target.generate(input_ids, max_new_tokens=16, do_sample=False, eos_token_id=eos)
    assert torch.equal(stopped, free[:, :stop_at])
    assert torch.equal(stopped, own)
    by_max_length = target.generate(
        input_ids, custom_generate=custom, max_length=10, do_sample=False
    )
    assert torch.equal(by_max_length, free[:, :10])


def character_tokenizer(vocab_size):
    """A tokenizer whose tokens are single characters (``a``-``z``, ``A``-``Z``, digits, ...)."""
    import string

    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    characters = (string.ascii_letters + string.digits + "+-*/=.,;:!?")[: vocab_size - 1]
    vocab = {"<unk>": 0, **{character: 1 + i for i, character in enumerate(characters)}}
    tokenizer = Tokenizer(models.BPE(vocab, merges=[], unk_token="<unk>"))
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>")


def test_stop_strings_cut_where_transformers_stops(family):
    *drafts, target = family
    input_ids = torch.tensor([PROMPTS[0]])
    tokenizer = character_tokenizer(target.config.vocab_size)
    free = target.generate(input_ids, max_new_tokens=16, do_sample=False)
    stop = tokenizer.decode(free[0, 4 + 5 : 4 + 7])  # two characters: the 6th and 7th tokens
    custom = hierarchical(drafts=drafts, draft_lengths=[2, 3])
    own = target.generate(
        input_ids, max_new_tokens=16, do_sample=False, stop_strings=[stop], tokenizer=tokenizer
    )
    # transformers 5.24 drops tokenizer= for a callable custom_generate: the criterion is passed.
    streamer = RecordingStreamer()
    spec = target.generate(
        input_ids,
        custom_generate=custom,
        max_new_tokens=16,
        do_sample=False,
        stopping_criteria=StoppingCriteriaList([StopStringCriteria(tokenizer, [stop])]),
        streamer=streamer,
    )
    assert own.shape[1] < free.shape[1]
    assert torch.equal(spec, own)
    assert streamer.puts[0] == PROMPTS[0] and streamer.ended == 1
    assert sum(streamer.puts[1:], []) == spec[0, 4:].tolist()


def test_streamer_given_to_generate_gets_prompt_once_then_bursts(family):
    *drafts, target = family
    input_ids = torch.tensor([PROMPTS[0]])
    streamer = RecordingStreamer()
    custom = hierarchical(drafts=drafts, draft_lengths=[2, 3])
    spec = target.generate(
        input_ids, custom_generate=custom, max_new_tokens=12, do_sample=False, streamer=streamer
    )
    assert streamer.puts[0] == PROMPTS[0]
    assert PROMPTS[0] not in streamer.puts[1:]
    assert sum(streamer.puts[1:], []) == spec[0, 4:].tolist()
    assert streamer.ended == 1


def test_refusals(family):
    *drafts, target = family
    input_ids = torch.tensor([PROMPTS[0]])
    custom = hierarchical(drafts=drafts, draft_lengths=[2, 3])

    def generate(ids=input_ids, **kwargs):
        return target.generate(ids, custom_generate=custom, max_new_tokens=4, **kwargs)

    with pytest.raises(ValueError, match="beam search"):
        generate(num_beams=2, do_sample=False)
    with pytest.raises(ValueError, match="batch size 2"):
        generate(torch.tensor([PROMPTS[0], PROMPTS[0]]), do_sample=False)
    with pytest.raises(ValueError, match="num_return_sequences=2"):
        generate(do_sample=True, num_return_sequences=2)
    with pytest.raises(ValueError, match="RepetitionPenaltyLogitsProcessor"):
        generate(do_sample=True, repetition_penalty=1.3)
    with pytest.raises(ValueError, match="MinPLogitsWarper"):
        generate(do_sample=True, min_p=0.1)
    with pytest.raises(ValueError, match="RepetitionPenaltyLogitsProcessor"):
        generate(
            do_sample=False,
            logits_processor=LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.2)]),
        )
    with pytest.raises(ValueError, match="MaxTimeCriteria"):
        generate(do_sample=False, max_time=5.0)
    with pytest.raises(ValueError, match="MaxTimeCriteria"):
        generate(do_sample=False, stopping_criteria=[MaxTimeCriteria(5.0)])
    with pytest.raises(ValueError, match="output_scores"):
        generate(do_sample=False, return_dict_in_generate=True, output_scores=True)
    with pytest.raises(ValueError, match="padding"):
        generate(attention_mask=torch.tensor([[0, 1, 1, 1]]), do_sample=False)
    with pytest.raises(ValueError, match="exactly one of plan"):
        hierarchical(drafts=drafts)
    with pytest.raises(ValueError, match="exactly one of plan"):
        hierarchical(drafts=drafts, plan=plan([1.0, 10.0], [[1, 0.5], [0, 1]]), draft_lengths=[2])
    with pytest.raises(ValueError, match="one entry per draft"):
        hierarchical(drafts=drafts, draft_lengths=[2])
    with pytest.raises(ValueError, match="made for 2 candidates"):
        hierarchical(drafts=drafts, plan=plan([1.0, 10.0], [[1, 0.5], [0, 1]]))
    with pytest.raises(TypeError, match="drafts\\[0\\]"):
        hierarchical(drafts=["not a model"], draft_lengths=[2])
    with pytest.raises(TypeError, match="seed"):
        hierarchical(drafts=drafts, draft_lengths=[2, 3], seed=1.5)
