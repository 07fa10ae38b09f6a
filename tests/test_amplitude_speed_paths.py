"""The fast amplitude paths against the reference ones.

- processes/auto/helas_real.py (real pairs, and packed complex tensors) against
  processes/auto/helas.py: every Lorentz structure of the sm, every off-shell leg with
  massless and massive (width) propagators, every way of contracting an amplitude, and the
  external wave functions including their special momenta (along -z, at rest).
- The generated straight-line code (processes/auto/codegen.py, the default engine of
  PlanExecutor) against the plan interpreter (engine="reference"): |M|^2, per-helicity
  squares, amplitudes, SDE channel weights and colour-flow weights for processes that use
  every kind of vertex (QCD, electroweak with Z/W/H, four-point vertices, multi-term
  couplings, decays, squared-order interference), to 1e-12 relative; and against
  MadGraph's own values (tests/data/mg4gpu).
- Compilation: optional, falls back to eager with the same numbers if the compiler fails;
  the compiled numbers equal the eager ones (slow: runs with EVGEN_TEST_COMPILE=1).

Two evaluations of the same amplitudes in a different order of floating-point operations
agree to ~1e-15 relative per amplitude; |M|^2 of multi-gluon processes at points near
collinear limits loses up to ~1e-13 to the gauge cancellations between diagrams, hence
1e-12.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from mg4gpu_data import load_reference, params_from_card  # noqa: E402

from processes.auto import codegen, helas
from processes.auto import helas_real as hr
from processes.auto.plan import PlanExecutor, scan_momenta
from processes.auto.process import AutoProcess

pytestmark = pytest.mark.usefixtures("single_thread")

C128 = torch.complex128
TOL = 1e-12


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest |b| (a scale for amplitudes)."""
    return float((a - b).abs().max() / b.abs().max())


def pointwise(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) / b).abs().max())


# ------------------------------------------------------------------ helas_real vs helas


def _random_wave(spin: int, n: int, g: torch.Generator) -> torch.Tensor:
    w = torch.randn(n, 6, dtype=C128, generator=g)
    if spin == 1:
        w[:, 3:] = 0
    return w


def _as_real(w: torch.Tensor, spin: int, packed: bool) -> hr.Wave:
    """helas.py's (..., 6) complex wave function as a helas_real Wave."""
    flow = (w[..., 0].real, w[..., 1].real, w[..., 1].imag, w[..., 0].imag)
    idx = [2] if spin == 1 else [2, 3, 4, 5]
    comps = tuple(hr.Cx(w[..., i].real, w[..., i].imag) for i in idx)
    wave = hr.Wave(flow, comps)
    return hr.pack(wave) if packed else wave


def _to_complex(c: hr.Cx, like: torch.Tensor) -> torch.Tensor:
    return c.to_complex(like)


@pytest.mark.parametrize("packed", [False, True], ids=["pairs", "packed"])
@pytest.mark.parametrize("name", sorted(helas.LORENTZ))
def test_real_vertices_equal_helas(name: str, packed: bool) -> None:
    """Amplitudes contracted at every leg and off-shell currents of every leg (massless
    propagator; massive with width) equal helas.py's to 1e-13 relative at random complex
    wave functions (momentum-conserving flows)."""
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    st = helas.LORENTZ[name]
    wfs = [_random_wave(s, 5, g) for s in st.spins]
    wfs[-1][:, 0:2] = -sum(w[:, 0:2] for w in wfs[:-1])  # flows sum to zero
    coup = 0.3 - 0.7j
    like = wfs[0][..., 0].real
    ref = st.amplitude(wfs, coup)
    waves = [_as_real(w, s, packed) for w, s in zip(wfs, st.spins, strict=True)]
    for k in range(len(st.spins)):
        got = _to_complex(hr.amplitude(name, waves, coup, k), like)
        assert rel(got, ref) < 1e-13, ("amplitude", k)
        others = [w for i, w in enumerate(waves) if i != k]
        others_c = [w for i, w in enumerate(wfs) if i != k]
        for mass, width in ((0.0, 0.0), (80.0, 2.0)):
            off = st.offshell(k, others_c, coup, mass, width)
            wave = hr.offshell(name, k, others, coup, mass, width)
            body = off[..., 2:3] if st.spins[k] == 1 else off[..., 2:6]
            got_body = torch.stack([_to_complex(c, like) for c in wave.comps], -1)
            assert rel(got_body, body) < 1e-13, ("offshell", k, mass)
            flow = torch.stack(
                [off[..., 0].real, off[..., 1].real, off[..., 1].imag, off[..., 0].imag], -1
            )
            assert rel(torch.stack(wave.flow, -1), flow) < 1e-15


