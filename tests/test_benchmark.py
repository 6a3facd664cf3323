"""Benchmark harness on CPU: a tiny sweep's records, the report, OOM handling, percentiles."""
import json
import os

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

import jax
import jax.numpy as jnp
from bert_jax import batches as batches_lib, benchmark, records, report
from configs import bench_infer, bench_train

TRAIN_FIELDS = {
    'schema', 'config', 'device', 'platform', 'device_count', 'process_count', 'driver', 'jax',
    'jaxlib', 'flax', 'xla_flags', 'git_commit', 'code_fingerprint', 'time', 'kind', 'status',
    'precision', 'seq_len', 'batch_size', 'batch_size_per_device', 'num_devices', 'data',
    'xla_compiler_options', 'compile_s', 'warmup_s', 'timed_steps', 'step_time_ms',
    'step_time_ms_mean', 'sentences_per_s', 'sentences_per_s_per_device', 'mfu', 'peak_memory_gb',
    'projected_2_epochs_s', 'call_return_ms_p50', 'state_arrays', 'activation'}
INFER_FIELDS = {
    'schema', 'config', 'device', 'device_count', 'driver', 'jax', 'jaxlib', 'flax',
    'xla_flags', 'git_commit', 'code_fingerprint', 'time', 'kind', 'status', 'precision',
    'seq_len', 'batch_size', 'num_devices', 'data', 'compile_s', 'warmup_s', 'sentences',
    'total_inference_s', 'latency_ms', 'sentences_per_s', 'mfu', 'xla_compiler_options',
    'activation', 'params_bound'}


def test_gpu_steps_compile_with_cublas_matmuls_and_cpu_with_xla_defaults():
  from types import SimpleNamespace

  from bert_jax import inference, mesh as mesh_lib, train
  from bert_jax.settings import MeshSettings
  gpu = SimpleNamespace(devices=np.array([SimpleNamespace(platform='gpu')]))
  assert inference.default_compiler_options(gpu) == {'xla_gpu_enable_triton_gemm': False}
  assert train.default_compiler_options(gpu)['xla_gpu_enable_triton_gemm'] is False
  cpu = mesh_lib.make_mesh(MeshSettings(num_devices=1))
  assert inference.default_compiler_options(cpu) == train.default_compiler_options(cpu) == {}


def _tiny(config, **bench):
  config.model.preset = 'tiny'
  config.model.attention = 'xla'
  config.model.vocab_dir = ''
  config.data.train_file = 'sample'
  config.data.dev_file = 'sample'
  for key, value in bench.items():
    setattr(config.bench, key, value)
  return config


@pytest.fixture(scope='module')
def sweep_dir(tmp_path_factory):
  """One tiny training sweep (bf16, the targets' precision, alone: a point costs this suite
  about 9 s; 1 and 2 of the 8 fake devices, 16 absent) and one inference sweep (fp32), on
  the bundled sample's real windows; then the report."""
  workdir = str(tmp_path_factory.mktemp('bench'))
  cache = str(tmp_path_factory.mktemp('cache'))
  train_cfg = _tiny(bench_train.get_config(), batch_sizes=(4,), seq_lens=(64,),
                    precisions=('bf16',), num_devices=(1, 2, 16), steps=3)
  train_cfg.data.cache_dir = cache
  infer_cfg = _tiny(bench_infer.get_config(), batch_sizes=(1, 4), seq_lens=(64,),
                    precisions=('fp32',), num_devices=(1,), steps=5)
  infer_cfg.data.cache_dir = cache
  benchmark.run(train_cfg, workdir)
  benchmark.run(infer_cfg, workdir)
  return workdir, report.write(workdir)


def test_sweep_records_carry_every_field(sweep_dir):
  workdir, _ = sweep_dir
  recs = records.read(os.path.join(workdir, 'records.jsonl'))
  train = [r for r in recs if r['kind'] == 'train' and r['status'] == 'ok']
  infer = [r for r in recs if r['kind'] == 'infer' and r['status'] == 'ok']
  assert len(train) == 2 and len(infer) == 2   # devices; batches
  for r in train:
    assert TRAIN_FIELDS <= set(r), TRAIN_FIELDS - set(r)
    assert set(r['step_time_ms']) >= {'p50', 'p90', 'p99'}
    assert r['data'] == 'squad' and r['sentences_per_s'] > 0 and r['compile_s'] > 0
    assert r['batch_size'] == r['batch_size_per_device'] * r['num_devices']
    assert 0 < r['call_return_ms_p50'] <= r['step_time_ms']['p100']
    assert r['state_arrays'] > 50                     # params, two Adam moments, counters
    assert r['xla_compiler_options'] == {}            # the GPU-only options stay off on CPU
    assert r['gpu_telemetry'] == 'not sampled (platform cpu)'   # says why, not silent
    assert r['projected_2_epochs_s'] == pytest.approx(
        r['train_features_2_epochs'] / r['sentences_per_s'])
  for r in infer:
    assert INFER_FIELDS <= set(r), INFER_FIELDS - set(r)
    assert set(r['latency_ms']) == {'p50', 'p90', 'p95', 'p99', 'p100', 'mean'}
    assert r['sentences'] == 5 * r['batch_size']
    assert r['sentences_per_s'] == pytest.approx(r['sentences'] / r['total_inference_s'])
    assert r['scan_layers'] is False          # the bench times the unrolled layers by default
    assert r['wait'] == 'spin'
    assert r['xla_compiler_options'] == {}
    assert r['gpu_telemetry'] == 'not sampled (platform cpu)'
  assert {r['num_devices'] for r in train} == {1, 2}
  skipped = [r for r in recs if r['status'].startswith('skipped')]
  assert [r['num_devices'] for r in skipped] == [16]


