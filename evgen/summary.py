"""The end-of-run summary: a JSON file beside the events, and the figures as rows.

Cross sections in pb, times in seconds. The command line draws the rows as a table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evgen.io.atomic import atomic_output

if TYPE_CHECKING:
    from evgen.run import RunResult

__all__ = ["result_to_dict", "write_summary", "format_xs"]


def format_xs(value: float, error: float) -> str:
    """'505.6 +- 1.0' with the error to two significant digits (pb)."""
    if error <= 0 or not math.isfinite(error):
        return f"{value:.6g}"
    digits = max(0, 1 - int(math.floor(math.log10(error))))
    return f"{value:.{digits}f} +- {error:.{digits}f}"


def result_to_dict(result: RunResult) -> dict[str, Any]:
    """Everything in the summary table as plain JSON-able values."""
    return {
        "process": result.process,
        "integrator": result.integrator,
        "cross_section_pb": result.cross_section_pb,
        "error_pb": result.error_pb,
        "chi2_dof": None if math.isnan(result.chi2_dof) else result.chi2_dof,
        "subprocesses": [
            {
                "process_id": s.process_id,
                "name": s.name,
                "cross_section_pb": s.cross_section_pb,
                "error_pb": s.error_pb,
                "events": s.n_events,
            }
            for s in result.subprocesses
        ],
        "channels": [
            {
                "group": c.group,
                "channel": c.channel,
                "label": c.label,
                "cross_section_pb": c.cross_section_pb,
                "error_pb": c.error_pb,
                "events": c.n_events,
                "evaluations": c.n_eval,
            }
            for c in result.channels
        ],
        "integration_iterations": [
            {"value_pb": e.value, "error_pb": e.error, "n_eval": e.n_eval}
            for e in result.integration
        ],
        "weighted_events": result.n_weighted,
        "events": result.n_events,
        "unweighting_efficiency": result.unweighting_efficiency,
        "max_weight_pb": result.max_weight_pb,
        "overweight_events": result.n_overweight,
        "overweight_fraction_of_xs": result.overweight_fraction,
        "timings_s": dict(result.timings),
        "outputs": dict(result.outputs),
    }


def write_summary(path: str | Path, result: RunResult) -> Path:
    """Write the summary as JSON (atomically); return the path."""
    data = result_to_dict(result)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)
