"""The scheduler's DAGs directory: which files are there, and their last good plans.

The runtime never compiles (it must not import the compiler): the caller passes
`compile`, a function from a file path to `(plan, None)` or `(None, diagnostics
text)`.  A file is recompiled only when its mtime or size changed and then only
if its bytes (SHA-256) changed too.  A file that stops compiling keeps its last
good plan scheduled and the error is reported once per change; a file that
never compiled is reported and skipped; the other files are unaffected.

The directory's base config (base.yaml or base.yml, or the file
DAGU_BASE_CONFIG names; see compiler/base_config.py) is not a DAG: it is left
out of the listing, and its state is part of every file's change check, so
editing it recompiles each DAG of the directory.  It is stat'ed once per scan
and read only when its mtime or size moved.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable

from dagu.spec.records import dataclass
from dagu.bounded_read import RefusedFile, read_regular
from dagu.store.runs import write_atomic
from dagu.spec.plan import Dag, Plan, dump_plan

Compile = Callable[[str], "tuple[Plan | None, str | None]"]
Log = Callable[[str], None]

# The compiler's rule for where a directory's base config is (compiler/base_config.py, which the
# runtime must not import; tests/runtime/test_base_reload.py checks that the two agree).
BASE_CONFIG_NAMES = ("base.yaml", "base.yml")
BASE_CONFIG_ENV = "DAGU_BASE_CONFIG"


@dataclass
class DagFile:
    path: str
    fingerprint: tuple[int, int]  # (mtime_ns, size)
    sha256: str
    plan: Plan | None = None  # the last plan that compiled
    plan_path: str | None = None  # where that plan was written
    error: str | None = None  # the compiler's report on the current bytes, if they fail
    base: tuple = ()  # the base config's (path, mtime_ns, size, sha256) this entry was compiled with

    @property
    def dag(self) -> Dag | None:
        return self.plan.main if self.plan is not None else None


class DagFiles:
    def __init__(self, directory: str, plans_dir: str, compile: Compile, log: Log) -> None:
        self.directory = directory
        self.plans_dir = plans_dir
        self.compile = compile
        self.log = log
        self.files: dict[str, DagFile] = {}
        self.dir_problem: str | None = None
        self._base: tuple = ()  # the base config as last read: (path, mtime_ns, size, sha256)

    def _list(self) -> list[str] | None:
        try:
            names = os.listdir(self.directory)
        except OSError as exc:
            problem = f"{self.directory}: cannot read the DAGs directory ({exc.strerror or exc})"
            if problem != self.dir_problem:
                self.log(problem + "; scheduling what was loaded, looking again every loop")
            self.dir_problem = problem
            return None
        self.dir_problem = None
        named = os.environ.get(BASE_CONFIG_ENV)
        skip = os.path.abspath(named) if named else None
        paths = (os.path.join(self.directory, n) for n in names
                 if n.endswith((".yaml", ".yml")) and not n.startswith(".") and n not in BASE_CONFIG_NAMES)
        return sorted(p for p in paths if skip is None or os.path.abspath(p) != skip)

    def _base_config(self) -> tuple:
        """(path, mtime_ns, size, sha256) of the base config the compiler will merge, () if none."""
        named = os.environ.get(BASE_CONFIG_ENV)
        if named is None:
            candidates = [os.path.join(self.directory, n) for n in BASE_CONFIG_NAMES]
        else:
            candidates = [os.path.abspath(named)] if named else []
        for path in candidates:
            try:
                st = os.stat(path)
            except OSError:
                continue
            if self._base[:3] == (path, st.st_mtime_ns, st.st_size):
                return self._base
            try:
                digest = hashlib.sha256(read_regular(path)).hexdigest()
            except RefusedFile as exc:  # the compiler reports it at the file
                digest = f"refused: {exc.reason}"
            except OSError:
                continue
            self._base = (path, st.st_mtime_ns, st.st_size, digest)
            return self._base
        self._base = ()
        return ()

    def scan(self) -> bool:
        """Pick up added, changed and removed files; True when the set of plans changed."""
        paths = self._list()
        if paths is None:
            return False
        changed = False
        base = self._base_config()
        for path in set(self.files) - set(paths):
            gone = self.files.pop(path)
            self.log(f"{path}: removed; {gone.dag.name if gone.dag else 'it'} is no longer scheduled")
            changed = True
        for path in paths:
            try:
                st = os.stat(path)
                fingerprint = (st.st_mtime_ns, st.st_size)
                known = self.files.get(path)
                if known is not None and known.fingerprint == fingerprint and known.base[:3] == base[:3]:
                    continue
                digest = hashlib.sha256(read_regular(path)).hexdigest()
            except RefusedFile as exc:  # a FIFO, a device, a huge file: compiled, so the compiler reports it
                digest = f"refused: {exc.reason}"
            except OSError:
                continue  # removed or unreadable meanwhile: looked at again next scan
            if known is not None and known.sha256 == digest and known.base[3:] == base[3:]:
                known.fingerprint, known.base = fingerprint, base
                continue
            changed = self._load(path, fingerprint, digest, known, base) or changed
        return changed

    def _load(self, path: str, fingerprint: tuple[int, int], digest: str, known: DagFile | None,
              base: tuple = ()) -> bool:
        try:
            plan, report = self.compile(path)
        except Exception as exc:  # the injected compiler failed: report it, keep going
            plan, report = None, f"{path}: cannot compile: {exc}\n"
        entry = known or DagFile(path, fingerprint, digest)
        entry.fingerprint, entry.sha256, entry.base = fingerprint, digest, base
        self.files[path] = entry
        if plan is None:
            entry.error = report or f"{path}: does not compile\n"
            kept = f"; keeping its last good plan ({entry.dag.name})" if entry.plan else "; skipped"
            self.log(f"{path}: does not compile{kept}:\n{entry.error.rstrip()}")
            return False
        clash = self._owner(plan.root, path)
        if clash is not None:
            entry.error = f"{path}: DAG name {plan.root!r} is already scheduled from {clash}; skipped\n"
            self.log(entry.error.rstrip())
            return False
        os.makedirs(self.plans_dir, exist_ok=True)
        entry.plan_path = os.path.join(self.plans_dir, f"{plan.root}.plan.json")
        write_atomic(entry.plan_path, dump_plan(plan))
        entry.plan, entry.error = plan, None
        self.log(f"{path}: {'reloaded' if known else 'loaded'} {plan.root}")
        return True

    def _owner(self, name: str, path: str) -> str | None:
        for other in self.files.values():
            if other.path != path and other.dag is not None and other.dag.name == name:
                return other.path
        return None

    def dags(self) -> dict[str, DagFile]:
        """The scheduled DAGs by name (files with a good plan)."""
        return {f.dag.name: f for f in sorted(self.files.values(), key=lambda f: f.path) if f.dag is not None}
