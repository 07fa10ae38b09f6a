"""Shared test helpers: physically valid events built from scratch in the test.

``make_ttbar_events`` gives g g > t t~ events at a 13 TeV pp collider: random parton
momentum fractions above threshold, an isotropic 2 -> 2 decay in the partonic rest
frame boosted to the lab (momentum conserved to rounding), and one of the two leading
colour flows of g g > t t~ per event, as MadGraph writes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from evgen.events import Events, ProcessInfo, RunInfo
from evgen.kinematics import boost, boost_z, mass2

MT = 173.0
MW = 80.419
MB = 4.7
E_BEAM = 6500.0


def make_ttbar_events(
    n: int,
    seed: int = 1,
    *,
    weights: torch.Tensor | None = None,
    process_id: int = 1,
    decay_top: bool = False,
) -> Events:
    """``n`` g g > t t~ events (float64, CPU) with valid colour flows.

    Weights default to ``sigma/n`` with sigma = 500 pb (equal weights, sum = sigma).
    With ``decay_top`` the top is an intermediate resonance (status 2) decaying
    isotropically to b W+ (particles 5 and 6, mothers 3 3, the b carries its colour):
    six particles per event, as in ``g g > t t~, t > b w+``.
    """
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    # Partonic invariant mass between 2 mt and 1.5 TeV, rapidity of the pair such
    # that both x stay below 1.
    shat_min, shat_max = (2 * MT + 1.0) ** 2, 1500.0**2
    shat = shat_min + (shat_max - shat_min) * torch.rand(n, generator=g, dtype=f64)
    tau = shat / (2 * E_BEAM) ** 2
    ymax = -0.5 * torch.log(tau)
    y = (2 * torch.rand(n, generator=g, dtype=f64) - 1) * ymax * 0.99
    x1, x2 = torch.sqrt(tau) * torch.exp(y), torch.sqrt(tau) * torch.exp(-y)
    e1, e2 = x1 * E_BEAM, x2 * E_BEAM

    rs = torch.sqrt(shat)
    pabs = torch.sqrt(shat / 4 - MT**2)
    cos_t = 2 * torch.rand(n, generator=g, dtype=f64) - 1
    sin_t = torch.sqrt(1 - cos_t**2)
    phi = 2 * math.pi * torch.rand(n, generator=g, dtype=f64)
    et = rs / 2
    top_cm = torch.stack(
        [et, pabs * sin_t * torch.cos(phi), pabs * sin_t * torch.sin(phi), pabs * cos_t], -1
    )
    tbar_cm = top_cm * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=f64)
    y_cm = 0.5 * torch.log(x1 / x2)
    top = boost_z(top_cm, y_cm)
    tbar = boost_z(tbar_cm, y_cm)
    zero = torch.zeros(n, dtype=f64)
    g1 = torch.stack([e1, zero, zero, e1], -1)
    g2 = torch.stack([e2, zero, zero, -e2], -1)
    # Put the outgoing pair exactly on the incoming total (rounding of the boost).
    p_in = g1 + g2
    tbar = p_in - top
    momenta = torch.stack([g1, g2, top, tbar], 1)

    # Colour flows (tags from 501): flow A g1(501,502) g2(503,501) t(503,0) t~(0,502),
    # flow B g1(501,502) g2(502,503) t(501,0) t~(0,503).
    flow_a = torch.tensor([[501, 502], [503, 501], [503, 0], [0, 502]])
    flow_b = torch.tensor([[501, 502], [502, 503], [501, 0], [0, 503]])
    pick = torch.rand(n, generator=g) < 0.5
    colours = torch.where(pick[:, None, None], flow_a, flow_b).to(torch.int64)

    mothers = torch.tensor([[0, 0], [0, 0], [1, 2], [1, 2]])
    pdg = torch.tensor([21, 21, 6, -6])
    status = torch.tensor([-1, -1, 1, 1])
    masses = torch.tensor([0.0, 0.0, MT, MT], dtype=f64)
    if decay_top:
        # t > b w+ in the top rest frame, boosted with the top's velocity; W = t - b.
        mt_actual = torch.sqrt(torch.clamp(mass2(top), min=0.0))
        pb = torch.sqrt((mt_actual**2 - (MW + MB) ** 2) * (mt_actual**2 - (MW - MB) ** 2))
        pb = pb / (2 * mt_actual)
        cos_b = 2 * torch.rand(n, generator=g, dtype=f64) - 1
        sin_b = torch.sqrt(1 - cos_b**2)
        phi_b = 2 * math.pi * torch.rand(n, generator=g, dtype=f64)
        b_rest = torch.stack(
            [
                torch.sqrt(pb**2 + MB**2),
                pb * sin_b * torch.cos(phi_b),
                pb * sin_b * torch.sin(phi_b),
                pb * cos_b,
            ],
            -1,
        )
        b = boost(b_rest, top[:, 1:] / top[:, :1])
        w = top - b
        momenta = torch.cat([momenta, b[:, None], w[:, None]], 1)
        top_colour = colours[:, 2:3]
        colours = torch.cat([colours, top_colour, torch.zeros_like(top_colour)], 1)
        mothers = torch.cat([mothers, torch.tensor([[3, 3], [3, 3]])])
        pdg = torch.cat([pdg, torch.tensor([5, 24])])
        status = torch.tensor([-1, -1, 2, 1, 1, 1])
        masses = torch.cat([masses, torch.tensor([MB, MW], dtype=f64)])
    k = len(pdg)
    if weights is None:
        weights = torch.full((n,), 500.0 / n, dtype=f64)
    return Events(
        momenta=momenta,
        pdg=pdg.expand(n, k).clone(),
        status=status.expand(n, k).clone(),
        mothers=mothers.expand(n, k, 2).clone(),
        colours=colours,
        masses=masses.expand(n, k).clone(),
        spins=torch.full((n, k), 9.0, dtype=f64),
        weights=weights.to(f64),
        process_id=torch.full((n,), process_id, dtype=torch.int64),
        scale=rs / 2,
        alpha_s=0.118 + 0.01 * torch.rand(n, generator=g, dtype=f64),
        alpha_qed=torch.full((n,), 1 / 132.507, dtype=f64),
        channel=torch.randint(0, 3, (n,), generator=g),
    )


def make_run_info(
    processes: tuple[ProcessInfo, ...] | None = None, card_text: str = "", weighting: int = 3
) -> RunInfo:
    """A 13 TeV pp RunInfo with NNPDF2.3 LO (LHAPDF 247000)."""
    if processes is None:
        processes = (ProcessInfo(1, "g g > t t~", 500.0, 1.5, 0.05),)
    return RunInfo(
        beam_pdg=(2212, 2212),
        beam_energy=(E_BEAM, E_BEAM),
        pdf_group=(0, 0),
        pdf_id=(247000, 247000),
        weighting=weighting,
        processes=processes,
        card_text=card_text,
        seed=42,
    )


@pytest.fixture
def ttbar_events() -> Callable[..., Events]:
    """Factory fixture: ``ttbar_events(n, seed=1, weights=None, process_id=1)``."""
    return make_ttbar_events


@pytest.fixture
def run_info() -> Callable[..., RunInfo]:
    """Factory fixture: ``run_info(processes=None, card_text="", weighting=3)``."""
    return make_run_info


@pytest.fixture(scope="module")
def single_thread():
    """Tiny networks and batches run fastest on one intra-op thread (and keep a shared
    2-core machine usable); restores torch's setting after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
