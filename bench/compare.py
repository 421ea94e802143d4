"""Compare metrics between two git revisions or two metrics files: flatten, rules, verdicts.

Metrics are flattened the way DVC flattens them (nested keys joined with '.', numbers and strings
kept, lists and nulls dropped), so two files compare exactly as `dvc metrics diff` compares two
revisions. Each flattened key gets a rule from bench/compare_rules.yaml (fnmatch globs, first
match wins): which way is better, how far a value may drift, and whether it may disappear. A
change is a regression when it moves the worse way by more than max(abs_tol, rel_tol * |old|).
The gate cannot be emptied: a metric that disappears (deleted, null, a list, its whole file gone)
or changes type (a number that becomes a string), or a number that becomes NaN or infinite, is a
regression under every rule, unless its rule says `may_go: true`.

Everything here is a pure function except `load_metrics_file`, `resolve_revision` and
`diff_revisions`, which read files, git and DVC.
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Mapping

from pydantic import Field, Strict

from mimic_core.config import NonNegFloat, Section, validate
from mimic_core.errors import DataError, MimicError

WORKSPACE = "workspace"  # DVC's name for the working tree, as a revision


class CompareError(MimicError, ValueError):
    """Arguments to compare that do not fit together (e.g. a file against a revision)."""


class RevisionError(CompareError):
    """A git revision that does not exist, or no git/DVC repository to look it up in."""


# ---------------------------------------------------------------- rules

class Rule(Section):
    """One compare rule: the metrics its glob matches, which way is better, how far a value may drift."""

    pattern: Annotated[str, Strict(), Field(min_length=1)]
    better: Literal["lower", "higher", "none"] = "none"
    rel_tol: NonNegFloat = 0.0
    abs_tol: NonNegFloat = 0.0
    may_go: Annotated[bool, Strict()] = False   # may disappear or change type without a regression

    def tolerance(self, old: float) -> float:
        return max(self.abs_tol, self.rel_tol * abs(old))


class CompareRules(Section):
    """bench/compare_rules.yaml: the rules, first match wins."""

    rules: Annotated[list[Rule], Field(min_length=1)]


NO_RULE = Rule(pattern="*", better="none")
RULES_FILE = Path(__file__).resolve().parent / "compare_rules.yaml"   # the packaged copy


def parse_rules(cfg: Any, file: str = "compare rules") -> list[Rule]:
    """A decoded rules file ({rules: [...]}) -> its rules; a ParamsError names the file and each bad entry."""
    return list(validate(CompareRules, cfg, "", file).rules)


def load_rules(path: str | os.PathLike = RULES_FILE) -> list[Rule]:
    """Read and check a compare-rules file."""
    from mimic_core.params import load_params

    return parse_rules(load_params(path), str(path))


def rule_for(key: str, rules: Iterable[Rule]) -> Rule:
    """The first rule whose glob matches the flattened key; none matching: informational."""
    for rule in rules:
        if fnmatch.fnmatchcase(key, rule.pattern):
            return rule
    return NO_RULE


# ---------------------------------------------------------------- flattening

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics -> {'a.b.c': value}, as DVC flattens them: numbers, booleans and strings are
    kept; lists, nulls and empty objects are dropped."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (int, float, str)):
            out[key] = v
    return out


def parse_metrics(obj: Any, path: str | os.PathLike) -> dict[str, Any]:
    """A decoded metrics file -> its flattened metrics; another shape is a DataError."""
    if not isinstance(obj, Mapping):
        raise DataError(path, None, f"expected a JSON object of metrics (numbers), got a {type(obj).__name__}")
    flat = flatten(obj)
    if not any(_is_number(v) for v in flat.values()):
        raise DataError(path, None, "expected a JSON object of metrics, found no numbers in it")
    return flat


def load_metrics_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read and flatten one metrics JSON file."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise DataError(path, None, "metrics file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, None, f"cannot read metrics file: {e}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, None, f"not valid JSON ({e})") from None
    return parse_metrics(obj, path)


def diff_flat(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every key of either side -> {'old', 'new'} (None where absent): DVC's diff with --all."""
    return {k: {"old": old.get(k), "new": new.get(k)} for k in sorted(set(old) | set(new))}


# ---------------------------------------------------------------- verdicts

