"""The config boundary: an ml_collections ConfigDict, validated once into frozen dataclasses.

Nothing below run.py / train.py reads the ConfigDict; model code gets a ModelConfig and a
PrecisionPolicy, steps get the small dataclasses here.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from bert_jax.errors import ConfigError
from bert_jax.model_config import ACTIVATIONS, ModelConfig
from bert_jax.precision import PrecisionPolicy


@dataclasses.dataclass(frozen=True)
class ModelSource:
  """Where the weights come from: a HF folder, a Google TF checkpoint, a hub name, or none."""
  preset: str = 'large'
  init_checkpoint: str = ''
  checkpoint_format: str = 'auto'
  vocab_dir: str = ''
  attention: str = 'fused'
  activation: str = ''
  hidden_dropout: float = -1.0
  attention_dropout: float = -1.0

  def __post_init__(self):
    _choice('model.checkpoint_format', self.checkpoint_format, ('auto', 'hf', 'tf', 'hub'))
    if self.activation:
      _choice('model.activation', self.activation, ACTIVATIONS)


@dataclasses.dataclass(frozen=True)
class MeshSettings:
  """Devices and hosts. num_devices=0 uses every device of every host. num_processes=0
  takes the hosts from the cluster's environment (SLURM, Open MPI, Kubernetes, Cloud TPU).
  shard_state splits the train state's layer matrices and Adam moments over the devices
  (as ZeRO-3 / FSDP do; bert_jax.mesh.sharded_state): each device updates only its share and
  gathers the weights in the compute dtype before use. Same results; less memory a device;
  a no-op on one device."""
  num_devices: int = 0
  coordinator_address: str = ''
  num_processes: int = 1
  process_id: int = 0
  shard_state: bool = True

  def __post_init__(self):
    _at_least('mesh.num_devices', self.num_devices, 0)
    _at_least('mesh.num_processes', self.num_processes, 0)
    if self.num_processes and not 0 <= self.process_id < self.num_processes:
      raise ConfigError('mesh.process_id', self.process_id,
                        f'must lie in [0, num_processes={self.num_processes})')


@dataclasses.dataclass(frozen=True)
class DataSettings:
  """SQuAD source and windowing (run_squad.py's defaults)."""
  train_file: str = ''
  dev_file: str = ''
  version_2: bool = False
  max_seq_length: int = 384
  doc_stride: int = 128
  max_query_length: int = 64
  cache_dir: str = ''
  max_train_examples: int = 0
  max_eval_examples: int = 0
  bucket_width: int = 0
  packing: bool = False
  max_windows_per_row: int = 8

  def __post_init__(self):
    _at_least('data.max_seq_length', self.max_seq_length, 16)
    _bucket_width('data.bucket_width', self.bucket_width)
    if self.packing and self.bucket_width:
      raise ConfigError('data.bucket_width', self.bucket_width,
                        'cannot be combined with data.packing=True (packed rows are full '
                        'length already): set one of them')
    _at_least('data.max_windows_per_row', self.max_windows_per_row, 1)
    _at_least('data.doc_stride', self.doc_stride, 1)
    _at_least('data.max_query_length', self.max_query_length, 1)
    if self.max_query_length + 3 >= self.max_seq_length:
      raise ConfigError('data.max_query_length', self.max_query_length,
                        f'must leave room for context in max_seq_length={self.max_seq_length}')
    if self.doc_stride >= self.max_seq_length - self.max_query_length - 3:
      raise ConfigError('data.doc_stride', self.doc_stride,
                        'must be smaller than the context room in a window '
                        f'({self.max_seq_length - self.max_query_length - 3}), or windows skip text')


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """Optimisation and the training loop."""
  batch_size: int = 32
  learning_rate: float = 5e-5
  num_epochs: float = 2.0
  max_steps: int = 0
  warmup_proportion: float = 0.1
  weight_decay: float = 0.01
  optimizer: str = 'adamw'
  max_grad_norm: float = 1.0
  num_accumulation_steps: int = 1
  seed: int = 0
  log_every: int = 50
  checkpoint_every: int = 500
  keep_checkpoints: int = 2
  loss_scale_init: float = 2.0 ** 15
  loss_scale_growth_interval: int = 2000
  compilation_cache_dir: str = ''

  def __post_init__(self):
    _at_least('train.batch_size', self.batch_size, 1)
    _at_least('train.num_accumulation_steps', self.num_accumulation_steps, 1)
    if self.batch_size % self.num_accumulation_steps:
      raise ConfigError('train.batch_size', self.batch_size,
                        f'must be a multiple of num_accumulation_steps={self.num_accumulation_steps}')
    if self.learning_rate <= 0:
      raise ConfigError('train.learning_rate', self.learning_rate, 'must be positive')
    if not 0 <= self.warmup_proportion < 1:
      raise ConfigError('train.warmup_proportion', self.warmup_proportion, 'must lie in [0, 1)')
    _choice('train.optimizer', self.optimizer, ('adamw', 'lamb'))
    if self.num_epochs <= 0 and self.max_steps <= 0:
      raise ConfigError('train.num_epochs', self.num_epochs, 'set it or train.max_steps > 0')
    _at_least('train.log_every', self.log_every, 1)
    _at_least('train.keep_checkpoints', self.keep_checkpoints, 1)


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """Prediction and postprocessing (run_squad.py's defaults). scan_layers: the layers as one
  lax.scan (model.encode): one compiled layer, within a few % of unrolled at large batches.
  packing: the dev windows packed into rows (bert_jax.packing.PackedEval, at most
  data.max_windows_per_row a row), batch_size then counting rows: the same logits at each
  window's positions with about half the positions computed on SQuAD at 384.
  bucket_width: each call's batch of windows cut to the multiple of it that holds the
  batch's longest window (one compiled program a width): the same logits at each window's
  positions, fewer positions computed (0: every call max_seq_length wide). group_by_width
  (with bucket_width): the windows predicted in order of their bucket width
  (batches.width_order), each call holding windows of one width; the same logits, fewer
  positions again (False: consecutive windows a call)."""
  batch_size: int = 64
  n_best_size: int = 20
  max_answer_length: int = 30
  null_score_diff_threshold: float = 0.0
  scan_layers: bool = True
  packing: bool = False
  bucket_width: int = 0
  group_by_width: bool = True

  def __post_init__(self):
    _at_least('eval.batch_size', self.batch_size, 1)
    _bucket_width('eval.bucket_width', self.bucket_width)
    if self.packing and self.bucket_width:
      raise ConfigError('eval.bucket_width', self.bucket_width,
                        'cannot be combined with eval.packing=True (packed rows are full '
                        'length already): set one of them')
    _at_least('eval.n_best_size', self.n_best_size, 1)
    _at_least('eval.max_answer_length', self.max_answer_length, 1)


@dataclasses.dataclass(frozen=True)
class BenchSettings:
  """A benchmark sweep (configs/bench_train.py, configs/bench_infer.py): every combination
  of per-GPU batch size, sequence length, precision and GPU count is one point.
  scan_layers (inference): the layers as one lax.scan (model.encode); off by default, since
  the unrolled layers have the lower latency at small batches (both compile in seconds a
  point for BERT-Large on GPU, docs/performance_notes.md, 52). bind_params (inference): the
  weights compiled into the program as constants, so that a call passes the batch alone
  (inference.compile_bound_eval): on by default, since it took 0.1-0.2 ms off a BERT-Large
  call at batches 1 and 8 (5-11 %) for 10-20 s more compile a point (H200,
  docs/performance_notes.md, 57). packing: real SQuAD windows packed into rows of at most
  data.max_windows_per_row (bert_jax.packing, as data.packing trains and eval.packing
  predicts): batch_sizes count rows, sentences/s the windows; records say packing.
  bucket_width (inference): each call's batch of real SQuAD windows cut to the multiple of
  this that holds its longest window (one compiled program a width), so a short window's
  call skips its padding; records say bucket_width and the widths called."""
  kind: str = 'train'
  batch_sizes: tuple = (1, 2, 4, 8, 16, 32, 64)
  seq_lens: tuple = (128, 384)
  precisions: tuple = ('fp32', 'fp16', 'bf16')
  num_devices: tuple = (1,)
  steps: int = 20
  scan_layers: bool = False
  bind_params: bool = True
  packing: bool = False
  bucket_width: int = 0

  def __post_init__(self):
    _choice('bench.kind', self.kind, ('train', 'infer'))
    for name, low, high in (('batch_sizes', 1, None), ('seq_lens', 16, 512),
                            ('num_devices', 1, None)):
      values = getattr(self, name)
      if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= low
                                and (high is None or v <= high) for v in values):
        bound = f'in [{low}, {high}]' if high else f'>= {low}'
        raise ConfigError(f'bench.{name}', values, f'give a non-empty tuple of integers {bound}, '
                          f"e.g. --config.bench.{name}='(32,)'")
    bad = [p for p in self.precisions if p not in ('fp32', 'fp16', 'bf16')]
    if bad or not self.precisions:
      raise ConfigError('bench.precisions', self.precisions,
                        "choose from 'fp32', 'fp16', 'bf16', e.g. --config.bench.precisions='(\"bf16\",)'")
    for name in ('batch_sizes', 'seq_lens', 'num_devices', 'precisions'):
      values = getattr(self, name)
      if len(set(values)) < len(values):   # ml_collections appends a flag given twice
        raise ConfigError(f'bench.{name}', values,
                          'give each value once (the same --config.bench.* flag given twice '
                          'appends to the tuple instead of replacing it)')
    _at_least('bench.steps', self.steps, 1)
    _bucket_width('bench.bucket_width', self.bucket_width)
    if self.bucket_width and self.kind != 'infer':
      raise ConfigError('bench.bucket_width', self.bucket_width,
                        "cuts inference calls (bench.kind='infer'); training buckets are "
                        'data.bucket_width in a train_and_evaluate job, or set it to 0')
    if self.bucket_width and self.packing:
      raise ConfigError('bench.bucket_width', self.bucket_width,
                        'bench.packing already leaves the padding out; use one of the two')


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything a run needs, typed. `model` is filled once the checkpoint is read."""
  name: str
  source: ModelSource
  precision: PrecisionPolicy
  mesh: MeshSettings
  data: DataSettings
  train: TrainSettings
  eval: EvalSettings
  bench: BenchSettings | None = None   # only bench configs have a bench section

  def model_config(self, base: ModelConfig | None = None) -> ModelConfig:
    """The checkpoint's shape (or the preset's), with this run's attention, activation and
    dropout."""
    config = base or ModelConfig.preset(self.source.preset)
    changes: dict[str, Any] = {'attention': self.source.attention}
    if self.source.activation:
      changes['activation'] = self.source.activation
    if self.source.hidden_dropout >= 0:
      changes['hidden_dropout'] = self.source.hidden_dropout
    if self.source.attention_dropout >= 0:
      changes['attention_dropout'] = self.source.attention_dropout
    config = config.replace(**changes)
    if self.source.attention == 'cudnn' and self.precision.name == 'fp32':
      raise ConfigError('model.attention', 'cudnn',
                        "cuDNN fused attention needs precision.policy 'bf16' or 'fp16'; "
                        "use 'fused' or 'xla' under fp32")
    return config


_SECTIONS = {'model': ModelSource, 'precision': PrecisionPolicy, 'mesh': MeshSettings,
             'data': DataSettings, 'train': TrainSettings, 'eval': EvalSettings,
             'bench': BenchSettings}
_PRECISION_KEYS = {'policy': 'name'}


def from_config(config) -> Settings:
  """Validates a ConfigDict (or nested dict) into Settings; errors name field and value."""
  raw = config.to_dict() if hasattr(config, 'to_dict') else dict(config)
  built = {}
  for section, cls in _SECTIONS.items():
    if section == 'bench' and section not in raw:
      continue
    values = dict(raw.get(section, {}))
    if section == 'precision':
      values = {_PRECISION_KEYS.get(k, k): v for k, v in values.items()}
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
      if key not in known:
        raise ConfigError(f'{section}.{key}', value,
                          f'unknown field; known fields: {sorted(known)}')
      values[key] = _coerce(f'{section}.{key}', value, known[key].default)
    built[section] = cls(**values)
  return Settings(name=raw.get('name', 'unnamed'), source=built['model'],
                  precision=built['precision'], mesh=built['mesh'], data=built['data'],
                  train=built['train'], eval=built['eval'], bench=built.get('bench'))


def _coerce(field, value, default):
  kind = type(default)
  if kind is tuple and isinstance(value, list):
    value = tuple(value)
  if kind is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if kind is bool and not isinstance(value, bool) or (
      kind is not bool and isinstance(value, bool)) or not isinstance(value, kind):
    raise ConfigError(field, value, f'expected a {kind.__name__}')
  return value


def _at_least(field, value, low):
  if value < low:
    raise ConfigError(field, value, f'must be >= {low}')


def _bucket_width(field, value):
  _at_least(field, value, 0)
  if value % 8:
    raise ConfigError(field, value,
                      'must be a multiple of 8 (tensor-core tiles), e.g. 64; 0 turns buckets off')


def _choice(field, value, choices):
  if value not in choices:
    raise ConfigError(field, value, f'choose one of {choices}')
