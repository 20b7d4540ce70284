"""The lab model: what the operator asked for and what falkit derives from it, with no I/O.

- :mod:`.spec` — the parameters file as typed, frozen values (:func:`load_spec`; errors name the
  file, line and field path), over :mod:`.yamlsrc` (YAML with positions);
- :mod:`.design` — the design derived from the spec once (:func:`design_of`: VMs, MACs, the LB
  pool, the storage NIC), the inventory every step reads;
- :mod:`.findings` — where the seed's facts and the spec disagree with upstream, with numbers;
- :mod:`.schemas` — the upstream schemas and CRDs (``falkit/data/upstream``) the renderers check against;
- :mod:`.checks`, :mod:`.errors`, :mod:`.scrub` — the check row, falkit's error types and the
  secrets that never reach an archived output.

The twin may import :mod:`.spec`, :mod:`.errors`, :mod:`.schemas` and :mod:`.yamlsrc` (and nothing
else of falkit): contract ``twin-independent`` in ``.importlinter``.
"""
