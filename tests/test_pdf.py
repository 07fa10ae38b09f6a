"""PDF grid reader: LHAPDF 6 log-bicubic interpolation, extrapolation, set finding, errors.

The reference values are computed in this file, independently of evgen.pdf: the grid is
parsed here with plain Python, and ``RefLogBicubic`` re-implements LHAPDF 6's algorithm as
LHAPDF 6.2 wrote it (one point at a time, per subgrid, Hermite form, slopes recomputed at
every call), while evgen folds everything into precomputed polynomial coefficients and
per-point weights. Synthetic grids are written to ``tmp_path``.
"""

from __future__ import annotations

import bisect
import importlib.metadata
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.integrate import quad

from evgen.errors import PDFError
from evgen.pdf import DEFAULT_PDF_SET, PDFSet, find_pdf, load_pdf

F64 = torch.float64
SET = DEFAULT_PDF_SET
#: Test data (not needed by the product): the set with its .info, as LHAPDF installs it.
# ../shared/pdfsets beside the project root (as CI lays it out), or EVGEN_TEST_PDFSETS
SHARED_SETS = Path(
    os.environ.get("EVGEN_TEST_PDFSETS", Path(__file__).resolve().parents[2] / "shared" / "pdfsets")
)
needs_shared = pytest.mark.skipif(
    not (SHARED_SETS / SET / f"{SET}.info").is_file(), reason=f"no {SHARED_SETS}/{SET}"
)


def _has_pythia8mc() -> bool:
    try:
        importlib.metadata.distribution("pythia8mc")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_pythia = pytest.mark.skipif(not _has_pythia8mc(), reason="pythia8mc not installed")


# ------------------------------------------------------------------ independent reference


def parse_grid(path: Path) -> list[tuple[np.ndarray, np.ndarray, list[int], np.ndarray]]:
    """Blocks (x knots, Q knots, pids, values[ix, iq, flavour]) read line by line."""
    blocks, current = [], None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line == "---":
            if current:
                xs = np.array([float(t) for t in current[0].split()])
                qs = np.array([float(t) for t in current[1].split()])
                pids = [int(t) for t in current[2].split()]
                vals = np.array([[float(t) for t in r.split()] for r in current[3:]])
                blocks.append((xs, qs, pids, vals.reshape(len(xs), len(qs), len(pids))))
            current = []
        elif current is not None:
            current.append(line)
    return blocks


def _hermite(t: float, vl, vdl, vh, vdh):
    t2, t3 = t * t, t * t * t
    return (
        (2 * t3 - 3 * t2 + 1) * vl
        + (t3 - 2 * t2 + t) * vdl
        + (-2 * t3 + 3 * t2) * vh
        + (t3 - t2) * vdh
    )


class RefLogBicubic:
    """LHAPDF 6's LogBicubicInterpolator, scalar, written from LHAPDF 6.2's source layout.

    One difference from LHAPDF 6.2, on purpose: only subgrids of 2 Q knots fall back to
    bilinear (LHAPDF >= 6.4, which evgen follows); 6.2 also did so for 3 knots.
    """

    def __init__(self, blocks):
        self.blocks = [(np.log(xs), np.log(qs * qs), qs * qs, vals) for xs, qs, _, vals in blocks]
        self.xs = blocks[0][0]

    def __call__(self, x: float, q2: float) -> tuple[np.ndarray, float]:
        """All flavours at (x, Q^2), and per flavour the largest |value| of the stencil."""
        keys = [b[2][0] for b in self.blocks]
        lx, lq, q2s, f = self.blocks[max(bisect.bisect_right(keys, q2) - 1, 0)]
        ix = min(bisect.bisect_right(list(self.xs), x), len(self.xs) - 1) - 1
        iq = min(bisect.bisect_right(list(q2s), q2), len(q2s) - 1) - 1
        logx, logq2 = math.log(x), math.log(q2)
        nq = len(q2s)
        scale = np.abs(f[max(ix - 1, 0) : ix + 3, max(iq - 1, 0) : iq + 3]).max(axis=(0, 1))
        if nq == 2:
            tx = (logx - lx[ix]) / (lx[ix + 1] - lx[ix])
            lo = f[ix, iq] + tx * (f[ix + 1, iq] - f[ix, iq])
            hi = f[ix, iq + 1] + tx * (f[ix + 1, iq + 1] - f[ix, iq + 1])
            return lo + (logq2 - lq[iq]) / (lq[iq + 1] - lq[iq]) * (hi - lo), scale

        def slope_x(i, j):  # d(xf)/d(ln x) at knot (i, j)
            if i == 0:
                return (f[1, j] - f[0, j]) / (lx[1] - lx[0])
            if i == len(lx) - 1:
                return (f[i, j] - f[i - 1, j]) / (lx[i] - lx[i - 1])
            left = (f[i, j] - f[i - 1, j]) / (lx[i] - lx[i - 1])
            right = (f[i + 1, j] - f[i, j]) / (lx[i + 1] - lx[i])
            return (left + right) / 2.0

        dx = lx[ix + 1] - lx[ix]
        tx = (logx - lx[ix]) / dx

        def row(j):  # cubic in ln x on Q row j
            return _hermite(
                tx, f[ix, j], slope_x(ix, j) * dx, f[ix + 1, j], slope_x(ix + 1, j) * dx
            )

        d1 = lq[iq + 1] - lq[iq]
        vl, vh = row(iq), row(iq + 1)
        if 0 < iq and iq + 1 < nq - 1:
            vll, vhh = row(iq - 1), row(iq + 2)
            vdl = ((vh - vl) / d1 + (vl - vll) / (lq[iq] - lq[iq - 1])) / 2
            vdh = ((vh - vl) / d1 + (vhh - vh) / (lq[iq + 2] - lq[iq + 1])) / 2
        elif iq == 0:
            vhh = row(iq + 2)
            vdl = (vh - vl) / d1
            vdh = (vdl + (vhh - vh) / (lq[iq + 2] - lq[iq + 1])) / 2
        else:
            vll = row(iq - 1)
            vdh = (vh - vl) / d1
            vdl = (vdh + (vl - vll) / (lq[iq] - lq[iq - 1])) / 2
        return _hermite((logq2 - lq[iq]) / d1, vl, vdl * d1, vh, vdh * d1), scale


