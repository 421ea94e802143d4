"""dvc.yaml against the code: every stage command parses, its path arguments are its declared deps and
outs, and its deps cover every module it imports (walked statically, lazy imports included), so a change
to any of them re-runs the stage. Stages are read through DVC's own API (matrix stages expanded)."""
from __future__ import annotations

import ast
import inspect
import shlex
import textwrap
from functools import lru_cache
from pathlib import Path

import click
import pytest

from bench.cli import main
from bench.cli.common import InputPath, OutputPath, SettingsPath, StatePath

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mimic_core", "bench")
# The click layer only parses arguments and prints: a change there cannot change a stage's outputs
# without changing the library call it makes, so it is left out of the deps.
NOT_A_DEP = ("bench/cli/",)


def _stages():
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return [(s.name, s.cmd, [str(d.def_path) for d in s.deps if not isinstance(d, ParamsDependency)],
                 [str(o.def_path) for o in s.outs], [str(d.def_path) for d in s.deps if isinstance(d, ParamsDependency)])
                for s in repo.index.stages if s.cmd]


STAGES = _stages()
IDS = [s[0] for s in STAGES]


def _covered(path: str, declared: list[str]) -> bool:
    p = Path(path)
    return any(p == Path(d) or Path(d) in p.parents for d in declared)


def _parse(cmd: str) -> tuple[click.Command, click.Context]:
    argv = shlex.split(cmd)
    assert argv[0] == "mimic-bench", f"a stage runs one mimic-bench command: {cmd}"
    command = main.get_command(click.Context(main), argv[1])
    assert command is not None, f"no such command: {argv[1]}"
    return command, command.make_context(argv[1], argv[2:])


def _module_file(name: str) -> Path | None:
    """The source file of a module of this repository (found on disk, nothing imported), or None."""
    base = ROOT.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _imports(tree: ast.AST, package: str) -> set[str]:
    """Every mimic_core/bench module that the tree imports, anywhere (module level or inside functions)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return {m for m in out if m.split(".")[0] in PACKAGES and _module_file(m) is not None}


@lru_cache(maxsize=None)
def _closure(module: str) -> frozenset[str]:
    """The module, its packages' __init__ files, and everything they import, transitively."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        parts = m.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in seen:
                continue
            seen.add(name)
            f = _module_file(name)
            pkg = name if f.name == "__init__.py" else ".".join(name.split(".")[:-1])
            todo += sorted(_imports(ast.parse(f.read_text()), pkg))
    return frozenset(seen)


def _stage_modules(command: click.Command) -> set[Path]:
    fn = inspect.unwrap(command.callback)
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    mods = set()
    for m in _imports(tree, fn.__module__.rsplit(".", 1)[0]):
        mods |= _closure(m)
    files = {_module_file(m).relative_to(ROOT) for m in mods}
    return {f for f in files if not any(str(f).startswith(x) for x in NOT_A_DEP)}


def _paths(ctx: click.Context, command: click.Command, kind: type) -> list[str]:
    return [ctx.params[p.name] for p in command.params
            if isinstance(p.type, kind) and ctx.params.get(p.name) is not None]


@pytest.mark.parametrize("stage", STAGES, ids=IDS)
def test_stage_paths_are_its_deps_and_outs(stage):
    name, cmd, deps, outs, params = stage
    command, ctx = _parse(cmd)
    untyped = [p.name for p in command.params if isinstance(p.type, click.Path)
               and not isinstance(p.type, (InputPath, OutputPath, SettingsPath, StatePath)) and p.name != "params_path"]
    assert not untyped, f"{name}: path options that say neither input nor output: {untyped}"
    for path in _paths(ctx, command, InputPath):
        assert _covered(path, deps), f"{name}: reads {path}, which is not among its deps {deps}"
    written = _paths(ctx, command, OutputPath)
    assert sorted(written) == sorted(outs), f"{name}: writes {sorted(written)}, declares {sorted(outs)}"
    for path in _paths(ctx, command, StatePath):
        assert not _covered(path, deps + outs), f"{name}: its state folder {path} overlaps a dep or an out"
    for path in _paths(ctx, command, SettingsPath):
        assert path in params, f"{name}: reads settings from {path}, which is not among its params files {params}"


@pytest.mark.parametrize("stage", STAGES, ids=IDS)
def test_stage_deps_cover_every_module_it_imports(stage):
    name, cmd, deps, _, _ = stage
    command, _ = _parse(cmd)
    modules = _stage_modules(command)
    assert modules, f"{name}: found no library module (the walk is broken)"
    missing = sorted(str(m) for m in modules if not _covered(str(m), deps))
    assert not missing, f"{name}: imports modules that are not among its deps: {missing}"


def test_stages_that_load_the_model_depend_on_its_file():
    import yaml

    xml = yaml.safe_load((ROOT / "params.yaml").read_text())["model"]["xml"]
    for name, cmd, deps, _, _ in STAGES:
        command, _ = _parse(cmd)
        if Path("mimic_core/model.py") in _stage_modules(command):
            assert _covered(xml, deps), f"{name}: loads the model but does not depend on {xml}"


def test_the_walk_sees_lazy_imports():
    """A stage whose library is imported inside the click function (as every stage's is) is still found."""
    command, _ = _parse("mimic-bench latents --rollouts r --metrics m.json")
    assert Path("mimic_core/analysis/latents.py") in _stage_modules(command)


def test_the_library_imports_nothing_from_the_harness():
    """mimic_core is the science library; bench (the CLI, benchmarks, report, compare) builds on it, never the reverse."""
    for f in sorted((ROOT / "mimic_core").rglob("*.py")):
        rel = f.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        pkg = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        harness = sorted(m for m in _imports(ast.parse(f.read_text()), pkg) if m.split(".")[0] == "bench")
        assert not harness, f"{f.relative_to(ROOT)} imports {harness}"
