"""Reuse a workflow's compiled plan while nothing it was compiled from has changed.

Why: most runs are small and repeated (a cron job of a few steps, a re-run after a
fix elsewhere), and importing the compiler and PyYAML costs more than such a run.
A hit loads the plan with the standard library only; the compiler is imported on a
miss alone.

Never a stale plan: an entry records every input of the compile and is used only
when all of them are the same now:

- the workflow file and every file it read (called sub-DAG files, base configs):
  the plan's own `source_sha256` and `dependencies`, i.e. what the compiler read;
- the names of the YAML files in each of those files' directories, so a base.yaml,
  or a `call` target that would now resolve to another file, appearing is seen;
- each DAG's dotenv files (their keys decide which variables are known);
- `DAGU_BASE_CONFIG`, and the compiler's code (version, plan format, file times).

The last two kinds are read after the compile; an entry is not written when a
directory or dotenv file changed while it ran (its time is not older than the
compile's start), since the compiler may have seen the older state.

An entry is `$DAGU_HOME/plans/cache/<sha256 of the absolute path>.json`: one JSON
line of inputs, then the plan text as `dump_plan` wrote it (copied into the run
as is).  Written atomically; an entry that cannot be read or parsed is a miss,
never an error, and a failed write only loses the reuse.  It is written without
fsync (a cache; two fsyncs were ~1 ms of a first `dagu start`): the header keeps a
CRC-32 of the plan text, so an entry a power loss left empty or torn is a miss too.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from collections.abc import Mapping

from dagu.spec.digest import sha256_hex
from dagu.spec.records import dataclass
from dagu import __version__
from dagu.bounded_read import read_regular

CACHE_FORMAT = 2  # 2: the header has the plan text's checksum ("plan_crc32")
BASE_CONFIG_ENV = "DAGU_BASE_CONFIG"  # compiler/base_config.py reads it; not imported on a hit
YAML_SUFFIXES = (".yaml", ".yml")
# File times are taken from a coarse kernel clock (one tick, up to 10 ms, behind): a change
# this close before the compile's start may not have been seen by it.
CLOCK_SLACK_NS = 20_000_000
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_COMPILER_PARTS = ("compiler", "spec", "executors")  # the code and data a compile's result depends on


@dataclass
class CachedPlan:
    """A reusable plan: its text (what `load_plan` reads) and the warnings its compile printed."""

    plan_text: str
    warnings: str | None


def entry_path(home: str, file: str) -> str:
    """Where the entry for a workflow file lives (one per absolute path)."""
    key = sha256_hex(os.path.abspath(file).encode("utf-8", "surrogateescape"))
    return os.path.join(home, "plans", "cache", f"{key}.json")


def lookup(home: str, file: str, environ: Mapping[str, str]) -> CachedPlan | None:
    """The cached plan of `file` when every input it was compiled from is unchanged; else None."""
    try:
        with open(entry_path(home, file), "rb") as fh:
            header = json.loads(fh.readline())
            plan_bytes = fh.read()
        if header.get("format") != CACHE_FORMAT or header.get("compiler") != compiler_fingerprint():
            return None
        if header.get("base_config_env") != environ.get(BASE_CONFIG_ENV):
            return None
        if header.get("source") != os.path.abspath(file) or not plan_bytes.endswith(b"\n"):
            return None
        if header.get("plan_crc32") != zlib.crc32(plan_bytes):
            return None  # torn by a power loss (entries are written without fsync)
        plan_text = plan_bytes.decode("utf-8")  # checked as read: no second encoding for the checksum
        warnings = header.get("warnings")
        if warnings is not None and (header.get("shown_as") != file or header.get("cwd") != os.getcwd()):
            return None  # the warnings name files as they were given, relative to that directory
        if any(text_sha256(path) != digest for path, digest in header["files"].items()):
            return None
        if any(yaml_names(path) != digest for path, digest in header["dirs"].items()):
            return None
        if any(bytes_sha256(path) != digest for path, digest in header["dotenv"].items()):
            return None
        return CachedPlan(plan_text, warnings)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing or damaged: compile again (and overwrite it)


def save(home: str, file: str, environ: Mapping[str, str], plan, plan_text: str, warnings: str | None,
         compile_started_ns: int) -> bool:
    """Record the plan compiled from `file` (started at `compile_started_ns`, time.time_ns());
    False when it is not recorded (an input changed meanwhile, or the write failed)."""
    files = {plan.source: plan.source_sha256, **plan.dependencies}
    dirs = {os.path.dirname(path) for path in files}
    dotenv = {p if os.path.isabs(p) else os.path.join(dag.base_dir, p)
              for dag in plan.dags.values() for p in dag.dotenv}
    if any(_changed_since(path, compile_started_ns) for path in sorted(dirs | dotenv)):
        return False
    header = {
        "format": CACHE_FORMAT,
        "compiler": compiler_fingerprint(),
        "source": plan.source,
        "shown_as": file,
        "cwd": os.getcwd(),
        "base_config_env": environ.get(BASE_CONFIG_ENV),
        "files": files,
        "dirs": {d: yaml_names(d) for d in sorted(dirs)},
        "dotenv": {p: bytes_sha256(p) for p in sorted(dotenv)},
        "warnings": warnings,
        "plan_crc32": zlib.crc32(plan_text.encode("utf-8")),
    }
    from dagu.store.runs import StoreError, write_atomic

    try:
        write_atomic(entry_path(home, file), json.dumps(header, ensure_ascii=False) + "\n" + plan_text,
                     make_dirs=True, sync=False)
    except (StoreError, OSError):
        return False
    return True


def _changed_since(path: str, started_ns: int) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False  # absent now: recorded as absent, and checked as such
    return max(st.st_mtime_ns, st.st_ctime_ns) >= started_ns - CLOCK_SLACK_NS


def text_sha256(path: str) -> str | None:
    """The SHA-256 the compiler records for a file it read (of its text, a BOM dropped); None if unreadable."""
    try:
        data = read_regular(path)
        data.decode("utf-8")  # what the compiler could not decode, it did not read either
        # the compiler hashes its text decoded as utf-8-sig and encoded again: the same bytes without
        # a BOM (a reuse need not import that codec)
        return sha256_hex(data[3:] if data.startswith(b"\xef\xbb\xbf") else data)
    except (OSError, UnicodeDecodeError):
        return None


def bytes_sha256(path: str) -> str | None:
    try:
        return sha256_hex(read_regular(path))
    except OSError:
        return None


def yaml_names(directory: str) -> str | None:
    """A digest of the YAML file names of a directory: a base config or call target appearing changes it."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(YAML_SUFFIXES))
    except OSError:
        return None
    return sha256_hex("\0".join(names).encode("utf-8", "surrogateescape"))


def compiler_fingerprint() -> str:
    """dagu's version and plan format, and the newest time of the compiler's files: an upgraded or
    edited compiler never reuses what the old one wrote (the frozen binary: its own time)."""
    from dagu.spec.plan import PLAN_VERSION

    newest = 0
    for part in _COMPILER_PARTS:
        try:
            with os.scandir(os.path.join(_ROOT, part)) as entries:
                newest = max([newest, *(e.stat().st_mtime_ns for e in entries if e.is_file())])
        except OSError:
            pass
    if newest == 0 or getattr(sys, "frozen", False):
        try:
            newest = max(newest, os.stat(sys.executable).st_mtime_ns)
        except OSError:
            pass
    return f"dagu {__version__}/plan {PLAN_VERSION}/{newest}"