# --------------------------------------------------------------------- synthetic grids


def write_set(
    folder: Path,
    name: str,
    xs: np.ndarray,
    q_blocks: list[np.ndarray],
    funcs: dict[int, Callable[[float, float, int], float]],
    extra_info: str = "",
) -> Path:
    """An LHAPDF set folder whose member 0 tabulates funcs[pid](ln x, ln Q^2, block)."""
    d = folder / name
    d.mkdir(parents=True)
    pids = list(funcs)
    (d / f"{name}.info").write_text(
        f"SetDesc: synthetic\nSetIndex: 900000\nFormat: lhagrid1\nFlavors: {pids}\n"
        "OrderQCD: 0\nAlphaS_MZ: 0.118\nMZ: 91.1876\nMCharm: 1.3\nMBottom: 4.5\n" + extra_info
    )
    lines = ["PdfType: central", "Format: lhagrid1", "---"]
    for b, qs in enumerate(q_blocks):
        lines.append(" ".join(f"{x:.17e}" for x in xs))
        lines.append(" ".join(f"{q:.17e}" for q in qs))
        lines.append(" ".join(str(p) for p in pids))
        for x in xs:
            for q in qs:
                u, v = math.log(x), math.log(q * q)
                lines.append(" ".join(f"{funcs[p](u, v, b):.17e}" for p in pids))
        lines.append("---")
    (d / f"{name}_0000.dat").write_text("\n".join(lines) + "\n")
    return d


# Uniform knots in ln x and, per block, in ln Q; the block boundary Q = 5 GeV is shared.
SYN_XS = np.exp(np.linspace(math.log(1e-5), 0.0, 24))
SYN_Q = [np.exp(np.linspace(0.0, math.log(5.0), 7)), np.exp(np.linspace(math.log(5.0), 9.0, 11))]
SYN_Q[0][-1] = SYN_Q[1][0] = 5.0


def bilinear(u, v, b):
    return (2.0 + 0.3 * u) * (1.5 - 0.05 * v)


def biquadratic(u, v, b):
    return (3.0 + 0.4 * u + 0.02 * u * u) * (1.0 + 0.1 * v - 0.003 * v * v) + 0.01 * u * v


def bicubic(u, v, b):
    return biquadratic(u, v, b) + 1e-3 * u**3 + 2e-3 * v**3


def jump(u, v, b):  # different functions in the two blocks, like a flavour threshold
    return biquadratic(u, v, b) + (1.0 if b == 1 else 0.0)


def small(u, v, b):  # below the 1e-3 at which the continuation stops working in ln f
    return 1e-4 * (3.0 + 0.1 * u) * (1.0 + 0.01 * v)


SYN_FUNCS = {1: bilinear, 2: biquadratic, 3: bicubic, 4: jump, 5: small, 21: biquadratic}


@pytest.fixture(scope="module")
def syn_folder(tmp_path_factory) -> Path:
    return write_set(tmp_path_factory.mktemp("sets"), "SYN", SYN_XS, SYN_Q, SYN_FUNCS)


@pytest.fixture(scope="module")
def syn(syn_folder) -> PDFSet:
    return load_pdf(syn_folder)


# ------------------------------------------------------------------------- real set


