"""The automatic tree-level engine: any Standard Model process from the model as data.

MadGraph's pipeline, batched in torch (see ``shared/DESIGN.md``)::

    "p p > t t~ j" --syntax--> ProcessDefinition (labels, orders, s-channels, exclusions,
                                                   decay chains)
    ProcessDefinition + Model --diagrams--> tree diagrams (vertices, propagators)
    diagrams --plan--> evaluation plan (HELAS calls, shared wave functions, colour
                       decomposition, vanishing helicities), cached
    plan --> AutoProcess (the :class:`processes.base.Process` contract)

Modules, one job each:

- :mod:`processes.auto.syntax`: MadGraph process syntax.
- :mod:`processes.auto.model`: the ``sm`` model as data (particles, vertices with UFO
  Lorentz and colour structures, couplings from :class:`evgen.params.SMParameters`).
- :mod:`processes.auto.helas`: batched HELAS/ALOHA wave functions and vertices in torch.
- :mod:`processes.auto.colour`: SU(3) colour decomposition, colour matrix, colour flows.
- :mod:`processes.auto.diagrams`: tree-level diagram generation and phase-space channels.
"""
