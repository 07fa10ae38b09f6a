"""Throughput of the physics integrand (phase space x PDFs x |M|^2 x cuts) and wall time
of the full `evgen run cards/ttbar.yaml`, on this machine.

    python3 benchmarks/integrand_speed.py [--threads 1 2] [--device cpu]

Prints a markdown table and writes it to benchmarks/INTEGRAND_RESULTS.md. Not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine_info import cpu_model

from evgen.card import load_card
from evgen.run import prepare

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def points_per_second(card_path: Path, batch: int, device: str, repeat: int = 5) -> float:
    card, text = load_card(card_path)
    data = card.model_dump()
    data["run"]["device"] = device
    data["output"]["path"] = tempfile.mkdtemp()
    from evgen.card import parse_card

    prepared = prepare(parse_card(data), text)
    integrand = prepared.groups[0].integrand
    gen = torch.Generator(device=device).manual_seed(1)
    r = torch.rand(batch, integrand.n_dim, dtype=torch.float64, generator=gen, device=device)
    integrand(r)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        integrand(r)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * repeat / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--no-run", action="store_true", help="skip the full evgen run")
    args = parser.parse_args()

    rows = []
    for card in ("ttbar.yaml", "drell_yan.yaml"):
        for threads in args.threads:
            torch.set_num_threads(threads)
            for batch in args.batches:
                rate = points_per_second(ROOT / "cards" / card, batch, args.device)
                rows.append((card, args.device, threads, batch, rate))
                print(f"{card} {args.device} threads={threads} batch={batch}: {rate:,.0f} points/s")

    lines = [
        "# Integrand throughput",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}; "
        f"Python {platform.python_version()}.",
        "",
        f"Command: `python3 benchmarks/integrand_speed.py --device {args.device}`",
        "",
        "| card | device | threads | batch | points/s |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {c} | {d} | {t} | {b:,} | {r:,.0f} |" for c, d, t, b, r in rows]

    if not args.no_run:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "evgen.cli",
                    "run",
                    str(ROOT / "cards" / "ttbar.yaml"),
                    "-o",
                    tmp,
                    "--device",
                    args.device,
                ],
                check=True,
            )
            wall = time.perf_counter() - t0
        lines += [
            "",
            f"`evgen run cards/ttbar.yaml` (10,000 unweighted events, LHE + ROOT), wall time "
            f"including Python start-up: {wall:.1f} s.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "INTEGRAND_RESULTS.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
