"""Top-quark pair production at lowest order in QCD: g g > t t~ and q q~ > t t~.

Both use the variables of Ellis, Stirling & Webber, *QCD and Collider Physics* (CUP
1996), Ch. 10 (table of lowest-order heavy-quark matrix elements): with p1, p2 the
incoming partons, p3 the top, m = MT,

    tau1 = 2 p1.p3 / s,   tau2 = 2 p2.p3 / s,   rho = 4 m^2 / s   (tau1 + tau2 = 1),

and g_s^2 = 4 pi alpha_s. Massless light quarks, on-shell tops of mass ``params.mt``.

Example:
    >>> import torch
    >>> from processes import load
    >>> proc = load("g g > t t~")
    >>> [c.propagators[0].kind for c in proc.channels()]
    ['s', 't', 't']
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from evgen.kinematics import dot
from evgen.params import SMParameters
from processes.base import Channel, Propagator
from processes.registry import AnalyticProcess, alpha_s_tensor, register

__all__ = ["QQbarToTTbar", "GGToTTbar"]

_TOPS = ((6, -6), (-6, 6))


class _TopPair(AnalyticProcess):
    """Shared kinematics: tau1, tau2, rho from the two incoming partons and the top."""

    alpha_s_power = 2

    def __init__(
        self,
        incoming: tuple[int, int],
        outgoing: tuple[int, ...],
        params: SMParameters | None = None,
    ) -> None:
        super().__init__(incoming, outgoing, params)
        self._i_t, self._i_tbar = self.index_of(6), self.index_of(-6)

    def _taus(self, momenta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p1, p2, pt = momenta[:, 0], momenta[:, 1], momenta[:, self._i_t]
        s = 2.0 * dot(p1, p2)
        return 2.0 * dot(p1, pt) / s, 2.0 * dot(p2, pt) / s, 4.0 * self.params.mt**2 / s

    def _gs4(self, momenta: Tensor, alpha_s: Tensor | float | None) -> Tensor:
        a_s = alpha_s_tensor(alpha_s, momenta, self.params.alpha_s)
        return (4.0 * math.pi * a_s) ** 2


@register
class QQbarToTTbar(_TopPair):
    """q q~ > t t~ via the s-channel gluon, either beam order, q = d u s c b.

        |M|^2 = g_s^4 (4/9) (tau1^2 + tau2^2 + rho/2)

    (averaged over the 4 spins and 9 colours of the initial state), ESW Ch. 10,
    originally Combridge, Nucl. Phys. B151 (1979) 429 and Glück, Owens & Reya,
    Phys. Rev. D17 (1978) 2324. Symmetric in tau1 <-> tau2, so both beam orders
    share it. Leading (here the only) colour flow: q -> t, q~ -> t~.
    """

    coverage = "q q~ > t t~ (q = d u s c b)"

    @classmethod
    def partonic_processes(cls) -> Iterator[tuple[tuple[int, int], tuple[int, ...]]]:
        for q in (1, 2, 3, 4, 5):
            for incoming in ((q, -q), (-q, q)):
                for outgoing in _TOPS:
                    yield incoming, outgoing

    def __init__(
        self,
        incoming: tuple[int, int],
        outgoing: tuple[int, ...],
        params: SMParameters | None = None,
    ) -> None:
        super().__init__(incoming, outgoing, params)
        self._i_q = self.index_of(max(self.incoming))
        self._i_qbar = self.index_of(min(self.incoming))

    def matrix_element(self, momenta: Tensor, alpha_s: Tensor | float | None = None) -> Tensor:
        """|M|^2, (n,) dimensionless. momenta (n, 4, 4) GeV; alpha_s (n,) or float."""
        tau1, tau2, rho = self._taus(momenta)
        return self._gs4(momenta, alpha_s) * (4.0 / 9.0) * (tau1**2 + tau2**2 + 0.5 * rho)

    def channels(self) -> list[Channel]:
        """The s-channel gluon into the top pair."""
        return [Channel((Propagator(21, 0.0, 0.0, "s", (2, 3)),))]

    def colour_flow(self, momenta: Tensor, u: Tensor) -> Tensor:
        """q (501, 0), q~ (0, 502), t (501, 0), t~ (0, 502)."""
        tags = {
            self._i_q: (501, 0),
            self._i_qbar: (0, 502),
            self._i_t: (501, 0),
            self._i_tbar: (0, 502),
        }
        return self._colour_table(tags, momenta)


@register
class GGToTTbar(_TopPair):
    """g g > t t~: s-channel gluon, t- and u-channel top.

        |M|^2 = g_s^4 (1/(6 tau1 tau2) - 3/8) (tau1^2 + tau2^2 + rho - rho^2/(4 tau1 tau2))

    (averaged over 4 spins and 64 colours), ESW Ch. 10; Combridge, Nucl. Phys. B151
    (1979) 429; Glück, Owens & Reya, Phys. Rev. D17 (1978) 2324.

    Colour flows. Writing M = g_s^2 [(T^a T^b)_ij A1 + (T^b T^a)_ij A2] (a = gluon 1,
    b = gluon 2, i = top, j = antitop), the helicity sums of the colour-ordered
    amplitudes are

        sum |A1|^2 = K (tau2 / tau1) F,   sum |A2|^2 = K (tau1 / tau2) F,
        F = tau1^2 + tau2^2 + rho - rho^2 / (4 tau1 tau2),

    with a common K: A1 holds the t-channel pole 1/(m^2 - t) = 1/(s tau1). With the
    colour sums sum|T^aT^b|^2 = 16/3 and sum (T^aT^b)(T^bT^a)^* = -2/3 this gives the
    full result above, 6 (|A1|^2 + |A2|^2) - (2/3)|A1 + A2|^2 with |A1 + A2|^2 the
    QED-like K F / (tau1 tau2) (the massless limit is Mangano & Parke, Phys. Rept. 200
    (1991) 301, Sec. 3); the tests check both partial sums against explicit Feynman
    diagrams. So the leading-colour flow in which gluon 1's colour goes to the top,

        g1 (501, 502), g2 (502, 503), t (501, 0), t~ (0, 503),

    has probability tau2^2 / (tau1^2 + tau2^2) = (m^2 - u)^2 / ((m^2 - t)^2 + (m^2 - u)^2)
    and the mirrored one (g1 <-> g2) the rest, as MadGraph picks flows with
    |JAMP|^2 summed over helicities.
    """

    coverage = "g g > t t~"

    @classmethod
    def partonic_processes(cls) -> Iterator[tuple[tuple[int, int], tuple[int, ...]]]:
        for outgoing in _TOPS:
            yield (21, 21), outgoing

    def matrix_element(self, momenta: Tensor, alpha_s: Tensor | float | None = None) -> Tensor:
        """|M|^2, (n,) dimensionless. momenta (n, 4, 4) GeV; alpha_s (n,) or float."""
        tau1, tau2, rho = self._taus(momenta)
        tt = tau1 * tau2
        return (
            self._gs4(momenta, alpha_s)
            * (1.0 / (6.0 * tt) - 0.375)
            * (tau1**2 + tau2**2 + rho - rho**2 / (4.0 * tt))
        )

    def channels(self) -> list[Channel]:
        """s-channel gluon; t-channel top (p1 - p_t); u-channel top (p1 - p_t~).

        The t- and u-channel top lines have no width, as in MadGraph's default
        ``zerowidth_tchannel`` and in :meth:`matrix_element`.
        """
        mt = self.params.mt
        return [
            Channel((Propagator(21, 0.0, 0.0, "s", (2, 3)),)),
            Channel((Propagator(6, mt, 0.0, "t", (self._i_t,)),)),
            Channel((Propagator(6, mt, 0.0, "t", (self._i_tbar,)),)),
        ]

    def channel_weights(self, momenta: Tensor) -> Tensor:
        """Prior weights of the s-, t- and u-channel, (n, 3), from the propagators alone.

        The three diagrams are not separately gauge invariant (their squares depend on the
        gluon gauge and polarisation basis), so instead of |M_i|^2 each channel gets the
        inverse squared denominator of its propagator, the propagator-based weights of
        Mattelaer & Ostrolenk, Eur. Phys. J. C 81 (2021) 435, arXiv:2102.00773
        (MadGraph's ``sde_strategy = 2``):

            alpha ~ (1/s^2, 1/(m^2 - t)^2, 1/(m^2 - u)^2) ~ (1, 1/tau1^2, 1/tau2^2),

        using m^2 - t = s tau1 and m^2 - u = s tau2. The t (u) channel dominates where the
        top goes along gluon 1 (gluon 2), as its colour-ordered amplitude does.
        """
        tau1, tau2, _ = self._taus(momenta)
        raw = torch.stack([torch.ones_like(tau1), tau1 ** (-2), tau2 ** (-2)], dim=-1)
        return raw / raw.sum(dim=-1, keepdim=True)

    def flow_probabilities(self, momenta: Tensor) -> Tensor:
        """(n, 2) probabilities of the flows g1 -> t (column 0) and g2 -> t (column 1)."""
        tau1, tau2, _ = self._taus(momenta)
        first = tau2**2 / (tau1**2 + tau2**2)
        return torch.stack([first, 1.0 - first], dim=-1)

    def colour_flow(self, momenta: Tensor, u: Tensor) -> Tensor:
        """g1 (501, 502) g2 (502, 503) t (501, 0) t~ (0, 503) if u < P1, else g1 <-> g2."""
        first = self._colour_table(
            {0: (501, 502), 1: (502, 503), self._i_t: (501, 0), self._i_tbar: (0, 503)}, momenta
        )
        second = self._colour_table(
            {1: (501, 502), 0: (502, 503), self._i_t: (501, 0), self._i_tbar: (0, 503)}, momenta
        )
        pick = (u.to(momenta.device) < self.flow_probabilities(momenta)[:, 0])[:, None, None]
        return torch.where(pick, first, second)
