"""The localizers: one module per model (CLASP, CCNet, DAVE, AVEL, MIL) and what they share.

- :mod:`~models.localizers.base` -- the model contract (config, ``loss``, ``detect`` -> step events).
- :mod:`~models.localizers.pooling` -- MIL pooling and step-probabilities -> events, the one home of both.
- :mod:`~models.localizers.heads` / :mod:`~models.localizers.losses` -- pyramid blocks, point heads, losses.
- :mod:`~models.localizers.postprocess` -- step <-> seconds, Soft-NMS.
- :mod:`~models.localizers.registry` -- model name -> (config class, module class).
"""
