"""Running strong coupling alpha_s(Q^2), computed as MadGraph's madevent computes it.

MadGraph5_aMC@NLO evaluates alpha_s for its internal PDF sets (``pdlabel = nn23lo1``, the
default LO set NNPDF2.3 LO with alpha_s(MZ) = 0.130) with the function ``ALPHAS`` of
``Template/LO/Source/alfas_functions.f`` (R.K. Ellis), fed with ``asmz`` from the set
(``Source/PDF/pdfwrap.f``: ``asmz = 0.130``, ``nloop = 2`` unless the set says otherwise).
This module reproduces that routine, so alpha_s values compare one to one with MadGraph's:

* Reference point: ``alpha_s(MZ) = asmz`` at MadGraph's own ``ZMASS = 91.188`` GeV
  (``DATA ZMASS/91.188D0/``), not at the PDF set's MZ (91.1876 GeV for NNPDF2.3); the
  difference moves alpha_s by 7e-7 relative (alpha_s(91.1876 GeV) = 0.1300001).
* Flavour thresholds: MadGraph's ``COMMON/QMASS/`` defaults ``CMASS = 1.42`` and
  ``BMASS = 4.7`` GeV (not the set's MCharm = 1.414, MBottom = 4.75); nf = 3 below m_c,
  4 for m_c <= Q < m_b and 5 for Q >= m_b, with no top threshold. alpha_s is continuous
  at the thresholds (leading-order matching).
* In each nf region alpha_s runs from the region's reference point (MZ for nf = 5, m_b for
  nf = 4 with alpha_s(m_b) run down from MZ, m_c for nf = 3), with ``t = ln(Q^2/Q_ref^2)``:

  - one loop (``n_loops=1``): ``a = a_ref / (1 + a_ref b0 t)``, the exact solution of
    ``da/dt = -b0 a^2``;
  - two loops (``n_loops=2``, the default): the approximate closed form
    ``a = a_ref / (1 + b0 a_ref t + c1 a_ref ln(1 + a_ref b0 t))`` as starting value, then
    Newton iterations on the exact implicit solution of ``da/dt = -b0 a^2 (1 + c1 a)``,
    ``b0 t + F2(a_ref) - F2(a) = 0`` with ``F2(a) = 1/a + c1 ln(c1 a / (1 + c1 a))``,
    stopped (as MadGraph's ``NEWTON1``) after the first step whose size is at most
    ``TOL = 5e-4`` relative to a. Newton converges quadratically, so the result agrees with
    the exact two-loop solution to a few 1e-7 relative (2.5e-7 at worst between 1 GeV
    and 100 TeV for alpha_s(MZ) = 0.118 and 0.130).
  - three loops (``n_loops=3``), MadGraph's ``F3`` form, for nf <= 5.

  Here ``b0 = (33 - 2 nf)/(12 pi)``, ``c1 = (153 - 19 nf)/(2 pi (33 - 2 nf))``; for
  nf = 3, 4, 5 the constants are MadGraph's ``DATA`` literals to the last digit. Below the
  one-loop Landau pole (``1 + a_ref b0 t <= 0``, Q below about 0.35 GeV for alpha_s(MZ) =
  0.130) two- and three-loop running return MadGraph's marker value 9e98; just above it (up
  to about 0.65 GeV there) the closed-form start is so far off that Newton fails and the
  same arithmetic as MadGraph's gives NaN. PDFs start at 1 GeV, so neither is ever used.

Newer aMC@NLO code interpolates a table of these values (``alphas_from_grids``); madevent at
LO calls the routine directly, which is what is reproduced here. With ``pdlabel = lhapdf``
MadGraph calls LHAPDF's own alpha_s instead; that is not this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from evgen.pdf import PDFSet

__all__ = ["AlphaS", "alphas_from_pdf", "MADGRAPH_MZ", "MADGRAPH_QUARK_MASSES"]

#: MadGraph's Z mass in ``alfas_functions.f`` (GeV): the scale at which ``asmz`` is imposed.
MADGRAPH_MZ = 91.188
#: MadGraph's flavour thresholds ``CMASS``, ``BMASS`` in ``alfas_functions.f`` (GeV).
MADGRAPH_QUARK_MASSES: Mapping[int, float] = {4: 1.42, 5: 4.7}

#: Relative Newton step size at which MadGraph's NEWTON1 stops.
_TOL = 5.0e-4
_MAX_NEWTON_STEPS = 100
#: What MadGraph's NEWTON1 returns (n_loops >= 2) below the one-loop Landau pole.
_BEYOND_POLE = 9.0e98

# MadGraph's DATA statements in NEWTON1 (nf = 3, 4, 5): b0, c1, c2 and sqrt(4 c2 - c1^2).
_MG_B0 = {3: 0.716197243913527, 4: 0.66314559621623, 5: 0.61009394851893}
_MG_C1 = {3: 0.565884242104515, 4: 0.49019722472304, 5: 0.40134724779695}
_MG_C2 = {3: 0.453013579178645, 4: 0.30879037953664, 5: 0.14942733137107}
_MG_DEL = {3: 1.22140465909230, 4: 0.99743079911360, 5: 0.66077962451190}


def _beta_coefficients(nf: int) -> tuple[float, float, float, float]:
    """(b0, c1, c2, del) of NEWTON1 for ``nf`` flavours: MadGraph's literals for nf = 3..5."""
    if nf in _MG_B0:
        return _MG_B0[nf], _MG_C1[nf], _MG_C2[nf], _MG_DEL[nf]
    pi = math.pi
    b0 = (11.0 - 2.0 * nf / 3.0) / 4.0 / pi
    c1 = (102.0 - 38.0 / 3.0 * nf) / 4.0 / pi / (11.0 - 2.0 / 3.0 * nf)
    c2 = (2857.0 / 2.0 - 5033.0 * nf / 18.0 + 325.0 * nf**2 / 54.0) / 16.0 / pi**2
    c2 /= 11.0 - 2.0 / 3.0 * nf
    disc = 4.0 * c2 - c1**2
    return b0, c1, c2, math.sqrt(disc) if disc > 0 else math.nan


