"""Every config loads and validates; bad values give errors that name field and value."""
import importlib
import os

import pytest

from bert_jax import settings
from bert_jax.errors import ConfigError
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'configs')
NAMES = sorted(f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith('.py') and f != '__init__.py')


@pytest.mark.parametrize('name', NAMES)
def test_every_config_loads_and_validates(name):
  module = importlib.import_module(f'configs.{name}')
  config = module.get_config()
  s = settings.from_config(config)
  assert s.name == config.name
  s.model_config()
  if name != 'base':
    assert 'Command:' in module.__doc__ and f'configs/{name}.py' in module.__doc__


def base():
  return importlib.import_module('configs.base').get_config()


@pytest.mark.parametrize('field,value,pattern', [
    ('precision.policy', 'fp8', "'precision.policy' = 'fp8'.*fp16"),
    ('train.batch_size', 0, "'train.batch_size' = 0: must be >= 1"),
    ('train.optimizer', 'sgd', "'train.optimizer' = 'sgd'"),
    ('data.doc_stride', 400, "'data.doc_stride' = 400"),
    ('model.attention', 'flash', "'model.attention' = 'flash'"),
    ('train.learning_rate', 'fast', "'train.learning_rate' = 'fast': expected a float"),
])
def test_bad_values_name_field_and_value(field, value, pattern):
  config = base().to_dict()  # a plain dict: ConfigDict would refuse some types itself
  section, key = field.split('.')
  config[section][key] = value
  with pytest.raises(ConfigError, match=pattern):
    settings.from_config(config).model_config()


def test_unknown_field_lists_known_ones():
  config = base()
  config.train.lerning_rate = 1e-4
  with pytest.raises(ConfigError, match="'train.lerning_rate'.*unknown field.*learning_rate"):
    settings.from_config(config)


def test_accumulation_must_divide_batch():
  config = base()
  config.train.num_accumulation_steps = 3
  with pytest.raises(ConfigError, match='multiple of num_accumulation_steps=3'):
    settings.from_config(config)


def test_cudnn_under_fp32_is_refused():
  config = base()
  config.model.attention = 'cudnn'
  config.precision.policy = 'fp32'
  with pytest.raises(ConfigError, match="needs precision.policy 'bf16' or 'fp16'"):
    settings.from_config(config).model_config()


def test_model_config_checks():
  with pytest.raises(ConfigError, match="'model.num_heads' = 5: must divide hidden_size=64"):
    ModelConfig(hidden_size=64, num_heads=5)
  with pytest.raises(ConfigError, match='hidden_act'):
    ModelConfig.from_hf_dict({'hidden_act': 'relu'})
  assert ModelConfig.preset('large').num_params() == pytest.approx(335e6, rel=0.01)
  assert PrecisionPolicy('fp16').needs_loss_scaling


def test_more_devices_than_present_is_a_clear_error():
  from bert_jax import mesh
  from bert_jax.errors import TopologyError
  from bert_jax.settings import MeshSettings
  with pytest.raises(TopologyError, match=r'num_devices=16 but only 8 cpu device.*'
                                          r'--config.mesh.num_devices=8'):
    mesh.make_mesh(MeshSettings(num_devices=16))


@pytest.mark.parametrize('field,value,pattern', [
    ('kind', 'serve', "'bench.kind' = 'serve'"),
    ('batch_sizes', (0, 8), r"'bench.batch_sizes' = \(0, 8\): give a non-empty tuple"),
    ('batch_sizes', (), "'bench.batch_sizes'"),
    ('seq_lens', (1024,), r"'bench.seq_lens' = \(1024,\).*in \[16, 512\]"),
    ('precisions', ('fp8',), r"'bench.precisions' = \('fp8',\): choose from"),
    ('num_devices', (1, 'two'), "'bench.num_devices'"),
    ('steps', 0, "'bench.steps' = 0: must be >= 1"),
    ('precisions', ('bf16', 'bf16', 'fp16'), r"'bench.precisions' = .*give each value once"),
    ('batch_sizes', (8, 32, 8), r"'bench.batch_sizes' = \(8, 32, 8\): give each value once"),
])
def test_bad_bench_values_name_field_and_value(field, value, pattern):
  config = importlib.import_module('configs.bench_train').get_config().to_dict()
  config['bench'][field] = value
  with pytest.raises(ConfigError, match=pattern):
    settings.from_config(config)


def test_bench_section_is_typed_and_lists_become_tuples():
  config = importlib.import_module('configs.bench_infer').get_config().to_dict()
  config['bench']['batch_sizes'] = [1, 8]
  s = settings.from_config(config)
  assert s.bench.kind == 'infer' and s.bench.batch_sizes == (1, 8)
  assert settings.from_config(base()).bench is None   # only bench configs have one


def test_run_py_reports_bad_input_in_one_line(tmp_path):
  import subprocess
  import sys
  root = os.path.dirname(CONFIG_DIR)
  out = subprocess.run([sys.executable, 'run.py', '--config=configs/bench_train.py',
                        '--mode=bench', "--config.bench.precisions=('fp8',)",
                        f'--workdir={tmp_path}'], cwd=root, capture_output=True, text=True,
                       timeout=120, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert out.returncode == 1
  assert "bert_jax: config field 'bench.precisions' = ('fp8',): choose from" in out.stderr
  assert 'Traceback' not in out.stderr


@pytest.mark.parametrize('field', ['train.batch_size', 'eval.batch_size'])
def test_a_batch_the_devices_do_not_split_is_refused_before_training(field):
  from bert_jax import train
  from configs import tiny_cpu
  config = tiny_cpu.get_config()
  config.mesh.num_devices = 8
  section, name = field.split('.')
  setattr(config[section], name, 12)
  with pytest.raises(ConfigError, match=rf"'{field}' = 12: must be a multiple of the 8 devices"):
    train.setup(config)