@pytest.fixture(scope="module")
def pdf_shared() -> PDFSet:
    """The set found through LHAPDF_DATA_PATH (the folder with the set's .info)."""
    if not (SHARED_SETS / SET / f"{SET}.info").is_file():
        pytest.skip(f"no {SHARED_SETS}/{SET}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LHAPDF_DATA_PATH", f"{SHARED_SETS}::")
        info, dat = find_pdf(SET)
        assert info == SHARED_SETS / SET / f"{SET}.info"
        return load_pdf(SET)


@pytest.fixture(scope="module")
def pdf_pythia(tmp_path_factory) -> PDFSet:
    """The same set found through the pythia8mc wheel (nothing in LHAPDF_DATA_PATH)."""
    if not _has_pythia8mc():
        pytest.skip("pythia8mc not installed")
    empty = tmp_path_factory.mktemp("empty")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LHAPDF_DATA_PATH", f"{empty}::")  # '::' also blocks the system folders
        info, dat = find_pdf(SET)
        assert info is None and dat.name == f"{SET}_0000.dat" and "Pythia8" in str(dat)
        return load_pdf(SET)


@pytest.fixture(scope="module")
def grid_blocks(pdf_pythia) -> list:
    return parse_grid(pdf_pythia.path)


LN_X_RANGE = (math.log(1e-9), 0.0)
LN_Q2_RANGE = (0.0, math.log(1e8))


def random_points(n: int, seed: int, log_x=LN_X_RANGE, log_q2=LN_Q2_RANGE):
    g = np.random.default_rng(seed)
    return np.exp(g.uniform(*log_x, n)), np.exp(g.uniform(*log_q2, n))


@needs_shared
@needs_pythia
def test_both_routes_give_identical_sets(pdf_shared, pdf_pythia):
    """LHAPDF_DATA_PATH (.info + grid) and pythia8mc (built-in metadata + grid) agree exactly."""
    info = yaml.safe_load((SHARED_SETS / SET / f"{SET}.info").read_text())
    from evgen.pdf import _BUILTIN_INFO

    assert _BUILTIN_INFO[SET] == info  # evgen's copy holds exactly the .info's fields
    for attr in ("lhapdf_id", "alpha_s_mz", "mz", "order_qcd", "quark_masses", "flavours"):
        assert getattr(pdf_shared, attr) == getattr(pdf_pythia, attr), attr
    assert pdf_pythia.lhapdf_id == 247000 and pdf_pythia.alpha_s_mz == 0.130
    assert pdf_pythia.mz == 91.1876 and pdf_pythia.order_qcd == 0
    assert pdf_pythia.quark_masses[4] == 1.414213562 and pdf_pythia.quark_masses[5] == 4.75
    assert pdf_pythia.flavours == (-6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 21, 22)
    assert (pdf_pythia.x_min, pdf_pythia.x_max, pdf_pythia.q_min, pdf_pythia.q_max) == (
        1e-9,
        1.0,
        1.0,
        1e4,
    )
    # Points inside and outside the grid (all extrapolation regions).
    x, q2 = random_points(2000, 1, log_x=(-25.0, 0.0), log_q2=(-3.0, 20.0))
    x, q2 = torch.tensor(x), torch.tensor(q2)
    assert torch.equal(pdf_shared.xfx_all(x, q2), pdf_pythia.xfx_all(x, q2))
    assert torch.equal(pdf_shared.xfx(22, x, q2), pdf_pythia.xfx(22, x, q2))


def test_nodes_reproduce_the_table(pdf_pythia, grid_blocks):
    """At grid knots the interpolation returns the tabulated x f (t = 0 in both directions)."""
    xs, qs, pids, vals = grid_blocks[0]
    assert len(grid_blocks) == 1  # NNPDF2.3 LO ships one subgrid; SYN below has two
    g = np.random.default_rng(2)
    ix = g.integers(0, len(xs), 400)
    iq = g.integers(0, len(qs), 400)
    ix[:4], iq[:4] = [0, len(xs) - 1, 0, len(xs) - 1], [0, 0, len(qs) - 1, len(qs) - 1]
    x, q2 = torch.tensor(xs[ix]), torch.tensor(qs[iq] * qs[iq])
    all13 = pdf_pythia.xfx_all(x, q2)
    for col, pid in enumerate(pids):
        want = torch.tensor(vals[ix, iq, col])
        torch.testing.assert_close(pdf_pythia.xfx(pid, x, q2), want, rtol=1e-12, atol=0.0)
        if pid != 22:
            all_col = 6 if pid == 21 else pid + 6
            torch.testing.assert_close(all13[:, all_col], want, rtol=1e-12, atol=0.0)


