"""Exceptions that carry enough context to become one clear line at the command line."""


class BenchpipeError(Exception):
    """Base class: the message names the file, key or line that is wrong."""


class ConfigError(BenchpipeError):
    """The configuration or a target description is invalid."""


class DatasetError(BenchpipeError):
    """A dataset source could not be fetched, verified or prepared."""


class TrainingError(BenchpipeError):
    """A training run could not be set up or completed."""


class InferenceError(BenchpipeError):
    """A LoadGen test could not be set up or its results are unusable."""


class ParseError(BenchpipeError):
    """A raw log does not follow the format its parser expects."""


class ValidationError(BenchpipeError):
    """Results, logs or descriptions fail a schema or a compliance check."""


class ManifestError(BenchpipeError):
    """A submission tree does not match its manifest."""


class RuntimeSetupError(BenchpipeError):
    """A target's runtime cannot run a job: engine, image or mounts are missing or wrong."""


class ArchiveError(BenchpipeError):
    """A submission archive cannot be written or is not safe to unpack."""
