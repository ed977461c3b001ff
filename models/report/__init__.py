"""HTML summary pages built from the outputs of :mod:`models.run` and :mod:`models.avvp`."""