def _newton1(t: Tensor, a_in: Tensor, coeffs: tuple[Tensor, ...], n_loops: int) -> Tensor:
    """MadGraph's NEWTON1, element by element: evolve ``a_in`` over ``t = ln(Q^2/Q_in^2)``.

    ``coeffs`` = (b0, c1, c2, del), each broadcastable to ``t``. The order of the floating
    point operations follows the Fortran so that results agree to rounding.
    """
    b0, c1, c2, dl = coeffs
    a_out = a_in / (1.0 + a_in * b0 * t)
    if n_loops == 1:
        return a_out
    # Beyond the one-loop Landau pole MadGraph returns 9d98 (the log below is then NaN).
    beyond_pole = (1.0 + a_in * b0 * t) <= 0.0
    a_out = a_in / (1.0 + b0 * a_in * t + c1 * a_in * torch.log(1.0 + a_in * b0 * t))

    def f2(a: Tensor) -> Tensor:
        return 1.0 / a + c1 * torch.log((c1 * a) / (1.0 + c1 * a))

    def f3(a: Tensor) -> Tensor:
        return (
            1.0 / a
            + 0.5 * c1 * torch.log((c2 * a**2) / (1.0 + c1 * a + c2 * a**2))
            - (c1**2 - 2.0 * c2) / dl * torch.atan((2.0 * c2 * a + c1) / dl)
        )

    f = f2 if n_loops == 2 else f3
    f_in = f(a_in)
    active = ~beyond_pole
    for _ in range(_MAX_NEWTON_STEPS):
        a_s = a_out
        g = b0 * t + f_in - f(a_s)
        if n_loops == 2:
            gp = 1.0 / (a_s**2 * (1.0 + c1 * a_s))
        else:
            gp = 1.0 / (a_s**2 * (1.0 + c1 * a_s + c2 * a_s**2))
        step = g / gp
        a_out = torch.where(active, a_s - step, a_s)
        # NaN (below the Landau pole) compares False and stops, as in the Fortran.
        active = active & (torch.abs(step / a_s) > _TOL)
        if not bool(active.any()):
            break
    return torch.where(beyond_pole, _BEYOND_POLE, a_out)


