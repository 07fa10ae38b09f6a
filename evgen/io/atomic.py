"""Atomic file output: write to a temporary file next to the target, then rename.

A reader never sees a half-written file: the data go to a hidden temporary file in
the destination folder (same file system, so the final ``os.replace`` is atomic),
which is flushed to disk (``fsync``) and renamed over the target only when the
writer finished without error. On any error the temporary file is removed and no
file is left behind; an existing file at the target is left untouched.

Example:
    >>> with atomic_output("events.lhe") as tmp:   # doctest: +SKIP
    ...     tmp.write_text("...")
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from evgen.errors import OutputError

__all__ = ["atomic_output", "write_all_or_nothing"]


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    """Flush a file's (or a folder's) data and metadata to disk."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # some platforms/file systems cannot open folders; the data are safe
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it becomes ``path``.

    The temporary file ``.<name>.<random>.tmp`` is created empty (mode 0666 less the
    umask, like an ordinary new file) in the target's folder. The caller may reopen or
    truncate it (uproot and gzip do). When the ``with`` block ends without exception
    the file is fsynced and atomically renamed to ``path`` (replacing an existing
    file), and the folder is fsynced.

    Raises:
        OutputError: the folder does not exist or is not writable, ``path`` is a folder,
            or the operating system fails during writing or renaming (disk full, ...);
            the message names ``path``. Any other exception from the block propagates
            unchanged. In every error case the temporary file is removed.
    """
    target = Path(path)
    folder = target.parent
    tmp = folder / f".{target.name}.{secrets.token_hex(6)}.tmp"
    try:
        if target.is_dir():
            raise IsADirectoryError(f"{target} is a directory")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
    except OSError as error:
        raise OutputError(
            f"cannot write output file {target}: {error.strerror or error}"
        ) from error
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, target)
    except OSError as error:
        _remove_quietly(tmp)
        raise OutputError(
            f"cannot write output file {target}: {error.strerror or error}"
        ) from error
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_path(folder, directory=True)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def write_all_or_nothing(
    targets: Iterable[tuple[Path, Callable[[Path], object]]], folders: Iterable[Path] = ()
) -> None:
    """Write several files all-or-nothing: each ``(path, writer)`` writes through
    :func:`atomic_output`, and the files appear only when every writer has finished; on
    any error none of them is written and the folders this call created (the targets'
    folders and ``folders``) are removed again (innermost first, only if empty)."""
    targets = list(targets)
    wanted = [*folders, *(p.parent for p, _ in targets)]
    created = list(dict.fromkeys(d for f in wanted for d in (f, *f.parents) if not d.exists()))
    created.sort(key=lambda d: len(d.parts), reverse=True)  # innermost first
    for f in wanted:
        f.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.ExitStack() as stack:
            for path, writer in targets:
                writer(stack.enter_context(atomic_output(path)))
    except BaseException:
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