def test_nodes_of_both_subgrids(syn, syn_folder):
    """Nodes of a two-block grid, the shared boundary knot taking the upper block's value."""
    blocks = parse_grid(syn_folder / "SYN_0000.dat")
    for b, (xs, qs, pids, vals) in enumerate(blocks):
        ixs, iqs = np.meshgrid(np.arange(len(xs)), np.arange(len(qs)), indexing="ij")
        ixs, iqs = ixs.ravel(), iqs.ravel()
        if b == 0:  # Q = 5 GeV belongs to block 1 (LHAPDF picks the upper subgrid)
            keep = iqs < len(qs) - 1
            ixs, iqs = ixs[keep], iqs[keep]
        x, q2 = torch.tensor(xs[ixs]), torch.tensor(qs[iqs] ** 2)
        for col, pid in enumerate(pids):
            torch.testing.assert_close(
                syn.xfx(pid, x, q2), torch.tensor(vals[ixs, iqs, col]), rtol=1e-12, atol=0
            )


@pytest.mark.parametrize("seed", [3, 4])
def test_between_nodes_matches_reference_implementation(pdf_pythia, grid_blocks, seed):
    """Off-node values agree with the scalar LHAPDF re-implementation to 1e-12.

    The tolerance is relative to the largest grid value in the 4x4 stencil: both codes
    round differently, and a small value next to large ones (a heavy quark just above its
    threshold) carries the rounding of its neighbours.
    """
    ref = RefLogBicubic(grid_blocks)
    x, q2 = random_points(300, seed)
    # Include the grid edges: the one-sided slopes at x_min, x_max, Q_min, Q_max.
    x[:4], q2[:4] = [1e-9, 1.0, 1.0e-9, 0.999], [1.0, 1e8, 1e8, 1.01]
    got_all = pdf_pythia.xfx_all(torch.tensor(x), torch.tensor(q2)).numpy()
    got_photon = pdf_pythia.xfx(22, torch.tensor(x), torch.tensor(q2)).numpy()
    pids = grid_blocks[0][2]
    for i in range(len(x)):
        want, scale = ref(x[i], q2[i])
        got = np.array(
            [got_all[i, 6 if p == 21 else p + 6] if p != 22 else got_photon[i] for p in pids]
        )
        assert np.all(np.abs(got - want) <= 1e-12 * np.maximum(np.abs(want), scale)), (x[i], q2[i])


def test_two_block_grid_matches_reference_implementation(syn, syn_folder):
    ref = RefLogBicubic(parse_grid(syn_folder / "SYN_0000.dat"))
    x, q2 = random_points(300, 5, log_x=(math.log(1e-5), 0.0), log_q2=(0.0, 18.0))
    got = {p: syn.xfx(p, torch.tensor(x), torch.tensor(q2)).numpy() for p in SYN_FUNCS}
    for i in range(len(x)):
        want, scale = ref(x[i], q2[i])
        for col, p in enumerate(SYN_FUNCS):
            assert abs(got[p][i] - want[col]) <= 1e-12 * max(abs(want[col]), scale[col])


def _cells(knots: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(knots, points, side="right") - 1, 0, len(knots) - 2)


def test_bilinear_function_is_exact_everywhere(syn):
    """Secant slopes are exact for linear functions, so (a + b ln x)(c + d ln Q^2) is
    reproduced in every cell, edge cells and both blocks included."""
    x, q2 = random_points(2000, 6, log_x=(math.log(1e-5), 0.0), log_q2=(0.0, 18.0))
    want = np.array([bilinear(math.log(a), math.log(b), 0) for a, b in zip(x, q2, strict=True)])
    got = syn.xfx(1, torch.tensor(x), torch.tensor(q2)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=0)


def test_biquadratic_function_is_exact_away_from_edges(syn):
    """On uniformly spaced knots the mean of the two adjacent secants is the exact slope of
    a quadratic (the secants are f' at the interval midpoints, f' is linear), but the
    one-sided secant at an edge knot is not. So a function quadratic in ln x and in
    ln Q^2 is reproduced exactly in cells whose 4x4 stencil avoids the x edges and the
    block edges in Q, and not in general near them. A cubic is never exact: the secant
    mean misses f' by h^2 f'''/6, which is why this test uses quadratics."""
    x, q2 = random_points(4000, 7, log_x=(math.log(1e-5), 0.0), log_q2=(0.0, 18.0))
    u, v = np.log(x), np.log(q2)
    ix = _cells(np.log(SYN_XS), u)
    block = (q2 >= 25.0).astype(int)
    q_knots = [np.log(q * q) for q in SYN_Q]
    iq = np.where(block == 0, _cells(q_knots[0], v), _cells(q_knots[1], v))
    n_q = np.array([len(k) for k in q_knots])[block]
    inner = (ix >= 1) & (ix <= len(SYN_XS) - 3) & (iq >= 1) & (iq <= n_q - 3)
    want = np.array([biquadratic(a, b, 0) for a, b in zip(u, v, strict=True)])
    got = syn.xfx(2, torch.tensor(x), torch.tensor(q2)).numpy()
    np.testing.assert_allclose(got[inner], want[inner], rtol=1e-10, atol=0)
    assert np.max(np.abs(got[~inner] / want[~inner] - 1)) > 1e-8  # edges: one-sided slopes
    cubic = np.array([bicubic(a, b, 0) for a, b in zip(u, v, strict=True)])
    got3 = syn.xfx(3, torch.tensor(x), torch.tensor(q2)).numpy()
    assert np.max(np.abs(got3[inner] / cubic[inner] - 1)) > 1e-6


