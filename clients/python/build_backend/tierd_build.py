"""PEP 517 build backend of the ``tierd`` Python package: a wheel that carries libtierd.so.

``pip install clients/python`` calls :func:`build_wheel`, which builds ``libtierd.so``
with cargo (``cargo build --release -p tierd-c`` in the workspace two levels up) and
writes a wheel holding the ``tierd`` package with the library beside ``__init__.py``,
where :func:`tierd.load_library` looks first. The wheel is tagged ``py3-none-<platform>``:
the library is native, the Python code is plain ctypes (no CPython ABI).

Why not setuptools: building a platform wheel with it needs the ``wheel`` package, which
neither a fresh venv nor this machine has, so pip would fetch both into an isolated build
environment from the network. This backend needs nothing beyond the standard library
(``requires = []``), so the install works offline and in a venv with nothing in it.
maturin would need network for its own wheel, and its cdylib mode wants the crate to be
the Python module.

Environment:
  TIERD_WHEEL_LIBRARY  a prebuilt libtierd.so to carry instead of running cargo
  CARGO                the cargo to run (default: cargo on PATH)
  CARGO_TARGET_DIR     where cargo builds (default: <workspace>/target)
  SOURCE_DATE_EPOCH    the wheel's file times (default 1980-01-01, reproducible)

Only wheels are built: there is no sdist (the package is built from the tierd source
tree, whose Rust workspace it needs).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

_PROJECT = Path.cwd()  # pip runs the hooks in the project directory (clients/python)


def _project_metadata() -> Dict[str, Any]:
    """``[project]`` of pyproject.toml: its string keys (name, version, ...), ``license``
    as a string, ``dependencies`` and ``optional-dependencies``."""
    text = (_PROJECT / "pyproject.toml").read_text()
    try:
        import tomllib  # Python 3.11+

        project = tomllib.loads(text)["project"]
        out: Dict[str, Any] = {k: v for k, v in project.items() if isinstance(v, str)}
        lic = project.get("license")
        if isinstance(lic, dict) and "text" in lic:
            out["license"] = lic["text"]
        out["dependencies"] = list(project.get("dependencies", []))
        out["optional-dependencies"] = dict(project.get("optional-dependencies", {}))
        return out
    except ImportError:
        pass
    # Python 3.9/3.10: `key = "value"` lines and a one-line `dependencies = [...]` of
    # [project]; extras need Python 3.11 to build.
    section = re.search(r"^\[project\]\n(.*?)(?=^\[|\Z)", text, re.S | re.M)
    if not section:
        raise RuntimeError("pyproject.toml has no [project] table")
    body = section.group(1)
    out = dict(re.findall(r'^([\w-]+)\s*=\s*"([^"]*)"', body, re.M))
    lic = re.search(r'^license\s*=\s*\{\s*text\s*=\s*"([^"]*)"', body, re.M)
    if lic:
        out["license"] = lic.group(1)
    deps = re.search(r"^dependencies\s*=\s*\[(.*?)\]", body, re.M)
    out["dependencies"] = re.findall(r'"([^"]+)"', deps.group(1)) if deps else []
    if re.search(r"^\[project\.optional-dependencies\]", text, re.M):
        raise RuntimeError("optional-dependencies need Python 3.11+ (tomllib) to build the wheel")
    out["optional-dependencies"] = {}
    return out


def _library() -> Path:
    """The libtierd.so to carry: $TIERD_WHEEL_LIBRARY, else a fresh cargo build."""
    prebuilt = os.environ.get("TIERD_WHEEL_LIBRARY")
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_file():
            raise RuntimeError(f"TIERD_WHEEL_LIBRARY={prebuilt}: no such file")
        return path
    root = _PROJECT.parent.parent
    if not (root / "Cargo.toml").is_file() or not (root / "clients" / "c").is_dir():
        raise RuntimeError(
            f"{root} is not the tierd source tree (no Cargo.toml with clients/c): build the "
            "wheel from clients/python of a checkout, or set TIERD_WHEEL_LIBRARY to a libtierd.so"
        )
    cargo = os.environ.get("CARGO", "cargo")
    cmd = [cargo, "build", "--release", "-p", "tierd-c"]
    print("tierd_build: " + " ".join(cmd), file=sys.stderr)
    try:
        # cargo's progress goes to stderr, which pip shows with -v or on failure.
        subprocess.run(cmd, cwd=root, check=True, stdout=sys.stderr)
    except FileNotFoundError as e:
        raise RuntimeError(f"{cargo} not found: building libtierd.so needs a Rust toolchain ({e})") from e
    target = Path(os.environ.get("CARGO_TARGET_DIR") or root / "target")
    if not target.is_absolute():
        target = root / target
    lib = target / "release" / "libtierd.so"
    if not lib.is_file():
        raise RuntimeError(f"cargo finished but {lib} does not exist")
    return lib


def _stripped(lib: Path) -> bytes:
    """The library without its debug info (a release build keeps line tables: 5 MB of
    the wheel), when binutils' strip is there; the library as it is otherwise."""
    strip = shutil.which("strip")
    if not strip:
        return lib.read_bytes()
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "libtierd.so"
        try:
            subprocess.run([strip, "--strip-debug", "-o", str(out), str(lib)], check=True)
        except subprocess.CalledProcessError:
            return lib.read_bytes()
        return out.read_bytes()