class AlphaS:
    r"""alpha_s(Q^2) from alpha_s(MZ) with MadGraph's running (see the module docstring).

    Args:
        alpha_s_mz: alpha_s at ``mz``, in the ``max_flavours``-flavour scheme region of MZ.
        mz: reference scale in GeV (MadGraph's 91.188 by default).
        n_loops: 1 (exact one-loop), 2 (MadGraph's default) or 3 (for nf <= 5).
        quark_masses: flavour thresholds in GeV by PDG id (4, 5, and 6 if
            ``max_flavours = 6``); ``None`` gives MadGraph's ``{4: 1.42, 5: 4.7}``.
        max_flavours: largest number of active flavours (3 to 6); 5 as MadGraph.

    Example:
        >>> a = AlphaS(0.130)
        >>> round(float(a(91.188**2)), 12)
        0.13
        >>> round(float(a(1000.0**2)), 6)
        0.093085
    """

    def __init__(
        self,
        alpha_s_mz: float,
        mz: float = MADGRAPH_MZ,
        n_loops: int = 2,
        quark_masses: Mapping[int, float] | None = None,
        max_flavours: int = 5,
    ) -> None:
        if not (alpha_s_mz > 0 and math.isfinite(alpha_s_mz)):
            raise ValueError(f"alpha_s: alpha_s(MZ) must be > 0, got {alpha_s_mz}")
        if not (mz > 0 and math.isfinite(mz)):
            raise ValueError(f"alpha_s: MZ must be > 0 GeV, got {mz}")
        if n_loops not in (1, 2, 3):
            raise ValueError(f"alpha_s: n_loops must be 1, 2 or 3, got {n_loops}")
        if max_flavours not in (3, 4, 5, 6):
            raise ValueError(f"alpha_s: max_flavours must be 3, 4, 5 or 6, got {max_flavours}")
        if n_loops == 3 and max_flavours > 5:
            raise ValueError("alpha_s: three-loop running (MadGraph's F3) is defined for nf <= 5")
        masses = dict(MADGRAPH_QUARK_MASSES if quark_masses is None else quark_masses)
        thresholds: list[float] = []
        for pid in range(4, max_flavours + 1):
            if pid not in masses:
                raise ValueError(
                    f"alpha_s: quark_masses needs the threshold of PDG id {pid} for "
                    f"max_flavours = {max_flavours}, got {sorted(masses)}"
                )
            thresholds.append(float(masses[pid]))
        if any(m <= 0 for m in thresholds) or thresholds != sorted(set(thresholds)):
            raise ValueError(
                f"alpha_s: thresholds must be positive and increasing, got {thresholds} GeV"
            )

        self.alpha_s_mz = float(alpha_s_mz)
        self.mz = float(mz)
        self.n_loops = n_loops
        self.max_flavours = max_flavours
        #: flavour thresholds in GeV by PDG id (only those used)
        self.thresholds: dict[int, float] = {4 + i: m for i, m in enumerate(thresholds)}

        # Regions r = 0..R: nf = 3 + r, for Q in [thr[r-1], thr[r]). Each has a reference
        # scale and alpha_s there: MZ's region holds (MZ, asmz); below it the upper
        # threshold, above it the lower one, run from the neighbour nearer to MZ.
        n_regions = len(thresholds) + 1
        r_mz = sum(1 for m in thresholds if self.mz >= m)
        ref_scale = [0.0] * n_regions
        ref_alpha = [0.0] * n_regions
        ref_scale[r_mz], ref_alpha[r_mz] = self.mz, self.alpha_s_mz
        for r in range(r_mz - 1, -1, -1):  # downwards: alpha at thr[r] with nf of region r+1
            ref_scale[r] = thresholds[r]
            ref_alpha[r] = self._run_scalar(
                ref_alpha[r + 1], ref_scale[r + 1], thresholds[r], r + 1
            )
        for r in range(r_mz + 1, n_regions):  # upwards: alpha at thr[r-1] with nf of region r-1
            ref_scale[r] = thresholds[r - 1]
            ref_alpha[r] = self._run_scalar(
                ref_alpha[r - 1], ref_scale[r - 1], thresholds[r - 1], r - 1
            )
        self._thresholds = thresholds
        self._r_mz = r_mz
        self._ref_scale = ref_scale
        self._ref_alpha = ref_alpha
        self._coeffs = [_beta_coefficients(3 + r) for r in range(n_regions)]

    def _run_scalar(self, a_in: float, q_in: float, q_out: float, region: int) -> float:
        t = torch.tensor(2.0 * math.log(q_out / q_in), dtype=torch.float64)
        a = torch.tensor(a_in, dtype=torch.float64)
        coeffs = tuple(torch.tensor(c, dtype=torch.float64) for c in _beta_coefficients(3 + region))
        return float(_newton1(t, a, coeffs, self.n_loops))

    @property
    def alpha_s_at_thresholds(self) -> dict[int, float]:
        """alpha_s at each flavour threshold (MadGraph's AMC, AMB), by PDG id."""
        return {
            4 + k: self._ref_alpha[k] if k < self._r_mz else self._ref_alpha[k + 1]
            for k in range(len(self._thresholds))
        }

    def n_flavours(self, q2: Tensor) -> Tensor:
        """Number of active flavours at Q^2 (GeV^2): 3 + number of thresholds <= Q."""
        q = torch.sqrt(torch.as_tensor(q2, dtype=torch.float64))
        return 3 + self._region(q)

    def _region(self, q: Tensor) -> Tensor:
        if not self._thresholds:
            return torch.zeros_like(q, dtype=torch.long)
        thr = torch.tensor(self._thresholds, dtype=q.dtype, device=q.device)
        return torch.searchsorted(thr, q.contiguous(), right=True)

    def __call__(self, q2: Tensor | float) -> Tensor:
        """alpha_s at Q^2 (GeV^2, any shape, > 0); float64 of the same shape and device.

        Computed in float64; a float32 ``q2`` is converted (and carries its float32 rounding).
        """
        q2 = torch.as_tensor(q2, dtype=torch.float64)
        if bool((~(q2 > 0)).any()):
            bad = q2[~(q2 > 0)].flatten()[0].item()
            raise ValueError(f"alpha_s: Q^2 must be > 0 GeV^2, got {bad}")
        q = torch.sqrt(q2)
        region = self._region(q)
        dev = q.device

        def per_region(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=torch.float64, device=dev)[region]

        t = 2.0 * torch.log(q / per_region(self._ref_scale))
        a_in = per_region(self._ref_alpha)
        coeffs = tuple(per_region([c[k] for c in self._coeffs]) for k in range(4))
        return _newton1(t, a_in, coeffs, self.n_loops)

    def __repr__(self) -> str:
        return (
            f"AlphaS(alpha_s_mz={self.alpha_s_mz}, mz={self.mz}, n_loops={self.n_loops}, "
            f"quark_masses={self.thresholds}, max_flavours={self.max_flavours})"
        )


def alphas_from_pdf(
    pdf: PDFSet,
    n_loops: int = 2,
    *,
    mz: float = MADGRAPH_MZ,
    quark_masses: Mapping[int, float] | None = None,
) -> AlphaS:
    """The AlphaS MadGraph uses with ``pdf``: the set's alpha_s(MZ), imposed at MadGraph's MZ.

    As madevent does for its internal sets (``pdfwrap.f`` then ``alfas_functions.f``), only
    ``pdf.alpha_s_mz`` is taken from the set; MZ (91.188 GeV), the thresholds (1.42, 4.7 GeV)
    and two-loop running are MadGraph's, whatever the set's MZ, masses and AlphaS_OrderQCD.
    Pass ``mz=pdf.mz`` or ``quark_masses=pdf.quark_masses`` to use the set's values instead.
    """
    from evgen.errors import PDFError

    asmz = pdf.alpha_s_mz
    if not (asmz > 0 and math.isfinite(asmz)):
        raise PDFError(f"PDF set {pdf.name}: no usable AlphaS_MZ in its metadata (got {asmz})")
    return AlphaS(asmz, mz=mz, n_loops=n_loops, quark_masses=quark_masses, max_flavours=5)