def test_block_boundary_uses_upper_subgrid(syn):
    """A Q^2 on the boundary of two blocks takes the upper block (as LHAPDF); just below it,
    the lower one; nothing is interpolated across the boundary (the 'jump' flavour has an
    offset of 1 in the upper block)."""
    x = torch.tensor([0.01, 0.2, 0.3], dtype=F64)  # cells away from the x edges
    qb2 = torch.full_like(x, 25.0)
    u, vb = np.log(x.numpy()), math.log(25.0)
    on = syn.xfx(4, x, qb2).numpy()
    below = syn.xfx(4, x, qb2 * (1 - 1e-12)).numpy()
    above = syn.xfx(4, x, qb2 * (1 + 1e-12)).numpy()
    smooth = syn.xfx(2, x, qb2).numpy()  # the same function without the jump
    np.testing.assert_allclose(on, smooth + 1.0, rtol=1e-12)
    np.testing.assert_allclose(above, smooth + 1.0, rtol=1e-9)
    np.testing.assert_allclose(below, smooth, rtol=1e-9)
    assert np.allclose(smooth, [biquadratic(a, vb, 0) for a in u], rtol=1e-10)


def test_two_and_three_knot_blocks(tmp_path):
    """A block of 2 Q knots is bilinear in (ln x, ln Q^2); one of 3 knots is bicubic with
    one-sided slopes (LHAPDF >= 6.4), checked against the reference implementation."""
    qs = [
        np.array([1.0, 2.0]),
        np.array([2.0, 3.0, 4.0]),
        np.exp(np.linspace(math.log(4.0), 7.0, 6)),
    ]
    qs[2][0] = 4.0  # blocks share their boundary knot exactly
    folder = write_set(tmp_path, "FEW", SYN_XS, qs, {21: biquadratic, 2: bicubic})
    pdf = load_pdf(folder)
    ref = RefLogBicubic(parse_grid(folder / "FEW_0000.dat"))
    x, q2 = random_points(300, 8, log_x=(math.log(1e-5), 0.0), log_q2=(0.0, 14.0))
    got = pdf.xfx(21, torch.tensor(x), torch.tensor(q2)).numpy()
    for i in range(len(x)):
        want, scale = ref(x[i], q2[i])
        assert abs(got[i] - want[0]) <= 1e-12 * max(abs(want[0]), scale[0])
    # In the 2-knot block: the straight bilinear combination of the 4 corner nodes.
    xm, q2m = math.sqrt(SYN_XS[5] * SYN_XS[6]), 2.0  # Q = sqrt(2): halfway in ln Q^2
    corners = [biquadratic(math.log(SYN_XS[i]), math.log(q * q), 0) for i in (5, 6) for q in (1, 2)]
    got_mid = pdf.xfx(21, torch.tensor([xm], dtype=F64), torch.tensor([q2m], dtype=F64))
    assert float(got_mid[0]) == pytest.approx(sum(corners) / 4, rel=1e-12)


# --------------------------------------------------------------------- extrapolation


def _cont(z, z1, z2, f1, f2):
    """The continuation line, written from its definition (log of f if both > 1e-3)."""
    s = (math.log(z) - math.log(z1)) / (math.log(z2) - math.log(z1))
    if f1 > 1e-3 and f2 > 1e-3:
        return math.exp(math.log(f1) + s * (math.log(f2) - math.log(f1)))
    return f1 + s * (f2 - f1)


def _xf(pdf, pid, x, q2):
    return float(pdf.xfx(pid, torch.tensor([x], dtype=F64), torch.tensor([q2], dtype=F64))[0])


def test_continuation_below_x_min(pdf_pythia, grid_blocks):
    """x < x_min: the straight line in ln x through the first two x knots (in ln f when
    positive): a power law x f ~ x^-lambda for the gluon, linear for a tiny charm."""
    assert pdf_pythia.extrapolator == "continuation"  # the .info has no Extrapolator key
    x0, x1 = grid_blocks[0][0][:2]
    for pid, q2 in [(21, 100.0), (2, 1e4), (4, 1.5**2), (-3, 1e6)]:
        f0, f1 = _xf(pdf_pythia, pid, x0, q2), _xf(pdf_pythia, pid, x1, q2)
        for x in (5e-10, 1e-11, 1e-14):
            assert _xf(pdf_pythia, pid, x, q2) == pytest.approx(
                _cont(x, x0, x1, f0, f1), rel=1e-12, abs=1e-300
            )
        assert _xf(pdf_pythia, pid, x0 * (1 - 1e-12), q2) == pytest.approx(f0, rel=1e-9)


