"""The localizers: one module per model (CLASP, CCNet, DAVE, AVEL, MIL) and what they share.

- :mod:`~models.localizers.base` -- the model contract (config, ``loss``, ``detect`` -> step events).
- :mod:`~models.localizers.pooling` -- MIL pooling and step-probabilities -> events, the one home of both.
- the pyramid models' parts (CCNet, DAVE): :mod:`~models.localizers.layers` (masked conv/attention blocks),
  :mod:`~models.localizers.tdm` (temporal dependency module), :mod:`~models.localizers.heads` (point heads),
  :mod:`~models.localizers.targets` (points, target assignment), :mod:`~models.localizers.losses` (focal, GIoU,
  the dense loss, the weak MIL losses), :mod:`~models.localizers.decoding` (Soft-NMS decoding and its
  defaults), :mod:`~models.localizers.optim` (optimizer, warm-up cosine schedule) and
  :mod:`~models.localizers.pyramid` (their shared config and ``loss``/``detect``).
- :mod:`~models.localizers.postprocess` -- step <-> seconds, Soft-NMS.
- :mod:`~models.localizers.registry` -- model name -> its declaration (config class, module class, supervision
  modes, source modules): each model declares itself once with ``@register_localizer`` (docs/extending.md).
"""
