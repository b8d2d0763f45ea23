"""One exception root for the project; each subclass says what the caller must do."""


class AnomalyBertError(Exception):
    """Root of every error this project raises on purpose."""


class DataError(AnomalyBertError, ValueError):
    """Input data is unusable (missing columns, non-numeric values, too short): fix the input."""


class BundleError(AnomalyBertError):
    """A model bundle or checkpoint is missing, corrupt or inconsistent: keep serving the old one."""
