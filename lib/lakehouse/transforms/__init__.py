"""Generic, pure transformations: ``Column -> Column`` helpers and ``DataFrame -> DataFrame`` steps."""
