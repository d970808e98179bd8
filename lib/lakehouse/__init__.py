"""lakehouse: PySpark + Delta Lake jobs for the card payments of an online marketplace.

Import what you need from the submodules, for example::

    from lakehouse.session import get_spark
    from lakehouse.transforms.cleaning import normalize_string
"""

from __future__ import annotations

__version__ = "0.1.0"