def _tag() -> str:
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"py3-none-{plat}"


def _dist_info(meta: Dict[str, Any]) -> Dict[str, bytes]:
    """The files of <name>-<version>.dist-info except RECORD."""
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {meta['name']}",
        f"Version: {meta['version']}",
    ]
    if "description" in meta:
        lines.append(f"Summary: {meta['description']}")
    if "license" in meta:
        lines.append(f"License: {meta['license']}")
    if "requires-python" in meta:
        lines.append(f"Requires-Python: {meta['requires-python']}")
    lines += [f"Requires-Dist: {d}" for d in meta["dependencies"]]
    for extra, deps in sorted(meta["optional-dependencies"].items()):
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {d}; extra == "{extra}"' for d in deps]
    body = ""
    readme = meta.get("readme")
    if readme and (_PROJECT / readme).is_file():
        lines.append("Description-Content-Type: text/markdown")
        body = "\n" + (_PROJECT / readme).read_text()
    wheel = [
        "Wheel-Version: 1.0",
        "Generator: tierd_build",
        "Root-Is-Purelib: false",
        f"Tag: {_tag()}",
    ]
    return {
        "METADATA": ("\n".join(lines) + "\n" + body).encode(),
        "WHEEL": ("\n".join(wheel) + "\n").encode(),
        "top_level.txt": b"tierd\n",
    }


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _write(zf: zipfile.ZipFile, name: str, data: bytes, mode: int, when: Tuple[int, ...]) -> None:
    info = zipfile.ZipInfo(name, date_time=when)
    info.external_attr = (0o100000 | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[dict] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    meta = _project_metadata()
    name, version = meta["name"], meta["version"]
    lib = _library()
    files: List[Tuple[str, bytes, int]] = []
    for src in sorted((_PROJECT / "tierd").rglob("*.py")):
        rel = src.relative_to(_PROJECT).as_posix()
        files.append((rel, src.read_bytes(), 0o644))
    files.append(("tierd/libtierd.so", _stripped(lib), 0o755))
    info_dir = f"{name}-{version}.dist-info"
    for fname, data in _dist_info(meta).items():
        files.append((f"{info_dir}/{fname}", data, 0o644))
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))
    when = time.gmtime(max(epoch, 315532800))[:6]
    wheel_name = f"{name}-{version}-{_tag()}.whl"
    out = Path(wheel_directory) / wheel_name
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        record = []
        for rel, data, mode in files:
            _write(zf, rel, data, mode, when)
            record.append(_record_line(rel, data))
        record.append(f"{info_dir}/RECORD,,")
        _write(zf, f"{info_dir}/RECORD", ("\n".join(record) + "\n").encode(), 0o644, when)
    shutil.move(str(tmp), str(out))
    return wheel_name


def get_requires_for_build_wheel(config_settings: Optional[dict] = None) -> List[str]:
    return []
