"""The live side of the API: one runner per protection (:mod:`.runner`), the placements
that give it agents (:mod:`.placement`), metric sampling (:mod:`.sampler`), and the
manager that creates, re-attaches and closes runners (:mod:`.manager`)."""