def test_continuation_is_linear_in_f_for_small_values(syn):
    """The continuation works in ln f only if f > 1e-3 at both anchor points, else in f."""
    x0, x1 = SYN_XS[0], SYN_XS[1]
    for pid, q2 in [(5, 10.0), (21, 10.0), (5, 1e7)]:
        f0, f1 = _xf(syn, pid, x0, q2), _xf(syn, pid, x1, q2)
        linear = (f0 < 1e-3) or (f1 < 1e-3)
        assert linear == (pid == 5)
        for x in (1e-6, 1e-8):
            got = _xf(syn, pid, x, q2)
            assert got == pytest.approx(_cont(x, x0, x1, f0, f1), rel=1e-12)
            s = math.log(x / x0) / math.log(x1 / x0)
            other = math.exp(math.log(f0) + s * math.log(f1 / f0)) if linear else f0 + s * (f1 - f0)
            assert abs(got / other - 1) > 1e-6  # the two rules differ here


def test_continuation_above_q_max(pdf_pythia, grid_blocks):
    """Q^2 > Q^2_max: the line in ln Q^2 through the last two Q knots, at fixed x; with
    x < x_min too, first in Q^2 at the first two x knots, then in x."""
    qs = grid_blocks[-1][1]
    q2max, q2max1 = qs[-1] ** 2, qs[-2] ** 2
    for pid, x in [(21, 1e-3), (1, 0.3), (5, 0.05)]:
        fa, fb = _xf(pdf_pythia, pid, x, q2max), _xf(pdf_pythia, pid, x, q2max1)
        for q2 in (2e8, 1e10):
            assert _xf(pdf_pythia, pid, x, q2) == pytest.approx(
                _cont(q2, q2max, q2max1, fa, fb), rel=1e-12
            )
    x0, x1, q2 = grid_blocks[0][0][0], grid_blocks[0][0][1], 1e9
    c0 = _cont(q2, q2max, q2max1, _xf(pdf_pythia, 21, x0, q2max), _xf(pdf_pythia, 21, x0, q2max1))
    c1 = _cont(q2, q2max, q2max1, _xf(pdf_pythia, 21, x1, q2max), _xf(pdf_pythia, 21, x1, q2max1))
    assert _xf(pdf_pythia, 21, 1e-11, q2) == pytest.approx(_cont(1e-11, x0, x1, c0, c1), rel=1e-12)


def test_continuation_below_q_min(pdf_pythia):
    """Q^2 < Q^2_min: f(Q^2_min) (Q^2/Q^2_min)^(g r + 1 - r), g the anomalous dimension from
    f(1.01 Q^2_min): continuous at Q_min and vanishing as Q^2 -> 0."""
    for pid, x in [(21, 1e-3), (2, 0.2), (-1, 0.01)]:
        f0, f1 = _xf(pdf_pythia, pid, x, 1.0), _xf(pdf_pythia, pid, x, 1.01)
        anom = max(-2.5, (f1 - f0) / f0 / 0.01) if abs(f0) >= 1e-5 else 1.0
        for q2 in (0.9, 0.5, 0.1):
            want = f0 * q2 ** (anom * q2 + 1.0 - q2)
            assert _xf(pdf_pythia, pid, x, q2) == pytest.approx(want, rel=1e-12)
        assert _xf(pdf_pythia, pid, x, 1.0 - 1e-12) == pytest.approx(f0, rel=1e-9)
        assert abs(_xf(pdf_pythia, pid, x, 1e-8)) < 1e-6 * abs(f0)
        assert _xf(pdf_pythia, pid, x, 0.0) == 0.0


def test_nearest_and_error_extrapolators(tmp_path):
    pdf = load_pdf(SET, extrapolator="nearest", search_paths=[tmp_path])
    for x, q2, xc, q2c in [
        (1e-12, 100.0, 1e-9, 100.0),
        (0.1, 1e10, 0.1, 1e8),
        (1e-11, 0.3, 1e-9, 1.0),
    ]:
        assert _xf(pdf, 21, x, q2) == _xf(pdf, 21, xc, q2c)
    strict = load_pdf(SET, extrapolator="error")
    assert _xf(strict, 21, 0.1, 100.0) == _xf(pdf, 21, 0.1, 100.0)
    with pytest.raises(PDFError, match=r"outside the grid.*extrapolator 'error'"):
        strict.xfx_all(torch.tensor([0.1, 1e-10]), torch.tensor([100.0, 100.0]))
    with pytest.raises(PDFError, match="extrapolator 'spline' unknown"):
        load_pdf(SET, extrapolator="spline")


