"""The package's shape, held: layers and no loops (the import-linter contracts in pyproject.toml),
the project's own modules imported at the top, no module over 450 lines or function over 80,
package faces that only hand names on, stages that load no heavy library when imported, every
path the docs name still there, and the old import paths of moved modules still working, warned."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
import warnings

import pytest

from coder_align._moved import MOVED

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "coder_align"
STAGES = ("sft", "pretrain", "grpo", "rft", "reward_model", "evaluate")
HEAVY = ("torch", "transformers", "trl", "peft", "deepspeed", "vllm", "datatrove", "datasketch")
# The only project imports made inside a function: the TRL trainers subclass TRL's own, so
# importing their module imports TRL, which `import coder_align.grpo` must not.
IMPORTED_WHEN_TRAINING = {("coder_align.grpo", "coder_align.training.trainers"),
                          ("coder_align.reward_model", "coder_align.training.trainers")}


def layout_report():
    spec = importlib.util.spec_from_file_location("layout_report", REPO_ROOT / "scripts" / "layout_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report():
    return layout_report().report(REPO_ROOT, function_limit=80, file_limit=450)


def test_imports_keep_the_layers_and_make_no_loop():
    import logging

    from importlinter.cli import lint_imports

    # import-linter configures logging with dictConfig, which disables every logger that exists
    # already: later tests in this process would capture nothing from coder_align's loggers
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    disabled = {logger: logger.disabled for logger in loggers if isinstance(logger, logging.Logger)}
    try:
        assert lint_imports(config_filename=str(REPO_ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0
    finally:
        for logger, was in disabled.items():
            logger.disabled = was


def test_no_module_loop_and_nothing_against_the_layers(report):
    assert report["module_cycles"] == [] and report["room_cycles"] == []
    assert report["layer_violations"] == []


def test_the_projects_own_modules_are_imported_at_the_top(report):
    inside_functions = {(a, b) for a, b, _ in report["lazy_project_imports"]}
    assert inside_functions <= IMPORTED_WHEN_TRAINING, sorted(inside_functions - IMPORTED_WHEN_TRAINING)


def test_no_module_over_450_lines_and_no_function_over_80(report):
    assert report["files_over_limit"] == [] and report["functions_over_limit"] == []


def test_package_faces_only_hand_names_on():
    for init in sorted(PACKAGE.rglob("__init__.py")):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{init}: a package says what it is for"
        defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        assert not defined, f"{init} defines {defined}: logic belongs in a module named for it"


@pytest.mark.parametrize("stage", STAGES)
def test_importing_a_stage_loads_no_heavy_library(stage):
    code = f"import sys, coder_align.{stage}; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _named_paths(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w/.])coder_align/(?:[\w/]+\.py|[\w/]+/(?=[`\s)]))", text))


def test_every_path_the_docs_name_exists():
    sources = {"README.md": (REPO_ROOT / "README.md").read_text(encoding="utf-8")}
    for path in sorted(PACKAGE.rglob("*.py")):
        sources[str(path.relative_to(REPO_ROOT))] = path.read_text(encoding="utf-8")
    for path in sorted((REPO_ROOT / "configs").rglob("*.yaml")) + sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        sources[str(path.relative_to(REPO_ROOT))] = path.read_text(encoding="utf-8")
    missing = sorted((where, named) for where, text in sources.items() for named in _named_paths(text)
                     if not (REPO_ROOT / named).exists())
    assert not missing, missing


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_import_paths_warn_and_still_work(old):
    sys.modules.pop(old, None)
    with pytest.warns(FutureWarning, match=f"{re.escape(old)} moved to"):
        module = importlib.import_module(old)
    seen: set[str] = set()
    for new in MOVED[old]:  # a name is looked up in the new modules in order
        target = importlib.import_module(new)
        names = [name for name in vars(target) if not name.startswith("_") and name not in seen]
        assert names, new
        for name in names:
            assert getattr(module, name) is getattr(target, name), (old, name)
        seen.update(names)
    with pytest.raises(AttributeError, match="moved to"):
        module.no_such_name  # noqa: B018


def test_an_import_path_that_never_existed_fails_as_usual():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("coder_align.no_such_module")
