"""s3 steps: upload (put), download (get), list, delete and copy objects, on AWS or any S3-compatible
endpoint.

The operation is the step's `command:` (upstream's shape; `action: s3.upload` arrives as
`type: s3` + `command: upload`).  The connection comes from `with:`, under which the compiler has
merged the DAG-level `s3:` block, and then from the step's environment (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
`AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`, `AWS_PROFILE`), so `secrets:` can supply the keys.

Why transfers go through s3transfer's TransferManager and not one put/get call: a file over
`part_size` MB is sent as a multipart upload, part by part, and a download is written in chunks to a
temporary file renamed into place when complete; nothing holds a whole object in memory.  Its
future can be cancelled: on a stop or timeout the parts in flight stop and the multipart upload is
aborted on the server, so no half object or orphaned parts are left.

What goes to stdout (and so to `output:`, within the DAG's max_output_size): a JSON summary of
the operation, the listing as JSON (at most `max_keys` entries), or, for a download without a
`destination`, the object itself, streamed.  Progress lines go to stderr.
"""

from __future__ import annotations

import json
import mimetypes
import os
from typing import Any
from urllib.parse import urlencode, urlsplit

from dagu.spec.records import dataclass
from dagu.executors.base import Cancellation, StepIO, StepRequest, StepResult

OPERATIONS = {"upload": "upload", "put": "upload", "download": "download", "get": "download", "list": "list",
              "ls": "list", "delete": "delete", "rm": "delete", "copy": "copy", "cp": "copy"}
MB = 1024 * 1024
DEFAULT_MAX_KEYS = 1000


class StepFailure(Exception):
    """A failure to report as the step's error (never a traceback)."""


@dataclass(frozen=True)
class Settings:
    """The connection, from with: (DAG-level s3: merged in) and then the step's AWS_* environment."""

    endpoint: str | None
    region: str
    access_key: str | None
    secret_key: str | None
    token: str | None
    profile: str | None
    path_style: bool

    @property
    def where(self) -> str:
        if not self.endpoint:
            return f"s3.{self.region}.amazonaws.com:443"
        parts = urlsplit(self.endpoint)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def settings(cfg: dict[str, Any], env: dict[str, str]) -> Settings:
    endpoint = cfg.get("endpoint") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    if endpoint and "://" not in endpoint:
        endpoint = ("http://" if cfg.get("disable_ssl") else "https://") + endpoint
    return Settings(
        endpoint=endpoint,
        region=cfg.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        access_key=cfg.get("access_key_id") or env.get("AWS_ACCESS_KEY_ID") or None,
        secret_key=cfg.get("secret_access_key") or env.get("AWS_SECRET_ACCESS_KEY") or None,
        token=cfg.get("session_token") or env.get("AWS_SESSION_TOKEN") or None,
        profile=cfg.get("profile") or env.get("AWS_PROFILE") or None,
        path_style=bool(cfg.get("force_path_style")),
    )