def test_unphysical_points_raise(pdf_pythia):
    for x, q2 in [(1.5, 100.0), (-0.1, 100.0), (0.1, -1.0), (math.nan, 100.0)]:
        with pytest.raises(PDFError, match="unphysical point"):
            pdf_pythia.xfx_all(torch.tensor([0.2, x]), torch.tensor([100.0, q2]))


# ------------------------------------------------------------------ flavours and shapes


def test_flavour_conventions(pdf_pythia):
    x, q2 = (torch.tensor(a) for a in random_points(50, 9))
    all13 = pdf_pythia.xfx_all(x, q2)
    assert all13.shape == (50, 13) and all13.dtype == F64
    for pid in range(-6, 7):
        want = pdf_pythia.xfx(21 if pid == 0 else pid, x, q2)
        assert torch.equal(all13[:, pid + 6], want)
    assert torch.equal(pdf_pythia.xfx(0, x, q2), pdf_pythia.xfx(21, x, q2))  # 0: gluon alias
    assert torch.equal(pdf_pythia.xfx(11, x, q2), torch.zeros(50, dtype=F64))  # not in grid
    assert torch.all(pdf_pythia.xfx(22, x, q2) > 0)  # the QED set has a photon
    # No top well below its threshold (MTop = 175 GeV; the one-block grid's cubic in ln Q^2
    # rings within two Q knots of it); u > ubar at large x (valence quarks).
    below_top = q2 < 100.0**2
    assert torch.all(all13[below_top, 0] == 0) and torch.all(all13[below_top, 12] == 0)
    assert torch.all(all13[q2 > 300.0**2, 12] > 0)
    xv, qv = torch.tensor([0.3], dtype=F64), torch.tensor([1e4], dtype=F64)
    assert float(pdf_pythia.xfx(2, xv, qv)) > 5 * float(pdf_pythia.xfx(-2, xv, qv))


def test_broadcasting_and_dtype(pdf_pythia):
    x = torch.tensor([[1e-3, 0.1], [0.3, 0.5]], dtype=torch.float32)
    out = pdf_pythia.xfx_all(x, 1e4)
    assert out.shape == (2, 2, 13) and out.dtype == F64
    flat = pdf_pythia.xfx_all(x.reshape(-1).double(), torch.full((4,), 1e4, dtype=F64))
    assert torch.equal(out.reshape(4, 13), flat)
    assert pdf_pythia.xfx(21, 0.1, 1e4).shape == ()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(pdf_pythia):
    x, q2 = (torch.tensor(a) for a in random_points(10000, 10, log_x=(-25, 0), log_q2=(-2, 20)))
    gpu = pdf_pythia.to("cuda")
    torch.testing.assert_close(
        gpu.xfx_all(x.cuda(), q2.cuda()).cpu(), pdf_pythia.xfx_all(x, q2), rtol=1e-12, atol=1e-15
    )


# -------------------------------------------------------------------------- physics


def test_momentum_sum_rule(pdf_pythia):
    """sum_f int_0^1 dx x f(x, Q^2) = 1 at Q = 100 GeV, photon included.

    NNPDF2.3 imposes the sum rule at its input scale; LO evolution conserves it, and the
    grid's interpolation and LO fit leave the tabulated set 0.5 % above 1. A tolerance of
    1.5 % catches a wrong flavour, a factor x, or a broken interpolation, which move the
    sum by far more. Integrated with quad in ln x (dx = x dln x) down to x = 1e-9; below
    that the continuation contributes < 1e-5.
    """
    q2 = torch.tensor([100.0**2], dtype=F64)

    def integrand(lnx: float) -> float:
        x = torch.tensor([math.exp(lnx)], dtype=F64)
        total = float(pdf_pythia.xfx_all(x, q2).sum()) + float(pdf_pythia.xfx(22, x, q2)[0])
        return total * math.exp(lnx)

    total, err = quad(integrand, math.log(1e-9), 0.0, limit=100, epsrel=1e-6)
    assert err < 1e-5
    assert abs(total - 1.0) < 0.015
    photon = quad(
        lambda u: (
            float(pdf_pythia.xfx(22, torch.tensor([math.exp(u)], dtype=F64), q2)[0]) * math.exp(u)
        ),
        math.log(1e-9),
        0.0,
        limit=100,
        epsrel=1e-6,
    )[0]
    assert 0.002 < photon < 0.02  # the photon carries a fraction of a percent