def _momenta_with_special_cases(mass: float) -> torch.Tensor:
    """Generic momenta, along +z, along -z and (massive) at rest, GeV."""
    p3 = torch.tensor(
        [[100.0, -200.0, 300.0], [0.0, 0.0, 400.0], [0.0, 0.0, -400.0], [10.0, 20.0, -30.0]],
        dtype=torch.float64,
    )
    if mass > 0:
        p3 = torch.cat([p3, torch.zeros(1, 3, dtype=torch.float64)])
    e = torch.sqrt((p3**2).sum(-1) + mass**2)
    return torch.cat([e[:, None], p3], -1)


@pytest.mark.parametrize(
    "kind, mass",
    [("i", 0.0), ("i", 173.0), ("o", 0.0), ("o", 173.0), ("v", 0.0), ("v", 80.4), ("s", 125.0)],
)
def test_real_external_wavefunctions_equal_helas(kind: str, mass: float) -> None:
    """ixxxxx, oxxxxx, vxxxxx, sxxxxx for both signs and every helicity, including
    momenta along +-z and at rest: equal to helas.py's to rounding; the massless vector's
    time component and the scalar are Python numbers (folded)."""
    p = _momenta_with_special_cases(mass)
    helicities = (-1.0, 0.0, 1.0) if kind == "v" and mass > 0 else (-1.0, 1.0)
    reference = {"i": helas.ixxxxx, "o": helas.oxxxxx, "v": helas.vxxxxx}
    real = {"i": hr.ixxxxx, "o": hr.oxxxxx, "v": hr.vxxxxx}
    for sign in (1, -1):
        if kind == "s":
            ref = helas.sxxxxx(p, sign)
            wave = hr.sxxxxx(tuple(p.T), sign)
            assert wave.comps[0].is_constant and wave.comps[0].constant() == 1.0
            assert torch.equal(torch.stack(wave.flow, -1), p * sign)
            continue
        for h in helicities:
            ref = reference[kind](p, mass, int(h), sign)
            hel = torch.tensor([h], dtype=torch.float64)[:, None]
            wave = real[kind](tuple(p.T), mass, hel, sign)
            got = torch.stack([c.to_complex(p[:, 0][None]) for c in wave.comps], -1)[0]
            assert rel(got, ref[..., 2:6]) < 1e-15, (sign, h)
            flow = torch.stack(wave.flow, -1)
            assert torch.equal(
                flow,
                torch.stack(
                    [ref[..., 0].real, ref[..., 1].real, ref[..., 1].imag, ref[..., 0].imag], -1
                ),
            )
            if kind == "v" and mass == 0.0:
                assert wave.comps[0].is_zero


