"""Plumbing the library runs on, not its layer API: the disk cache of measurements (:mod:`.cache`),
interleaved timing (:mod:`.timing`), allocation checks (:mod:`.memory`), shape tracing
(:mod:`.tracing`), mixed-precision rules (:mod:`.precision`), plain-text tables (:mod:`.report`),
the ``backend="auto"`` choice (:mod:`.autotune`), collapse's cost models (:mod:`.costs`),
the sampler of a training epoch (:mod:`.sampling`), independent tasks over worker processes
(:mod:`.processes`) and Ctrl-C taken as a request to stop at the next safe point (:mod:`.interrupt`).

Stable enough for the lab, atompaint and experiments to build on; nothing here is re-exported
from :mod:`structlayers`.
"""
