#!/usr/bin/env python3
"""Freeze `dagu` into one executable for Linux x86-64: dist/dagu.

    python build/freeze.py [--mode unpack-once|onefile|onedir] [--out PATH]

Needs PyInstaller in the running Python (`pip install '.[build]'`) and, for the
default mode, a C compiler and zlib's header (`apt-get install gcc zlib1g-dev`).

unpack-once (default)  one file: a small C launcher (build/launcher.c) followed by the
                       compressed one-dir build; the first start unpacks it into
                       ~/.cache/dagu/<version>-<hash>/, later starts check that copy and exec it
onefile                PyInstaller's one-file mode: unpacks into /tmp on every start
onedir                 PyInstaller's one-dir mode: a folder with `dagu` and `_internal/`

The README's "One executable" section has the figures behind the default.
Work files go to .pyinstaller/ (PyInstaller's default, ./build, is this folder).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import tomllib
import zlib

BUILD = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BUILD)
WORK = os.path.join(ROOT, ".pyinstaller")
MAGIC = b"DAGUPAK1"
TRAILER = struct.Struct("<QQQ32s24s8s")  # payload offset, payload size, file count, sha256, tag, magic
RECORD = struct.Struct("<cHHQ")          # kind, mode, path length, size


class FreezeError(Exception):
    """A build step failed: the message says which and what to do."""


def version() -> str:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)["project"]["version"]


def pyinstaller(mode: str, dist: str) -> str:
    """Run PyInstaller on build/dagu.spec; return the path it produced (a file or a folder)."""
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        raise FreezeError(f"PyInstaller is not installed in {sys.executable}: pip install '.[build]'") from None
    argv = [sys.executable, "-m", "PyInstaller", os.path.join(BUILD, "dagu.spec"), "--noconfirm",
            "--log-level", "WARN", "--workpath", os.path.join(WORK, f"work-{mode}"), "--distpath", dist,
            "--", "--mode", mode]
    if subprocess.run(argv, cwd=ROOT).returncode != 0:
        raise FreezeError("PyInstaller failed (its messages are above)")
    return os.path.join(dist, "dagu")


def compile_launcher(out: str) -> None:
    """cc build/launcher.c, with zlib linked statically when libz.a is there (the host then needs only libc)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise FreezeError("no C compiler for the launcher: install gcc (or use --mode onefile)")
    base = [cc, "-O2", "-s", "-Wall", "-Wextra", "-o", out, os.path.join(BUILD, "launcher.c")]
    for libs in (["-Wl,-Bstatic", "-lz", "-Wl,-Bdynamic"], ["-lz"]):
        done = subprocess.run(base + libs, capture_output=True, text=True)
        if done.returncode == 0:
            if done.stderr.strip():
                print(done.stderr, file=sys.stderr)
            return
    raise FreezeError(f"cannot compile the launcher (need zlib.h: apt-get install zlib1g-dev):\n{done.stderr}")


def payload(folder: str) -> tuple[bytes, int]:
    """The one-dir build as a zlib stream of records (directories before their contents); and its file count."""
    records, files = [], 0
    for top, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(dirs) + sorted(names):
            path = os.path.join(top, name)
            rel = os.path.relpath(path, folder).encode()
            st = os.lstat(path)
            if os.path.islink(path):
                target = os.readlink(path).encode()
                records += [RECORD.pack(b"l", 0o777, len(rel), len(target)), rel, target]
            elif os.path.isdir(path):
                records += [RECORD.pack(b"d", 0o700, len(rel), 0), rel]
            else:
                with open(path, "rb") as fh:
                    data = fh.read()
                records += [RECORD.pack(b"f", st.st_mode & 0o777, len(rel), len(data)), rel, data]
                files += 1
    return zlib.compress(b"".join(records), 9), files


def unpack_once(out: str) -> None:
    """Launcher + payload + trailer into `out`."""
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        folder = pyinstaller("onedir", tmp)
        launcher = os.path.join(tmp, "launcher")
        compile_launcher(launcher)
        with open(launcher, "rb") as fh:
            program = fh.read()
        data, files = payload(folder)
    tag = version().encode()[:23]
    digest = hashlib.sha256(program + data).digest()
    trailer = TRAILER.pack(len(program), len(data), files, digest, tag, MAGIC)
    write_executable(out, program + data + trailer)


def write_executable(out: str, blob: bytes) -> None:
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    tmp = f"{out}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(blob)
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)


def freeze(mode: str, out: str) -> str:
    os.makedirs(WORK, exist_ok=True)
    if mode == "unpack-once":
        unpack_once(out)
        return out
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        built = pyinstaller(mode, tmp)
        if os.path.lexists(out):
            shutil.rmtree(out) if os.path.isdir(out) and not os.path.islink(out) else os.remove(out)
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        shutil.move(built, out)
    return out


def size_of(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("unpack-once", "onefile", "onedir"), default="unpack-once")
    ap.add_argument("--out", help="where to put the result (default: dist/dagu, or dist/dagu-onedir/ for onedir)")
    args = ap.parse_args(argv)
    if sys.platform != "linux":
        ap.error("builds for Linux only")
    out = os.path.abspath(args.out or os.path.join(ROOT, "dist", "dagu-onedir" if args.mode == "onedir" else "dagu"))
    try:
        path = freeze(args.mode, out)
    except FreezeError as exc:
        print(f"freeze: {exc}", file=sys.stderr)
        return 1
    run = os.path.join(path, "dagu") if os.path.isdir(path) else path
    print(f"{args.mode}: {run} ({size_of(path) / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