def test_folding_and_packing_arithmetic() -> None:
    """Cx folds Python-number zeros and ones (no tensor work), and packed and paired
    arithmetic give the same complex numbers."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, dtype=C128, generator=g)
    b = torch.randn(4, dtype=C128, generator=g)
    pa, pb = hr.Cx(a.real, a.imag), hr.Cx(b.real, b.imag)
    zero, one = hr.Cx(0.0), hr.Cx(1.0)
    assert (pa * zero).is_zero and (pa + zero) is not None
    assert (pa * one).re is pa.re and (pa * one).im is pa.im
    assert (zero + zero).is_zero and (hr.Cx(0.0, 2.0) * hr.Cx(0.0, 3.0)).constant() == -6.0
    for x, y in ((pa, pb), (pa.packed(), pb), (pa, pb.packed()), (pa.packed(), pb.packed())):
        like = a.real
        assert rel((x * y).to_complex(like), a * b) < 1e-15
        assert rel((x + y).to_complex(like), a + b) < 1e-15
        assert rel((x - y).to_complex(like), a - b) < 1e-15
        assert rel(x.times_i().to_complex(like), 1j * a) < 1e-15
        assert rel(x.conj().to_complex(like), a.conj()) < 1e-15
        assert rel(x.scale(b.real).to_complex(like), a * b.real) < 1e-15
    assert (pa.packed() * 2.0).z is not None
    # real and imaginary pairs mixed with packed values (torch mixes dtypes in one kernel)
    r, i = hr.Cx(b.real, 0.0), hr.Cx(0.0, b.imag)
    for x in (r, i):
        exact = x.to_complex(a.real)
        for y in (pa.packed(), pa):
            assert rel((y * x).to_complex(a.real), a * exact) < 1e-15
            assert rel((x * y + y).to_complex(a.real), exact * a + a) < 1e-15
    real_sum = hr._cx_sum_of_products([(1.0, r, r), (2.0, r, hr.Cx(3.0))])
    assert isinstance(real_sum.im, float) and real_sum.im == 0.0  # stays a real pair


# ------------------------------------------------------------------ generated vs reference


def _collision(masses, n: int, e_cm: float, seed: int) -> torch.Tensor:
    """n RAMBO points in the centre-of-mass frame at sqrt(s) = e_cm, incoming along
    +-z, (n, n_ext, 4) GeV (the engine's own :func:`~processes.auto.plan.scan_momenta`)."""
    return scan_momenta(masses, 2, n, seed, e_cm)


PROCESSES = [
    "e+ e- > mu+ mu-",  # photon + Z: FFV1, FFV2 + FFV4 (a two-term current)
    "u u~ > d d~ QED^2==2",  # interference of coupling-order groups
    "e+ e- > w+ w-",  # VVV1 with massive vectors, t-channel neutrino
    "e+ e- > z h",  # VVS1, massive vector propagator (unitary gauge)
    "u u~ > t t~ h",  # FFS with massive fermions
    "g g > g g",  # VVVV1/3/4 (three colour terms of the 4-gluon vertex)
    "g g > t t~ g",
    "u g > u g g",
]


@pytest.mark.parametrize("name", PROCESSES)
def test_generated_code_equals_reference_engine(name: str) -> None:
    """|M|^2 (with a per-event alpha_s), per-helicity squares, amplitudes, SDE weights and
    flow weights of the generated code equal the plan interpreter's."""
    proc = AutoProcess.load(name)
    plan = proc.plan
    gen = proc.executor
    ref = PlanExecutor(plan, proc.model, proc.params, engine="reference")
    assert gen.engine == "generated"
    e_cm = 2.0 * sum(plan.masses[2:]) + 300.0
    p = _collision(plan.masses, 12, e_cm, seed=5)
    a_s = torch.linspace(0.1, 0.13, 12, dtype=torch.float64)
    assert pointwise(gen.matrix_element(p, a_s), ref.matrix_element(p, a_s)) < TOL
    assert pointwise(gen.matrix_element(p), ref.matrix_element(p)) < TOL
    assert rel(gen.helicity_squares(p), ref.helicity_squares(p)) < TOL
    assert rel(gen.amplitudes(p), ref.amplitudes(p)) < TOL
    if plan.channels:
        assert rel(gen.diagram_channel_weights(p), ref.diagram_channel_weights(p)) < TOL
    assert rel(gen.flow_weights(p), ref.flow_weights(p)) < TOL


def test_decay_and_any_helicity_subset() -> None:
    """A 1 -> 3 decay, and helicity rows asked for explicitly (all of the legs' grid, as
    the plan's helicity scan does, or any subset in any order) equal the reference."""
    proc = AutoProcess((6,), (5, -11, 12))
    ref = PlanExecutor(proc.plan, proc.model, proc.params, engine="reference")
    p = scan_momenta(proc.masses, 1, 6, seed=3)
    assert pointwise(proc.matrix_element(p), ref.matrix_element(p)) < TOL
    proc = AutoProcess.load("g g > t t~")
    ref = PlanExecutor(proc.plan, proc.model, proc.params, engine="reference")
    p = _collision(proc.masses, 5, 900.0, seed=2)
    grid = torch.tensor(list(__import__("itertools").product((-1, 1), repeat=4)))
    for hel in (grid, grid[[7, 3, 12]]):
        got = proc.executor.helicity_squares(p, None, hel)
        assert rel(got, ref.helicity_squares(p, None, hel)) < TOL
    # a helicity off the legs' grid (a gluon's 0) falls back to the interpreter
    odd = torch.tensor([[0, 1, 1, 1]])
    assert torch.equal(
        proc.executor.helicity_squares(p, None, odd), ref.helicity_squares(p, None, odd)
    )


def test_gg_to_ttgg_generated_equals_reference() -> None:
    """g g > t t~ g g: 159 amplitudes, 24 colour flows, 64 helicities."""
    proc = AutoProcess.load("g g > t t~ g g")
    ref = PlanExecutor(proc.plan, proc.model, proc.params, engine="reference")
    p = _collision(proc.masses, 8, 1000.0, seed=9)
    assert pointwise(proc.matrix_element(p), ref.matrix_element(p)) < TOL


MG4GPU = Path(__file__).resolve().parent / "data" / "mg4gpu"


@pytest.mark.parametrize("key", ["ee_mumu", "gg_tt", "gg_ttg", "gg_ttgg"])
def test_generated_code_against_madgraph(key: str) -> None:
    """madgraph4gpu's own |M|^2 (its param_card, fixed g_s, t-channel top widths) to
    1e-12 relative (observed <= 4e-14)."""
    path = MG4GPU / f"{key}.json"
    if not path.exists():
        pytest.skip(f"{path} not present")
    data = load_reference(key)
    params = params_from_card(data["param_card"])
    pdg = data["pdg"]
    proc = AutoProcess(pdg[:2], pdg[2:], params, zero_width_t_channel=False)
    assert proc.executor.engine == "generated"
    for name, ref in data["sets"].items():
        momenta = torch.tensor(ref["momenta"], dtype=torch.float64)
        me = proc.matrix_element(momenta, data["alpha_s"]) * proc.symmetry_factor
        expected = torch.tensor(ref["me"], dtype=torch.float64)
        assert pointwise(me, expected) < TOL, name


def test_chunking_does_not_change_values() -> None:
    """Chunks of 1, 7 and all events give the same numbers (chunks are independent)."""
    proc = AutoProcess.load("g g > t t~ g")
    p = _collision(proc.masses, 20, 800.0, seed=4)
    a_s = torch.linspace(0.1, 0.13, 20, dtype=torch.float64)
    whole = proc.matrix_element(p, a_s)
    for chunk in (1, 7):
        ex = PlanExecutor(proc.plan, proc.model, proc.params)
        ex.kernel._chunk = chunk
        assert pointwise(ex.matrix_element(p, a_s), whole) < 1e-14
    assert proc.matrix_element(p[:0]).shape == (0,)


def test_generated_source_is_straight_line_code() -> None:
    """One HELAS call per current, one contraction per amplitude, every wave function
    freed after its last use, no loops; the same source every time (deterministic). The
    amplitude-keeping code calls ``_off`` once per current term and ``_dot`` once per
    amplitude; the default (grouped) code evaluates every current once (alone or stacked
    with others of its kind) and closes every amplitude with a colour coefficient once."""
    plan = AutoProcess.load("g g > t t~ g").plan
    for grouped in (False, True):
        src = codegen.generate_source(plan, grouped=grouped)
        assert src == codegen.generate_source(plan, grouped=grouped)
        body = [line.strip() for line in src.split("def evaluate")[1].splitlines()]
        assert not any(line.startswith(("for ", "while ", "if ")) for line in body)
        compile(src, "generated", "exec")
        deleted = {
            name
            for line in src.splitlines()
            if line.strip().startswith("del ")
            for name in line.strip()[4:].split(", ")
        }
        created = {f"w{c.slot}" for c in plan.currents} | {f"w{k}" for k in range(plan.n_external)}
        assert created <= deleted
        if not grouped:
            assert src.count("_off(") == sum(len(c.terms) for c in plan.currents)
            assert src.count("_dot(") == len(plan.amplitudes)
            continue
        assigned = [line.split(" = ")[0].split(", ") for line in body if " = _off" in line]
        slots = [name for names in assigned for name in names]
        assert sorted(slots) == sorted(f"w{c.slot}" for c in plan.currents)
        assert "_off_group(" in src  # g g > t t~ g has currents to stack
        coeff = plan.colour_coefficients
        coloured = [j for j in range(len(coeff)) if any(x for pair in coeff[j] for x in pair)]
        assert src.count("_close(") == len(coloured)


# ------------------------------------------------------------------ compilation


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog) -> None:
    """If the compiler fails, the kernel says so once (a warning) and runs eager, with the
    same numbers."""
    proc = AutoProcess.load("e+ e- > mu+ mu-")
    p = _collision(proc.masses, 10, 200.0, seed=1)
    eager = proc.matrix_element(p)

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    import torch.fx.experimental.proxy_tensor as proxy_tensor

    monkeypatch.setattr(proxy_tensor, "make_fx", broken)
    ex = PlanExecutor(proc.plan, proc.model, proc.params, compile=True)
    ex.kernel._chunk = 8  # a compiled chunk no larger than the batch
    with caplog.at_level("WARNING"):
        got = ex.matrix_element(p)
        again = ex.matrix_element(p)
    assert ex.kernel._failed
    assert sum("compilation failed" in r.message for r in caplog.records) == 1
    assert torch.equal(got, eager) and torch.equal(again, eager)


