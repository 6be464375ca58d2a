"""Wheels the GPU machine lacks, split into bundles that each travel with the working tree.

    python3 scripts/gpu_bundle.py                  # download, build, split into .whl/A, .whl/B, ...; print sizes
    python3 scripts/gpu_bundle.py --plan-only      # split what is already in .whl/cache, print sizes

The GPU machine (Python 3.12, manylinux x86_64, torch with CUDA, transformers 5.17,
accelerate, pandas, pyarrow, ...) cannot download anything, and one run carries at most
64 MiB: the working tree plus the wheels. The wheels come in groups: `core` goes into every
bundle (this project needs transformers >= 5.23), the other groups are packed into as few
bundles as fit the limit, first-fit from the largest (bitsandbytes alone is ~43 MB, most of
it CUDA 11-12 kernels the machine does not use). Each bundle folder gets a `bundle.json`
naming its groups; scripts/gpu_run.sh reads it to pick the tests and benchmarks.

DeepSpeed is published as an sdist only: it is built here into a pure-Python wheel with
DS_BUILD_OPS=0 (no CUDA ops compiled ahead; the recipes' ZeRO configs use the Trainer's
torch AdamW, so none is needed, and DeepSpeed would JIT-build any other op on the GPU
machine, which has nvcc and ninja).

Besides wheels, a group may carry a Debian package (`deb:NAME`, fetched with apt-get
download): bubblewrap, so that GRPO's unit-test rewards run sandboxed there too.

Not done here: installing (scripts/gpu_run.sh) or checking that the image's own packages
have the versions a bundled wheel asks for (gpu_run.sh prints them there).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".whl"
LIMIT = 64 * 2**20  # what one run carries: working tree + wheels
HEADROOM = 4 * 2**20  # for the tree to grow (results, logs) without a bundle suddenly not fitting

# The versions this project's test suite runs with (pip show on the development machine).
GROUPS = {
    "core": ["transformers==5.24.0", "peft==0.21.2"],
    "train": ["trl==1.16.0", "datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19", "fsspec==2026.9.0",
              "deepspeed==0.19.8", "hjson==3.1.0", "pydantic==2.14.4", "pydantic-core==2.50.5",
              "annotated-types==0.8.0", "typing-inspection==0.4.5", "typing-extensions==4.16.0",
              # GRPO's unit-test rewards run in the bubblewrap sandbox; the image lacks it (50 kB .deb)
              "deb:bubblewrap"],
    "qlora": ["bitsandbytes==0.50.2"],
}
SDIST_ONLY = {"deepspeed"}  # built into a wheel here
# What the GPU image already has (its package list; versions there may differ): a wheel's
# requirement on one of these is met without carrying it.
IMAGE_HAS = {
    "accelerate", "filelock", "fsspec", "huggingface-hub", "jinja2", "msgpack", "ninja", "numpy", "nvidia-ml-py",
    "packaging", "pandas", "psutil", "py-cpuinfo", "pyarrow", "pyyaml", "regex", "requests", "safetensors",
    "tokenizers", "torch", "tqdm", "typer", "typing-extensions", "xxhash", "einops", "markupsafe", "hf-xet",
}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return normalize(re.split(r"[<>=!~ ;\[(]", spec, maxsplit=1)[0])


# ---------------------------------------------------------------------------------------
# Pure pieces: sizes and the split (tested in tests/test_gpu_kit.py)
# ---------------------------------------------------------------------------------------

def plan_bundles(group_sizes: dict[str, int], tree_bytes: int, limit: int = LIMIT, headroom: int = HEADROOM,
                 core: str = "core") -> list[list[str]]:
    """Groups per bundle: `core` in each, the others first-fit from the largest.

    A bundle fits when tree + its wheels <= limit - headroom. A group that fits in no bundle
    even with `core` alone is a ValueError naming it and the sizes.
    """
    budget = limit - headroom - tree_bytes - group_sizes.get(core, 0)
    bundles: list[list[str]] = []
    room: list[int] = []
    others = sorted((g for g in group_sizes if g != core), key=lambda g: (-group_sizes[g], g))
    for group in others:
        size = group_sizes[group]
        if size > budget:
            raise ValueError(
                f"group {group!r} ({mib(size)}) does not fit one run even alone: limit {mib(limit)} - headroom "
                f"{mib(headroom)} - working tree {mib(tree_bytes)} - core {mib(group_sizes.get(core, 0))} "
                f"leaves {mib(budget)}")
        slot = next((i for i, r in enumerate(room) if r >= size), None)
        if slot is None:
            bundles.append([])
            room.append(budget)
            slot = len(bundles) - 1
        bundles[slot].append(group)
        room[slot] -= size
    if not bundles:
        bundles = [[]]
    return [[core, *groups] for groups in bundles]


def bundle_names(count: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(count)]


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def tree_size(repo: Path = REPO) -> int:
    """Bytes of what travels besides the wheels: tracked files and untracked files git does
    not ignore (the device tool sends both)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                         capture_output=True, check=True).stdout
    total = 0
    for name in {n for n in out.decode().split("\0") if n}:
        path = repo / name
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def wheel_requirements(wheel: Path) -> list[str]:
    """Requires-Dist lines of a wheel that apply without extras."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode("utf-8", "replace")
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]


def wheel_project(wheel: Path) -> str:
    return normalize(wheel.name.split("-")[0])


def missing_requirements(wheels: list[Path], available: set[str]) -> dict[str, list[str]]:
    """wheel -> requirements met neither by another wheel of the bundle nor by `available`."""
    carried = {wheel_project(w) for w in wheels}
    missing = {}
    for wheel in wheels:
        needs = [r for r in wheel_requirements(wheel) if requirement_name(r) not in carried | available]
        if needs:
            missing[wheel.name] = needs
    return missing


# ---------------------------------------------------------------------------------------
# Downloading and building (needs the network and pip)
# ---------------------------------------------------------------------------------------

def find_deb(spec: str, cache: Path) -> Path | None:
    found = sorted(cache.glob(f"{spec.removeprefix('deb:')}_*.deb"))
    return found[-1] if found else None


def fetch(spec: str, cache: Path) -> Path:
    if spec.startswith("deb:"):  # a Debian package, unpacked by gpu_run.sh (dpkg -x) onto PATH
        if find_deb(spec, cache) is None:
            subprocess.run(["apt-get", "download", spec.removeprefix("deb:")], cwd=cache, check=True)
        return find_deb(spec, cache)
    name, version = requirement_name(spec), spec.split("==")[1]
    found = [w for w in cache.glob("*.whl") if wheel_project(w) == name and w.name.split("-")[1] == version]
    if found:
        return found[0]
    if name in SDIST_ONLY:
        build = cache / f".build-{name}"
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary=:all:", "-d",
                        str(build), spec], check=True)
        sdist = next(build.glob("*.tar.gz"))
        # No compiled ops (DS_BUILD_OPS=0): the wheel is pure Python, whatever builds it.
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                        str(cache), str(sdist)], check=True, env={**os.environ, "DS_BUILD_OPS": "0"})
        shutil.rmtree(build, ignore_errors=True)
    else:
        platforms = [a for p in PLATFORMS for a in ("--platform", p)]
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(cache), spec],
                       check=True)
    return fetch(spec, cache)


def group_wheels(cache: Path, download: bool) -> dict[str, list[Path]]:
    wheels = {}
    for group, specs in GROUPS.items():
        wheels[group] = []
        for spec in specs:
            if download:
                wheels[group].append(fetch(spec, cache))
                continue
            if spec.startswith("deb:"):
                if find_deb(spec, cache) is None:
                    raise SystemExit(f"{spec}: not in {cache}; run without --plan-only to download it")
                wheels[group].append(find_deb(spec, cache))
                continue
            name, version = requirement_name(spec), spec.split("==")[1]
            found = [w for w in cache.glob("*.whl") if wheel_project(w) == name and w.name.split("-")[1] == version]
            if not found:
                raise SystemExit(f"{spec}: not in {cache}; run without --plan-only to download it")
            wheels[group].append(found[0])
    return wheels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan-only", action="store_true", help="no downloads: split the wheels in .whl/cache")
    parser.add_argument("--limit-mib", type=float, default=LIMIT / 2**20)
    parser.add_argument("--headroom-mib", type=float, default=HEADROOM / 2**20)
    args = parser.parse_args(argv)

    cache = WHEELS / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    wheels = group_wheels(cache, download=not args.plan_only)
    sizes = {g: sum(w.stat().st_size for w in ws) for g, ws in wheels.items()}
    tree = tree_size()
    limit, headroom = int(args.limit_mib * 2**20), int(args.headroom_mib * 2**20)
    plan = plan_bundles(sizes, tree, limit, headroom)

    for old in WHEELS.iterdir():  # bundles from an earlier plan
        if old.is_dir() and old.name != "cache":
            shutil.rmtree(old)
    print(f"working tree {mib(tree)}; limit {mib(limit)} per run, headroom {mib(headroom)}")
    for group, size in sizes.items():
        print(f"  group {group:6s} {mib(size):>10s}: {', '.join(w.name for w in wheels[group])}")
    ok = True
    for name, groups in zip(bundle_names(len(plan)), plan):
        folder = WHEELS / name
        folder.mkdir()
        files = [w for g in groups for w in wheels[g]]
        for w in files:
            # hard links: the cache stays the one copy on disk; a .deb by its package name
            # alone (Debian versions hold '+' and '~', which some file transfers refuse)
            target = f"{w.name.split('_')[0]}.deb" if w.suffix == ".deb" else w.name
            os.link(w, folder / target)
        size = sum(w.stat().st_size for w in files)
        (folder / "bundle.json").write_text(json.dumps(
            {"name": name, "groups": groups, "files": sorted(p.name for p in folder.iterdir()), "bytes": size}, indent=1) + "\n")
        missing = missing_requirements([f for f in files if f.suffix == ".whl"], IMAGE_HAS)
        ok &= not missing
        print(f"bundle {name} ({' + '.join(groups)}): wheels {mib(size)} + tree {mib(tree)} = {mib(size + tree)} "
              f"of {mib(limit)}")
        for wheel, needs in missing.items():
            print(f"  MISSING for {wheel}: {', '.join(needs)} (neither bundled nor in the GPU image)")
    print("run on the GPU machine, one bundle per run: carry .whl/<name>, command: bash scripts/gpu_run.sh <name>")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