def test_report_has_tables_and_plots(sweep_dir):
  workdir, written = sweep_dir
  text = open(written['report']).read()
  assert '## Training, seq 64: sentences/s' in text
  assert '### Scaling, seq 64' in text          # 1 and 2 devices measured
  assert '## Inference, seq 64: latency (ms) and throughput' in text
  assert '| bert_jax | fp32 | 4 |' in text
  assert '| call ms |' in text and 'call ms: how long a step call takes to return' in text
  assert '| SM MHz |' in text and "the board's power cap" in text
  assert 'skipped: only 8 device(s)' in text
  names = {os.path.basename(p) for p in written['plots']}
  assert names == {'train_throughput_seq64.png', 'train_scaling_seq64.png',
                   'infer_latency_seq64_fp32.png'}
  for path in written['plots']:
    with open(path, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert os.path.getsize(path) > 10_000
    assert f'![{os.path.basename(path)}]' in text


def test_out_of_memory_point_is_recorded_and_the_sweep_goes_on(tmp_path):
  from bert_jax.model_config import ModelConfig
  from bert_jax.precision import PrecisionPolicy
  config = ModelConfig.preset('tiny').replace(vocab_size=128, attention='xla')

  def measure(**point):   # sweep's handling is under test, not time_train: a stand-in record
    if point['batch_per_device'] == 4:
      raise RuntimeError('RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9.1GiB.')
    return {'kind': 'train', 'sentences_per_s': 10.0 * point['batch_per_device']}

  points = [dict(config=config, policy=PrecisionPolicy('fp32'), num_devices=1,
                 batch_per_device=b, seq_len=16, steps_timed=2) for b in (2, 4, 8)]
  path = str(tmp_path / 'records.jsonl')
  out = benchmark.sweep(points, measure, path, {'config': 'oom_test'})
  assert [r['status'] for r in out] == ['ok', 'oom', 'ok']
  on_disk = records.read(path)
  assert [r['status'] for r in on_disk] == ['ok', 'oom', 'ok']
  assert [r.get('sentences_per_s') for r in on_disk] == [20.0, None, 80.0]
  oom = on_disk[1]
  assert oom['batch_size_per_device'] == 4 and oom['precision'] == 'fp32'
  assert 'RESOURCE_EXHAUSTED' in oom['error'] and oom['device']
  with pytest.raises(ValueError, match='not an OOM'):   # other errors are not swallowed
    benchmark.sweep(points[:1], lambda **_: (_ for _ in ()).throw(ValueError('not an OOM')),
                    path, {})


def test_bench_step_with_the_state_split_matches_the_replicated_one():
  from bert_jax.model_config import ModelConfig
  from bert_jax.precision import PrecisionPolicy
  config = ModelConfig.preset('tiny').replace(vocab_size=128, attention='xla')
  point = dict(config=config, policy=PrecisionPolicy('fp32'), num_devices=2,
               batch_per_device=2, seq_len=16, steps_timed=2, warmup_steps=1)
  rep = benchmark.time_train(**point)
  split = benchmark.time_train(**point, shard_state=True)
  assert (rep['shard_state'], split['shard_state']) == (False, True)
  assert split['final_loss'] == pytest.approx(rep['final_loss'], abs=1e-5)
  # nothing to split on one device: the records' field is splits_state's answer, asked here
  # directly (a third timed point, on one device, took a third of this test's time)
  from bert_jax import mesh as mesh_lib
  from bert_jax.settings import MeshSettings
  assert mesh_lib.splits_state(mesh_lib.make_mesh(MeshSettings(num_devices=1)), True) is False
  assert mesh_lib.splits_state(mesh_lib.make_mesh(MeshSettings(num_devices=2)), True) is True


def test_wait_until_ready_polls_every_array_until_all_are_ready():
  class Pending:   # ready after `polls` calls of is_ready(); its computation may have failed
    def __init__(self, polls, failed=False):
      self.polls, self.calls, self.failed = polls, 0, failed

    def is_ready(self):
      self.calls += 1
      return self.calls > self.polls

    def block_until_ready(self):
      assert self.calls > self.polls, 'blocked before it was ready'
      if self.failed:
        raise RuntimeError('the call failed on the device')
      return self

  arrays = [Pending(3), Pending(7)]
  benchmark.wait_until_ready(arrays)
  assert all(a.calls > a.polls for a in arrays)
  assert arrays[1].calls == 8          # polled until it answered ready, then no more
  with pytest.raises(RuntimeError, match='failed on the device'):
    benchmark.wait_until_ready([Pending(2), Pending(1, failed=True)])
  benchmark.wait_until_ready(jnp.ones(3) + 1)   # a real array


def test_percentiles_match_numpy():
  assert records.percentiles([1.0, 2.0, 3.0, 4.0]) == {
      'p50': 2.5, 'p90': 3.7, 'p95': pytest.approx(3.85), 'p99': pytest.approx(3.97),
      'p100': 4.0, 'mean': 2.5}
  rng = np.random.default_rng(0)
  for n in (1, 2, 7, 100, 1001):
    v = rng.lognormal(size=n)
    got = records.percentiles(v.tolist())
    for q in (50, 90, 95, 99, 100):
      assert got[f'p{q}'] == pytest.approx(float(np.percentile(v, q)), rel=1e-12)
    assert got['mean'] == pytest.approx(float(v.mean()), rel=1e-12)


def test_mfu_formula_matches_the_published_flops():
  """performance.md: BERT-Large 739.3 GFLOP per training sequence at 384, 236.8 at 128."""
  assert records.train_flops_per_sequence(24, 1024, 4096, 384) / 1e9 == pytest.approx(739.3, abs=0.1)
  assert records.train_flops_per_sequence(24, 1024, 4096, 128) / 1e9 == pytest.approx(236.8, abs=0.1)
  assert records.mfu(739.3e9, 700) == pytest.approx(0.523, abs=1e-3)


def test_report_puts_the_peer_beside_us(tmp_path):
  common = {'kind': 'train', 'status': 'ok', 'precision': 'bf16', 'seq_len': 384,
            'batch_size': 32, 'batch_size_per_device': 32, 'num_devices': 1, 'data': 'synthetic',
            'source': 'bench', 'mfu': 0.37}
  records.append(str(tmp_path / 'records.jsonl'), {**common, 'sentences_per_s': 500.0,
                                                   'sentences_per_s_per_device': 500.0,
                                                   'xla_compiler_options': {
                                                       'xla_gpu_enable_triton_gemm': False}})
  records.append(str(tmp_path / 'records.jsonl'), {**common, 'num_devices': 2, 'batch_size': 64,
                                                   'sentences_per_s': 950.0,
                                                   'sentences_per_s_per_device': 475.0})
  records.append(str(tmp_path / 'records.jsonl'), {**common, 'num_devices': 2, 'batch_size': 64,
                                                   'sentences_per_s': 990.0, 'shard_state': True,
                                                   'sentences_per_s_per_device': 495.0})
  with open(tmp_path / 'peer.jsonl', 'w') as f:
    for mode, rate in (('eager', 380.0), ('compile', 480.0)):
      f.write(json.dumps({'schema': records.SCHEMA, 'framework': 'pytorch-hf', 'mode': mode,
                          'kind': 'train', 'status': 'ok', 'precision': 'bf16', 'seq_len': 384,
                          'batch_size': 32, 'sentences_per_s': rate, 'device': 'cpu'}) + '\n')
  text = open(report.write(str(tmp_path))['report']).read()
  row = next(line for line in text.splitlines() if line.startswith('| bf16 | 1 | 32 |'))
  assert '480.0' in row and '380.0' in row and row.rstrip(' |').endswith('1.04')
  assert '950.0 (95 %)' in text                       # 2-GPU scaling efficiency
  assert any(line.startswith('| bf16 | 2 split | 32 | 990.0 |') for line in text.splitlines())
  assert '| bf16 | 32 (state split) | 500.0 | 990.0 (99 %) |' in text
  assert 'train-step compiler options: xla_gpu_enable_triton_gemm=False' in text
  assert 'inference compiler options' not in text     # no inference records here
  assert jax.device_count() == 8


def test_report_keeps_the_peer_with_attention_dropout_apart(tmp_path):
  """The peer trained with attention-probability dropout (bert_jax's cuDNN step has none) is a
  column of its own, and the ratio takes the like-for-like peer where it is faster; records
  from before peer_hf's --attention-dropout (no field) count as 0.1."""
  point = {'schema': records.SCHEMA, 'kind': 'train', 'status': 'ok', 'precision': 'bf16',
           'seq_len': 384, 'batch_size': 32, 'batch_size_per_device': 32, 'num_devices': 1,
           'source': 'bench', 'device': 'cpu'}
  with open(tmp_path / 'records.jsonl', 'w') as f:
    f.write(json.dumps({**point, 'sentences_per_s': 600.0, 'sentences_per_s_per_device': 600.0,
                        'code_fingerprint': 'abcdef012345'}) + '\n')
    peer = {**point, 'framework': 'pytorch-hf', 'mode': 'compile'}
    f.write(json.dumps({**peer, 'sentences_per_s': 480.0}) + '\n')                # before
    f.write(json.dumps({**peer, 'sentences_per_s': 500.0, 'attention_dropout': 0.0}) + '\n')
  text = open(report.write(str(tmp_path))['report']).read()
  assert '| pytorch-hf compile sent/s | pytorch-hf compile, attention dropout 0.1 sent/s |' in text
  row = next(line for line in text.splitlines() if line.startswith('| bf16 | 1 | 32 |'))
  assert '| 500.0 | 480.0 | 1.20 |' in row
  assert 'code fingerprint abcdef012345' in text
  infer = {**peer, 'kind': 'infer'}
  assert report.system(infer) == 'pytorch-hf compile'   # no dropout at inference to speak of


def test_report_keeps_the_peer_on_real_windows_apart(tmp_path):
  """The peer on real windows (peer_hf.py --train-file) is a column of its own beside the peer
  on synthetic full windows; the ratio takes the faster of the two."""
  point = {'schema': records.SCHEMA, 'kind': 'train', 'status': 'ok', 'precision': 'bf16',
           'seq_len': 384, 'batch_size': 32, 'batch_size_per_device': 32, 'num_devices': 1,
           'source': 'bench', 'device': 'cpu', 'attention_dropout': 0.0}
  with open(tmp_path / 'records.jsonl', 'w') as f:
    f.write(json.dumps({**point, 'sentences_per_s': 600.0, 'sentences_per_s_per_device': 600.0,
                        'data': 'squad'}) + '\n')
    peer = {**point, 'framework': 'pytorch-hf', 'mode': 'compile'}
    f.write(json.dumps({**peer, 'sentences_per_s': 500.0, 'data': 'synthetic'}) + '\n')
    f.write(json.dumps({**peer, 'sentences_per_s': 400.0, 'data': 'squad'}) + '\n')
  text = open(report.write(str(tmp_path))['report']).read()
  assert '| pytorch-hf compile sent/s | pytorch-hf compile, real windows sent/s |' in text
  row = next(line for line in text.splitlines() if line.startswith('| bf16 | 1 | 32 |'))
  assert '| 500.0 | 400.0 | 1.20 |' in row


def test_peer_trains_without_attention_dropout_by_default(load_script):
  for name in ('torch', 'transformers'):   # benchmarks/peer_hf.py imports both
    pytest.importorskip(name, reason=f'{name} is not installed (the peer needs it)')
  peer_hf = load_script('peer_hf')
  cfg = peer_hf.bert_config(2, 64, 2, 128)
  assert (cfg.attention_probs_dropout_prob, cfg.hidden_dropout_prob) == (0.0, 0.1)
  assert peer_hf.bert_config(2, 64, 2, 128, 0.1).attention_probs_dropout_prob == 0.1
  assert cfg.hidden_act == 'gelu'     # BERT's exact GELU unless --activation asks otherwise
  assert peer_hf.bert_config(2, 64, 2, 128, activation='gelu_tanh').hidden_act == \
      'gelu_pytorch_tanh'


def test_report_without_records_says_what_to_do(tmp_path):
  with pytest.raises(FileNotFoundError, match='--mode=bench'):
    report.write(str(tmp_path))


def test_report_never_mixes_cards_in_one_table(tmp_path):
  base = {'kind': 'infer', 'status': 'ok', 'precision': 'fp16', 'seq_len': 384, 'batch_size': 1,
          'num_devices': 1, 'source': 'bench', 'sentences': 100, 'total_inference_s': 0.25,
          'sentences_per_s': 400.0, 'latency_ms': {'p50': 2.5, 'p90': 2.6, 'p95': 2.7,
                                                   'p99': 2.8, 'p100': 2.9, 'mean': 2.5}}
  with open(tmp_path / 'records.jsonl', 'w') as f:
    for device, mean in (('NVIDIA H100 80GB HBM3', 3.1), ('NVIDIA H200', 2.5)):
      lat = {**base['latency_ms'], 'mean': mean}
      f.write(json.dumps({'schema': records.SCHEMA, **base, 'device': device,
                          'latency_ms': lat}) + '\n')
  out = report.write(str(tmp_path))
  text = open(out['report']).read()
  assert '# NVIDIA H100 80GB HBM3' in text and '# NVIDIA H200' in text
  assert text.count('## Inference, seq 384') == 2          # one table per card
  assert '| 3.10 |' in text and '| 2.50 |' in text       # neither record hides the other
  assert {os.path.basename(p) for p in out['plots']} == {
      'NVIDIA_H100_80GB_HBM3_infer_latency_seq384_fp16.png',
      'NVIDIA_H200_infer_latency_seq384_fp16.png'}


def test_report_marks_a_peer_measured_in_another_call(tmp_path):
  ours = {'schema': records.SCHEMA, 'kind': 'infer', 'status': 'ok', 'precision': 'fp16',
          'seq_len': 384, 'num_devices': 1, 'source': 'bench', 'sentences': 100,
          'total_inference_s': 0.25, 'sentences_per_s': 400.0, 'device': 'NVIDIA H200',
          'latency_ms': {'p50': 2.5, 'p90': 2.6, 'p95': 2.7, 'p99': 2.8, 'p100': 2.9,
                         'mean': 2.5}}
  with open(tmp_path / 'records.jsonl', 'w') as f:
    for batch in (1, 8):
      f.write(json.dumps({**ours, 'batch_size': batch, 'time': '2026-11-27T06:00:00+00:00'})
              + '\n')
    # batch 1: the peer 5 minutes later (same call); batch 8: 2 hours earlier (another call)
    for batch, when in ((1, '2026-11-27T06:05:00+00:00'), (8, '2026-11-27T04:00:00+00:00')):
      f.write(json.dumps({**ours, 'framework': 'pytorch-hf', 'mode': 'compile',
                          'batch_size': batch, 'time': when}) + '\n')
  text = open(report.write(str(tmp_path))['report']).read()
  rows = [line for line in text.splitlines() if line.startswith('| pytorch-hf')]
  assert '†' not in rows[0] and '| pytorch-hf compile † | fp16 | 8 |' in rows[1]
  assert report.APART_NOTE in text


def test_report_says_how_many_records_of_points_measured_again_it_leaves_out(tmp_path):
  ours = {'schema': records.SCHEMA, 'kind': 'infer', 'status': 'ok', 'precision': 'fp16',
          'seq_len': 384, 'num_devices': 1, 'source': 'bench', 'sentences': 800,
          'batch_size': 8, 'total_inference_s': 0.5, 'sentences_per_s': 1600.0,
          'device': 'NVIDIA H200', 'time': '2026-11-29T17:25:00+00:00',
          'latency_ms': {'p50': 5.0, 'p90': 5.1, 'p95': 5.2, 'p99': 5.3, 'p100': 5.4,
                         'mean': 5.0}}
  peer = {**ours, 'framework': 'pytorch-hf', 'mode': 'compile'}
  with open(tmp_path / 'records.jsonl', 'w') as f:
    f.write(json.dumps(ours) + '\n')
  with open(tmp_path / 'peer.jsonl', 'w') as f:   # the peer on two GPUs of one call
    for rate in (1480.9, 1544.2):
      f.write(json.dumps({**peer, 'sentences_per_s': rate}) + '\n')
  text = open(report.write(str(tmp_path))['report']).read()
  assert '1,544.20' in text and '1,480.90' not in text      # the latest record's row
  assert '1 record of points measured again is not shown above' in text
  train = {'schema': records.SCHEMA, 'kind': 'train', 'status': 'ok', 'precision': 'bf16',
           'seq_len': 128, 'batch_size': 64, 'batch_size_per_device': 64, 'num_devices': 1,
           'source': 'bench', 'device': 'NVIDIA H200', 'sentences_per_s_per_device': 1.0}
  with open(tmp_path / 'records.jsonl', 'a') as f:
    for rate in (1829.7, 1834.2, 1799.3):
      f.write(json.dumps({**train, 'sentences_per_s': rate}) + '\n')
  text = open(report.write(str(tmp_path))['report']).read()
  assert '2 records of points measured again are not shown above' in text   # training
  assert '1 record of points measured again is not shown above' in text      # inference


def test_report_gives_scanned_layers_and_passed_weights_rows_of_their_own(tmp_path):
  ours = {'schema': records.SCHEMA, 'kind': 'infer', 'status': 'ok', 'precision': 'bf16',
          'seq_len': 384, 'num_devices': 1, 'source': 'bench', 'sentences': 6400,
          'total_inference_s': 3.7, 'sentences_per_s': 1730.0, 'device': 'NVIDIA H200',
          'batch_size': 64, 'time': '2026-11-27T06:00:00+00:00', 'compile_s': 33.5,
          'latency_ms': {'p50': 37, 'p90': 37, 'p95': 37, 'p99': 38, 'p100': 38, 'mean': 37}}
  with open(tmp_path / 'records.jsonl', 'w') as f:
    f.write(json.dumps(ours) + '\n')
    f.write(json.dumps({**ours, 'scan_layers': True, 'compile_s': 2.25,
                        'xla_compiler_options': {'xla_gpu_enable_triton_gemm': False}}) + '\n')
    f.write(json.dumps({**ours, 'params_bound': False, 'compile_s': 3.5}) + '\n')
    peer = {k: v for k, v in ours.items() if k != 'compile_s'}   # the peer has warm-up only
    f.write(json.dumps({**peer, 'framework': 'pytorch-hf', 'mode': 'compile', 'warmup_s': 20.5,
                        'time': '2026-11-27T06:03:00+00:00'}) + '\n')
  text = open(report.write(str(tmp_path))['report']).read()
  rows = [line for line in text.splitlines() if line.startswith('| bert_jax')
          or line.startswith('| pytorch')]
  assert [r.split(' | ')[0] for r in rows] == [
      '| bert_jax', '| bert_jax, layers scanned', '| bert_jax, weights passed each call',
      '| pytorch-hf compile']   # no †: same call
  # compile s (the peer's warm-up), then SM MHz: none sampled in these records
  assert [r.split(' | ')[-2:] for r in rows] == [
      [c, '— |'] for c in ('33.50', '2.25', '3.50', '20.50')]
  assert 'XLA flags: none; inference compiler options: xla_gpu_enable_triton_gemm=False' in text


def test_packed_points_count_windows_and_the_report_keeps_them_apart(tmp_path):
  """bench.packing on the sample's real windows at 160 (two of its 67-74-token windows share a
  row): sentences/s counts windows, MFU rows; the report gives them tables/rows of their own
  (the padded records' tables are sweep_dir's)."""
  cache = str(tmp_path / 'cache')
  for get, batch in ((bench_train.get_config, 4), (bench_infer.get_config, 2)):
    cfg = _tiny(get(), batch_sizes=(batch,), seq_lens=(160,), precisions=('fp32',),
                num_devices=(1,), steps=3, packing=True)
    cfg.data.cache_dir = cache
    benchmark.run(cfg, str(tmp_path))
  train, infer = records.read(str(tmp_path / 'records.jsonl'))
  for rec, seconds in ((train, 3 * train['step_time_ms_mean'] / 1e3),
                       (infer, infer['total_inference_s'])):
    assert rec['packing'] is True and rec['max_windows_per_row'] == 8
    assert rec['rows_per_s'] == pytest.approx(3 * rec['batch_size'] / seconds)
    assert rec['sentences_per_s'] > 1.5 * rec['rows_per_s']   # about 2 windows a row
  flops = train['flops_per_sequence']
  assert train['mfu'] == pytest.approx(records.mfu(flops, train['rows_per_s']))   # rows' work
  assert train['windows_per_step_mean'] > 6
  assert infer['windows_per_call_mean'] > 3 and infer['timed_windows'] == 'spread'
  assert infer['sentences'] == pytest.approx(3 * infer['windows_per_call_mean'])
  text = open(report.write(str(tmp_path))['report']).read()
  assert '## Training on packed rows (bench.packing): windows/s' in text
  assert '| 160 | fp32 | 1 | 4 |' in text and '## Training, seq 160' not in text
  # a 2-GPU packed point scales on rows/s against the 1-GPU one (same rows a GPU)
  with open(tmp_path / 'records.jsonl', 'a') as f:
    f.write(json.dumps({**train, 'num_devices': 2, 'batch_size': 8,
                        'rows_per_s': 1.9 * train['rows_per_s'],
                        'sentences_per_s': 2.0 * train['sentences_per_s']}) + '\n')
  text = open(report.write(str(tmp_path))['report']).read()
  two = [line for line in text.splitlines() if line.startswith('| 160 | fp32 | 2 | 4 |')]
  assert len(two) == 1 and '| 1.90× (95 %) |' in two[0]
  assert '| bert_jax, packed rows (batch: rows a call) | fp32 | 2 |' in text


def test_packed_bench_without_real_windows_names_the_setting_and_the_file(tmp_path):
  from bert_jax.settings import ConfigError
  cfg = _tiny(bench_infer.get_config(), batch_sizes=(2,), seq_lens=(64,), precisions=('fp32',),
              num_devices=(1,), packing=True)
  cfg.data.dev_file = str(tmp_path / 'absent.json')
  with pytest.raises(ConfigError, match=r"bench.packing.*absent.json.*data.dev_file"):
    benchmark.run(cfg, str(tmp_path))


def test_bucketed_inference_cuts_each_call_to_its_longest_window(tmp_path):
  from bert_jax.model_config import ModelConfig
  """bench.bucket_width on the sample's real windows at 160 (67-74 tokens): every call is cut
  to 96 (buckets of 32), compiled once; MFU counts the 96-token work; the report gives the
  point a row of its own beside the padded one."""
  cache = str(tmp_path / 'cache')
  for width in (0, 32):
    cfg = _tiny(bench_infer.get_config(), batch_sizes=(2,), seq_lens=(160,),
                precisions=('fp32',), num_devices=(1,), steps=3, bucket_width=width)
    cfg.data.cache_dir = cache
    benchmark.run(cfg, str(tmp_path))
  padded, cut = {}, {}
  for rec in records.read(str(tmp_path / 'records.jsonl')):
    (cut if rec.get('bucket_width') else padded)[rec['batch_size']] = rec
  assert sorted(cut) == sorted(padded) == [2]
  for batch, rec in cut.items():
    assert rec['bucket_width'] == 32 and rec['widths'] == [96] and rec['width_mean'] == 96
    assert rec['seq_len'] == 160 and rec['sentences'] == 3 * batch
    assert rec['timed_windows'] == 'spread' and 67 <= rec['real_tokens_mean'] <= 74
    assert padded[batch]['real_tokens_mean'] == rec['real_tokens_mean']   # the same windows
    tiny = ModelConfig.preset('tiny')
    flops = records.infer_flops_per_sequence(tiny.num_layers, tiny.hidden_size,
                                             tiny.intermediate_size, 96)
    assert rec['mfu'] == pytest.approx(records.mfu(flops, rec['sentences_per_s']))
    assert rec['mfu'] < padded[batch]['mfu'] * rec['sentences_per_s'] / padded[batch][
        'sentences_per_s']                                    # 96 tokens' work, not 160's
    assert 'bucket_width' not in padded[batch]
  text = open(report.write(str(tmp_path))['report']).read()
  assert '| bert_jax, calls cut to buckets of 32 | fp32 | 2 |' in text
  assert '| bert_jax | fp32 | 2 |' in text
  tokens = f"| {padded[2]['real_tokens_mean']:,.2f} |"     # the report's column, both rows
  assert sum(tokens in line for line in text.splitlines()
             if line.startswith('| bert_jax')) == 2 and report.TOKENS_NOTE in text


@hypothesis.given(total=st.integers(0, 500), count=st.integers(0, 40))
def test_spread_indices_run_from_the_first_to_the_last(total, count):
  idx = batches_lib.spread(total, count)
  assert len(idx) == min(total, count) and (np.diff(idx) > 0).all()
  if len(idx) > 1:
    assert idx[0] == 0 and idx[-1] == total - 1
  if len(idx) > 2:   # evenly: neighbouring gaps differ by at most one
    assert np.ptp(np.diff(idx)) <= 1


def test_timed_inference_batches_are_spread_over_the_dev_set(tmp_path):
  """The bench times batches of consecutive windows spread from the dev set's first window to
  its last (batches.spread_eval_batches), not its first article's: at 384 the first 16
  batches of 8 cut to 148 tokens on average, the whole dev set's to 247."""
  import types
  from bert_jax import mesh as mesh_lib
  from bert_jax.settings import MeshSettings
  data = types.SimpleNamespace(train_file='sample', dev_file='sample', version_2=False,
                               max_query_length=64, cache_dir=str(tmp_path))
  dev = benchmark.squad_features(data, 'infer', 64, '')
  sharding = mesh_lib.batch_sharding(mesh_lib.make_mesh(MeshSettings(num_devices=2)))
  n = len(dev)
  assert n >= 8
  got = batches_lib.spread_eval_batches(dev, 2, sharding, 4)
  starts = batches_lib.spread(n - 1, 4)
  assert starts[0] == 0 and starts[-1] == n - 2 and len(got) == 4
  for (batch, count), start in zip(got, starts):
    assert count == 2
    want = dev.model_inputs(np.arange(start, start + 2))
    for k in want:
      np.testing.assert_array_equal(np.asarray(batch[k]), want[k])
  cut = batches_lib.spread_eval_batches(dev, 2, sharding, 4, bucket_width=16)
  widths = batches_lib.bucket_widths(dev, 16)
  for (batch, _), start in zip(cut, starts):
    assert batch['input_ids'].shape[1] == widths[start:start + 2].max()


def test_warm_up_runs_every_width_before_the_timed_calls():
  """Warm-up calls each compiled width at least once (trim1: a width first run in the timed
  calls took 250 ms, p99 253 ms against a p50 of 2.6), and makes at least `warmup` calls."""
  inputs = [np.zeros((8, w)) for w in (192, 192, 128, 192, 192, 64, 128)]
  width = lambda x: x.shape[1]
  for warmup in (0, 1, 3, 5, 9):
    chosen = benchmark.warmup_inputs(inputs, warmup, width)
    assert {width(x) for x in chosen} == {64, 128, 192}
    assert len(chosen) >= warmup
    assert chosen[:warmup] == [inputs[i % len(inputs)] for i in range(warmup)]
  assert len(benchmark.warmup_inputs(inputs, 5, width)) == 6      # 64 missed by the first 5
  assert len(benchmark.warmup_inputs(inputs[:2], 5, width)) == 5  # one width: as before


def test_bucketed_batches_hold_the_padded_ones_real_tokens_and_give_their_logits(tmp_path):
  """batches.eval_batches with buckets: each batch is the padded one cut after its longest
  window (the same width on every row), and the model's logits on the real tokens are the
  padded batch's."""
  import itertools
  import types
  from bert_jax import batches, inference, mesh as mesh_lib
  from bert_jax.model_config import ModelConfig
  from bert_jax.precision import PrecisionPolicy
  from bert_jax.settings import MeshSettings
  data = types.SimpleNamespace(train_file='sample', dev_file='sample', version_2=False,
                               max_query_length=64, cache_dir=str(tmp_path))
  dev = benchmark.squad_features(data, 'infer', 160, '')
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=2))
  sharding = mesh_lib.batch_sharding(mesh)
  config = ModelConfig.preset('tiny').replace(attention='xla',
                                              vocab_size=int(dev.input_ids.max()) + 1)
  policy = PrecisionPolicy('fp32')
  params = benchmark.random_params(mesh, config, policy, jax.random.PRNGKey(0))
  fn = inference.make_eval_fn(mesh, config, policy)
  pairs = itertools.islice(zip(batches.eval_batches(dev, 2, sharding),
                               batches.eval_batches(dev, 2, sharding, bucket_width=32)), 4)
  for (full, n_full), (cut, n_cut) in pairs:
    assert n_full == n_cut
    mask = np.asarray(full['attention_mask'])
    width = cut['input_ids'].shape[1]
    longest = int(mask.sum(axis=1).max())
    assert width % 32 == 0 and longest <= width < longest + 32
    assert not mask[:, width:].any()
    for k in full:
      np.testing.assert_array_equal(np.asarray(cut[k]), np.asarray(full[k])[:, :width])
    got, want = np.asarray(fn(params, cut)), np.asarray(fn(params, full))
    real = mask[:, :width] > 0
    np.testing.assert_allclose(got[real], want[:, :width][real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('fields,match', [
    ({'kind': 'train', 'bucket_width': 64}, r"bench.bucket_width.*data.bucket_width"),
    ({'kind': 'infer', 'bucket_width': 60}, r"bench.bucket_width.*multiple of 8"),
    ({'kind': 'infer', 'bucket_width': -8}, r"bench.bucket_width"),
    ({'kind': 'infer', 'bucket_width': 64, 'packing': True}, r"bench.bucket_width.*packing"),
])
def test_bad_bucket_width_names_the_field_and_the_fix(fields, match):
  from bert_jax.settings import BenchSettings, ConfigError
  with pytest.raises(ConfigError, match=match):
    BenchSettings(**fields)


def test_bucketed_bench_without_real_windows_names_the_setting_and_the_file(tmp_path):
  from bert_jax.settings import ConfigError
  cfg = _tiny(bench_infer.get_config(), batch_sizes=(2,), seq_lens=(64,), precisions=('fp32',),
              num_devices=(1,), bucket_width=32)
  cfg.data.dev_file = str(tmp_path / 'absent.json')
  with pytest.raises(ConfigError, match=r"bench.bucket_width.*absent.json.*data.dev_file"):
    benchmark.run(cfg, str(tmp_path))


def test_code_fingerprint_names_the_files_and_their_contents(tmp_path):
  base = {'model.py': b'a = 1\n', 'steps.py': b'b = 2\n'}
  fp = records.fingerprint(base)
  assert len(fp) == 12 and fp == records.fingerprint(dict(reversed(base.items())))
  assert fp != records.fingerprint({**base, 'model.py': b'a = 2\n'})      # a changed line
  assert fp != records.fingerprint({'model2.py': b'a = 1\n', 'steps.py': b'b = 2\n'})  # a rename
  assert records.code_fingerprint() == records.code_fingerprint()


def test_which_commit_finds_the_checked_out_package(load_script):
  """benchmarks/which_commit.py reads a commit's bert_jax/ from git and fingerprints it the
  way records do; for an unmodified checkout that is HEAD's fingerprint."""
  import subprocess
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  status = subprocess.run(['git', 'status', '--porcelain', '--', 'bert_jax'], cwd=root,
                          capture_output=True, text=True)
  if status.returncode != 0:
    pytest.skip('not a git checkout')
  if status.stdout.strip():
    pytest.skip('bert_jax/ has uncommitted changes, so HEAD is not what is on disk')
  module = load_script('which_commit')
  cwd = os.getcwd()
  try:
    os.chdir(root)
    files = module.package_at('HEAD')
  finally:
    os.chdir(cwd)
  assert 'model.py' in files and 'squad/features.py' in files
  assert records.fingerprint(files) == records.code_fingerprint()


def test_bucket_padding_script_reports_shares_on_the_sample_data(capsys, monkeypatch,
                                                               load_script):
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  module = load_script('bucket_padding')
  sample = os.path.join(root, 'bert_jax', 'sample_data')
  monkeypatch.setattr(sys, 'argv', [
      'bucket_padding.py', '--train-file', os.path.join(sample, 'train.json'),
      '--vocab-dir', sample, '--batch', '4', '--max-seq-length', '160', '--doc-stride', '64',
      '--widths', '32', '16', '--max-windows', '1', '4',
      '--dev-file', os.path.join(sample, 'dev.json')])
  module.main()
  rows = [line.split(' | ') for line in capsys.readouterr().out.splitlines()
          if line.startswith('| ') and not line.startswith('| ---')][1:]
  assert [r[0].split(' (')[0] for r in rows] == [
      '| none', '| 32', '| 16', '| packing', '| packing', '| real tokens only',
      '| prediction on packed rows', '| prediction on packed rows']
  assert '2.00 a row' in rows[4][0]         # windows of 67-74 tokens: two to a row of 160
  shares = [float(r[2]) for r in rows]
  assert shares[0] == shares[3] == shares[6] == 1.0   # one window a row is the padded run
  assert shares[:3] == sorted(shares[:3], reverse=True) and shares[1] < 1
  assert shares[5] <= shares[4] <= shares[2]  # packing: no more than buckets, above the bound
  assert 0.45 < shares[7] <= 0.55 and '(`eval.packing`' in rows[7][0]   # the dev windows too


def test_report_keeps_each_gelu_in_its_own_section_with_its_own_peer(tmp_path):
  """Tanh-GELU records (model.activation / the peer's --activation) never share a table, or a
  ratio, with the exact GELU's; records without the field ran the exact one."""
  point = {'schema': records.SCHEMA, 'kind': 'train', 'status': 'ok', 'precision': 'bf16',
           'seq_len': 384, 'batch_size': 32, 'batch_size_per_device': 32, 'num_devices': 1,
           'source': 'bench', 'device': 'NVIDIA H200', 'attention_dropout': 0.0}
  peer = {**point, 'framework': 'pytorch-hf', 'mode': 'compile'}
  with open(tmp_path / 'records.jsonl', 'w') as f:
    for rec in ({**point, 'sentences_per_s': 585.0, 'sentences_per_s_per_device': 585.0},
                {**point, 'activation': 'gelu_tanh', 'sentences_per_s': 600.0,
                 'sentences_per_s_per_device': 600.0},
                {**peer, 'sentences_per_s': 450.0},
                {**peer, 'activation': 'gelu_tanh', 'sentences_per_s': 500.0}):
      f.write(json.dumps(rec) + '\n')
  out = report.write(str(tmp_path))
  text = open(out['report']).read()
  exact, tanh = text.split('# NVIDIA H200, tanh GELU')
  assert '| bf16 | 1 | 32 | 585.0 |' in exact and exact.rstrip().count('| 450.0 | 1.30 |') == 1
  assert '600.0' not in exact and '500.0' not in exact
  assert '| bf16 | 1 | 32 | 600.0 |' in tanh and '| 500.0 | 1.20 |' in tanh
  assert any(os.path.basename(p).startswith('NVIDIA_H200_gelu_tanh_') for p in out['plots'])
  with open(tmp_path / 'records.jsonl', 'w') as f:   # tanh records alone still say so
    f.write(json.dumps({**point, 'activation': 'gelu_tanh', 'sentences_per_s': 600.0,
                        'sentences_per_s_per_device': 600.0}) + '\n')
  assert '# NVIDIA H200, tanh GELU' in open(report.write(str(tmp_path))['report']).read()


def test_peer_takes_the_real_windows_the_bench_takes(load_script, tmp_path):
  """--train-file/--dev-file: the peer's batches are the bench's, window for window."""
  pytest.importorskip('torch', reason='torch is not installed (the peer needs it)')
  pytest.importorskip('transformers', reason='transformers is not installed (the peer needs it)')
  import types
  from bert_jax import batches, mesh as mesh_lib
  from bert_jax.settings import MeshSettings
  peer_hf = load_script('peer_hf')
  args = types.SimpleNamespace(train_file='sample', dev_file='sample', vocab_dir='',
                               cache_dir=str(tmp_path))
  data = types.SimpleNamespace(**vars(args), version_2=False, max_query_length=64)
  sharding = mesh_lib.batch_sharding(mesh_lib.make_mesh(MeshSettings(num_devices=1)))
  train = benchmark.squad_features(data, 'train', 128, '')
  want, _ = benchmark._train_inputs(train, 4, 128, 0, sharding, 3, 0)
  got = peer_hf.squad_windows(args, 'train', 128, 4, 3)
  assert len(got) == 3 and not got[0]['attention_mask'].all()     # real windows: padding
  for g, w in zip(got, want):
    assert set(g) == set(w)
    for k in w:
      np.testing.assert_array_equal(g[k].numpy(), np.asarray(w[k]))
  dev = benchmark.squad_features(data, 'infer', 128, '')
  want = [b for b, _ in batches.spread_eval_batches(dev, 2, sharding, 3)]
  got = peer_hf.squad_windows(args, 'infer', 128, 2, 3)
  assert len(got) == 3
  for g, w in zip(got, want):
    assert set(g) == set(w)
    for k in w:
      np.testing.assert_array_equal(g[k].numpy(), np.asarray(w[k]))


def test_job_table_names_the_rows_and_scales_packed_and_padded_jobs_apart(tmp_path):
  job = {'schema': records.SCHEMA, 'kind': 'train', 'status': 'ok', 'source': 'train_and_evaluate',
         'config': 'large_1gpu', 'precision': 'bf16', 'seq_len': 384, 'batch_size_per_device': 32,
         'device': 'NVIDIA H200', 'time': '2026-11-28T06:00:00+00:00', 'mfu': 0.4}
  with open(tmp_path / 'records.jsonl', 'w') as f:
    for n, rate, extra in ((1, 600.0, {}), (1, 1200.0, {'packing': True}), (2, 1140.0, {}),
                           (1, 1000.0, {'bucket_width': 64})):
      f.write(json.dumps({**job, **extra, 'num_devices': n, 'batch_size': 32 * n,
                          'sentences_per_s': rate, 'sentences_per_s_per_device': rate / n}) + '\n')
  text = open(report.write(str(tmp_path))['report']).read()
  rows = [line for line in text.splitlines() if line.startswith('| large_1gpu')]
  assert [r.split(' | ')[3] for r in rows] == ['padded', 'padded', 'buckets of 64', 'packed']
  assert '1.90× (95 %)' in rows[1]          # the 2-GPU padded job against the padded one alone


def test_prediction_calls_script_times_the_job_loop_and_premade_batches(load_script, tmp_path):
  from helpers import ROOT
  pc = load_script('prediction_calls')
  sample = os.path.join(ROOT, 'bert_jax', 'sample_data')
  out = tmp_path / 'calls.jsonl'
  assert pc.main(['--dev-file', os.path.join(sample, 'dev.json'), '--vocab-dir', sample,
                  '--out', str(out), '--preset', 'tiny', '--seq', '64', '--windows', '40',
                  '--batch', '4', '--bucket-width', '32', '--precisions', 'fp32',
                  '--layers', 'unrolled', '--cache-dir', str(tmp_path / 'cache')]) == 0
  recs = [json.loads(line) for line in out.read_text().splitlines()]
  assert [(r['scan_layers'], r['bucket_width']) for r in recs] == [(False, 0), (False, 32)]
  for r in recs:
    assert r['windows'] == 40 and r['seq'] == 64
    assert r['attention'] == 'fused'   # the job's
    for way in ('job', 'overlap', 'ahead', 'premade', 'spin', 'sorted', 'same'):
      assert r[way]['calls'] >= 1 and r[way]['mean_ms'] > 0   # each width's first left out
      assert r[way]['loop_s'] * 1e3 > 0.99 * r[way]['mean_ms'] * r[way]['calls']
    assert r['sorted']['calls'] == r['same']['calls'] == r['premade']['calls']   # its calls
