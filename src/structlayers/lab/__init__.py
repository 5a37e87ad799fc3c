"""The lab: experiments built on the library (``pip install structlayers[lab]``) -- matrix
approximation (:mod:`.approx`), the speed bench (:mod:`.bench`), the built-in models
(:mod:`.models`), datasets (:mod:`.data`) and Lightning sanity runs (:mod:`.training`).  The
``structlayers`` subcommands run them; the library never imports the lab.

A regular package, so that a wheel (``packages.find``) ships it.
"""