def make_client(s: Settings, cfg: dict[str, Any]) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(aws_access_key_id=s.access_key, aws_secret_access_key=s.secret_key,
                                    aws_session_token=s.token, region_name=s.region, profile_name=s.profile)
    config = Config(s3={"addressing_style": "path" if s.path_style else "auto"}, connect_timeout=10,
                    read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
    return session.client("s3", endpoint_url=s.endpoint, config=config, use_ssl=not cfg.get("disable_ssl"))


def describe(exc: BaseException, where: str, what: str) -> str:
    """A failure naming host:port, what failed and a hint (never a traceback)."""
    from botocore import exceptions as bx

    text = str(exc)
    if isinstance(exc, bx.NoCredentialsError):
        return (f"s3 {where}: {what}: no credentials; set access_key_id/secret_access_key (with: or the DAG's "
                "s3: block) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the step's env")
    if isinstance(exc, bx.ProfileNotFound):
        return f"s3 {where}: {what}: {text}; check `profile`"
    if isinstance(exc, bx.SSLError):
        return f"s3 {where}: {what}: TLS failed ({text}); check the endpoint's certificate or its scheme"
    if isinstance(exc, bx.EndpointConnectionError):
        cause = str(getattr(exc, "kwargs", {}).get("error", ""))
        if "name or service not known" in cause.lower() or "name resolution" in cause.lower():
            return f"s3 {where}: {what}: DNS lookup failed ({cause}); check the endpoint's host name"
        return f"s3 {where}: {what}: connection failed ({cause or text}); is the endpoint up and the port right?"
    if isinstance(exc, (bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        return f"s3 {where}: {what}: timed out ({text}); check the endpoint"
    if isinstance(exc, bx.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "") or text
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
                    "InvalidToken", "403", "Forbidden"):
            return (f"s3 {where}: {what}: authentication failed ({code}: {message}); "
                    "check access_key_id/secret_access_key and the bucket's policy")
        if code in ("NoSuchBucket", "NoSuchKey", "404", "NotFound"):
            return f"s3 {where}: {what}: not found ({code}); check bucket and key"
        return f"s3 {where}: {what}: {code or 'error'}: {message}"
    if isinstance(exc, bx.BotoCoreError):
        return f"s3 {where}: {what}: {text}"
    if isinstance(exc, OSError):
        return f"s3 {where}: {what}: {exc.strerror or text} ({getattr(exc, 'filename', '') or ''})"
    return f"s3 {where}: {what}: {exc.__class__.__name__}: {text}"


def upload_args(cfg: dict[str, Any], source: str) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    content_type = cfg.get("content_type") or mimetypes.guess_type(source)[0]
    for key, name in (("storage_class", "StorageClass"), ("sse", "ServerSideEncryption"),
                      ("sse_kms_key_id", "SSEKMSKeyId"), ("acl", "ACL"), ("metadata", "Metadata")):
        if cfg.get(key):
            extra[name] = cfg[key]
    if content_type:
        extra["ContentType"] = content_type
    if cfg.get("tags"):
        extra["Tagging"] = urlencode(cfg["tags"])
    return extra


class Progress:
    """An s3transfer subscriber that logs every ~10% of a transfer to stderr."""

    def __init__(self, io: StepIO, verb: str, total: int | None) -> None:
        self.io, self.verb, self.total, self.done, self.next = io, verb, total, 0, 0.1

    def on_progress(self, future: Any = None, bytes_transferred: int = 0, **_: Any) -> None:
        self.done += bytes_transferred
        total = self.total or (future.meta.size if future is not None and future.meta.size else 0)
        if total and self.done / total >= self.next:
            self.io.err.write(f"{self.verb} {self.done}/{total} bytes ({100 * self.done // total}%)\n")
            while self.done / total >= self.next:
                self.next += 0.1

    def on_queued(self, **_: Any) -> None: ...

    def on_done(self, **_: Any) -> None: ...


def transfer(client: Any, cfg: dict[str, Any], cancel: Cancellation, start: Any) -> Any:
    """Run one managed transfer (`start(manager)` returns its future), cancellable, then shut down."""
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    part = int(cfg.get("part_size") or 10) * MB
    config = TransferConfig(multipart_threshold=part, multipart_chunksize=part,
                            max_concurrency=int(cfg.get("concurrency") or 5),
                            max_bandwidth=cfg.get("max_bandwidth"))
    manager = create_transfer_manager(client, config)
    try:
        future = start(manager)
        cancel.on_cancel(lambda: future.cancel())
        return future.result()
    finally:
        manager.shutdown(cancel=cancel.is_set())


def do_upload(client: Any, cfg: dict[str, Any], request: StepRequest, io: StepIO, cancel: Cancellation) -> dict:
    bucket, key = need(cfg, "bucket"), need(cfg, "key")
    source = os.path.join(request.cwd, need(cfg, "source"))
    size = os.path.getsize(source)
    io.err.write(f"upload {source} ({size} bytes) to s3://{bucket}/{key}\n")
    progress = Progress(io, "uploaded", size)
    transfer(client, cfg, cancel, lambda m: m.upload(source, bucket, key, extra_args=upload_args(cfg, source),
                                                     subscribers=[progress]))
    return {"operation": "upload", "bucket": bucket, "key": key, "size": size, "uri": f"s3://{bucket}/{key}"}


def do_download(client: Any, cfg: dict[str, Any], request: StepRequest, io: StepIO,
                cancel: Cancellation) -> dict | None:
    bucket, key = need(cfg, "bucket"), need(cfg, "key")
    if not cfg.get("destination"):
        stream_object(client, bucket, key, io, cancel)
        return None
    dest = os.path.join(request.cwd, str(cfg["destination"]))
    if dest.endswith("/") or os.path.isdir(dest):
        dest = os.path.join(dest, os.path.basename(key))
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    io.err.write(f"download s3://{bucket}/{key} to {dest}\n")
    # s3transfer writes to DEST.<random> and renames it onto DEST when complete (removed on failure)
    transfer(client, cfg, cancel, lambda m: m.download(bucket, key, dest, subscribers=[Progress(io, "downloaded",
                                                                                                 None)]))
    return {"operation": "download", "bucket": bucket, "key": key, "destination": dest,
            "size": os.path.getsize(dest)}


def stream_object(client: Any, bucket: str, key: str, io: StepIO, cancel: Cancellation) -> None:
    """A download without destination: the object goes to stdout in chunks (and so to `output:`)."""
    import codecs

    io.err.write(f"get s3://{bucket}/{key} to the step's stdout\n")
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    cancel.on_cancel(body.close)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    for chunk in body.iter_chunks(64 * 1024):
        if cancel.is_set():
            raise StepFailure(f"s3: get s3://{bucket}/{key} cancelled")
        io.out.write(decoder.decode(chunk))
    io.out.write(decoder.decode(b"", final=True))


def do_list(client: Any, cfg: dict[str, Any], io: StepIO, cancel: Cancellation) -> None:
    """Stream the listing to stdout as JSON (or JSON lines), at most max_keys entries."""
    bucket = need(cfg, "bucket")
    limit = int(cfg.get("max_keys") or DEFAULT_MAX_KEYS)
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": cfg.get("prefix") or ""}
    if cfg.get("delimiter") and not cfg.get("recursive"):
        params["Delimiter"] = cfg["delimiter"]
    lines = cfg.get("output_format") == "jsonl"
    io.err.write(f"list s3://{bucket}/{params['Prefix']}\n")
    count, more = 0, False
    io.out.write("" if lines else "[")
    for page in client.get_paginator("list_objects_v2").paginate(**params, PaginationConfig={"PageSize": 1000}):
        entries = [{"prefix": p["Prefix"]} for p in page.get("CommonPrefixes", [])] + [
            {"key": o["Key"], "size": o["Size"], "last_modified": o["LastModified"].isoformat(),
             "etag": o.get("ETag", "").strip('"'), "storage_class": o.get("StorageClass", "STANDARD")}
            for o in page.get("Contents", [])]
        for entry in entries:
            if count == limit:
                more = True
                break
            io.out.write(json.dumps(entry) + "\n" if lines else ("," if count else "") + "\n" + json.dumps(entry))
            count += 1
        if more or cancel.is_set():
            break
    io.out.write("" if lines else "\n]\n")
    io.err.write(f"{count} entr{'y' if count == 1 else 'ies'}"
                 + (f"; stopped at max_keys ({limit}): raise max_keys or narrow the prefix" if more else "") + "\n")


def do_delete(client: Any, cfg: dict[str, Any], io: StepIO, cancel: Cancellation) -> dict:
    bucket = need(cfg, "bucket")
    if cfg.get("key"):
        client.delete_object(Bucket=bucket, Key=cfg["key"])
        io.err.write(f"deleted s3://{bucket}/{cfg['key']}\n")
        return {"operation": "delete", "bucket": bucket, "deleted": 1, "key": cfg["key"]}
    prefix = need(cfg, "prefix")
    deleted = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if cancel.is_set():
            raise StepFailure(f"s3: delete of s3://{bucket}/{prefix}* cancelled after {deleted} objects")
        if keys:
            reply = client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            if reply.get("Errors"):
                first = reply["Errors"][0]
                raise StepFailure(f"s3: delete of {first.get('Key')} failed: {first.get('Code')} {first.get('Message')}")
            deleted += len(keys)
            if not cfg.get("quiet"):
                for item in keys:
                    io.err.write(f"deleted s3://{bucket}/{item['Key']}\n")
    return {"operation": "delete", "bucket": bucket, "prefix": prefix, "deleted": deleted}


def do_copy(client: Any, cfg: dict[str, Any], io: StepIO, cancel: Cancellation) -> dict:
    bucket, key = need(cfg, "bucket"), need(cfg, "key")
    source = {"Bucket": cfg.get("source_bucket") or bucket, "Key": need(cfg, "source_key")}
    io.err.write(f"copy s3://{source['Bucket']}/{source['Key']} to s3://{bucket}/{key}\n")
    transfer(client, cfg, cancel, lambda m: m.copy(source, bucket, key))
    return {"operation": "copy", "bucket": bucket, "key": key, "source": f"s3://{source['Bucket']}/{source['Key']}"}


def need(cfg: dict[str, Any], name: str) -> str:
    if not cfg.get(name):
        raise StepFailure(f"s3: `{name}` is required here (under with:, or bucket in the DAG's s3: block)")
    return str(cfg[name])


def run(request: StepRequest, io: StepIO, cancel: Cancellation) -> StepResult:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    words = " ".join(request.command).split()
    operation = OPERATIONS.get(words[0].lower()) if words else None
    if operation is None:
        return StepResult(exit_code=1, error=f"s3: unknown operation {' '.join(words)!r}; "
                                             "command: is one of upload, download, list, delete, copy")
    cfg = request.config
    s = settings(cfg, request.env)
    try:
        client = make_client(s, cfg)
        if operation == "upload":
            summary = do_upload(client, cfg, request, io, cancel)
        elif operation == "download":
            summary = do_download(client, cfg, request, io, cancel)
        elif operation == "list":
            summary = None
            do_list(client, cfg, io, cancel)
        elif operation == "delete":
            summary = do_delete(client, cfg, io, cancel)
        else:
            summary = do_copy(client, cfg, io, cancel)
    except StepFailure as exc:
        return StepResult(exit_code=1, error=str(exc))
    except (BotoCoreError, ClientError, Boto3Error, OSError, ValueError) as exc:
        if cancel.is_set():
            return StepResult(exit_code=1, error=f"s3 {s.where}: {operation} cancelled"
                              + ("; the multipart upload was aborted" if operation == "upload" else ""))
        return StepResult(exit_code=1, error=describe(exc, s.where, operation))
    except Exception as exc:  # s3transfer's CancelledError and friends
        if cancel.is_set():
            return StepResult(exit_code=1, error=f"s3 {s.where}: {operation} cancelled"
                              + ("; the multipart upload was aborted" if operation == "upload" else ""))
        return StepResult(exit_code=1, error=describe(exc, s.where, operation))
    if summary is not None:
        io.out.write(json.dumps(summary) + "\n")
    return StepResult(exit_code=0)
