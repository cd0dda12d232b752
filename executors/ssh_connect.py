"""SSH connections for the ssh and sftp step types: settings, authentication, host keys, a pool.

Why a module of its own: both step types need the same things before they do anything: the
`with:` block read into `Settings` (the DAG-level `ssh:` block is already merged in by the
compiler), a TCP connection (through a bastion if asked), the server's host key checked against
`known_hosts`, and authentication by key file, agent or password.  Every failure becomes a
`ConnectError` whose message names `user@host:port`, what failed and a hint, never a traceback.

Connections are reused: a supervisor runs many steps against the same host, and an SSH handshake
costs far more than opening a channel on an existing connection.  `POOL` keeps idle connections
per (host, port, user, credentials); a step leases one connection for itself (its command and, on
a stop, the kill command run as channels on it) and gives it back when it ends.  So the number of
connections to a host never exceeds the number of ssh/sftp steps running at once, which the
engine bounds by `max_active_steps`.

paramiko is imported inside the functions that need it, never at module import: `dagu compile`
imports no client library.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import re
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import field
from typing import Any, Callable, Iterator, Mapping

from dagu.spec.records import dataclass
from dagu.executors.base import Cancellation

DEFAULT_PORT = 22
DEFAULT_TIMEOUT = 30.0
IDLE_SEC = 60.0  # an idle pooled connection older than this is closed instead of reused
DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa", "id_dsa")

Log = Callable[[str], None]


class ConnectError(Exception):
    """A connection could not be made; the message is the step's error, fit for a log line."""


@dataclass(frozen=True)
class Settings:
    """Where to connect and how to prove who we are (from a step's rendered `with:` block)."""

    host: str
    port: int = DEFAULT_PORT
    user: str = ""
    key: str | None = None
    password: str | None = field(default=None, repr=False)
    strict_host_key: bool = True
    known_hosts: str = "~/.ssh/known_hosts"
    timeout: float = DEFAULT_TIMEOUT
    bastion: "Settings | None" = None
    agent_socket: str | None = None  # SSH_AUTH_SOCK of the supervisor, when it has one

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def pool_key(self) -> tuple:
        """Connections are shared only between steps that would authenticate the same way: a step
        with a wrong password must not succeed on a connection another step opened."""
        secret = hashlib.sha256((self.password or "").encode()).hexdigest() if self.password else ""
        return (self.host, self.port, self.user, self.key, secret, self.strict_host_key,
                self.known_hosts, self.bastion.pool_key() if self.bastion else None)


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h|d)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any, default: float = DEFAULT_TIMEOUT) -> float:
    """Seconds of a duration as the DAG schema spells it ("30s", "1m30s", or whole seconds)."""
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(text)
    parts = _DURATION.findall(text.replace(" ", ""))
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ConnectError(f"timeout {value!r} is not a duration (e.g. 30s, 1m)")
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _port(value: Any, what: str) -> int:
    if value is None or value == "":
        return DEFAULT_PORT
    try:
        port = int(str(value).strip())
    except ValueError:
        raise ConnectError(f"{what} port {value!r} is not a number") from None
    if not 0 < port < 65536:
        raise ConnectError(f"{what} port {port} is out of range (1-65535)")
    return port


def settings_from(config: Mapping[str, Any], parent_env: Mapping[str, str]) -> Settings:
    """The connection settings of a step's rendered `with:` block."""
    host = str(config.get("host") or "").strip()
    if not host:
        raise ConnectError("no host: set with.host (or host in the DAG's ssh: block)")
    user = str(config.get("user") or "").strip() or _local_user(parent_env)
    strict = config.get("strict_host_key", True)
    known = str(config.get("known_host_file") or "~/.ssh/known_hosts")
    timeout = parse_duration(config.get("timeout"))
    agent = parent_env.get("SSH_AUTH_SOCK") or None
    bastion = None
    raw = config.get("bastion")
    if isinstance(raw, Mapping) and raw.get("host"):
        bastion = Settings(host=str(raw["host"]).strip(), port=_port(raw.get("port"), "bastion"),
                           user=str(raw.get("user") or "").strip() or user, key=raw.get("key") or None,
                           password=raw.get("password") or None, strict_host_key=strict is not False,
                           known_hosts=known, timeout=timeout, agent_socket=agent)
    return Settings(host=host, port=_port(config.get("port"), "ssh"), user=user, key=config.get("key") or None,
                    password=config.get("password") or None, strict_host_key=strict is not False,
                    known_hosts=known, timeout=timeout, bastion=bastion, agent_socket=agent)