def test_alpha_s_from_the_set(pdf_pythia):
    """The set's alpha_s(MZ) = 0.130 at MadGraph's MZ, run as madevent does."""
    assert float(pdf_pythia.alpha_s(91.188**2)) == pytest.approx(0.130, abs=1e-12)
    assert float(pdf_pythia.alpha_s(1000.0**2)) < 0.1


# ------------------------------------------------------------------ finding and errors


def test_set_by_folder_info_and_member_file(syn_folder, syn):
    x, q2 = torch.tensor([0.01, 0.3], dtype=F64), torch.tensor([10.0, 1e4], dtype=F64)
    for spec in (syn_folder, syn_folder / "SYN.info", syn_folder / "SYN_0000.dat", str(syn_folder)):
        pdf = load_pdf(spec)
        assert pdf.name == "SYN" and pdf.lhapdf_id == 900000 and pdf.member == 0
        assert torch.equal(pdf.xfx_all(x, q2), syn.xfx_all(x, q2))
    assert syn.alpha_s_mz == 0.118 and syn.quark_masses == {4: 1.3, 5: 4.5}


def test_search_path_order(tmp_path, monkeypatch, syn_folder):
    """LHAPDF_DATA_PATH folders are searched in order, before the system folders."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_set(a, "ORD", SYN_XS, SYN_Q, {21: bilinear})
    write_set(b, "ORD", SYN_XS, SYN_Q, {21: biquadratic})
    monkeypatch.setenv("LHAPDF_DATA_PATH", f"{b}:{a}")
    assert find_pdf("ORD")[0] == b / "ORD" / "ORD.info"
    monkeypatch.setenv("LHAPDF_DATA_PATH", f"{tmp_path / 'nothing'}:{a}")
    assert find_pdf("ORD")[1] == a / "ORD" / "ORD_0000.dat"


def test_missing_set_error_names_set_and_folders(tmp_path, monkeypatch):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    monkeypatch.setenv("LHAPDF_DATA_PATH", f"{one}:{two}")
    monkeypatch.setenv("LHAPDF_DATA_PREFIX", str(tmp_path / "prefix"))
    with pytest.raises(PDFError) as err:
        load_pdf("CT18NLO")
    msg = str(err.value)
    assert "CT18NLO" in msg and "LHAPDF_DATA_PATH" in msg and "\n" not in msg
    for folder in (one, two, tmp_path / "prefix", Path("/usr/share/LHAPDF")):
        assert str(folder) in msg
    with pytest.raises(PDFError, match="member 3.*only member 0 is shipped"):
        monkeypatch.setenv("LHAPDF_DATA_PATH", f"{one}::")
        load_pdf(SET, member=3)


def _write_bad(tmp_path: Path, mutate: Callable[[list[str]], None]) -> Path:
    folder = write_set(tmp_path, "BAD", SYN_XS[:6], [SYN_Q[0][:4]], {21: bilinear, 1: bilinear})
    dat = folder / "BAD_0000.dat"
    lines = dat.read_text().splitlines()
    mutate(lines)
    dat.write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (
            lambda ls: ls.__setitem__(10, ls[10] + " 1.0"),
            r"BAD_0000\.dat, line 11: 3 values, expected one per flavour \(2\)",
        ),
        (
            lambda ls: ls.__setitem__(12, "1.0 abc"),
            r"BAD_0000\.dat, line 13: cannot read 'abc' as a number",
        ),
        (lambda ls: ls.__setitem__(4, "1 2 x"), r"BAD_0000\.dat, line 5: Q knots: cannot read 'x'"),
        (lambda ls: ls.pop(), r"BAD_0000\.dat, line \d+: grid file not terminated by a '---' line"),
        (
            lambda ls: ls.pop(9),
            r"BAD_0000\.dat, line \d+: block 0 has 23 value lines, "
            r"expected 6 x knots \* 4 Q knots = 24",
        ),
        (
            lambda ls: ls.__setitem__(5, "21 1 2"),
            r"BAD_0000\.dat, line 7: 2 values, expected one per flavour \(3\)",
        ),
    ],
)
def test_malformed_grid_names_file_and_line(tmp_path, mutate, pattern):
    with pytest.raises(PDFError, match=pattern):
        load_pdf(_write_bad(tmp_path, mutate))


def test_malformed_info_names_file_and_line(tmp_path):
    folder = write_set(tmp_path, "BADINFO", SYN_XS, SYN_Q, {21: bilinear})
    info = folder / "BADINFO.info"
    info.write_text(info.read_text() + "Flavors: [21\nAlphaS_MZ: 0.118\n")
    with pytest.raises(PDFError, match=r"BADINFO\.info, line \d+: malformed metadata"):
        load_pdf(folder)


def test_load_time(pdf_pythia):
    """Loading the 1 MB grid takes well under a second."""
    import time

    start = time.perf_counter()
    load_pdf(pdf_pythia.path)
    assert time.perf_counter() - start < 1.0
