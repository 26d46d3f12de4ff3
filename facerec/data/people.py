"""Which people of a set play which part, chosen by name alone.

A choice that hashes each name (SHA-256 with a purpose string, so that the people held out of
training and the people kept out of a gallery are independent draws) does not depend on the
order photos are listed in, on the machine, or on a seed, and a person keeps their part when
photos are added.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import pandas as pd


def chosen_people(names: Iterable[str], count: int, purpose: str) -> set[str]:
    """The ``count`` distinct names whose hash for ``purpose`` is lowest (all, if fewer)."""
    distinct = sorted({str(name) for name in names},
                      key=lambda name: hashlib.sha256(f"{purpose}:{name}".encode()).hexdigest())
    return set(distinct[:count])


def heldout_people(identities: Iterable[str], count: int) -> set[str]:
    """The people of the training photos that training never sees (``data.holdout_identities``),
    scored by an evaluation set of kind identities with ``people: heldout``."""
    return chosen_people(identities, count, "heldout")


def without_heldout(faces: pd.DataFrame, count: int) -> pd.DataFrame:
    """``faces`` (an ``identity`` column) less the held-out people's faces."""
    return faces[~faces["identity"].isin(heldout_people(faces["identity"], count))].reset_index(drop=True)
