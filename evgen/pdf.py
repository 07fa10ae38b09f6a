"""Parton distributions from LHAPDF 6 ``lhagrid1`` grids, evaluated in batches with torch.

A :class:`PDFSet` is one member of an LHAPDF 6 set: ``xfx(pid, x, q2)`` returns x f(x, Q^2)
for a batch of points, ``xfx_all(x, q2)`` all partons -6..6 at once. Everything is float64
and runs on CPU or CUDA tensors alike (:meth:`PDFSet.to`); there is no loop over points.
The numbers are LHAPDF's own (read from LHAPDF 6 ``src/LogBicubicInterpolator.cc``,
``GridPDF.cc``, ``KnotArray.h``, ``ContinuationExtrapolator.cc``,
``NearestPointExtrapolator.cc``, ``ErrExtrapolator.cc``, ``PDF.cc``, ``Paths.cc``), to
rounding.

Grid format (``lhagrid1``): metadata lines up to a ``---`` line, then one or more subgrid
blocks, each: a line of x knots, a line of Q knots (GeV; Q^2 = Q*Q), a line of flavour PDG
ids, then one line per (x, Q) pair, x the slow index, with one x f value per flavour; each
block ends with ``---``. Lines starting with ``#`` and blank lines are skipped. All blocks
share the x knots and flavours (as LHAPDF >= 6.4 requires); consecutive blocks share their
boundary Q knot.

Interpolation (LHAPDF's default ``logcubic``, ``LogBicubicInterpolator``), with
u = ln x, v = ln Q^2 and f the tabulated x f:

1. Cells: x is in [x_i, x_i+1) with i the last knot <= x (the last interval for x = x_max);
   likewise Q^2 in its subgrid block. A Q^2 on a boundary between two blocks belongs to the
   upper block; Q^2 = Q^2_max to the last interval.
2. In x, on each of the 4 Q rows j-1..j+2 around the cell: a cubic Hermite polynomial in u
   between f_i and f_i+1 with knot slopes d_i = [s_i-1 + s_i] / 2, the plain (unweighted)
   mean of the adjacent secant slopes s_i = (f_i+1 - f_i)/(u_i+1 - u_i); at the first and
   last x knot the single adjacent secant.
3. In Q: the 4 values of step 2, g_j-1..g_j+2, give slopes at v_j and v_j+1 by the same rule
   (one-sided at the edges of the block, so nothing is taken across a block boundary), then a
   cubic Hermite polynomial in v.
4. A block with only two Q knots is interpolated bilinearly in (u, v) instead (LHAPDF >= 6.4;
   LHAPDF < 6.4 did so for blocks with 2 or 3 Q knots).

The slope rule is exact for polynomials of degree <= 2 on uniformly spaced knots (and degree 1
on the edge knots), so the interpolation reproduces a function biquadratic in (ln x, ln Q^2)
exactly away from the edges, and a bilinear one everywhere; it does not reproduce cubics.

Extrapolation outside [x_min, x_max] x [Q^2_min, Q^2_max] (the first and last knots), chosen by
``load_pdf(..., extrapolator=...)``; the default is the set's ``Extrapolator`` entry, else
LHAPDF's default ``continuation``:

* ``"continuation"`` (LHAPDF's ``ContinuationExtrapolator``, from the MSTW code):
  with L(z; z1, z2, f1, f2) the straight line through (ln z1, f1), (ln z2, f2), taken in
  ln f when f1 > 1e-3 and f2 > 1e-3 (so f stays positive), in f otherwise:

  - x < x_min: L(x; x_min, x_1, f(x_min), f(x_1)), x_1 the second x knot;
  - Q^2 > Q^2_max: L(Q^2; Q^2_max, Q'^2, f(Q^2_max), f(Q'^2)) at fixed x, Q'^2 the
    second-to-last Q^2 knot (both Q^2 > Q^2_max and x < x_min: first in Q^2 at x_min and
    x_1, then in x);
  - Q^2 < Q^2_min: f(Q^2_min) (Q^2/Q^2_min)^(g r + 1 - r), r = Q^2/Q^2_min, with the
    anomalous dimension g = max(-2.5, [f(1.01 Q^2_min) - f(Q^2_min)]/(0.01 f(Q^2_min))), or
    g = 1 if |f(Q^2_min)| < 1e-5, so that f -> 0 as Q^2 -> 0 (with x < x_min, f(Q^2_min)
    and f(1.01 Q^2_min) are first continued in x);
  - x > x_max raises :class:`~evgen.errors.PDFError`.
* ``"nearest"``: an out-of-range x or Q^2 is replaced by the nearest edge of the grid
  (LHAPDF's ``NearestPointExtrapolator``; evgen clamps also above the grid, where LHAPDF
  reads past the end of its knot array).
* ``"error"``: any point outside the grid raises :class:`~evgen.errors.PDFError`.

As LHAPDF, x outside [0, 1], Q^2 < 0 or NaN raise :class:`~evgen.errors.PDFError`, PDG id 0 means
the gluon (21), a flavour not in the grid gives 0, and the set's ``ForcePositive`` (1: clip
at 0, 2: at 1e-10) is applied. Inputs are converted to float64 (a float32 x carries its
float32 rounding: build x and Q^2 in float64). Each call synchronises with the device once
(to test whether all points are inside the grid), a batch with points outside a few times.

Finding a set (:func:`find_pdf`), in this order:

1. ``name`` is an existing path: a set folder (holding ``<folder name>.info``), the ``.info``
   file, or a member file ``<set>_<nnnn>.dat``;
2. the folder ``<name>`` in each folder of ``LHAPDF_DATA_PATH`` (colon-separated; ``LHAPATH``
   if that is unset; a trailing ``::`` stops the search there, as in LHAPDF), then
   ``LHAPDF_DATA_PREFIX`` (and its ``LHAPDF`` subfolder), then ``<sys.prefix>/share/LHAPDF``,
   ``/usr/share/LHAPDF``, ``/usr/local/share/LHAPDF``, ``$CONDA_PREFIX/share/LHAPDF`` and
   ``lhapdf-config --datadir`` if that program exists;
3. for evgen's default set ``NNPDF23_lo_as_0130_qed`` only: the member-0 grid shipped in the
   ``pythia8mc`` wheel (``share/Pythia8/pdfdata/``, byte-identical to LHAPDF's), with the
   set's metadata from evgen's built-in copy of its ``.info``.

Example:
    >>> pdf = load_pdf("NNPDF23_lo_as_0130_qed")
    >>> x = torch.tensor([1e-3, 0.1]); q2 = torch.tensor([100.0**2, 100.0**2])
    >>> pdf.xfx_all(x, q2).shape
    torch.Size([2, 13])
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from evgen.errors import PDFError

if TYPE_CHECKING:
    from evgen.alphas import AlphaS

__all__ = ["PDFSet", "load_pdf", "find_pdf", "DEFAULT_PDF_SET", "EXTRAPOLATORS"]

#: evgen's default PDF set: MadGraph's ``nn23lo1`` and Pythia 8's default.
DEFAULT_PDF_SET = "NNPDF23_lo_as_0130_qed"

#: Extrapolators understood by :func:`load_pdf` (LHAPDF's names).
EXTRAPOLATORS = ("continuation", "nearest", "error")

#: The standard partons of :meth:`PDFSet.xfx_all`: column ``pid + 6``.
_STANDARD_PIDS = tuple(range(-6, 7))
_GLUON = 21

# evgen's copy of NNPDF23_lo_as_0130_qed.info (LHAPDF 6), used with the pythia8mc grid.
_BUILTIN_INFO: dict[str, dict[str, Any]] = {
    DEFAULT_PDF_SET: {
        "SetDesc": (
            "NNPDF2.3 QCD+QED LO, alphas(MZ)=0.130 (central member only). The default LO set "
            "of MadGraph5_aMC@NLO (nn23lo1) and of Pythia 8."
        ),
        "SetIndex": 247000,
        "Authors": "NNPDF Collaboration",
        "Reference": "arXiv:1308.0598",
        "Format": "lhagrid1",
        "DataVersion": 1,
        "NumMembers": 1,
        "Particle": 2212,
        "Flavors": [-6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 21, 22],
        "OrderQCD": 0,
        "FlavorScheme": "variable",
        "NumFlavors": 5,
        "XMin": 1.0e-09,
        "XMax": 1.0,
        "QMin": 1.0,
        "QMax": 10000000.0,
        "MZ": 91.1876,
        "MUp": 0,
        "MDown": 0,
        "MStrange": 0,
        "MCharm": 1.414213562,
        "MBottom": 4.75,
        "MTop": 175.0,
        "AlphaS_MZ": 0.130,
        "AlphaS_OrderQCD": 0,
    }
}
_PYTHIA_DIST = "pythia8mc"
_PYTHIA_PDFDATA = "share/Pythia8/pdfdata"

_QUARK_MASS_KEYS = {1: "MDown", 2: "MUp", 3: "MStrange", 4: "MCharm", 5: "MBottom", 6: "MTop"}
_MEMBER_FILE = re.compile(r"^(?P<set>.+)_(?P<member>\d{4})\.dat$")


# --------------------------------------------------------------------------- finding sets


def _search_folders(
    search_paths: Sequence[str | os.PathLike[str]] | None,
) -> list[tuple[Path, str]]:
    """The folders searched for set folders, in order, each with where it came from."""
    folders: list[tuple[Path, str]] = [(Path(p), "search_paths") for p in search_paths or ()]
    env_name = "LHAPDF_DATA_PATH" if "LHAPDF_DATA_PATH" in os.environ else "LHAPATH"
    env = os.environ.get(env_name, "")
    folders += [(Path(p), env_name) for p in env.split(":") if p]
    if env.endswith("::"):  # LHAPDF: a trailing '::' blocks the default locations
        return folders
    prefix = os.environ.get("LHAPDF_DATA_PREFIX", "")
    for p in prefix.split(":"):
        if p:
            folders += [(Path(p), "LHAPDF_DATA_PREFIX"), (Path(p) / "LHAPDF", "LHAPDF_DATA_PREFIX")]
    folders.append((Path(sys.prefix) / "share" / "LHAPDF", "sys.prefix"))
    folders.append((Path("/usr/share/LHAPDF"), "system"))
    folders.append((Path("/usr/local/share/LHAPDF"), "system"))
    if os.environ.get("CONDA_PREFIX"):
        folders.append((Path(os.environ["CONDA_PREFIX"]) / "share" / "LHAPDF", "CONDA_PREFIX"))
    config = shutil.which("lhapdf-config")
    if config:
        try:
            out = subprocess.run(
                [config, "--datadir"], capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            folders.append((Path(out), "lhapdf-config --datadir"))
    return folders


def _pythia_member0(name: str) -> Path | None:
    """The member-0 grid of ``name`` inside the installed pythia8mc wheel, if there is one."""
    try:
        files = importlib.metadata.files(_PYTHIA_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    target = f"{_PYTHIA_PDFDATA}/{name}_0000.dat"
    for f in files or ():
        if str(f).replace("\\", "/").endswith(target):
            path = Path(str(f.locate())).resolve()
            if path.is_file():
                return path
    return None


def _member_path(folder: Path, set_name: str, member: int) -> Path:
    return folder / f"{set_name}_{member:04d}.dat"


def find_pdf(
    name: str | os.PathLike[str],
    member: int = 0,
    *,
    search_paths: Sequence[str | os.PathLike[str]] | None = None,
) -> tuple[Path | None, Path]:
    """Locate a PDF set: ``(info file, data file of member)``, by the rules of the module doc.

    The info file is ``None`` when the set comes from the pythia8mc wheel (its metadata is
    then evgen's built-in copy). ``search_paths`` are searched before ``LHAPDF_DATA_PATH``.
    Raises :class:`~evgen.errors.PDFError` naming every place searched if the set is not found.
    """
    if member < 0:
        raise PDFError(f"PDF set {name}: member must be >= 0, got {member}")
    raw = os.fspath(name)
    path = Path(raw).expanduser()
    if path.is_dir():
        info = path / f"{path.name}.info"
        if not info.is_file():
            raise PDFError(
                f"PDF set folder {path} holds no {info.name}: an LHAPDF set folder <name> "
                "must contain <name>.info and <name>_0000.dat"
            )
        return info, _existing_member(info, _member_path(path, path.name, member))
    if path.is_file():
        if path.suffix == ".info":
            return path, _existing_member(path, _member_path(path.parent, path.stem, member))
        match = _MEMBER_FILE.match(path.name)
        if match is None:
            raise PDFError(
                f"{path}: not a PDF set: give a set name, a set folder, its .info file or a "
                "member file <set>_<nnnn>.dat"
            )
        info = path.parent / f"{match['set']}.info"
        if info.is_file():
            return info, path
        if match["set"] in _BUILTIN_INFO:
            return None, path
        raise PDFError(f"{path}: no {info.name} next to the member file, so no set metadata")

    set_name = raw
    searched: list[str] = [f"{raw} (as a path: does not exist)"]
    if "/" in set_name or set_name.endswith((".info", ".dat")):
        raise PDFError(f"PDF set {raw}: no such file or folder")
    for folder, source in _search_folders(search_paths):
        info = folder / set_name / f"{set_name}.info"
        dat = _member_path(folder / set_name, set_name, member)
        if info.is_file() and dat.is_file():
            return info, dat
        state = "no such folder" if not folder.is_dir() else "not there"
        if info.is_file():
            state = f"set there but no {dat.name}"
        searched.append(f"{folder} ({source}: {state})")
    if set_name in _BUILTIN_INFO:
        shipped = _pythia_member0(set_name) if member == 0 else None
        if shipped is not None:
            return None, shipped
        where = f"{_PYTHIA_DIST} wheel, {_PYTHIA_PDFDATA}/"
        searched.append(
            f"{where} ({'only member 0 is shipped' if member else 'not installed or no grid'})"
        )
    raise PDFError(
        f"PDF set {set_name} (member {member}) not found; searched: {'; '.join(searched)}. "
        f"To fix: download it (https://lhapdfsets.web.cern.ch/current/{set_name}.tar.gz), "
        "unpack it into a folder and put that folder in LHAPDF_DATA_PATH (colon-separated), "
        "or give the set's folder or .info file as the PDF name"
    )


def _existing_member(info: Path, dat: Path) -> Path:
    if not dat.is_file():
        raise PDFError(f"PDF set {info.stem}: member file {dat} not found (set metadata {info})")
    return dat


# ---------------------------------------------------------------------------- reading files


def _parse_metadata(text: str, path: Path, first_line: int = 1) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = first_line + mark.line if mark is not None else first_line
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise PDFError(f"{path}, line {line}: malformed metadata ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PDFError(f"{path}, line {first_line}: metadata must be 'Key: value' lines")
    return data


@dataclass(frozen=True)
class _RawGrid:
    """A member file as read: merged knots (Q^2 with repeated block-boundary knots)."""

    xs: np.ndarray  # (nx,)
    q2s: np.ndarray  # (nq,) all blocks, boundary knots repeated
    pids: tuple[int, ...]
    values: np.ndarray  # (nx, nq, n_flavours)
    header: dict[str, Any]


def _floats(path: Path, lineno: int, text: str, what: str) -> np.ndarray:
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError:
        bad = next(t for t in text.split() if not _is_float(t))
        raise PDFError(f"{path}, line {lineno}: {what}: cannot read {bad!r} as a number") from None
    if values.size == 0:
        raise PDFError(f"{path}, line {lineno}: {what}: empty line")
    return values


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _read_lhagrid1(path: Path) -> _RawGrid:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as err:
        raise PDFError(f"{path}: cannot read PDF grid ({err.strerror})") from None
    header: list[str] = []
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] | None = None
    last_separator = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "---":
            if current is not None:
                blocks.append(current)
            current = []
            last_separator = lineno
        elif current is None:
            header.append(raw)
        else:
            current.append((lineno, line))
    if current is None:
        raise PDFError(f"{path}: no '---' line: not an LHAPDF lhagrid1 grid file")
    if current:
        raise PDFError(f"{path}, line {current[-1][0]}: grid file not terminated by a '---' line")
    if not blocks:
        raise PDFError(f"{path}, line {last_separator}: no subgrid block after the metadata")
    meta = _parse_metadata("\n".join(header), path)
    fmt = meta.get("Format", "lhagrid1")
    if fmt != "lhagrid1":
        raise PDFError(f"{path}: Format is {fmt!r}; evgen reads only 'lhagrid1'")

    xs0: np.ndarray | None = None
    pids0: tuple[int, ...] = ()
    q2_blocks: list[np.ndarray] = []
    value_blocks: list[np.ndarray] = []
    for iblock, block in enumerate(blocks):
        if len(block) < 3:
            at = block[-1][0] if block else last_separator
            raise PDFError(
                f"{path}, line {at}: subgrid block {iblock} needs an x-knot line, a Q-knot "
                "line and a flavour line before its values"
            )
        (lx, tx), (lq, tq), (lf, tf) = block[:3]
        xs = _floats(path, lx, tx, "x knots")
        qs = _floats(path, lq, tq, "Q knots")
        try:
            pids = tuple(int(t) for t in tf.split())
        except ValueError:
            raise PDFError(f"{path}, line {lf}: flavour line must hold integer PDG ids") from None
        if xs.size < 4 or not (np.all(np.diff(xs) > 0) and xs[0] > 0):
            raise PDFError(
                f"{path}, line {lx}: x knots must be positive, increasing and at least 4 "
                "(log-bicubic interpolation)"
            )
        if qs.size < 2 or not (np.all(np.diff(qs) > 0) and qs[0] > 0):
            raise PDFError(f"{path}, line {lq}: Q knots must be positive, increasing and >= 2")
        if xs0 is None:
            xs0, pids0 = xs, pids
        else:
            if not np.array_equal(xs, xs0):
                raise PDFError(f"{path}, line {lx}: x knots differ from those of block 0")
            if pids != pids0:
                raise PDFError(f"{path}, line {lf}: flavours differ from those of block 0")
            if qs[0] * qs[0] < q2_blocks[-1][-1]:
                raise PDFError(
                    f"{path}, line {lq}: Q knots overlap the previous block (starts at "
                    f"{qs[0]} GeV, previous block ends at {math.sqrt(q2_blocks[-1][-1])} GeV)"
                )
        rows = block[3:]
        nx, nq, nf = xs.size, qs.size, len(pids)
        if len(rows) != nx * nq:
            at = rows[-1][0] + 1 if rows else lf + 1
            raise PDFError(
                f"{path}, line {at}: block {iblock} has {len(rows)} value lines, expected "
                f"{nx} x knots * {nq} Q knots = {nx * nq}"
            )
        tokens = [r[1].split() for r in rows]
        for (lineno, _), toks in zip(rows, tokens, strict=True):
            if len(toks) != nf:
                raise PDFError(
                    f"{path}, line {lineno}: {len(toks)} values, expected one per flavour ({nf})"
                )
        try:
            flat = np.array(list(chain.from_iterable(tokens)), dtype=np.float64)
        except ValueError:
            for (lineno, _), toks in zip(rows, tokens, strict=True):
                bad = [t for t in toks if not _is_float(t)]
                if bad:
                    raise PDFError(
                        f"{path}, line {lineno}: cannot read {bad[0]!r} as a number"
                    ) from None
            raise
        q2_blocks.append(qs * qs)  # as LHAPDF: Q^2 = Q*Q
        value_blocks.append(flat.reshape(nx, nq, nf))
    assert xs0 is not None
    return _RawGrid(
        xs=xs0,
        q2s=np.concatenate(q2_blocks),
        pids=pids0,
        values=np.concatenate(value_blocks, axis=1),
        header=meta,
    )


# ------------------------------------------------------------------------- the tables


@dataclass(frozen=True)
class _Tables:
    """Device tensors of one member: knots, per-cell Hermite data in x, per-Q-interval rules."""

    xs: Tensor  # (nx,)
    logxs: Tensor  # (nx,)
    dlogx: Tensor  # (nx-1,)
    q2s: Tensor  # (nq,) merged, boundary knots repeated
    logq2s: Tensor  # (nq,)
    dlogq: Tensor  # (nq-1,) width of interval iq (1 where zero width: never used)
    ratio_lo: Tensor  # (nq-1,) dlogq[iq] / dlogq[iq-1] (0 at a lower block edge)
    ratio_hi: Tensor  # (nq-1,) dlogq[iq] / dlogq[iq+1] (0 at an upper block edge)
    lower_edge: Tensor  # (nq-1,) bool: iq is the first knot of a block
    upper_edge: Tensor  # (nq-1,) bool: iq+1 is the last knot of a block
    coeffs: Tensor  # ((nx-1)*nq*4, n_columns): row 4 cell + k: f_i, h d_i, f_i+1, h d_i+1
    values: Tensor | None  # (nx*nq, n_columns), only for blocks of two Q knots
    nq: int

    def to(self, device: torch.device | str) -> _Tables:
        moved: dict[str, Any] = {
            k: v.to(device) for k, v in self.__dict__.items() if isinstance(v, Tensor)
        }
        return dataclasses.replace(self, **moved)


def _build_tables(raw: _RawGrid, columns: Sequence[int | None]) -> _Tables:
    """Tables for the grid flavours at ``columns`` (None: a zero column for a missing pid)."""
    xs, q2s = raw.xs, raw.q2s
    nx, nq = xs.size, q2s.size
    vals = np.zeros((nx, nq, len(columns)))
    for j, col in enumerate(columns):
        if col is not None:
            vals[:, :, j] = raw.values[:, :, col]
    logx = np.log(xs)
    dlx = logx[1:] - logx[:-1]
    # Knot slopes in ln x (LHAPDF's _ddx): mean of the adjacent secants, one-sided at the ends.
    secant = (vals[1:] - vals[:-1]) / dlx[:, None, None]
    slope = np.empty_like(vals)
    slope[0], slope[-1] = secant[0], secant[-1]
    slope[1:-1] = (secant[:-1] + secant[1:]) / 2.0
    vl, vh = vals[:-1], vals[1:]
    vdl, vdh = slope[:-1] * dlx[:, None, None], slope[1:] * dlx[:, None, None]
    # Per cell the Hermite data (f_i, d_i h, f_i+1, d_i+1 h): exact at both ends, t = 0, 1.
    coeffs = np.stack([vl, vdl, vh, vdh], axis=2)  # (nx-1, nq, 4, ncol)

    logq2 = np.log(q2s)
    width = logq2[1:] - logq2[:-1]  # (nq-1,)
    iq = np.arange(nq - 1)
    lower = (iq == 0) | np.r_[False, q2s[1:-1] == q2s[:-2]]
    upper = (iq + 1 == nq - 1) | np.r_[q2s[1:-1] == q2s[2:], False]
    safe = np.where(width > 0, width, 1.0)
    prev = np.r_[1.0, safe[:-1]]
    nxt = np.r_[safe[1:], 1.0]
    ratio_lo = np.where(lower, 0.0, safe * (1.0 / prev))
    ratio_hi = np.where(upper, 0.0, safe * (1.0 / nxt))
    two_knot_blocks = bool(np.any(lower & upper & (width > 0)))

    def t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    return _Tables(
        xs=t(xs),
        logxs=t(logx),
        dlogx=t(dlx),
        q2s=t(q2s),
        logq2s=t(logq2),
        dlogq=t(safe),
        ratio_lo=t(ratio_lo),
        ratio_hi=t(ratio_hi),
        lower_edge=t(lower),
        upper_edge=t(upper),
        coeffs=t(coeffs.reshape((nx - 1) * nq * 4, len(columns))),
        values=t(vals.reshape(nx * nq, len(columns))) if two_knot_blocks else None,
        nq=nq,
    )


def _interpolate(tab: _Tables, x: Tensor, q2: Tensor) -> Tensor:
    """LHAPDF's log-bicubic interpolation at in-range points: (n,), (n,) -> (n, n_columns).

    The result is linear in the 16 Hermite data (value and slope at both x knots) of the 4 Q
    rows around the cell, so the x polynomials, the Q slopes (with their edge rules) and the
    Q Hermite polynomial fold into 16 weights per point, and one weighted gather-sum of the
    tabulated data gives all flavours at once (the same polynomial as LHAPDF's, up to
    rounding).
    """
    nx, nq = tab.xs.numel(), tab.nq
    ix = (torch.searchsorted(tab.xs, x, right=True).clamp(max=nx - 1) - 1).clamp(min=0)
    iq = (torch.searchsorted(tab.q2s, q2, right=True).clamp(max=nq - 1) - 1).clamp(min=0)
    tx = (torch.log(x) - tab.logxs[ix]) / tab.dlogx[ix]
    tq = (torch.log(q2) - tab.logq2s[iq]) / tab.dlogq[iq]
    # x: cubic Hermite basis of the cell data (f_i, h d_i, f_i+1, h d_i+1).
    tx2 = tx * tx
    tx3 = tx2 * tx
    basis_x = torch.stack(
        [2 * tx3 - 3 * tx2 + 1, tx3 - 2 * tx2 + tx, -2 * tx3 + 3 * tx2, tx3 - tx2], dim=1
    )  # (n, 4)
    # Q Hermite basis and knot slopes: vdl = al (vh - vl) + bl (vl - vll),
    # vdh = ah (vh - vl) + bh (vhh - vh), one-sided at the block edges.
    tq2 = tq * tq
    tq3 = tq2 * tq
    h00, h10 = 2 * tq3 - 3 * tq2 + 1, tq3 - 2 * tq2 + tq
    h01, h11 = -2 * tq3 + 3 * tq2, tq3 - tq2
    lower, upper = tab.lower_edge[iq], tab.upper_edge[iq]
    al = torch.where(lower, 1.0, 0.5)
    bl = torch.where(lower, 0.0, 0.5 * tab.ratio_lo[iq])
    only_upper = ~lower & upper
    ah = torch.where(only_upper, 1.0, 0.5)
    bh = torch.where(only_upper, 0.0, 0.5 * tab.ratio_hi[iq])
    w_rows = torch.stack(
        [
            -h10 * bl,
            h00 - h10 * al + h10 * bl - h11 * ah,
            h01 + h10 * al + h11 * ah - h11 * bh,
            h11 * bh,
        ],
        dim=1,
    )  # (n, 4): weights of the rows iq-1, iq, iq+1, iq+2
    weights = (w_rows[:, :, None] * basis_x[:, None, :]).reshape(-1, 16)
    # Coefficient rows: cell (ix, iq + r) holds its 4 Hermite data at rows 4 cell + k.
    rows = (iq[:, None] + torch.arange(-1, 3, device=iq.device)).clamp(0, nq - 1)
    cells = ix[:, None] * nq + rows  # (n, 4)
    index = (cells[:, :, None] * 4 + torch.arange(4, device=iq.device)).reshape(-1, 16)
    # Weighted sum of the 16 gathered coefficient rows per point, without materialising
    # the (n, 16, ncol) gather: embedding_bag is exactly that operation.
    out = F.embedding_bag(index, tab.coeffs, per_sample_weights=weights, mode="sum")
    if tab.values is not None:  # blocks with two Q knots: bilinear in (ln x, ln Q^2)
        v = tab.values
        f00, f10 = v[ix * nq + iq], v[(ix + 1) * nq + iq]
        f01, f11 = v[ix * nq + iq + 1], v[(ix + 1) * nq + iq + 1]
        sx, sq = tx[:, None], tq[:, None]
        lo = f00 + sx * (f10 - f00)
        hi = f01 + sx * (f11 - f01)
        out = torch.where((lower & upper)[:, None], lo + sq * (hi - lo), out)
    return out


def _line(z: Tensor, z1: float, z2: float, f1: Tensor, f2: Tensor) -> Tensor:
    """LHAPDF's continuation line through (ln z1, f1), (ln z2, f2), in ln f if both > 1e-3."""
    s = ((torch.log(z) - math.log(z1)) / (math.log(z2) - math.log(z1)))[:, None]
    positive = (f1 > 1e-3) & (f2 > 1e-3)
    in_log = torch.exp(
        torch.log(torch.where(positive, f1, 1.0))
        + s
        * (torch.log(torch.where(positive, f2, 1.0)) - torch.log(torch.where(positive, f1, 1.0)))
    )
    return torch.where(positive, in_log, f1 + s * (f2 - f1))


# ------------------------------------------------------------------------------ the set


class PDFSet:
    """One member of an LHAPDF 6 set, evaluated in batches (see the module docstring).

    Attributes:
        name: set name, e.g. ``"NNPDF23_lo_as_0130_qed"``.
        member: member number (0 = central).
        lhapdf_id: LHAPDF id, SetIndex + member (247000 here); -1 if the set has none.
        alpha_s_mz: ``AlphaS_MZ`` of the set (NaN if absent); ``alpha_s_order_qcd`` its order.
        mz: ``MZ`` of the set in GeV (LHAPDF's default 91.1876 if absent).
        order_qcd: ``OrderQCD`` (0 = LO).
        quark_masses: {PDG id: mass in GeV} from ``MDown .. MTop``, those present.
        flavours: PDG ids in the grid, file order (21 = gluon; ``xfx`` takes 0 for it too).
        x_min, x_max: first and last x knot; q_min, q_max: first and last Q knot (GeV).
        info: all metadata, the member file's entries over the set's ``.info``.
        path: the member's grid file; extrapolator: the extrapolation rule in use.
    """

    def __init__(
        self,
        *,
        name: str,
        member: int,
        info: Mapping[str, Any],
        raw: _RawGrid,
        path: Path,
        extrapolator: str,
    ) -> None:
        self.name = name
        self.member = member
        self.info = dict(info)
        self.path = path
        self.extrapolator = extrapolator
        where = f"PDF set {name} ({path})"

        def number(key: str, default: float) -> float:
            value = self.info.get(key, default)
            try:
                return float(value)
            except (TypeError, ValueError):
                raise PDFError(f"{where}: metadata {key} = {value!r} is not a number") from None

        self.lhapdf_id = int(number("SetIndex", -1)) + member if "SetIndex" in self.info else -1
        self.alpha_s_mz = number("AlphaS_MZ", math.nan)
        self.alpha_s_order_qcd = int(number("AlphaS_OrderQCD", -1))
        self.mz = number("MZ", 91.1876)
        self.order_qcd = int(number("OrderQCD", 0))
        self.quark_masses = {
            pid: number(key, 0.0) for pid, key in _QUARK_MASS_KEYS.items() if key in self.info
        }
        self.flavours = raw.pids
        declared = self.info.get("Flavors")
        if declared is not None and len(declared) != len(raw.pids):
            raise PDFError(
                f"{where}: grid has {len(raw.pids)} flavours {list(raw.pids)} but the metadata "
                f"declares {len(declared)} (Flavors: {declared})"
            )
        interp = str(self.info.get("Interpolator", "logcubic")).lower()
        if interp != "logcubic":
            raise PDFError(f"{where}: Interpolator {interp!r} not supported; evgen has 'logcubic'")
        self._force_positive = int(number("ForcePositive", 0))
        if self._force_positive not in (0, 1, 2):
            raise PDFError(f"{where}: ForcePositive must be 0, 1 or 2, got {self._force_positive}")
        self.x_min, self.x_max = float(raw.xs[0]), float(raw.xs[-1])
        self._q2_min, self._q2_max = float(raw.q2s[0]), float(raw.q2s[-1])
        self.q_min, self.q_max = math.sqrt(self._q2_min), math.sqrt(self._q2_max)
        distinct_q2 = np.unique(raw.q2s)
        self._x_second = float(raw.xs[1])
        self._q2_second_last = float(distinct_q2[-2])

        index = {pid: i for i, pid in enumerate(raw.pids)}
        self._std = _build_tables(raw, [index.get(_GLUON if p == 0 else p) for p in _STANDARD_PIDS])
        self._single = {pid: _build_tables(raw, [i]) for pid, i in index.items()}
        self._alpha_s: AlphaS | None = None

    # ----------------------------------------------------------------- device handling

    @property
    def device(self) -> torch.device:
        return self._std.xs.device

    def to(self, device: torch.device | str) -> PDFSet:
        """A copy of this member with its tables on ``device``."""
        new = object.__new__(PDFSet)
        new.__dict__.update(self.__dict__)
        new._std = self._std.to(device)
        new._single = {pid: tab.to(device) for pid, tab in self._single.items()}
        return new

    # --------------------------------------------------------------------- evaluation

    def xfx(self, pid: int, x: Tensor, q2: Tensor) -> Tensor:
        """x f(x, Q^2) of parton ``pid`` (0 or 21: gluon); x, Q^2 (GeV^2) broadcastable.

        Returns float64 of the broadcast shape; zeros for a flavour not in the grid.
        """
        pid = _GLUON if pid == 0 else int(pid)
        x, q2, shape = self._prepare(x, q2)
        tab = self._single.get(pid)
        if tab is None:
            return torch.zeros(shape, dtype=torch.float64, device=x.device)
        return self._evaluate(tab, x, q2)[:, 0].reshape(shape)

    def xfx_all(self, x: Tensor, q2: Tensor) -> Tensor:
        """x f(x, Q^2) of partons -6..6: shape (n, 13), column ``pid + 6`` (6 = gluon).

        ``x`` and ``q2`` (GeV^2) broadcast to shape (n,) (or any shape S: the result is
        S + (13,)); one interpolation stencil serves all flavours; missing flavours give 0.
        """
        x, q2, shape = self._prepare(x, q2)
        return self._evaluate(self._std, x, q2).reshape(*shape, len(_STANDARD_PIDS))

    def alpha_s(self, q2: Tensor | float) -> Tensor:
        """alpha_s(Q^2) as MadGraph runs it from this set's alpha_s(MZ) (see evgen.alphas)."""
        if self._alpha_s is None:
            from evgen.alphas import alphas_from_pdf

            self._alpha_s = alphas_from_pdf(self)
        return self._alpha_s(torch.as_tensor(q2, dtype=torch.float64, device=self.device))

    def _prepare(self, x: Tensor, q2: Tensor) -> tuple[Tensor, Tensor, torch.Size]:
        dev = self.device
        x = torch.as_tensor(x, dtype=torch.float64, device=dev if not torch.is_tensor(x) else None)
        q2 = torch.as_tensor(
            q2, dtype=torch.float64, device=dev if not torch.is_tensor(q2) else None
        )
        if x.device != dev or q2.device != dev:
            raise ValueError(
                f"PDF set {self.name}: tables are on {dev} but x is on {x.device} and Q^2 on "
                f"{q2.device}; move the set with pdf.to(device)"
            )
        x, q2 = torch.broadcast_tensors(x, q2)
        return x.reshape(-1), q2.reshape(-1), x.shape

    def _evaluate(self, tab: _Tables, x: Tensor, q2: Tensor) -> Tensor:
        inside = (x >= self.x_min) & (x <= self.x_max) & (q2 >= self._q2_min) & (q2 <= self._q2_max)
        xc = x.clamp(self.x_min, self.x_max)
        q2c = q2.clamp(self._q2_min, self._q2_max)
        out = _interpolate(tab, xc, q2c)  # outside points: clamped (the 'nearest' rule)
        if not bool(inside.all()):
            outside = (~inside).nonzero().squeeze(1)
            xo, q2o = x[outside], q2[outside]
            self._check_outside(xo, q2o)
            if self.extrapolator == "continuation":
                out[outside] = self._continuation(tab, xo, q2o)
        if self._force_positive == 1:
            out = out.clamp(min=0.0)
        elif self._force_positive == 2:
            out = out.clamp(min=1e-10)
        return out

    def _check_outside(self, x: Tensor, q2: Tensor) -> None:
        def first(mask: Tensor) -> tuple[float, float] | None:
            if not bool(mask.any()):
                return None
            i = int(mask.nonzero()[0, 0])
            return float(x[i]), float(q2[i])

        bad = first(torch.isnan(x) | torch.isnan(q2) | (x < 0) | (x > 1) | (q2 < 0))
        if bad:
            raise PDFError(
                f"PDF set {self.name}: unphysical point x = {bad[0]}, Q^2 = {bad[1]} GeV^2 "
                "(allowed: 0 <= x <= 1, Q^2 >= 0)"
            )
        rng = (
            f"grid: {self.x_min} <= x <= {self.x_max}, "
            f"{self._q2_min} <= Q^2 <= {self._q2_max} GeV^2"
        )
        if self.extrapolator == "error":
            bad = first(torch.ones_like(x, dtype=torch.bool))
            assert bad is not None
            raise PDFError(
                f"PDF set {self.name}: point x = {bad[0]}, Q^2 = {bad[1]} GeV^2 is outside the "
                f"{rng} (extrapolator 'error')"
            )
        if self.extrapolator == "continuation":
            bad = first(x > self.x_max)
            if bad:
                raise PDFError(
                    f"PDF set {self.name}: x = {bad[0]} > x_max = {self.x_max} cannot be "
                    "extrapolated (continuation extrapolator)"
                )

    def _continuation(self, tab: _Tables, x: Tensor, q2: Tensor) -> Tensor:
        """LHAPDF's ContinuationExtrapolator for points outside the grid (x <= x_max)."""
        x_min, x_1 = self.x_min, self._x_second
        q2_min, q2_max, q2_max1 = self._q2_min, self._q2_max, self._q2_second_last
        low_x, high_q, low_q = x < x_min, q2 > q2_max, q2 < q2_min
        # Two x and two Q^2 evaluation coordinates per point, then one batched interpolation.
        xa = torch.where(low_x, x_min, x)
        xb = torch.where(low_x, x_1, x)
        qa = torch.where(high_q, q2_max, torch.where(low_q, q2_min, q2))
        qb = torch.where(high_q, q2_max1, torch.where(low_q, 1.01 * q2_min, q2))
        f = _interpolate(tab, torch.cat([xa, xa, xb, xb]), torch.cat([qa, qb, qa, qb]))
        f_aa, f_ab, f_ba, f_bb = f.reshape(4, x.numel(), -1).unbind(0)
        lx, hq, lq = low_x[:, None], high_q[:, None], low_q[:, None]
        # Q^2 above the grid (at fixed x), then x below it: covers all cases but Q^2 < Q^2_min.
        g_a = torch.where(hq, _line(q2, q2_max, q2_max1, f_aa, f_ab), f_aa)
        g_b = torch.where(hq, _line(q2, q2_max, q2_max1, f_ba, f_bb), f_ba)
        upper = torch.where(lx, _line(x, x_min, x_1, g_a, g_b), g_a)
        # Q^2 below the grid: f and f(1.01 Q^2_min) at x (continued in x if x < x_min) ...
        f0 = torch.where(lx, _line(x, x_min, x_1, f_aa, f_ba), f_aa)
        f1 = torch.where(lx, _line(x, x_min, x_1, f_ab, f_bb), f_ab)
        # ... then the anomalous dimension continuation, f -> 0 as Q^2 -> 0.
        big = f0.abs() >= 1e-5
        anom = torch.where(big, ((f1 - f0) / torch.where(big, f0, 1.0) / 0.01).clamp(min=-2.5), 1.0)
        r = (q2 / q2_min)[:, None]
        lower = f0 * torch.pow(r, anom * r + 1.0 - r)
        return torch.where(lq, lower, upper)

    def __repr__(self) -> str:
        return (
            f"PDFSet({self.name!r}, member={self.member}, lhapdf_id={self.lhapdf_id}, "
            f"alpha_s_mz={self.alpha_s_mz}, extrapolator={self.extrapolator!r}, "
            f"device={self.device})"
        )


def load_pdf(
    name_or_path: str | os.PathLike[str] = DEFAULT_PDF_SET,
    member: int = 0,
    *,
    extrapolator: str | None = None,
    device: torch.device | str | None = None,
    search_paths: Sequence[str | os.PathLike[str]] | None = None,
) -> PDFSet:
    """Load one member of an LHAPDF 6 set, found as :func:`find_pdf` finds it.

    Args:
        name_or_path: set name (``"NNPDF23_lo_as_0130_qed"``), set folder, ``.info`` file
            or member ``.dat`` file.
        member: member number (0 = central); ignored when a member file is given.
        extrapolator: ``"continuation"``, ``"nearest"`` or ``"error"``; ``None`` takes the
            set's ``Extrapolator`` entry, else ``"continuation"`` (LHAPDF's default).
        device: where the tables live (CPU by default).
        search_paths: folders searched before ``LHAPDF_DATA_PATH``.

    Raises:
        PDFError: set not found (the message lists every folder searched), malformed file
            (the message names the file and line), or unsupported metadata.
    """
    info_path, dat_path = find_pdf(name_or_path, member, search_paths=search_paths)
    match = _MEMBER_FILE.match(dat_path.name)
    set_name = match["set"] if match else dat_path.stem
    member = int(match["member"]) if match else member
    if info_path is None:
        info: dict[str, Any] = dict(_BUILTIN_INFO[set_name])
    else:
        try:
            text = info_path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise PDFError(f"{info_path}: cannot read PDF set metadata ({err.strerror})") from None
        info = _parse_metadata(text, info_path)
        fmt = info.get("Format", "lhagrid1")
        if fmt != "lhagrid1":
            raise PDFError(f"{info_path}: Format is {fmt!r}; evgen reads only 'lhagrid1'")
    raw = _read_lhagrid1(dat_path)
    info.update(raw.header)
    chosen = (extrapolator or str(info.get("Extrapolator", "continuation"))).lower()
    if chosen not in EXTRAPOLATORS:
        raise PDFError(
            f"PDF set {set_name}: extrapolator {chosen!r} unknown; allowed: {list(EXTRAPOLATORS)}"
        )
    pdf = PDFSet(
        name=set_name, member=member, info=info, raw=raw, path=dat_path, extrapolator=chosen
    )
    return pdf.to(device) if device is not None else pdf
