"""FIM transform: sentinel spelling, PSM/SPM layout, round trip, rates."""

import random

import pytest

from coder_align.fim import FIM_BEGIN, FIM_END, FIM_HOLE, apply_fim, split_fim

DOC = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n"


def test_sentinels_are_deepseek_tokens_with_fullwidth_bars():
    assert FIM_BEGIN == "<\uff5cfim\u2581begin\uff5c>"
    assert FIM_HOLE == "<\uff5cfim\u2581hole\uff5c>"
    assert FIM_END == "<\uff5cfim\u2581end\uff5c>"
    assert "|" not in FIM_BEGIN + FIM_HOLE + FIM_END  # no ASCII bar slipped in


def test_psm_layout_and_round_trip():
    for seed in range(200):
        out = apply_fim(DOC, random.Random(seed), fim_rate=1.0)
        parts = split_fim(out)
        assert parts is not None and parts.mode == "psm"
        assert out == f"{FIM_BEGIN}{parts.prefix}{FIM_HOLE}{parts.suffix}{FIM_END}{parts.middle}"
        assert parts.prefix + parts.middle + parts.suffix == DOC
        assert not out.endswith(("<eos>", "<\uff5cend\u2581of\u2581sentence\uff5c>"))


def test_cut_points_cover_empty_parts_and_whole_range():
    text = "abc"
    seen = set()
    for seed in range(500):
        p = split_fim(apply_fim(text, random.Random(seed), fim_rate=1.0))
        seen.add((len(p.prefix), len(p.middle)))
    # every (a, b) with 0 <= a <= b <= 3 is reachable: 10 pairs
    assert seen == {(a, b - a) for a in range(4) for b in range(a, 4)}


def test_spm_layout_is_suffix_first_and_round_trips():
    out = apply_fim(DOC, random.Random(3), fim_rate=1.0, spm_rate=1.0)
    parts = split_fim(out)
    assert parts.mode == "spm"
    assert out == f"{FIM_HOLE}{parts.suffix}{FIM_BEGIN}{parts.prefix}{FIM_END}{parts.middle}"
    assert parts.prefix + parts.middle + parts.suffix == DOC


def test_rates_statistically():
    rng = random.Random(1234)
    n = 4000
    outs = [apply_fim(DOC, rng, fim_rate=0.5, spm_rate=0.3) for _ in range(n)]
    fim = [split_fim(o) for o in outs if o != DOC]
    assert all(p is not None for p in fim)
    # binomial sd: sqrt(n p (1-p)) = 32 for the FIM count; 5 sd tolerances
    assert abs(len(fim) - n * 0.5) < 5 * 32
    spm = sum(p.mode == "spm" for p in fim)
    assert abs(spm - len(fim) * 0.3) < 5 * (len(fim) * 0.3 * 0.7) ** 0.5


def test_rate_zero_is_identity_and_reproducible_with_seed():
    assert all(apply_fim(DOC, random.Random(s), fim_rate=0.0) == DOC for s in range(50))
    a = [apply_fim(DOC, random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_documents_containing_sentinels_are_left_alone():
    text = f"tok = '{FIM_HOLE}'\n"
    assert apply_fim(text, random.Random(0), fim_rate=1.0) == text


def test_split_rejects_non_fim_text():
    assert split_fim(DOC) is None
    assert split_fim(f"{FIM_BEGIN}a{FIM_END}b{FIM_HOLE}c") is None  # hole after end
    assert split_fim(f"x{FIM_BEGIN}a{FIM_HOLE}b{FIM_END}c") is None


@pytest.mark.parametrize("kwargs", [{"fim_rate": 1.5}, {"fim_rate": -0.1}, {"spm_rate": 2.0}])
def test_bad_rates_raise(kwargs):
    with pytest.raises(ValueError, match="rate"):
        apply_fim(DOC, random.Random(0), **kwargs)


def test_the_data_layer_does_not_import_the_corpus_package():
    import subprocess
    import sys

    code = ("import sys, coder_align.data, coder_align.fim, coder_align.evaluation.tasks; "
            "print(sorted(m for m in sys.modules if m.startswith('coder_align.corpus')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
