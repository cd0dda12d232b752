"""HTTP steps (`requests`): one request, its body streamed to the log (or a file), its status checked.

Spellings: upstream's `action: http.request` with `with: {method, url, ...}`,
and `type: http` with `command: METHOD URL` (or with.method / with.url).

Output: by default the response body, streamed to the step's stdout as it
arrives, so `output:` captures it under the DAG's max_output_size (the engine
names the cap when it is over) and a JSON body is addressable as
`${step.output.field}`.  With `format: json` (or `json: true`, upstream's keys)
the output is `{status_code, headers, body, json}`: `body` is the parsed JSON
when the body is JSON (upstream's shape) and the text otherwise, `json` the
parsed value or null; that body must fit max_output_size.  With `output:` under
`with:` the body goes to that file (atomically) instead, and never into memory.

Cancellation: a stop or timeout shuts down the request's socket, which ends a
blocking connect-wait or read at once (see http_io.Sockets).
"""

from __future__ import annotations

import codecs
import json
import os
from typing import Any

from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult
from dagu.executors.http_io import AtomicFile, Sockets, describe_failure, expected_codes, target, tracking_adapter

_CHUNK = 65536
_SNIPPET = 512


def _method_url(request: StepRequest) -> tuple[str, str]:
    config = request.config
    method, url = str(config.get("method") or ""), str(config.get("url") or "")
    if request.command:
        words = " ".join(request.command).split(None, 1)
        method = method or (words[0] if words else "")
        url = url or (words[1].strip() if len(words) > 1 else "")
    return (method or "GET").upper(), url


def _request_kwargs(config: dict[str, Any], cwd: str) -> tuple[dict[str, Any], list[Any], str | None]:
    """requests' keyword arguments for the body, headers, auth and TLS; files to close; an error."""
    kwargs: dict[str, Any] = {"headers": {str(k): str(v) for k, v in (config.get("headers") or {}).items()},
                              "params": {str(k): _text(v) for k, v in (config.get("query") or {}).items()}}
    opened: list[Any] = []
    body, form, files = config.get("body"), config.get("form") or {}, config.get("files") or {}
    if body is not None and (form or files):
        return kwargs, opened, "http: body cannot be combined with form or files (as upstream)"
    if isinstance(body, (dict, list)):
        kwargs["json"] = body
    elif body is not None:
        kwargs["data"] = str(body).encode("utf-8")
    if files or (form and config.get("form_encoding", "multipart") == "multipart"):
        parts: dict[str, Any] = {str(k): (None, _text(v)) for k, v in form.items()}
        for name, path in files.items():
            full = os.path.join(cwd, str(path))
            try:
                fh = open(full, "rb")
            except OSError as exc:
                return kwargs, opened, f"http: cannot open file {full} for field {name!r}: {exc.strerror}"
            opened.append(fh)
            parts[str(name)] = (os.path.basename(full), fh)
        kwargs["files"] = parts
    elif form:
        kwargs["data"] = {str(k): _text(v) for k, v in form.items()}
    if config.get("token"):
        kwargs["headers"]["Authorization"] = f"Bearer {config['token']}"
    if config.get("username") or config.get("password"):
        kwargs["auth"] = (str(config.get("username") or ""), str(config.get("password") or ""))
    if config.get("skip_tls_verify"):
        kwargs["verify"] = False
    elif config.get("ca_bundle"):
        bundle = os.path.join(cwd, str(config["ca_bundle"]))
        if not os.path.isfile(bundle):
            return kwargs, opened, f"http: ca_bundle {bundle} is not a file (give a PEM file of CA certificates)"
        kwargs["verify"] = bundle
    timeout = config.get("timeout")
    kwargs["timeout"] = (float(timeout), float(timeout)) if timeout else (30.0, None)
    return kwargs, opened, None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _headers(response: Any) -> dict[str, list[str]]:
    raw = getattr(response.raw, "headers", None)
    if raw is not None and hasattr(raw, "getlist"):
        return {name: raw.getlist(name) for name in dict.fromkeys(raw.keys())}
    return {name: [value] for name, value in response.headers.items()}


