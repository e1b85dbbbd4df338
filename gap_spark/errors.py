"""Errors a user can cause. The CLI prints them as one line and exits non-zero; anything else is a bug."""


class GapSparkError(Exception):
    """A problem with the input, the config or the environment, explained in one sentence."""

    exit_code = 2


class DatasetError(GapSparkError):
    """The dataset is missing, incomplete or inconsistent."""


class IngestError(GapSparkError):
    """A raw CSV cannot be ingested (bad header, too many bad rows, missing file)."""


class ConfigError(GapSparkError):
    """The config names an unknown key or holds a value of the wrong type."""
