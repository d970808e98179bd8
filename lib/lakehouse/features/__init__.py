"""Features: point-in-time correct feature tables over silver, and the joins that read them.

* :mod:`.engine` computes a gold feature table declared in YAML (``features:``): the entity's
  events in time order, every definition evaluated over lookback windows in one pass.
* :mod:`.pit` attaches to labelled events the latest feature values known strictly before them.
* :mod:`.labels` turns chargebacks into labels that respect their arrival (label maturity).
* :mod:`.payments` holds the sample domain's definitions and the model's input columns.
"""
