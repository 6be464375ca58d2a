"""Deprecated location: FIM moved to `coder_align.fim` (SFT data, models and eval use it,
not the corpus build). This alias will be removed in a later release."""

import warnings

from coder_align.fim import FIM_BEGIN, FIM_END, FIM_HOLE, SENTINELS, FimParts, apply_fim, split_fim  # noqa: F401

warnings.warn("coder_align.corpus.fim moved to coder_align.fim", DeprecationWarning, stacklevel=2)