@dataclass(frozen=True)
class Row:
    file: str
    key: str
    old: Any
    new: Any
    better: str
    tolerance: float | None   # how far the value may move the worse way (numbers with a direction)
    verdict: str              # ok | improved | REGRESSION | new | removed | info (removed: only if may_go)

    @property
    def metric(self) -> str:
        return f"{self.file}:{self.key}"

    @property
    def changed(self) -> bool:
        return not _same(self.old, self.new)

    @property
    def delta(self) -> float | None:
        return self.new - self.old if _is_number(self.old) and _is_number(self.new) else None

    def to_dict(self) -> dict[str, Any]:
        d = self.delta
        rel = d / abs(self.old) if d is not None and self.old != 0 and math.isfinite(d) else None
        return {"metric": self.metric, "file": self.file, "key": self.key, "old": self.old, "new": self.new,
                "delta": d, "rel_delta": rel, "better": self.better, "tolerance": self.tolerance,
                "verdict": self.verdict}


def _same(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def _kind(v: Any) -> str:
    return "number" if _is_number(v) else type(v).__name__


def verdict(old: Any, new: Any, rule: Rule) -> str:
    """ok | improved | REGRESSION | new | removed | info for one metric under its rule.

    A metric that was there and is gone (None: absent, null or a list) or has changed type is a
    REGRESSION unless its rule has may_go (then 'removed' or 'info'); so is a number that stops
    being finite, whatever the rule's direction.
    """
    if old is None and new is None:
        return "ok"
    if old is None:
        return "new"
    if new is None:
        return "removed" if rule.may_go else "REGRESSION"
    if _same(old, new):
        return "ok"
    if _kind(old) != _kind(new):
        return "info" if rule.may_go else "REGRESSION"
    if not _is_number(old):
        return "info"
    if not math.isfinite(old):
        return "info"
    if not math.isfinite(new):
        return "REGRESSION"  # a metric that was a number and no longer is: never silently fine
    if rule.better == "none":
        return "info"
    worse = new - old if rule.better == "lower" else old - new
    tol = rule.tolerance(old)
    if worse > tol:
        return "REGRESSION"
    if -worse > tol:
        return "improved"
    return "ok"


def compare_diff(diff: Mapping[str, Mapping[str, Mapping[str, Any]]], rules: list[Rule]) -> list[Row]:
    """DVC's diff ({file: {key: {'old', 'new', ...}}}) -> rows with verdicts, sorted by file and key."""
    rows = []
    for file in sorted(diff):
        for key in sorted(diff[file]):
            old, new = diff[file][key].get("old"), diff[file][key].get("new")
            rule = rule_for(key, rules)
            tol = rule.tolerance(old) if rule.better != "none" and _is_number(old) and math.isfinite(old) else None
            rows.append(Row(file, key, old, new, rule.better, tol, verdict(old, new, rule)))
    return rows


def compare_files(old_path: str | os.PathLike, new_path: str | os.PathLike, rules: list[Rule]) -> list[Row]:
    """Rows for two metrics files; the rows are labelled with the new file's path."""
    old, new = load_metrics_file(old_path), load_metrics_file(new_path)
    return compare_diff({os.fspath(new_path): diff_flat(old, new)}, rules)


def has_regression(rows: Iterable[Row]) -> bool:
    return any(r.verdict == "REGRESSION" for r in rows)


# ---------------------------------------------------------------- arguments and revisions

def is_file_arg(arg: str) -> bool:
    """A metrics file (an existing file, or a name ending in .json) rather than a git revision."""
    return arg.lower().endswith(".json") or Path(arg).is_file()


def check_kinds(a: str | None, b: str | None) -> str:
    """'files' or 'revisions'; mixing the two, or one lone file, is a CompareError."""
    kinds = [is_file_arg(x) for x in (a, b) if x is not None]
    if not any(kinds):
        return "revisions"
    if all(kinds) and len(kinds) == 2:
        return "files"
    if len(kinds) == 1:
        raise CompareError(f"{a}: comparing metrics files needs two of them: mimic-bench compare OLD.json NEW.json")
    f, r = (a, b) if kinds[0] else (b, a)
    raise CompareError(f"cannot compare a metrics file ({f}) with a git revision ({r}): "
                       "give two files or two revisions")


def _git(args: list[str], cwd: str | os.PathLike | None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise RevisionError("git not found: comparing revisions needs git on the PATH") from None


def git_root(cwd: str | os.PathLike | None = None) -> Path:
    p = _git(["rev-parse", "--show-toplevel"], cwd)
    if p.returncode != 0:
        raise RevisionError(f"{Path(cwd or '.').resolve()}: not inside a git repository (revisions need one)")
    return Path(p.stdout.strip())


def resolve_revision(rev: str, cwd: str | os.PathLike | None = None) -> str:
    """The commit a revision names (or 'workspace'); an unknown one is a RevisionError."""
    if rev == WORKSPACE:
        return rev
    if not rev or rev.startswith("-"):
        raise RevisionError(f"{rev!r}: not a git revision")
    p = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd)
    if p.returncode != 0:
        raise RevisionError(f"{rev}: unknown git revision (no such commit, branch or tag)")
    return p.stdout.strip()


def diff_revisions(a: str, b: str = WORKSPACE, cwd: str | os.PathLike | None = None
                   ) -> tuple[dict[str, dict[str, dict[str, Any]]], list[str]]:
    """`dvc metrics diff --all A B` over every metrics file that dvc.yaml declares.

    Returns the diff ({file: {key: {'old', 'new'}}}, repo-relative paths) and notes on metrics
    files that are declared but absent at a revision (their keys come out new or removed).
    A file that exists but cannot be read is a CompareError naming it.
    """
    root = git_root(cwd)
    for rev in (a, b):
        resolve_revision(rev, root)
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.repo import Repo

    try:
        with Repo(os.fspath(cwd or ".")) as repo:  # the DVC root above cwd (may sit below the git root)
            res = repo.metrics.diff(a_rev=a, b_rev=b, all=True)
    except NotDvcRepoError:
        raise RevisionError(f"{root}: not a DVC repository (no .dvc folder; `dvc init` makes one)") from None
    except DvcException as e:
        raise CompareError(f"dvc metrics diff {a} {b}: {e}") from None
    notes = []
    for rev, err in sorted(res.get("errors", {}).items()):
        if isinstance(err, Exception):
            raise CompareError(f"cannot load metrics at {rev}: {err}")
        for file, exc in sorted(err.items()):
            if isinstance(exc, FileNotFoundError):
                notes.append(f"{file}: declared in dvc.yaml but absent at {rev}")
            else:
                raise CompareError(f"{file} at {rev}: cannot read metrics ({type(exc).__name__}: {exc})")
    return res.get("diff", {}), notes


def compare(a: str | None, b: str | None, rules: list[Rule], cwd: str | os.PathLike | None = None
            ) -> tuple[list[Row], str, str, list[str]]:
    """Rows for `mimic-bench compare [A] [B]`, with the two sides' labels and any notes."""
    if check_kinds(a, b) == "files":
        return compare_files(a, b, rules), a, b, []
    a, b = a or "HEAD", b or WORKSPACE
    diff, notes = diff_revisions(a, b, cwd)
    return compare_diff(diff, rules), a, b, notes


# ---------------------------------------------------------------- text output

def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _fmt_delta(row: Row) -> str:
    d = row.delta
    if d is None:
        return ""
    rel = row.to_dict()["rel_delta"]
    text = f"{d:+.4g}"
    return f"{text} ({rel:+.1%})" if rel is not None and abs(rel) >= 0.0005 else text


def summary(rows: list[Row], a: str, b: str) -> str:
    """One line: how many metrics changed, and how many of each verdict."""
    changed = [r for r in rows if r.changed]
    if not changed:
        return f"{a} -> {b}: no metric changed ({len(rows)} compared)"
    order = ("REGRESSION", "improved", "ok", "info", "new", "removed")
    counts = {v: sum(r.verdict == v for r in changed) for v in order}
    parts = ", ".join(f"{n} {'within tolerance' if v == 'ok' else v}" for v, n in counts.items() if n)
    return f"{a} -> {b}: {len(changed)} of {len(rows)} metrics changed: {parts}"


def table(rows: list[Row]) -> str:
    """The rows as an aligned text table (metric, old, new, delta, verdict)."""
    cells = [("metric", "old", "new", "delta", "verdict")]
    cells += [(r.metric, _fmt(r.old), _fmt(r.new), _fmt_delta(r), r.verdict) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = []
    for c in cells:
        lines.append("  ".join([c[0].ljust(widths[0])] + [x.rjust(w) for x, w in zip(c[1:4], widths[1:4])]
                               + [c[4]]).rstrip())
    return "\n".join(lines)