def test_compile_switch_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("EVGEN_COMPILE", "1")
    assert codegen.compile_enabled()
    monkeypatch.setenv("EVGEN_COMPILE", "0")
    assert not codegen.compile_enabled()
    monkeypatch.delenv("EVGEN_COMPILE")
    assert not codegen.compile_enabled()


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("EVGEN_TEST_COMPILE") != "1",
    reason="compiles C++ with inductor (a minute or more); set EVGEN_TEST_COMPILE=1",
)
def test_compiled_equals_eager() -> None:
    """The inductor-compiled chunk gives the eager numbers (per-event and fixed alpha_s,
    a padded last chunk)."""
    proc = AutoProcess.load("e+ e- > mu+ mu-")
    ex = PlanExecutor(proc.plan, proc.model, proc.params, compile=True)
    ex.kernel._chunk = 64
    p = _collision(proc.masses, 100, 300.0, seed=2)
    assert pointwise(ex.matrix_element(p), proc.matrix_element(p)) < TOL
    assert not ex.kernel._failed


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("EVGEN_TEST_COMPILE") != "1",
    reason="torch.compile of the eager path (half a minute); set EVGEN_TEST_COMPILE=1",
)
def test_user_torch_compile_does_not_break() -> None:
    """torch.compile around matrix_element (dynamo over the eager generated code) runs and
    gives the same numbers."""
    proc = AutoProcess.load("e+ e- > mu+ mu-")
    p = _collision(proc.masses, 32, 300.0, seed=3)
    compiled = torch.compile(proc.matrix_element)
    assert pointwise(compiled(p), proc.matrix_element(p)) < TOL


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    """The generated code on CUDA tensors equals the CPU result."""
    proc = AutoProcess.load("g g > t t~ g")
    p = _collision(proc.masses, 64, 900.0, seed=6)
    cpu = proc.matrix_element(p)
    gpu = proc.matrix_element(p.cuda(), torch.full((64,), 0.118, device="cuda"))
    assert gpu.device.type == "cuda"
    assert pointwise(gpu.cpu(), cpu) < TOL