def _local_user(parent_env: Mapping[str, str]) -> str:
    try:
        return parent_env.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "root"


def fingerprint(key: Any) -> str:
    """OpenSSH's SHA256 fingerprint of a public key, as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


def _expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _prefer_known_key_types(transport: Any, known: Any) -> None:
    """Ask the server for a host key of a type known_hosts holds, so a known host is not refused
    only because it offered another of its keys first (as OpenSSH's client does)."""
    if not known:
        return
    wanted: list[str] = []
    for ktype in known.keys():
        wanted += ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if ktype == "ssh-rsa" else [ktype]
    options = transport.get_security_options()
    offered = list(options.key_types)
    first = [k for k in wanted if k in offered]
    if first:
        options.key_types = first + [k for k in offered if k not in first]


def _check_host_key(s: Settings, transport: Any, known: Any, log: Log) -> None:
    import paramiko

    key = transport.get_remote_server_key()
    name = known_hosts_name(s.host, s.port)
    line = f"{name} {key.get_name()} {key.get_base64()}"
    if not s.strict_host_key:
        log(f"ssh {s.where}: host key {fingerprint(key)} NOT checked (strict_host_key: false)")
        return
    path = _expand(s.known_hosts)
    ktype = key.get_name()
    mine = None
    if known is not None:
        mine = known.get(ktype) or (known.get("ssh-rsa") if isinstance(key, paramiko.RSAKey) else None)
    if mine is None:
        raise ConnectError(
            f"ssh {s.where}: host key verification failed: the host is not in {path} "
            f"(its {ktype} key has fingerprint {fingerprint(key)}); if that fingerprint is right, "
            f"add this line to {path}:\n    {line}\n"
            "or set strict_host_key: false to skip the check (not recommended)")
    if mine.asbytes() != key.asbytes():
        raise ConnectError(
            f"ssh {s.where}: host key verification failed: the host's {ktype} key ({fingerprint(key)}) is NOT "
            f"the one {path} holds ({fingerprint(mine)}); someone may be intercepting the connection. If the "
            f"host key changed on purpose, replace its line in {path} with:\n    {line}")


def _load_known(s: Settings) -> Any:
    import paramiko

    if not s.strict_host_key:
        return None
    path = _expand(s.known_hosts)
    keys = paramiko.HostKeys()
    if os.path.exists(path):
        try:
            keys.load(path)
        except (OSError, paramiko.SSHException) as exc:
            raise ConnectError(f"ssh {s.where}: cannot read known_hosts file {path}: {exc}") from None
    return keys.lookup(known_hosts_name(s.host, s.port))


def _key_from(path: str, s: Settings) -> Any:
    import paramiko

    full = _expand(path)
    try:
        return paramiko.PKey.from_path(full)
    except FileNotFoundError:
        raise ConnectError(f"ssh {s.where}: key file {full} does not exist; check with.key") from None
    except paramiko.PasswordRequiredException:
        raise ConnectError(f"ssh {s.where}: key file {full} is encrypted; load it into ssh-agent "
                           "(ssh-add) and leave with.key unset") from None
    except (OSError, ValueError, paramiko.SSHException) as exc:
        raise ConnectError(f"ssh {s.where}: cannot read key file {full}: {exc}") from None


def _agent_keys(path: str) -> tuple:
    """The keys of the ssh-agent at `path` (the supervisor's SSH_AUTH_SOCK as the run saw it; the
    process-wide os.environ is not consulted nor changed)."""
    from paramiko.agent import AgentSSH
    from paramiko.ssh_exception import SSHException

    agent = AgentSSH()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5)
        sock.connect(path)
        agent._connect(sock)  # paramiko's own Agent() reads os.environ; this is its connect step
        return agent.get_keys()
    except (OSError, SSHException):
        sock.close()
        return ()


