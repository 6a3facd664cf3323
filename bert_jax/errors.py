"""Exceptions that carry enough context to fix the problem they report."""


class BertJaxError(Exception):
  """Base class of every error bert_jax raises on purpose."""


class ConfigError(BertJaxError, ValueError):
  """A configuration field holds a value bert_jax cannot use."""

  def __init__(self, field: str, value, fix: str):
    self.field, self.value = field, value
    super().__init__(f'config field {field!r} = {value!r}: {fix}')


class CheckpointError(BertJaxError, ValueError):
  """A checkpoint is missing a tensor, has a wrong shape, or cannot be read."""


class SquadFormatError(BertJaxError, ValueError):
  """A SQuAD file is malformed; the message names the file, article and question."""


class TopologyError(BertJaxError, RuntimeError):
  """The devices present do not match what the configuration asks for."""
