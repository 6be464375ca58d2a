"""The GPU kit's wheel bundles: the split, the size accounting and the dependency check (no download)."""

import importlib.util
import subprocess
import zipfile

import pytest

from conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("gpu_bundle", REPO_ROOT / "scripts" / "gpu_bundle.py")
gpu_bundle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_bundle)

MiB = 2**20


def test_the_measured_wheels_need_two_bundles_and_core_goes_into_both():
    # sizes of the real wheels (scripts/gpu_bundle.sh, 2026-11): together 62 MiB with the tree
    sizes = {"core": int(13.7 * MiB), "train": int(6.8 * MiB), "qlora": int(41.1 * MiB)}
    plan = gpu_bundle.plan_bundles(sizes, tree_bytes=int(0.6 * MiB))
    assert plan == [["core", "qlora"], ["core", "train"]]
    for groups in plan:  # each bundle fits with the tree and the headroom
        assert sum(sizes[g] for g in groups) + 0.6 * MiB <= gpu_bundle.LIMIT - gpu_bundle.HEADROOM
    # with no headroom the same wheels just fit one run: the split is decided by the sizes
    assert gpu_bundle.plan_bundles(sizes, int(0.6 * MiB), headroom=0) == [["core", "qlora", "train"]]


def test_first_fit_from_the_largest_fills_bundles_before_opening_new_ones():
    sizes = {"core": 10 * MiB, "a": 30 * MiB, "b": 20 * MiB, "c": 8 * MiB, "d": 12 * MiB}
    plan = gpu_bundle.plan_bundles(sizes, tree_bytes=2 * MiB, limit=64 * MiB, headroom=0)  # 52 MiB per bundle
    assert plan == [["core", "a", "b"], ["core", "d", "c"]]
    assert gpu_bundle.plan_bundles({"core": MiB}, 0) == [["core"]]


def test_a_group_that_cannot_fit_even_alone_is_an_error_naming_it():
    sizes = {"core": 14 * MiB, "huge": 50 * MiB}
    with pytest.raises(ValueError, match="'huge' .*50.0 MiB.* working tree 1.0 MiB"):
        gpu_bundle.plan_bundles(sizes, tree_bytes=MiB)
    # the tree counts: what fits next to a small tree does not next to a large one
    assert gpu_bundle.plan_bundles({"core": 14 * MiB, "g": 40 * MiB}, MiB) == [["core", "g"]]
    with pytest.raises(ValueError):
        gpu_bundle.plan_bundles({"core": 14 * MiB, "g": 40 * MiB}, 8 * MiB)


def test_tree_size_counts_tracked_and_untracked_files_but_not_ignored_ones(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / ".gitignore").write_text("/.whl/\n")  # 7 bytes
    (tmp_path / "tracked.py").write_bytes(b"x" * 1000)
    git("add", ".gitignore", "tracked.py")
    (tmp_path / "untracked.txt").write_bytes(b"y" * 500)  # travels too
    (tmp_path / ".whl").mkdir()
    (tmp_path / ".whl" / "big.whl").write_bytes(b"z" * 100_000)  # carried separately, not the tree
    assert gpu_bundle.tree_size(tmp_path) == 7 + 1000 + 500


def make_wheel(folder, name, version, requires):
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
            f"Requires-Dist: {r}\n" for r in requires)
        z.writestr(f"{name}-{version}.dist-info/METADATA", meta)
    return path


def test_missing_requirements_are_those_neither_bundled_nor_in_the_image(tmp_path):
    trl = make_wheel(tmp_path, "trl", "1.16.0", ["datasets>=4.7.0", "accelerate>=1.10", "pandas",
                                                  'rich; extra == "cli"'])
    datasets = make_wheel(tmp_path, "datasets", "5.2.0", ["dill<0.4.2,>=0.3.0", "pyarrow>=24"])
    image = {"accelerate", "pandas", "pyarrow"}
    assert gpu_bundle.missing_requirements([trl, datasets], image) == {datasets.name: ["dill<0.4.2,>=0.3.0"]}
    dill = make_wheel(tmp_path, "dill", "0.4.1", [])
    assert gpu_bundle.missing_requirements([trl, datasets, dill], image) == {}


def test_pinned_versions_satisfy_the_project_requirements():
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    required = {gpu_bundle.normalize(Requirement(r).name): Requirement(r) for r in project}
    pins = {gpu_bundle.requirement_name(s): s.split("==")[1] for specs in gpu_bundle.GROUPS.values() for s in specs
            if not s.startswith("deb:")}
    for name in ("transformers", "trl", "peft", "deepspeed", "datasets", "bitsandbytes"):
        assert name in pins, f"{name} must travel: the GPU image lacks it or has an older one"
        assert required[name].specifier.contains(pins[name]), (name, pins[name], str(required[name].specifier))
    # the sandbox travels with the group whose benchmarks run GRPO's unit-test rewards
    assert "deb:bubblewrap" in gpu_bundle.GROUPS["train"]
