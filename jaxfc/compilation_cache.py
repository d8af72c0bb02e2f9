"""A persistent cache of compiled programs, so a rerun starts training without compiling.

Compiling the Solver's epoch takes most of the time to the first step (about a second on a
2-core CPU). JAX can keep compiled executables on disk and load them in a later process;
:func:`enable_compilation_cache` turns that on for every program, however quickly it
compiled. The ``jaxfc`` command line does so by default (``--no-compile-cache`` turns it
off); library users opt in, because the setting is global to the process::

    import jaxfc
    jaxfc.enable_compilation_cache()          # ~/.cache/jaxfc/xla, or $JAXFC_CACHE_DIR

The cache is keyed by the program, the JAX version, the device and the compiler flags, so a
change to any of them compiles afresh. The folder is trusted code: never share it with
users you do not trust (see JAX's "Persistent compilation cache" guide).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENV_VAR = "JAXFC_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$JAXFC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/jaxfc/xla`` (``~/.cache/...``)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "jaxfc" / "xla"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path:
    """Store every compiled program under ``path`` (default :func:`default_cache_dir`) and
    load it from there in later processes. Returns the folder. Raises ``OSError`` naming
    the folder if it cannot be created or written."""
    folder = Path(path).expanduser() if path is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot create the compilation cache folder {folder}: {error}") from error
    if not os.access(folder, os.W_OK):
        raise OSError(f"the compilation cache folder {folder} is not writable")
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Cache every program: the defaults skip those that compile in under a second, which on
    # a CPU is all of them.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return folder
