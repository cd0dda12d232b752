"""`secrets:`: resolved when the run starts, given to the steps' environment, masked everywhere else.

A secret's value goes into the environment every step starts from (`RunContext.base_env`) and
nowhere else: not the supervisor's own environment, not the plan (which holds only where each
secret comes from), and not the run folder, where `Masker` replaces every occurrence of every
value with `*****`: in each journal event (and so in status.json, outputs and errors) before it
is written, and in each attempt's stdout/stderr logs when the attempt ends.

Step logs go straight from the step's process to its files (no pipe through the supervisor; see
process/spawn.py), so they are masked by rewriting them atomically when the attempt ends: a
live tail of a running step (`dagu logs -f`) can show a value the step prints until then.

Providers: `env` (key: a variable of the environment dagu was started in), `file` (key: a
path, relative to the workflow file's folder; a regular file of at most 64 KiB, one trailing
newline dropped), and `ref` or a bare name (a secret managed by this dagu: the file
$DAGU_HOME/secrets/NAME).  A secret that cannot be resolved refuses the run before any step
runs, with a message naming the secret and never its value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagu.bounded_read import read_regular
from dagu.engine.evaluate import EvalError, resolve_path
from dagu.spec.plan import Dag

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any

MASK = "*****"
MAX_SECRET_BYTES = 64 * 1024
_CHUNK = 1 << 20


def resolve_secrets(dag: Dag, environ: Mapping[str, str], home: str) -> dict[str, str]:
    """Each secret's variable name and value; EvalError naming the first that cannot be resolved."""
    values: dict[str, str] = {}
    for index, entry in enumerate(dag.settings.get("secrets") or ()):
        if isinstance(entry, str):
            entry = {"name": entry, "ref": entry}
        name = str(entry.get("name", ""))
        ref = dag.source_map.get(f"secrets.{index}")
        values[name] = _resolve(f"secret {name}" + (f" (line {ref.line}:{ref.col})" if ref else ""),
                                entry, dag, environ, home)
    return values


def _resolve(where: str, entry: Mapping[str, Any], dag: Dag, environ: Mapping[str, str], home: str) -> str:
    if entry.get("ref") is not None:
        return _read_file(where, os.path.join(home, "secrets", str(entry["ref"])),
                          f"managed secret {entry['ref']!r}")
    provider, key = entry.get("provider"), str(entry.get("key", ""))
    if provider == "env":
        if key not in environ:
            raise EvalError(f"{where}: environment variable {key} is not set (provider: env); "
                            "export it where dagu runs, or use provider: file")
        return environ[key]
    if provider == "file":
        return _read_file(where, resolve_path(dag.base_dir, key), "provider: file")
    raise EvalError(f"{where}: provider {provider!r} is not available in this build (available: env, file, "
                    "or a managed secret by name)")


def _read_file(where: str, path: str, what: str) -> str:
    try:
        data = read_regular(path, MAX_SECRET_BYTES)
    except FileNotFoundError:
        raise EvalError(f"{where}: {path} does not exist ({what})") from None
    except OSError as exc:
        raise EvalError(f"{where}: cannot read {path} ({what}): {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EvalError(f"{where}: {path} is not UTF-8 text ({what})") from None
    return text[:-1] if text.endswith("\n") else text


MIN_MASKED = 4  # a shorter value ("s", "on") would mask every occurrence of a common letter group


def _maskable(value: str) -> bool:
    return bool(value) and len(value) >= MIN_MASKED


class Masker:
    """Replaces every occurrence of the run's secret values with MASK."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        # longest first, so a value containing another is masked whole
        self.values = sorted({v for v in (values or {}).values() if _maskable(v)}, key=len, reverse=True)
        self._bytes = [v.encode("utf-8") for v in self.values]

    def __bool__(self) -> bool:
        return bool(self.values)

    def add(self, *values: str) -> None:
        """Mask these too from now on: a step's secret `with:` fields (a password rendered from
        `${...}`) are known only when the step's request is rendered."""
        fresh = {v for v in values if _maskable(v) and v not in self.values}
        if fresh:
            self.values = sorted({*self.values, *fresh}, key=len, reverse=True)
            self._bytes = [v.encode("utf-8") for v in self.values]

    def text(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def data(self, value: Any) -> Any:
        """A JSON-like value with every string value masked (keys are left: they are field names)."""
        if not self.values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):  # keys are dagu's own field names: masking them would break the record
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value

    def file(self, path: str) -> None:
        """Rewrite a log file with every value masked, atomically (temp file, fsync, rename);
        a file without any value is left alone.  Streams, so a large log costs no memory."""
        if not self.values or not self._contains(path):
            return
        tmp = f"{path}.masking"
        keep = max(len(b) for b in self._bytes) - 1
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            pending = b""
            while True:
                chunk = src.read(_CHUNK)
                pending = self._mask_bytes(pending + chunk)
                if not chunk:
                    dst.write(pending)
                    break
                cut = max(0, len(pending) - keep)
                dst.write(pending[:cut])
                pending = pending[cut:]
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, path)

    def _mask_bytes(self, data: bytes) -> bytes:
        for value in self._bytes:
            data = data.replace(value, MASK.encode())
        return data

    def _contains(self, path: str) -> bool:
        keep = max(len(b) for b in self._bytes) - 1
        try:
            with open(path, "rb") as fh:
                tail = b""
                while chunk := fh.read(_CHUNK):
                    window = tail + chunk
                    if any(value in window for value in self._bytes):
                        return True
                    tail = window[-keep:] if keep else b""
        except OSError:
            return False
        return False
