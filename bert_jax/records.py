"""Benchmark records: one JSON line per measured point, appended, naming the machine and code."""
from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import subprocess

import jax
import numpy as np

SCHEMA = 'bert_jax.record/1'
PEAK_BF16_TFLOPS = 989.0  # H100/H200 SXM dense bf16 datasheet figure, the MFU denominator


def train_flops_per_sequence(num_layers: int, hidden: int, intermediate: int, seq: int) -> float:
  """Matmul FLOPs of one training step per sequence: 3x the forward pass.

  Forward per layer and token: 2*(4*D*D) for Q, K, V and output projections,
  2*(2*D*F) for the feed-forward, and 2*(2*T*D) for attention scores and values.
  The QA head (2*D) is counted; embeddings are gathers, not matmuls.
  """
  per_token = num_layers * (8 * hidden * hidden + 4 * hidden * intermediate + 4 * seq * hidden)
  return 3.0 * seq * (per_token + 4 * hidden)


def infer_flops_per_sequence(num_layers, hidden, intermediate, seq) -> float:
  return train_flops_per_sequence(num_layers, hidden, intermediate, seq) / 3.0


def mfu(flops_per_sequence: float, sequences_per_second_per_device: float) -> float:
  return flops_per_sequence * sequences_per_second_per_device / (PEAK_BF16_TFLOPS * 1e12)


def real_tokens_mean(masks) -> float:
  """The real (unmasked) tokens of a window, on average over the timed calls' masks; with
  'timed_windows': 'spread' (batches.spread_eval_batches), what readers compare calls by."""
  return float(np.mean([np.asarray(m).astype(bool).sum(axis=1).mean() for m in masks]))


def percentiles(values_ms) -> dict[str, float]:
  """p50/p90/p95/p99/p100 and mean of a list of latencies (numpy's linear interpolation)."""
  v = np.asarray(values_ms, np.float64)
  out = {f'p{q}': float(np.percentile(v, q)) for q in (50, 90, 95, 99, 100)}
  out['mean'] = float(v.mean())
  return out


def _git_commit() -> str:
  """The checkout's commit, '-dirty' when tracked files differ from it ('' outside git)."""
  try:
    return subprocess.run(['git', 'describe', '--always', '--dirty', '--abbrev=7'],
                          capture_output=True, text=True, cwd=os.path.dirname(__file__),
                          timeout=5).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return ''


def fingerprint(files: dict[str, bytes]) -> str:
  """12 hex digits of sha256 over (relative path, content) pairs, in path order."""
  h = hashlib.sha256()
  for rel in sorted(files):
    h.update(rel.encode() + b'\0' + files[rel] + b'\0')
  return h.hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
  """The fingerprint of the bert_jax package's .py files as they are on disk.

  A device's copy of the checkout may carry a stale .git, so 'git_commit' can name an older
  commit than the code that ran; this names the code itself. `python
  benchmarks/which_commit.py FINGERPRINT` finds the commits whose package matches.
  """
  root = os.path.dirname(os.path.abspath(__file__))
  files = {}
  for folder, _, names in os.walk(root):
    for name in names:
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        with open(path, 'rb') as f:
          files[os.path.relpath(path, root).replace(os.sep, '/')] = f.read()
  return fingerprint(files)


def _driver() -> str:
  try:
    out = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                         capture_output=True, text=True, timeout=10).stdout
    return out.splitlines()[0].strip() if out else ''
  except (OSError, subprocess.SubprocessError):
    return ''


def environment() -> dict:
  """Who measured: device name and count, driver, versions, XLA flags, commit and code
  fingerprint, time."""
  import flax
  import jaxlib
  dev = jax.devices()[0]
  return {
      'device': dev.device_kind, 'platform': dev.platform, 'device_count': jax.device_count(),
      'process_count': jax.process_count(), 'driver': _driver(), 'jax': jax.__version__,
      'jaxlib': jaxlib.__version__, 'flax': flax.__version__,
      'xla_flags': os.environ.get('XLA_FLAGS', ''), 'git_commit': _git_commit(),
      'code_fingerprint': code_fingerprint(),
      'time': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
  }


def append(path: str, record: dict) -> dict:
  """Adds schema and environment fields and appends one JSON line (never overwrites)."""
  full = {'schema': SCHEMA, **environment(), **record}
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'a') as f:
      f.write(json.dumps(full) + '\n')
  return full


def read(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
