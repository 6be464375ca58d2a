"""The README's commands stay true: every subcommand exists and every file it names loads.

The commands themselves run elsewhere in the suite (quickstart, sft, merge, deepspeed,
corpus build + pretrain, sandbox check, grpo, eval, the notebook); this test catches a
renamed config, a removed subcommand or a stale path in the documentation.
"""

import re
import shlex

import pytest

from coder_align.cli import COMMANDS
from coder_align.config import load_config

from conftest import REPO_ROOT
from test_config import schema_for

README = (REPO_ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, re.S)
COMMAND_LINES = [line.split("#")[0].strip() for block in BLOCKS for line in block.splitlines()
                 if line.strip().startswith(("coder-align", "deepspeed", "make"))]


def test_readme_has_exactly_the_two_setup_commands():
    first_block = BLOCKS[0]
    assert [l.split("#")[0].strip() for l in first_block.splitlines() if l.strip()] == ["make quickstart", "make test"]
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "\nquickstart: install" in makefile and "\ntest: install" in makefile


@pytest.mark.parametrize("line", COMMAND_LINES)
def test_documented_command_names_real_things(line):
    words = shlex.split(line)
    if words[0] == "coder-align":
        assert words[1] in COMMANDS, f"unknown subcommand in README: {line}"
    if words[0] == "deepspeed":
        script = next(w for w in words if w.endswith(".py"))
        assert (REPO_ROOT / script).is_file()
    for i, word in enumerate(words):
        if word == "--config":
            path = REPO_ROOT / words[i + 1]
            assert path.is_file(), line
            load_config(schema_for(path), path)
        elif word.startswith(("configs/", "data_templates/")):
            assert (REPO_ROOT / word).exists(), line


def test_every_documented_subcommand_is_covered():
    documented = {shlex.split(l)[1] for l in COMMAND_LINES if l.startswith("coder-align")}
    assert {"sft", "merge", "grpo", "pretrain", "corpus", "sandbox", "eval"} <= documented


def _documented_commands() -> list[tuple[str, str]]:
    """(where, command line) for every command in a module docstring or a config's header."""
    import ast

    found = []
    for path in sorted((REPO_ROOT / "coder_align").rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        found += [(str(path), line.strip()) for line in doc.splitlines()
                  if line.strip().startswith(("coder-align ", "deepspeed ", "`coder-align "))]
    for path in sorted((REPO_ROOT / "configs").rglob("*.yaml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            text = line.lstrip("# ").split("(=")[0]
            if text.startswith(("coder-align ", "deepspeed ", "make ")) or "coder-align " in text:
                found.append((str(path), text[text.find("coder-align ") if "coder-align " in text else 0:]))
    return found


def test_every_command_in_a_docstring_or_config_header_exists():
    commands = _documented_commands()
    assert len(commands) > 15
    for where, line in commands:
        words = shlex.split(line.strip("`").split("`")[0])
        if words[0] == "coder-align" and not words[1].isupper():  # COMMAND is a placeholder
            assert words[1] in COMMANDS, (where, line)
        for i, word in enumerate(words):
            if word in ("--config", "-c") or (word.startswith("coder_align/") and word.endswith(".py")):
                target = words[i + 1] if word in ("--config", "-c") else word
                assert (REPO_ROOT / target).is_file(), f"{where}: {line}"


def test_the_corpus_files_the_readme_names_are_the_ones_build_writes(tmp_path):
    from coder_align.corpus.build import build_corpus

    names = re.findall(r"`(corpus[\w.]*\.(?:stats\.json|report\.txt))`", README)
    assert len(names) == 2, names
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("def f(x):\n    return x + 1\n" * 5)
    build_corpus([repo], tmp_path / "corpus.jsonl", decontaminate=False)
    for name in names:
        assert (tmp_path / name).is_file(), name
