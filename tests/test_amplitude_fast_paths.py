"""The fast paths of the generated code against independent evaluations of the same |M|^2.

- Colour rows (processes/auto/codegen.py, ``_colour_rows``): amplitudes summed per colour
  row up to a phase rebuild every colour coefficient exactly.
- The grouped code (the default eager code: currents of one kind stacked and evaluated in
  one set of kernels, amplitudes closed straight into per-row accumulators, each row added
  to its JAMPs once) gives the JAMPs of the amplitude-keeping code (one call per current,
  one contraction per amplitude, one add per colour coefficient) and of the plan
  interpreter (engine="reference").
- The recorded graph (``torch.jit.trace`` of the eager chunk) gives the eager numbers to
  the last bit, serves every alpha_s (fixed or per event) with one recording, pads the
  last chunk, records again for other helicity rows, and falls back to eager if
  recording fails; it matches madgraph4gpu's own values.

Tolerances: the same floating-point operations in a different order agree to ~1e-15
relative per amplitude; |M|^2 of multi-gluon processes loses up to ~1e-13 near collinear
points to gauge cancellations between diagrams (observed here: grouped against
amplitude-keeping JAMPs <= 6e-16, against the reference engine <= 7e-15 on JAMPs and
<= 2e-14 on |M|^2, recorded graph against madgraph4gpu <= 4e-14), hence 1e-13 on JAMPs
and |M|^2 against the reference engine and 1e-12 against madgraph4gpu.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mg4gpu_data import load_reference, params_from_card

from processes.auto import codegen
from processes.auto.plan import PlanExecutor, scan_momenta
from processes.auto.process import AutoProcess

pytestmark = pytest.mark.usefixtures("single_thread")

TOL = 1e-13


def _collision(masses, n: int, e_cm: float, seed: int) -> torch.Tensor:
    """n RAMBO points in the centre-of-mass frame at sqrt(s) = e_cm, incoming along
    +-z, (n, n_ext, 4) GeV (the engine's own :func:`~processes.auto.plan.scan_momenta`)."""
    return scan_momenta(masses, 2, n, seed, e_cm)


def pointwise(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) / b).abs().max())


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("name", ["g g > t t~ g g", "u u~ > d d~ QED^2==2", "e+ e- > w+ w-"])
def test_colour_rows_rebuild_every_coefficient(name: str) -> None:
    """phase x row coefficient = the amplitude's colour coefficient (fermion sign in) for
    every member and target, and every non-zero coefficient is covered once."""
    plan = AutoProcess.load(name).plan
    coeff = np.asarray(plan.colour_coefficients, dtype=np.float64).reshape(
        len(plan.amplitudes), -1, 2
    )
    exact = (coeff[..., 0] + 1j * coeff[..., 1]) * np.array([a.sign for a in plan.amplitudes])[
        :, None
    ]
    rebuilt = np.zeros_like(exact)
    rows = codegen._colour_rows(plan, coeff)
    for members, targets in rows:
        for j, phase in members:
            for g, col, c in targets:
                assert g == plan.order_groups[j]
                rebuilt[j, col] += phase * c
    assert np.abs(rebuilt - exact).max() <= 1e-15 * np.abs(exact).max()
    if name == "g g > t t~ g g":  # 159 amplitudes, 672 coefficients: 105 rows, 336 adds
        assert len(rows) < len(plan.amplitudes)
        assert sum(len(t) for _, t in rows) < np.count_nonzero(exact)


PROCESSES = [
    "e+ e- > mu+ mu-",  # a two-term current (Z: FFV2 + FFV4)
    "u u~ > d d~ QED^2==2",  # order groups
    "e+ e- > w+ w-",  # massive vectors: three helicities per leg
    "u u~ > t t~ h",  # FFS, massive fermions
    "g g > g g",  # four-gluon vertices
    "g g > t t~ g g",  # stacks of up to 12 currents
]


