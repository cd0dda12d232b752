"""Template steps: render text from a Go-style template and `data:` to the output or a file.

The template is `with.template` (upstream's `action: template.render`) or
`script:` (upstream's `type: template`); `${...}` in it and in `data:` are the
run's variables, expanded by the engine before rendering, as everywhere else.
`{{ .name }}` reads `data:`.  The subset of Go's text/template that renders
here is described in executors/gotemplate.py; `check_step` is the catalogue
line's compile-time hook, so a construct outside it is a compile error.

The rendered text streams to stdout (so `output:` captures it, within
max_output_size) or, with `with.output`, into that file, written atomically:
a temporary file beside it, then a rename.  The target may not be a FIFO,
device or directory (opening a FIFO would block the step forever); parent
directories are created.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from typing import Any

from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult
from dagu.executors.catalog import StepProblem
from dagu.executors.gotemplate import parse
from dagu.executors.gotemplate_render import line_col, render
from dagu.executors.gotemplate_funcs import TemplateError

_REF = re.compile(r"\$\{[^}]*\}")


def _template_of(step: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
    config = step.get("with") if isinstance(step.get("with"), dict) else step.get("config")
    if isinstance(config, dict) and "template" in config:
        return config["template"], ("with" if "with" in step else "config", "template")
    return step.get("script"), ("script",)


def check_step(step: dict[str, Any]) -> list[StepProblem]:
    """Compile-time hook: the template must parse within the supported subset.  `${...}` parts
    (known only at run time) are read as plain text of the same length; when one sits inside
    an action, the template is checked at run time instead."""
    text, rel = _template_of(step)
    if not isinstance(text, str):
        return []
    masked = _REF.sub(lambda m: "x" * len(m.group()), text)
    try:
        parse(masked)
    except TemplateError as exc:
        if "${" in text and _REF.search(text) and _inside_action(text):
            return []
        return [StepProblem(rel, "template", exc.message, exc.offset, 2)]
    return []


def _inside_action(text: str) -> bool:
    return any(text.rfind("{{", 0, m.start()) > text.rfind("}}", 0, m.start()) for m in _REF.finditer(text))


def _write_file(path: str, template: str, data: dict[str, Any], cancel: Cancellation) -> str | None:
    """Render into `path` atomically; an error message, or None."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return f"template: {path} exists and is not a regular file (a FIFO, device or directory); " \
                   "choose another with.output"
    except FileNotFoundError:
        pass
    except OSError as exc:
        return f"template: cannot check {path}: {exc.strerror}"
    parent = os.path.dirname(path) or "."
    try:
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=parent)
    except OSError as exc:
        return f"template: cannot write into {parent}: {exc.strerror}"
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            render(template, data, fh.write)
            fh.flush()
            os.fsync(fh.fileno())
        if cancel.is_set():
            raise TemplateError("cancelled")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return None


def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    config = request.config
    template = config.get("template") if "template" in config else request.script
    if template is None:
        return StepResult(exit_code=1, error="template: no template: set with.template (or script:)")
    if "template" in config and request.script is not None:
        return StepResult(exit_code=1, error="template: give the template once: with.template or script:, not both")
    data = config.get("data") or {}
    if not isinstance(data, dict):
        return StepResult(exit_code=1, error="template: with.data must be a mapping")
    output = config.get("output")
    try:
        if output:
            path = os.path.join(request.cwd, str(output))
            error = _write_file(path, str(template), data, cancel)
            if error:
                return StepResult(exit_code=1, error=error)
            io.err.write(f"rendered to {path}\n")
            return StepResult(exit_code=0)
        render(str(template), data, io.out.write)
    except TemplateError as exc:
        line, col = line_col(str(template), exc.offset)
        return StepResult(exit_code=1, error=f"template: line {line}, column {col}: {exc.message}")
    except OSError as exc:
        return StepResult(exit_code=1, error=f"template: cannot write {output}: {exc.strerror}")
    return StepResult(exit_code=0)
