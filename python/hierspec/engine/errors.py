"""Checks of the rows the levels produce, and the error they raise: :class:`NonDistributionError`.

A processed row (:func:`hierspec.sampling.processed_probs`) that is not a distribution - NaN or
``inf`` logits, a row of ``-inf`` only, no mass left after top-k / top-p - would make speculative
sampling emit arbitrary tokens (token 0) without a word when it is the verifier's row, and makes
every draft from it rejected when it is the draft's row (still lossless, only slow). So:

    verifier rows    (the target's, an intermediate level's) must be distributions:
                     :class:`NonDistributionError` naming the level and the text position.
    draft rows       (level 0's) that are not distributions give one ``RuntimeWarning`` per
                     generate call naming the level.

Cost: one reduction over the vocabulary per verification pass, read in the host synchronization
that already reads ``num_accepted`` (no extra synchronization per pass). The target alone has no
synchronization per token: its check accumulates on the device and is read once, at the end of
the call.

Greedy rows are one-hot whatever the logits (the argmax of a NaN row is an index), so under
greedy decoding the verifier's logits are checked instead (a NaN, ``inf`` or all ``-inf`` row has
no finite maximum). Greedy draft rows cannot be checked that way without a reduction per draft
pass, so a broken greedy drafter is not reported (its drafts are still just rejected).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from ..protocol import DraftModel
from ..sampling import SamplingConfig, first_invalid_position

__all__ = ["NonDistributionError", "RowChecks"]


class NonDistributionError(ValueError):
    """A verifying level (the target or an intermediate level) produced a processed row that is
    not a distribution: NaN or ``inf`` logits, all ``-inf``, or no mass left after temperature /
    top-k / top-p. The message names the level (its chain position and ``repr``) and the text
    position of the first bad row. Raised at the verification's host synchronization; the
    decoder stays usable.
    """


def _describe(level_index: int, levels: Sequence[DraftModel]) -> str:
    if len(levels) == 1:
        return f"the target alone ({levels[0]!r})"
    role = "the target" if level_index == len(levels) - 1 else "intermediate level"
    return f"level {level_index} of the chain ({role}, {levels[level_index]!r})"


class RowChecks:
    """The row checks of one generate call (see the module docstring).

    Parameters
    ----------
    config : SamplingConfig
        The call's sampling settings (greedy rows are checked on their logits).
    """

    def __init__(self, config: SamplingConfig) -> None:
        self.config = config
        self.warned_draft = False
        # Target alone: [1] int64, the text position of the first bad row so far, or -1.
        self.first_bad_alone: torch.Tensor | None = None

    def _what(self) -> str:
        if self.config.is_greedy:
            return "NaN or inf logits, or all -inf"
        return "NaN or inf logits, all -inf, or no mass left after temperature / top-k / top-p"

    def first_invalid(self, logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """The first row of a pass that is not a distribution, or -1; no synchronization.

        Parameters
        ----------
        logits : torch.Tensor, shape ``[1, positions, vocab]``
            The pass's logits.
        probs : torch.Tensor, shape ``[1, positions, vocab]`` float32
            Their processed probabilities.

        Returns
        -------
        torch.Tensor, shape ``[1]``, int64
        """
        if self.config.is_greedy:
            invalid = ~torch.isfinite(logits.amax(dim=-1))  # [1, positions]
            first = invalid.int().argmax(dim=-1)
            return torch.where(invalid.any(dim=-1), first, -1).long()
        return first_invalid_position(probs)

    def read_verification(
        self,
        num_accepted: torch.Tensor,  # [1] int64
        first_invalid: torch.Tensor,  # [1] int64: first_invalid(...) of the verifier's rows
        draft_probs: torch.Tensor,  # [1, num_drafts, vocab] float32
        level_index: int,
        levels: Sequence[DraftModel],
        start: int,
    ) -> int:
        """The one host synchronization of a verification at ``level_index``: returns the number
        of accepted drafts; raises / warns about rows that are not distributions.

        ``start`` is the text position of the first draft: the verifier's row ``i`` and the
        draft row ``i`` are both for the token at text position ``start + i``.

        Raises
        ------
        NonDistributionError
            A row of the verifier is not a distribution.
        """
        draft_invalid = first_invalid_position(draft_probs)
        accepted, bad, bad_draft = torch.stack(
            [num_accepted[0], first_invalid[0], draft_invalid[0]]
        ).tolist()
        if bad >= 0:
            raise NonDistributionError(
                f"{_describe(level_index, levels)} produced a processed row that is not a "
                f"probability distribution ({self._what()}) for the token at text position "
                f"{start + bad}; speculative sampling cannot verify against it"
            )
        if bad_draft >= 0 and not self.warned_draft:
            self.warned_draft = True
            warnings.warn(
                f"{_describe(level_index - 1, levels)} drafted from a processed row that is not a "
                f"probability distribution ({self._what()}) at text position "
                f"{start + bad_draft}; such drafts are always rejected (the output keeps the "
                "target's distribution, but the drafter only costs time). Warned once per "
                "generate call.",
                RuntimeWarning,
                stacklevel=2,
            )
        return accepted

    def track_alone(self, logits: torch.Tensor, probs: torch.Tensor, position: int) -> None:
        """The target alone's row for the token at text position ``position`` (logits and
        processed probabilities ``[1, 1, vocab]``): remembered on the device, no sync."""
        bad = torch.where(self.first_invalid(logits, probs) >= 0, position, -1)  # [1] int64
        previous = self.first_bad_alone
        self.first_bad_alone = (
            bad if previous is None else torch.where(previous >= 0, previous, bad)
        )

    def finish(self, target: DraftModel) -> None:
        """End of the call: one synchronization if the target ran alone.

        Raises
        ------
        NonDistributionError
            One of the target alone's rows was not a distribution.
        """
        if self.first_bad_alone is None:
            return
        position = int(self.first_bad_alone[0])
        if position >= 0:
            raise NonDistributionError(
                f"the target ({target!r}) produced a processed row that is not a probability "
                f"distribution ({self._what()}) for the token at text position {position}"
            )