@pytest.mark.parametrize("name", PROCESSES)
def test_grouped_jamps_equal_amplitude_code_and_reference(name: str) -> None:
    """JAMPs of the grouped code equal those of the amplitude-keeping code and of the plan
    interpreter; |M|^2 likewise (several chunks, per-event alpha_s)."""
    proc = AutoProcess.load(name)
    plan = proc.plan
    ex = PlanExecutor(plan, proc.model, proc.params)
    ex.kernel.trace = False
    ex.kernel._chunk = 5
    ref = PlanExecutor(plan, proc.model, proc.params, engine="reference")
    p = _collision(plan.masses, 12, 2.0 * sum(plan.masses[2:]) + 400.0, seed=7)
    a_s = torch.linspace(0.1, 0.13, 12, dtype=torch.float64)
    units = codegen._current_units(plan, codegen._slot_legs(plan))
    assert sorted(i for unit in units for i in unit) == list(range(len(plan.currents)))
    couplings = ex._real_couplings(a_s, p)
    grouped = ex.kernel.run(p, couplings, lambda j, a: j)  # (G, K, H, n)
    kept = ex.kernel.run(p, couplings, lambda j, a: j, want_amplitudes=True)
    assert rel(grouped, kept) < TOL
    reference = ref.jamps(ref.amplitudes(p, a_s)).permute(2, 3, 1, 0)  # (G, K, H, n)
    assert rel(grouped, reference) < TOL
    assert pointwise(ex.matrix_element(p, a_s), ref.matrix_element(p, a_s)) < TOL


def test_stacked_groups_exist_for_multi_gluon_processes() -> None:
    """g g > t t~ g g: its 133 currents go into far fewer stacked evaluations, members
    lined up by a relabelling of the helicity axes that maps each input's legs onto the
    first member's."""
    plan = AutoProcess.load("g g > t t~ g g").plan
    legs = codegen._slot_legs(plan)
    units = codegen._current_units(plan, legs)
    assert len(units) < len(plan.currents) // 2
    for unit in units:
        first = plan.currents[unit[0]]
        for i in unit:
            member = plan.currents[i]
            perm = codegen._axis_map(first.inputs, member.inputs, legs, plan.n_external)
            assert sorted(perm) == list(range(plan.n_external))
            for a, b in zip(first.inputs, member.inputs, strict=True):
                assert {perm[q] for q in legs[a]} == set(legs[b])


def test_stacking_mixed_forms() -> None:
    """Members given as packed tensors, real pairs, pairs with a number part and numbers
    stack into one value whose rows, relabelled back, are the members' values (broadcast
    over the helicity axes the other members depend on)."""
    g = torch.Generator().manual_seed(2)
    n = 3
    shape = (2, 1, 2, n)  # two helicity axes of length 2, one of length 1

    def rnd() -> torch.Tensor:
        return torch.randn(shape, dtype=torch.float64, generator=g)

    a, b, c = rnd(), rnd(), rnd()
    values = [
        codegen.Cx(z=torch.complex(a, b)),
        codegen.Cx(c, 0.5),
        codegen.Cx(0.0, a),
        codegen.Cx(2.0, -1.0),
    ]
    perms = [(0, 1, 2), (2, 1, 0), (0, 1, 2), (1, 0, 2)]
    stacked = codegen._stack_cx(values, perms)
    like = torch.zeros(shape, dtype=torch.float64)
    for s, (v, perm) in enumerate(zip(values, perms, strict=True)):
        inverse = tuple(sorted(range(3), key=lambda q: perm[q]))
        row = codegen._unstack(stacked.z, s, inverse, 3)
        assert torch.equal(*torch.broadcast_tensors(row, v.to_complex(like))), s
    same = codegen._stack_cx([codegen.Cx(0.0), codegen.Cx(0.0)], perms[:2])
    assert same.is_zero  # a number shared by all members stays a number


