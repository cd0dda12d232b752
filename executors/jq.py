"""jq steps: a jq filter (real libjq, through the `jq` binding) over JSON input.

The filter is `with.filter` (upstream's `action: jq.filter`) or `command:`
(upstream's `type: jq`).  The input is one of: `with.data` / `script:` (inline
JSON, which may be `${step.output}` of an earlier step), or `with.input`, a
JSON file.  Each result is written to stdout as it is produced (indented by
default as upstream prints, one line each with `compact`, strings bare with
`raw`), so the engine's `output:` capture applies, with its max_output_size cap,
and a single JSON result is addressable as `${step.output.field}`.

`check_step` is the compile-time hook of the catalogue line: it compiles the
filter with libjq (importing the small C binding only when a jq step is in the
file) so that a filter that does not parse is a compile error at its line.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult
from dagu.executors.catalog import StepProblem

_POSITION = re.compile(r"line (\d+), column (\d+)")


def _filter_of(step: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
    """The filter as written and where it is (with.filter, else command)."""
    config = step.get("with") if isinstance(step.get("with"), dict) else step.get("config")
    if isinstance(config, dict) and "filter" in config:
        return config["filter"], ("with" if "with" in step else "config", "filter")
    command = step.get("command")
    if isinstance(command, list):
        return (command[0] if len(command) == 1 else None), ("command", 0)
    return command, ("command",)


def compile_error(text: str) -> tuple[str, int | None, int]:
    """(message, offset into the filter or None, length) for a filter libjq refuses; ('', ...) if it compiles."""
    import jq  # the libjq binding: loaded only to check or run a jq step

    try:
        jq.compile(text)
    except ValueError as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.startswith("jq: error")]
        message = (lines[0] if lines else str(exc).splitlines()[0]).removeprefix("jq: error: ")
        match = _POSITION.search(message)
        offset = None
        if match:
            row, col = int(match.group(1)), int(match.group(2))
            starts = [0]
            for ln in text.split("\n"):
                starts.append(starts[-1] + len(ln) + 1)
            if 1 <= row < len(starts):
                offset = min(starts[row - 1] + max(col - 1, 0), max(len(text) - 1, 0))
            message = message[:match.start()].rstrip().removesuffix(" at <top-level>,").rstrip() + \
                f" (line {row}, column {col} of the filter)"
        return message, offset, 1
    return "", None, 0


def check_step(step: dict[str, Any]) -> list[StepProblem]:
    """Compile-time hook: the filter must compile.  A filter holding `${...}` is only known at run
    time, and is checked then."""
    text, rel = _filter_of(step)
    if not isinstance(text, str) or not text.strip() or "${" in text:
        return []
    message, offset, length = compile_error(text)
    if not message:
        return []
    return [StepProblem(rel, "jq filter", f"the filter does not compile: {message}", offset, length)]


def _format(value: Any, raw: bool, compact: bool) -> str:
    if raw and isinstance(value, str):
        return value
    if compact:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(value, ensure_ascii=False, indent=4)


def _input_text(request: StepRequest) -> tuple[str | None, str | None]:
    """(JSON text, error) from with.input (a file), with.data, or script."""
    config = request.config
    given = [k for k in ("input", "data") if k in config] + (["script"] if request.script is not None else [])
    if len(given) > 1:
        return None, f"jq: give the input once: {' and '.join(given)} are both set (input is a file, " \
                     "data/script inline JSON)"
    if "input" in config:
        path = os.path.join(request.cwd, str(config["input"]))
        if not os.path.isfile(path):
            return None, f"jq: input file {path} does not exist or is not a regular file"
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read(), None
        except (OSError, UnicodeDecodeError) as exc:
            return None, f"jq: cannot read input file {path}: {exc}"
    if "data" in config:
        data = config["data"]
        return (data if isinstance(data, str) else json.dumps(data)), None
    if request.script is not None:
        text = request.script
        if text.startswith("file://"):  # upstream: script: file://PATH reads that file
            path = os.path.join(request.cwd, text[len("file://"):])
            try:
                with open(path, encoding="utf-8") as fh:
                    return fh.read(), None
            except (OSError, UnicodeDecodeError) as exc:
                return None, f"jq: cannot read input file {path}: {exc}"
        return text, None
    return None, "jq: no input: set with.data (inline JSON), with.input (a JSON file) or script:"


def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    import jq  # the client library, imported only when a jq step runs

    config = request.config
    text = config.get("filter") if "filter" in config else " ".join(request.command)
    if not isinstance(text, str) or not text.strip():
        return StepResult(exit_code=1, error="jq: no filter: set with.filter (or command:)")
    data, error = _input_text(request)
    if error is not None or data is None:
        return StepResult(exit_code=1, error=error)
    try:
        program = jq.compile(text)
    except ValueError:
        message, _offset, _length = compile_error(text)
        return StepResult(exit_code=1, error=f"jq: the filter does not compile: {message}")
    try:
        json.loads(data) if len(data) < (1 << 20) else None  # a clear message for small bad inputs
    except ValueError as exc:
        return StepResult(exit_code=1, error=f"jq: the input is not JSON: {exc} (input starts {data[:60]!r})")
    raw, compact = bool(config.get("raw")), bool(config.get("compact"))
    count = 0
    try:
        for value in program.input_text(data):
            if cancel.is_set():
                return StepResult(exit_code=1, error="jq: cancelled")
            io.out.write(_format(value, raw, compact) + "\n")
            count += 1
    except ValueError as exc:
        return StepResult(exit_code=1, error=f"jq: {str(exc).splitlines()[0]} (after {count} result(s))")
    return StepResult(exit_code=0)