def _authenticate(s: Settings, transport: Any, log: Log) -> None:
    """Key file, else password, else the agent's keys and the usual ~/.ssh/id_* files."""
    import paramiko

    tried: list[str] = []

    def attempt(what: str, fn: Callable[[], Any]) -> bool:
        tried.append(what)
        try:
            fn()
        except paramiko.BadAuthenticationType as exc:
            tried[-1] += f" (server allows only {', '.join(exc.allowed_types)})"
            return False
        except paramiko.AuthenticationException:
            return False
        except paramiko.SSHException as exc:
            raise ConnectError(f"ssh {s.where}: connection lost during authentication: {exc}") from None
        return transport.is_authenticated()

    if s.key:
        key = _key_from(s.key, s)
        if attempt(f"key {s.key}", lambda: transport.auth_publickey(s.user, key)):
            return
    if s.password:
        if attempt("password", lambda: transport.auth_password(s.user, s.password)):
            return
    if not s.key and not s.password:
        if s.agent_socket:
            agent_keys = _agent_keys(s.agent_socket)
            for k in agent_keys:
                if attempt(f"agent key {fingerprint(k)}", lambda k=k: transport.auth_publickey(s.user, k)):
                    return
        for name in DEFAULT_KEYS:
            path = os.path.join(os.path.expanduser("~/.ssh"), name)
            if os.path.exists(path):
                try:
                    key = paramiko.PKey.from_path(path)
                except (OSError, ValueError, paramiko.SSHException):
                    continue
                if attempt(f"key {path}", lambda key=key: transport.auth_publickey(s.user, key)):
                    return
    if not tried:
        raise ConnectError(f"ssh {s.where}: no way to authenticate: set with.key (a private key file) or "
                           "with.password (from secrets:), or run an ssh-agent")
    raise ConnectError(f"ssh {s.where}: authentication failed (tried {'; '.join(tried)}); check the user, that "
                       "the public key is in the server's authorized_keys, or the password")


def _tcp(s: Settings, via: Any | None) -> Any:
    """A socket (or a channel through the bastion) to the SSH port."""
    if via is not None:
        try:
            return via.open_channel("direct-tcpip", (s.host, s.port), ("127.0.0.1", 0), timeout=s.timeout)
        except Exception as exc:  # paramiko.ChannelException and friends
            raise ConnectError(f"ssh {s.where}: the bastion could not open a connection to it: {exc}; "
                               "check the host and port as the bastion sees them") from None
    try:
        sock = socket.create_connection((s.host, s.port), timeout=s.timeout)
        # small request/reply packets (channel open, exec, exit status): without this, Nagle and
        # delayed ACKs add ~40 ms to every step on a reused connection
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except socket.gaierror as exc:
        raise ConnectError(f"ssh {s.where}: cannot resolve host {s.host!r} ({exc.strerror}); "
                           "check the host name") from None
    except ConnectionRefusedError:
        raise ConnectError(f"ssh {s.where}: connection refused; is sshd running there and is the port right?") from None
    except (socket.timeout, TimeoutError):
        raise ConnectError(f"ssh {s.where}: connection timed out after {s.timeout:g}s; is the host up "
                           "and the port open?") from None
    except OSError as exc:
        raise ConnectError(f"ssh {s.where}: cannot connect: {exc.strerror or exc}") from None


