"""Errors a trainable raises before any training starts; the CLI turns them into exit status 2."""


class ConfigError(ValueError):
    """A trial config that cannot become its trainable's dataclass (unknown key, wrong type, bad value)."""


class DataError(ValueError):
    """A corpus that cannot be found, read or verified (missing split, checksum mismatch)."""
