"""The frozen `dagu`'s main script: tidy the environment, find the time zone database, run the CLI.

The bootloader prepends its own library folder to LD_LIBRARY_PATH (keeping the
caller's value in LD_LIBRARY_PATH_ORIG) and sets _PYI_* variables.  This
process has loaded its libraries already (the dynamic loader reads
LD_LIBRARY_PATH once, at exec), so both are taken out of os.environ here:
otherwise a step run with `sandbox: {inherit_env: true}` would load the
bundled libssl/libcrypto instead of the host's, and a sub-DAG's `dagu` would
be told it is a child of this one.

tzdata.zip (made by dagu.spec) goes last on sys.path: zoneinfo falls back to
it on hosts without /usr/share/zoneinfo.
"""

import os
import sys


def restore_environment(environ=os.environ) -> None:
    original = environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is None:
        environ.pop("LD_LIBRARY_PATH", None)
    else:
        environ["LD_LIBRARY_PATH"] = original
    for name in [n for n in environ if n.startswith("_PYI_")]:
        del environ[name]


restore_environment()
sys.path.append(os.path.join(getattr(sys, "_MEIPASS", ""), "tzdata.zip"))
sys.path.append(os.path.join(getattr(sys, "_MEIPASS", ""), "late"))  # ctypes: see late_ctypes in dagu.spec

from dagu.cli import run  # noqa: E402  (after the environment is restored)

run()