def open_transport(s: Settings, log: Log, cancel: Cancellation | None = None, via: Any | None = None) -> Any:
    """A new authenticated paramiko Transport to `s` (through `via`, a bastion's transport)."""
    import paramiko

    if s.bastion is not None and via is None:
        bastion = open_transport(s.bastion, log, cancel)
        try:
            transport = open_transport(s, log, cancel, via=bastion)
        except BaseException:
            bastion.close()
            raise
        transport._dagu_bastion = bastion  # closed with it (see close_transport)
        return transport
    sock = _tcp(s, via)
    connected = threading.Event()

    def abort() -> None:  # a stop while connecting ends the handshake at once
        if not connected.is_set():
            try:
                sock.close()
            except OSError:
                pass

    if cancel is not None:
        cancel.on_cancel(abort)
    transport = paramiko.Transport(sock)
    try:
        known = _load_known(s)
        _prefer_known_key_types(transport, known)
        try:
            transport.start_client(timeout=s.timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if cancel is not None and cancel.is_set():
                raise ConnectError(f"ssh {s.where}: cancelled while connecting") from None
            raise ConnectError(f"ssh {s.where}: SSH handshake failed ({exc or type(exc).__name__}); "
                               "is an SSH server listening on that port?") from None
        _check_host_key(s, transport, known, log)
        try:
            _authenticate(s, transport, log)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if cancel is not None and cancel.is_set():
                raise ConnectError(f"ssh {s.where}: cancelled while connecting") from None
            raise ConnectError(f"ssh {s.where}: connection lost during authentication: "
                               f"{exc or type(exc).__name__}") from None
        connected.set()
    except BaseException:
        transport.close()
        raise
    transport.set_keepalive(30)
    return transport


def close_transport(transport: Any) -> None:
    try:
        transport.close()
    finally:
        bastion = getattr(transport, "_dagu_bastion", None)
        if bastion is not None:
            bastion.close()


@dataclass
class _Idle:
    transport: Any
    since: float


class ConnectionPool:
    """Idle SSH connections of this supervisor process, by `Settings.pool_key()`.

    The one piece of process-wide state of the ssh/sftp executors, on purpose: steps of a run
    execute on worker threads of one supervisor and have nothing else in common to hang a pool
    on.  A connection is leased by one step at a time and returned when the step ends, so open
    connections to a host never outnumber the steps running against it at once; idle ones are
    closed after IDLE_SEC.  `opened` counts the connections made (for tests and the benchmark).
    """

    def __init__(self, idle_sec: float = IDLE_SEC) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple, list[_Idle]] = {}
        self._idle_sec = idle_sec
        self._pid = os.getpid()
        self.opened = 0

    def _take(self, key: tuple) -> Any | None:
        now = time.monotonic()
        stale = []
        found = None
        with self._lock:
            if self._pid != os.getpid():  # a forked supervisor (a sub-run): the parent's connections
                self._idle, self._pid = {}, os.getpid()  # have no transport thread here; forget them
            for k, entries in list(self._idle.items()):
                keep = []
                for entry in entries:
                    if now - entry.since > self._idle_sec or not entry.transport.is_active():
                        stale.append(entry.transport)
                    else:
                        keep.append(entry)
                self._idle[k] = keep
            entries = self._idle.get(key) or []
            if entries:
                found = entries.pop().transport
        for transport in stale:
            close_transport(transport)
        return found

    @contextmanager
    def lease(self, s: Settings, log: Log, cancel: Cancellation | None = None) -> Iterator[Any]:
        """An authenticated transport for the duration of a step; back to the pool afterwards
        unless the step says it is broken (`transport._dagu_broken = True`) or it died."""
        key = s.pool_key()
        transport = self._take(key)
        if transport is None:
            transport = open_transport(s, log, cancel)
            with self._lock:
                self.opened += 1
        try:
            yield transport
        except BaseException:
            close_transport(transport)
            raise
        if getattr(transport, "_dagu_broken", False) or not transport.is_active():
            close_transport(transport)
            return
        with self._lock:
            self._idle.setdefault(key, []).append(_Idle(transport, time.monotonic()))

    def close_all(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for entries in idle.values():
            for entry in entries:
                close_transport(entry.transport)


# The process-wide pool (see ConnectionPool for why there is exactly one).
POOL = ConnectionPool()