def test_traced_equals_eager_for_every_alpha_s() -> None:
    """The recorded graph gives the eager numbers (bit for bit up to BLAS blocking, here
    <= 1e-15) for a padded last chunk, a fixed alpha_s, another fixed alpha_s and a
    per-event alpha_s, all with one recording; other helicity rows record again; small
    batches (under half a chunk) stay eager."""
    proc = AutoProcess.load("g g > t t~ g")
    plan = proc.plan
    traced = PlanExecutor(plan, proc.model, proc.params)
    eager = PlanExecutor(plan, proc.model, proc.params)
    ref = PlanExecutor(plan, proc.model, proc.params, engine="reference")
    traced.kernel._chunk = eager.kernel._chunk = 16
    eager.kernel.trace = False
    p = _collision(plan.masses, 40, 900.0, seed=3)  # chunks of 16, 16, 8 (padded)
    per_event = torch.linspace(0.1, 0.13, 40, dtype=torch.float64)
    for a_s in (0.118, 0.13, per_event):
        got = traced.matrix_element(p, a_s)
        assert pointwise(got, eager.matrix_element(p, a_s)) < 1e-15
        assert pointwise(got, ref.matrix_element(p, a_s)) < TOL
    assert len(traced.kernel._traced) == 1
    hel = torch.tensor(plan.helicities[3:9])
    squares = traced.helicity_squares(p, None, hel)
    assert rel(squares, ref.helicity_squares(p, None, hel)) < TOL
    assert len(traced.kernel._traced) == 2
    traced.matrix_element(p[:7])  # < half a chunk: eager
    assert len(traced.kernel._traced) == 2


def test_trace_failure_falls_back_to_eager(monkeypatch, caplog) -> None:
    """If recording fails, the kernel says so once (a warning) and runs eager with the
    same numbers."""
    proc = AutoProcess.load("g g > t t~")
    p = _collision(proc.masses, 20, 700.0, seed=1)
    eager = PlanExecutor(proc.plan, proc.model, proc.params)
    eager.kernel.trace = False
    ex = PlanExecutor(proc.plan, proc.model, proc.params)
    ex.kernel._chunk = eager.kernel._chunk = 8

    def broken(*args, **kwargs):
        raise RuntimeError("no tracer here")

    monkeypatch.setattr(torch.jit, "trace", broken)
    with caplog.at_level("WARNING"):
        got = ex.matrix_element(p)
        again = ex.matrix_element(p)
    assert ex.kernel._trace_failed
    assert sum("tracing failed" in r.message for r in caplog.records) == 1
    expected = eager.matrix_element(p)
    assert torch.equal(got, expected) and torch.equal(again, expected)


MG4GPU = Path(__file__).resolve().parent / "data" / "mg4gpu"


@pytest.mark.parametrize("key", ["gg_ttg", "gg_ttgg"])
def test_traced_against_madgraph(key: str) -> None:
    """madgraph4gpu's |M|^2 through the recorded graph (chunks of 4 events), 1e-12."""
    if not (MG4GPU / f"{key}.json").exists():
        pytest.skip(f"{key}.json not present")
    data = load_reference(key)
    pdg = data["pdg"]
    proc = AutoProcess(
        pdg[:2], pdg[2:], params_from_card(data["param_card"]), zero_width_t_channel=False
    )
    proc.executor.kernel._chunk = 4
    for name, ref in data["sets"].items():
        momenta = torch.tensor(ref["momenta"], dtype=torch.float64)
        me = proc.matrix_element(momenta, data["alpha_s"]) * proc.symmetry_factor
        assert pointwise(me, torch.tensor(ref["me"], dtype=torch.float64)) < 1e-12, name
    assert proc.executor.kernel._traced


def test_keep_freed_memory_is_idempotent() -> None:
    """The allocator setting is applied once per process and reported the same after."""
    first = codegen.keep_freed_memory()
    assert codegen.keep_freed_memory() == first