def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    import requests  # the client library, imported only when an http step runs
    import urllib3

    config = request.config
    method, url = _method_url(request)
    if not url:
        return StepResult(exit_code=1, error="http: no URL: set with.url (or command: METHOD URL)")
    where = target(url)
    kwargs, opened, error = _request_kwargs(config, request.cwd)
    if error:
        return StepResult(exit_code=1, error=error)
    as_json = config.get("format") == "json" or bool(config.get("json"))
    max_redirects = int(config.get("max_redirects", 10))
    sockets = Sockets()
    session = requests.Session()
    session.max_redirects = max_redirects
    adapter = tracking_adapter(sockets)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    cancel.on_cancel(sockets.shutdown)
    cancel.on_cancel(session.close)
    if kwargs.get("verify") is False:
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    io.err.write(f"{method} {url}\n")
    if config.get("debug"):
        for name in kwargs["headers"]:
            io.err.write(f"> {name}: {'***' if name.lower() == 'authorization' else kwargs['headers'][name]}\n")
    try:
        response = session.request(method, url, stream=True, allow_redirects=max_redirects > 0, **kwargs)
        try:
            return _handle(response, request, io, cancel, where, as_json)
        finally:
            response.close()
    except Exception as exc:  # every client failure is a step failure naming host:port, never a traceback
        if cancel.is_set():
            return StepResult(exit_code=1, error=f"http: {method} {where} cancelled (stop or timeout)")
        return StepResult(exit_code=1, error=describe_failure(exc, method, url, where, kwargs, max_redirects))
    finally:
        for fh in opened:
            fh.close()
        session.close()


def _handle(response: Any, request: StepRequest, io: StepIO, cancel: Cancellation, where: str,
            as_json: bool) -> StepResult:
    config = request.config
    status = response.status_code
    ok = status in expected_codes(config.get("expected_status"))
    if not ok or not config.get("silent"):
        io.err.write(f"HTTP {status} {response.reason or ''}\n")
        for name, values in _headers(response).items():
            for value in values:
                io.err.write(f"{name}: {value}\n")
    if not ok:
        first = response.raw.read(_SNIPPET, decode_content=True) or b""
        snippet = first.decode("utf-8", "replace")
        io.out.write(snippet)
        expected = config.get("expected_status", "2xx")
        hint = "; check with.token, or with.username/password" if status in (401, 403) else ""
        return StepResult(exit_code=1, error=f"http: {response.request.method} {where} answered {status} "
                                             f"{response.reason or ''} (expected {expected}){hint}; "
                                             f"the body starts: {snippet[:200]!r}")
    cap = request.max_output_size
    file_out = config.get("output")
    kept = bytearray()
    size = 0
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    sink = AtomicFile(os.path.join(request.cwd, str(file_out))) if file_out else None
    try:
        for chunk in response.iter_content(_CHUNK):
            if cancel.is_set():
                return StepResult(exit_code=1, error=f"http: {where} cancelled while reading the body")
            size += len(chunk)
            if sink is not None:
                sink.write(chunk)
            elif as_json:
                if size > cap:
                    return StepResult(exit_code=1, error=(
                        f"http: the body from {where} is over max_output_size ({cap} bytes), the cap on "
                        "format: json output; raise max_output_size or write the body to a file with "
                        "with.output"))
                kept += chunk
            else:
                io.out.write(decoder.decode(chunk))
        if sink is not None:
            sink.commit()
            io.err.write(f"wrote {size} bytes to {sink.path}\n")
    finally:
        if sink is not None:
            sink.discard()
    if not as_json:
        io.out.write(decoder.decode(b"", final=True))
        return StepResult(exit_code=0, output=None if sink is None else sink.path)
    text = bytes(kept).decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = None
    result: dict[str, Any] = {"status_code": status, "headers": _headers(response)}
    if sink is not None:
        result["output"] = sink.path
    else:
        result["body"] = parsed if parsed is not None else text
        result["json"] = parsed
    document = json.dumps(result, ensure_ascii=False)
    io.out.write(json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    return StepResult(exit_code=0, output=document)
