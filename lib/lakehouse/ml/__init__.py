"""The model lifecycle: training sets, training, the MLflow registry, scoring, monitoring.

* :mod:`.spec` reads a model's declaration (``conf/models/<name>.yaml``).
* :mod:`.dataset` builds labelled, point-in-time correct training sets and splits them by time.
* :mod:`.train` fits the Spark MLlib pipeline and evaluates it (AUC, precision/recall, calibration).
* :mod:`.registry` tracks runs in MLflow, registers models and moves the aliases.
* :mod:`.score` is the one scoring function, used by batch scoring (and later real time).
"""
