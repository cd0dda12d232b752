"""Data-dir settings: `$DAGU_HOME/config.yaml`, each key overridable by a `DAGU_*` variable.

Only what the runtime needs without a DAG lives here: the history limits that
apply to every DAG that does not set its own, and the cap on the total size of
run state.  The file is read when it is needed (after a run, by `dagu
cleanup`, by the scheduler), never cached, so an edit takes effect at the next
run without a restart.

Why a size cap by default (2 GiB): dagu runs on edge machines with small SD
cards and eMMC, where a chatty step's logs used to fill the disk long before
30 days of history expired (upstream's users report exactly that).  2 GiB is
small enough for an 8 GB card and large enough that an ordinary server never
notices it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagu.spec.records import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (issue 17)
if TYPE_CHECKING:
    from typing import Any


CONFIG_FILE = "config.yaml"
DEFAULT_RETENTION_DAYS = 30
DEFAULT_MAX_HISTORY_SIZE = 2 << 30  # 2 GiB: see the module docstring
DEFAULT_SIZE_CHECK_SEC = 300  # a run's end measures the whole history at most this often
NO_LIMIT = ("none", "off", "unlimited")

ENV_VARS = {
    "hist_retention_days": "DAGU_HIST_RETENTION_DAYS",
    "hist_retention_runs": "DAGU_HIST_RETENTION_RUNS",
    "max_history_size": "DAGU_MAX_HISTORY_SIZE",
    "history_size_check_sec": "DAGU_HISTORY_SIZE_CHECK_SEC",
}


def dagu_home(environ: Mapping[str, str] | None = None) -> str:
    """Where dagu keeps its data: $DAGU_HOME, else ~/.dagu (upstream Dagu's default, so habits carry over).

    The one place this is decided: the CLI, the store, the scheduler and the service all ask here."""
    env = os.environ if environ is None else environ
    return env.get("DAGU_HOME") or os.path.join(os.path.expanduser("~"), ".dagu")


class ConfigError(Exception):
    """A setting that cannot be used; the message names where it was written, the value and a fix."""


@dataclass(frozen=True)
class RetentionSettings:
    """History limits for the whole data dir; None means "no limit of this kind".

    `hist_retention_days` and `hist_retention_runs` are defaults: a DAG's own
    keys win.  `max_history_size` (bytes) caps the runs of all DAGs together.
    """

    hist_retention_days: int | None = DEFAULT_RETENTION_DAYS
    hist_retention_runs: int | None = None
    max_history_size: int | None = DEFAULT_MAX_HISTORY_SIZE
    # Measuring the cap stats every file of every run: with 100 DAGs each minute that is far too
    # much to do after every run, so runs do it at most this often (None/0: after every run).
    history_size_check_sec: int | None = DEFAULT_SIZE_CHECK_SEC


def load_settings(home: str, environ: Mapping[str, str]) -> RetentionSettings:
    """The settings of the data dir `home`: built-in defaults, then config.yaml, then the environment."""
    values: dict[str, Any] = {}
    path = os.path.join(home, CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        text = None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}; fix its permissions or remove it") from None
    if text is not None:
        for key, (raw, where) in _read_yaml(path, text).items():
            values[key] = _value(key, raw, where)
    for key, var in ENV_VARS.items():
        raw = environ.get(var)
        if raw is not None and raw.strip() != "":
            values[key] = _value(key, raw.strip(), f"environment variable {var}")
    return RetentionSettings(**values)


def _read_yaml(path: str, text: str) -> dict[str, tuple[Any, str]]:
    """Each known top-level key's value and "config.yaml:line:col"; unknown keys are left for others."""
    import yaml  # only when a config file exists: `dagu start` stays fast without one

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML ({problem}); fix the file or remove it") from None
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise ConfigError(f"{path}:{root.start_mark.line + 1}:{root.start_mark.column + 1}: expected a mapping "
                          "of settings (e.g. `max_history_size: 2GiB`)")
    found = {}
    for key_node, value_node in root.value:
        key = key_node.value
        if key in ENV_VARS:
            mark = value_node.start_mark
            found[key] = (data.get(key), f"{path}:{mark.line + 1}:{mark.column + 1}")
    return found


def _value(key: str, raw: Any, where: str) -> int | None:
    """One setting checked: an integer (a size for max_history_size), or none/off for no limit."""
    if raw is None or isinstance(raw, str) and raw.strip().lower() in NO_LIMIT:
        return None
    if key == "max_history_size":
        try:
            from dagu.process.limits import parse_size  # only for a size setting

            size = parse_size(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: max_history_size: {exc}; or `none` for no cap") from None
        if size <= 0:
            raise ConfigError(f"{where}: max_history_size {raw!r} leaves no room for any run; "
                              "give a size such as 2GiB, or `none` for no cap")
        return size
    number = raw
    if isinstance(raw, str):
        try:
            number = int(raw.strip())
        except ValueError:
            number = None
    if not isinstance(number, int) or isinstance(number, bool):
        raise ConfigError(f"{where}: {key} must be a whole number, got {raw!r}; "
                          f"e.g. `{key}: {30 if key == 'hist_retention_days' else 100}`, or `none` for no limit")
    least = 0 if key in ("hist_retention_days", "history_size_check_sec") else 1
    if number < least:
        raise ConfigError(f"{where}: {key} must be at least {least}, got {number}; "
                          "use `none` for no limit")
    return number
