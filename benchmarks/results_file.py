"""benchmarks/RESULTS.md holds every benchmark's latest table, one section per script.

Each script replaces only its own section, delimited by HTML comments
``<!-- begin NAME -->`` ... ``<!-- end NAME -->``, so the integrator table and the
matrix-element table live side by side in one file. The file is written atomically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")

HEADER = """\
# Benchmark results

Each section below is written by one script in `benchmarks/` (its command, machine and
settings are in the section); rerunning a script replaces only its own section.
"""


def write_section(name: str, text: str, path: Path = RESULTS) -> Path:
    """Put ``text`` (markdown) into section ``name`` of ``path``, keeping the others."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    old = path.read_text() if path.exists() else HEADER
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        new = head + block + ("\n" + tail if tail else "")
    else:
        new = old.rstrip() + "\n\n" + block
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".md")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(new)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
