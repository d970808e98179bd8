"""Data quality: splitting valid from rejected rows, quarantine records, metrics."""
