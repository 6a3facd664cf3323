"""Test setup: 8 fake CPU devices (set before jax is imported) and the shared data/model."""
import os
import shutil
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# The suite is compile-bound: LLVM at -O0 without its expensive passes (XLA's HLO passes,
# fusion included, run as ever) halves the in-process tests' compile time for the same
# arithmetic. Jobs started as subprocesses turn it off again (helpers.SUBPROCESS_ENV): they
# run hundreds of steps, which -O0 slows more than it speeds their compiles.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
# Many tests compile the same small programs (a reference step beside each kernel's, each
# parametrisation's): one persistent compilation cache for the run, made here in the
# process that loads this first (pytest-xdist's workers start later and inherit it), every
# compile cached however short, and removed when that process ends (pytest_unconfigure).
# The whole suite on 2 cores: 624 -> 527 and 538 s (two runs). A cache the caller names is kept.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='bert_jax_tests_xla_')
  os.environ['BERT_JAX_TESTS_CACHE_OWNER'] = str(os.getpid())
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get('BERT_JAX_SHARED', os.path.join(ROOT, '..', 'shared'))
MINILM = os.path.join(SHARED, 'models', 'all-MiniLM-L6-v2-fp16')
SQUAD_DEV = os.path.join(SHARED, 'data', 'squad', 'dev-v1.1.json.gz')
SQUAD_TRAIN = os.path.join(SHARED, 'data', 'squad', 'train-v1.1.reconstructed.json.gz')


def need(path):
  """Skip with a reason that says what is missing and where it was looked for."""
  if not os.path.exists(path):
    pytest.skip(f'{path} is absent: this test needs the shared folder beside the checkout '
                '(or BERT_JAX_SHARED pointing at it)')
  return path


# Opt-in tests: (option, marker, what they are). The default run keeps one case of each
# kind; gpu_run.sh's suite3 passes both options on the GPU machine's host.
OPT_IN = (('--every-kernel-case', 'every_kernel_case',
           'an interpreted kernel case beyond the default set (about 10 s each on 2 cores)'),
          ('--slow-tools', 'slow_tool',
           "a slow test of a benchmark script's own variants (benchmarks/, not the package; "
           '12-24 s each on 2 cores)'))


def pytest_addoption(parser):
  for option, marker, what in OPT_IN:
    parser.addoption(option, action='store_true',
                     help=f'also run the tests marked {marker}: {what}')


def pytest_configure(config):
  for option, marker, what in OPT_IN:
    config.addinivalue_line('markers', f'{marker}: {what}, run with {option}')


def pytest_collection_modifyitems(config, items):
  for option, marker, what in OPT_IN:
    if config.getoption(option):
      continue
    skip = pytest.mark.skip(reason=f'{what}: run with {option}')
    for item in items:
      if marker in item.keywords:
        item.add_marker(skip)


def pytest_unconfigure(config):
  if os.environ.get('BERT_JAX_TESTS_CACHE_OWNER') == str(os.getpid()):
    shutil.rmtree(os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)


@pytest.fixture(scope='session')
def load_script():
  """Loads a script of benchmarks/ (not a package) by name, as a module."""
  import importlib.util

  def load(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(ROOT, 'benchmarks', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
  return load


@pytest.fixture(scope='session')
def torch_hf():
  """(torch, transformers), for the tests that compare with them or write their formats: those
  tests skip where torch is absent (CI's jax 0.11.2 run has no torch), and the rest of their
  files still runs there."""
  return pytest.importorskip('torch'), pytest.importorskip('transformers')


@pytest.fixture(scope='session')
def minilm():
  return need(MINILM)


@pytest.fixture(scope='session')
def squad_dev():
  return need(SQUAD_DEV)


@pytest.fixture(scope='session')
def squad_train():
  return need(SQUAD_TRAIN)


@pytest.fixture(scope='session')
def minilm_tokenizer(minilm):
  from bert_jax.tokenizer import load_tokenizer
  return load_tokenizer(minilm)
