"""A DAG's workflow file as an editor sees it: read it, check unsaved text, save only what compiles.

Why in the service: the web editor must show the compiler's own located diagnostics while the
user types, and refuse a save that would break the DAG, with nothing written then.  The text is
compiled as if it were saved at the DAG's own path (compiler `compile_file(path, text=...)`), so
its base config, the files it calls and the name it derives from its file resolve exactly as
they will after the save.  A save names the version it edited (`base_sha256`): if the file changed
on disk since (another editor, a deploy), the save is refused rather than silently overwriting.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import field
from typing import Any

from dagu.spec.records import dataclass
from dagu.service import BadRequest, ServiceError
from dagu.service.overview import DagsFolder, diagnostic_dict, find_entry


@dataclass
class SpecText:
    dag: str
    file: str
    text: str
    sha256: str


@dataclass
class SpecCheck:
    """The compiler's verdict on a text: `ok` when it has no error (warnings may remain)."""

    dag: str
    file: str
    ok: bool
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    renamed_to: str | None = None  # the text would give the DAG another name


class SpecRejected(ServiceError):
    """A save refused because the text does not compile (or renames the DAG); nothing was written."""

    def __init__(self, message: str, check: SpecCheck) -> None:
        super().__init__(message)
        self.check = check


class SpecConflict(ServiceError):
    """The file changed on disk since the editor loaded it."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _editable(folder: DagsFolder, name: str):
    """The DAG's entry, if its file really lies in the DAGs folder: a file that is a symbolic link
    to elsewhere is run as usual but never read or written by the editor (a save would replace
    the link, and the editor would show a file from outside the folder)."""
    entry = find_entry(folder, name)
    root = os.path.realpath(folder.dags_dir)
    real = os.path.realpath(entry.file)
    if os.path.dirname(real) != root:
        raise BadRequest(f"{entry.file} is a link to {real}, outside the DAGs folder {root}: edit it there")
    return entry


def read_spec(folder: DagsFolder, name: str) -> SpecText:
    entry = _editable(folder, name)
    try:
        with open(entry.file, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceError(f"{entry.file}: cannot read ({exc})") from None
    return SpecText(name, entry.file, text, _sha(text))


def check_spec(folder: DagsFolder, name: str, text: str) -> SpecCheck:
    """Compile `text` as the DAG's file would be compiled once saved; nothing is written."""
    from dagu.compiler.pipeline import compile_file

    if not isinstance(text, str):
        raise BadRequest("the spec must be text")
    if "\x00" in text:
        raise BadRequest("the spec contains a NUL byte")
    entry = _editable(folder, name)
    result = compile_file(entry.file, text=text)
    check = SpecCheck(name, entry.file, result.ok, [diagnostic_dict(d) for d in result.diagnostics])
    if result.plan is not None and result.plan.root != name:
        check.renamed_to = result.plan.root
        check.ok = False
    return check


def save_spec(folder: DagsFolder, name: str, text: str, base_sha256: str | None = None) -> SpecCheck:
    """Write `text` to the DAG's file (atomically) if it compiles, keeps the DAG's name and the
    file is still the version the editor loaded; otherwise raise and write nothing."""
    from dagu.store.runs import write_atomic

    check = check_spec(folder, name, text)
    if check.renamed_to is not None:
        raise SpecRejected(f"the edit renames the DAG from {name!r} to {check.renamed_to!r}; the editor keeps "
                           "a DAG's name (rename its file instead)", check)
    if not check.ok:
        errors = sum(1 for d in check.diagnostics if d["severity"] == "error")
        raise SpecRejected(f"{os.path.basename(check.file)} does not compile ({errors} error"
                           f"{'s' if errors != 1 else ''}); nothing was saved", check)
    if base_sha256 is not None:
        current = read_spec(folder, name)
        if current.sha256 != base_sha256:
            raise SpecConflict(f"{check.file} changed on disk since it was loaded; reload it and edit again")
    write_atomic(check.file, text)
    return check
