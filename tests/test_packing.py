"""Sequence packing: the packer, the batches, and that a packed window trains as if alone."""
import json

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import batches, mesh as mesh_lib, model, packing, steps
from bert_jax.settings import ConfigError, DataSettings, EvalSettings, MeshSettings

from helpers import FP32, TINY, features, features_of_lengths, run_tiny_job


def _sharding(n=1):
  return mesh_lib.batch_sharding(mesh_lib.make_mesh(MeshSettings(num_devices=n)))


@pytest.mark.parametrize('max_windows', [1, 3, 8])
def test_pack_rows_places_every_window_once_within_the_row_and_the_cap(max_windows):
  rng = np.random.default_rng(0)
  lengths = rng.integers(3, 65, 500)
  rows = packing.pack_rows(lengths, rng.permutation(500), 64, max_windows)
  flat = np.concatenate(rows)
  assert sorted(flat.tolist()) == list(range(500))
  assert all(lengths[r].sum() <= 64 and 1 <= len(r) <= max_windows for r in rows)
  if max_windows == 1:
    assert len(rows) == 500
  else:   # best-fit decreasing: within a few % of a lower bound on any packing (full rows;
    # one row per window longer than half a row; full caps)
    bound = max(lengths.sum() / 64, (lengths > 32).sum(), 500 / max_windows)
    assert bound <= len(rows) <= 1.03 * bound + 1
  # the row count (and each row's lengths) depends on the lengths alone, not on the order
  other = packing.pack_rows(lengths, rng.permutation(500), 64, max_windows)
  assert sorted(sorted(lengths[r].tolist()) for r in other) == sorted(
      sorted(lengths[r].tolist()) for r in rows)


def test_packed_batches_are_a_pure_function_of_step_and_hold_each_window_whole():
  rng = np.random.default_rng(1)
  lengths = rng.integers(5, 65, 301)
  feats = features_of_lengths(lengths)
  feats.token_type_ids[:] = (np.arange(64)[None] >= 3) * feats.attention_mask
  a = packing.PackedBatches(feats, 8, 5, _sharding(8), max_windows=4)
  b = packing.PackedBatches(feats, 8, 5, _sharding(8), max_windows=4)
  assert a.steps_per_epoch == a.rows_per_epoch // 8 and a.rows_per_epoch < 301
  for epoch in (0, 1):
    steps_ = range(epoch * a.steps_per_epoch, (epoch + 1) * a.steps_per_epoch)
    seen = np.concatenate([a.indices(s) for s in steps_])
    assert len(seen) == len(set(seen.tolist()))                 # no window twice an epoch
    assert len(seen) > 301 - 8 * 4                               # at most a step's rows dropped
  np.testing.assert_array_equal(a.indices(13), b.indices(13))     # resumable
  assert not np.array_equal(a.indices(0), a.indices(a.steps_per_epoch))
  assert 0.4 < a.token_share() < 1.0
  host = a.host_batch(3)
  for r, windows in enumerate(a.step_rows(3)):
    for k, w in enumerate(windows):
      at, n = host['segment_starts'][r, k], host['segment_lengths'][r, k]
      assert n == lengths[w]
      span = slice(at, at + n)
      np.testing.assert_array_equal(host['input_ids'][r, span], feats.input_ids[w, :n])
      np.testing.assert_array_equal(host['token_type_ids'][r, span], feats.token_type_ids[w, :n])
      np.testing.assert_array_equal(host['position_ids'][r, span], np.arange(n))
      assert (host['segment_ids'][r, span] == k + 1).all()
      assert host['start_positions'][r, k] == at + feats.start_positions[w]
    used = len(windows)
    assert (host['start_positions'][r, used:] == -1).all()
    end = host['segment_lengths'][r, :used].sum()
    assert (host['segment_ids'][r, end:] == 0).all() and (host['attention_mask'][r, end:] == 0).all()
    if end < 64:    # the padding is one more segment, so the segments tile the row
      assert host['segment_starts'][r, used] == end and host['segment_lengths'][r, used] == 64 - end
  assert a.windows(3) == sum(len(r) for r in a.step_rows(3))
  # label and segment arrays as wide as the fullest row: the same in every epoch
  assert a.row_windows == max(len(r) for r in a._rows(1)) <= 4
  assert host['start_positions'].shape == (8, a.row_windows)
  assert host['segment_starts'].shape == (8, a.row_windows + 1)


def _windows(rng, lengths, width=64):
  ids = np.zeros((len(lengths), width), np.int32)
  types = np.zeros_like(ids)
  for i, n in enumerate(lengths):
    ids[i, :n] = rng.integers(1, 101, n)
    types[i, n // 2:n] = 1
  mask = (np.arange(width)[None] < np.asarray(lengths)[:, None]).astype(np.int32)
  return ids, types, mask


def _packed(ids, types, mask, rows, starts, ends, max_windows=3):
  feats = features(ids, types, mask, starts, ends)
  return {k: jnp.asarray(v) for k, v in
          packing.pack_host_rows(feats, [np.asarray(r) for r in rows], max_windows).items()}


@pytest.mark.parametrize('attention', ['xla', 'fused'])
def test_a_packed_window_gives_the_logits_it_gives_alone(attention):
  config = TINY.replace(attention=attention)
  params = model.init_params(jax.random.PRNGKey(0), config)
  rng = np.random.default_rng(2)
  lengths = [20, 27, 9, 40]
  ids, types, mask = _windows(rng, lengths)
  alone_s, alone_e = model.qa_logits(params, ids, types, mask, config=config, policy=FP32)
  batch = _packed(ids, types, mask, [[0, 1, 2], [3]], [0] * 4, [0] * 4)
  segs = packing.segments_of(batch)
  got_s, got_e = model.qa_logits(params, batch['input_ids'], batch['token_type_ids'],
                                 batch['attention_mask'], config=config, policy=FP32,
                                 segments=segs)
  for w, (row, at) in {0: (0, 0), 1: (0, 20), 2: (0, 47), 3: (1, 0)}.items():
    n = lengths[w]
    np.testing.assert_allclose(got_s[row, at:at + n], alone_s[w, :n], atol=2e-5)
    np.testing.assert_allclose(got_e[row, at:at + n], alone_e[w, :n], atol=2e-5)


def test_packed_loss_and_gradients_equal_the_padded_batch_of_the_same_windows():
  """Both losses run each window's softmax over its own tokens only."""
  params = model.init_params(jax.random.PRNGKey(1), TINY)
  rng = np.random.default_rng(3)
  lengths = [30, 12, 17, 50]
  ids, types, mask = _windows(rng, lengths)
  starts, ends = np.asarray([3, 0, 16, 22]), np.asarray([8, 0, 16, 40])
  packed = _packed(ids, types, mask, [[0, 1, 2], [3]], starts, ends)
  padded = {'input_ids': ids, 'token_type_ids': types, 'attention_mask': mask,
            'start_positions': starts, 'end_positions': ends}

  want, want_g = jax.value_and_grad(
      lambda p: steps.span_loss(p, padded, None, config=TINY, policy=FP32))(params)
  got, got_g = jax.value_and_grad(
      lambda p: steps.span_loss(p, packed, None, config=TINY, policy=FP32))(params)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  for g, w in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g)):
    np.testing.assert_allclose(g, w, atol=2e-6, rtol=2e-4)
  assert np.isfinite(np.concatenate([np.ravel(g) for g in jax.tree.leaves(got_g)])).all()


@pytest.mark.parametrize('devices,attention', [(1, 'xla'), (8, 'fused')])
def test_packed_prediction_gives_each_window_its_padded_logits(devices, attention):
  from bert_jax import inference
  config = TINY.replace(attention=attention)
  lengths = [5, 64, 30, 12, 40, 33, 7, 64, 20, 28, 50, 9, 61, 44, 38, 17]
  feats = features_of_lengths(lengths)
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=devices))
  params = model.init_params(jax.random.PRNGKey(4), config)
  want_s, want_e, _ = inference.predict_logits(params, feats, mesh, config, FP32, 8)
  got_s, got_e, timing = inference.predict_logits(params, feats, mesh, config, FP32, 8,
                                                  packed=True, max_windows=3)
  assert timing['packed'] and got_s.shape == want_s.shape == (16, 64)
  for w, n in enumerate(lengths):
    np.testing.assert_allclose(got_s[w, :n], want_s[w, :n], atol=2e-5)
    np.testing.assert_allclose(got_e[w, :n], want_e[w, :n], atol=2e-5)
    assert (got_s[w, n:] == packing.OUTSIDE_LOGIT).all()
    assert (got_e[w, n:] == packing.OUTSIDE_LOGIT).all()
  # 16 windows, 522 tokens: more than 8 rows of 64, so two calls of 8 rows, the first untimed
  source = packing.PackedEval(feats, 8, _sharding(devices), 3)
  assert len(source) == 2 and timing['windows_per_call'] == [source.windows(1)]
  assert source.windows(0) + source.windows(1) == 16
  assert max(len(r) for call in source.calls for r in call) <= 3


@pytest.mark.parametrize('devices,attention,grouped', [(1, 'xla', False), (1, 'xla', True),
                                                       (8, 'fused', True)])
def test_bucketed_prediction_gives_each_window_its_padded_logits(devices, attention, grouped):
  from bert_jax import inference
  config = TINY.replace(attention=attention)
  # 8 windows a call; consecutive windows (grouped=False): the longest of each call sets its
  # width
  calls = [[5, 9, 12, 7, 3, 14, 10, 2], [30, 5, 64, 12, 9, 20, 3, 8],
           [20, 33, 4, 9, 17, 6, 2, 11], [1, 16, 4, 4, 8, 3, 2, 6]]
  lengths = np.array(sum(calls, []))
  feats = features_of_lengths(lengths)
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=devices))
  params = model.init_params(jax.random.PRNGKey(4), config)
  want_s, want_e, _ = inference.predict_logits(params, feats, mesh, config, FP32, 8)
  got_s, got_e, timing = inference.predict_logits(params, feats, mesh, config, FP32, 8,
                                                  bucket_width=16, group_by_width=grouped)
  assert got_s.shape == want_s.shape == (32, 64) and timing['bucket_width'] == 16
  assert timing['group_by_width'] == grouped
  if grouped:
    # in order of width: 26 windows of 16 (three calls of 16), then a call of 64 holding
    # the last two of 16 (windows 30 and 31, the sort being stable), four of 32, 48 and 64
    cut = np.where(lengths > 16, 64, 16)
    cut[[30, 31]] = 64
    assert timing['widths'] == [16, 64]
  else:
    cut = np.repeat([16, 64, 48, 16], 8)
    assert timing['widths'] == [16, 48, 64]
  for w, n in enumerate(lengths):
    np.testing.assert_allclose(got_s[w, :n], want_s[w, :n], atol=2e-5)
    np.testing.assert_allclose(got_e[w, :n], want_e[w, :n], atol=2e-5)
    # past its call's width: no logit
    assert (got_s[w, cut[w]:] == packing.OUTSIDE_LOGIT).all()
    assert (got_e[w, cut[w]:] == packing.OUTSIDE_LOGIT).all()
  # each width's first call compiles and is left untimed
  timed = 2 if grouped else 1
  assert len(timing['latencies_ms']) == timed and timing['windows_per_call'] == [8] * timed


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(st.lists(st.integers(1, 64), min_size=1, max_size=40),
                  st.sampled_from([8, 16, 32]))
def test_width_order_is_a_stable_permutation_narrowest_first(lengths, bucket_width):
  feats = features_of_lengths(lengths)
  order = batches.width_order(feats, bucket_width)
  widths = batches.bucket_widths(feats, bucket_width)[order]
  assert sorted(order) == list(range(len(lengths)))
  assert (np.diff(widths) >= 0).all()
  for w in set(widths):   # within a width, the features' order
    assert (np.diff(order[widths == w]) > 0).all()


def _cudnn_prediction_matches_padded(precision, lengths, **how):
  """predict_logits on cuDNN attention with `how` (packed=True or bucket_width=...) against
  the padded calls: each window's logits at its positions, within half-precision rounding.
  Returns the timing of the calls made `how`."""
  from bert_jax import inference
  from bert_jax.precision import PrecisionPolicy
  # token i of a window has id i + 1 (features_of_lengths): up to 128, so a vocabulary of
  # 129 (TINY's 101 gave the ids past it NaN embeddings, and NaN logits on both sides)
  config = TINY.replace(vocab_size=129, hidden_size=128, num_heads=2, intermediate_size=256,
                        max_position_embeddings=128, attention='cudnn')
  feats = features_of_lengths(lengths, width=128)
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=1))
  policy = PrecisionPolicy(precision)
  params = model.init_params(jax.random.PRNGKey(6), config)
  want_s, want_e, _ = inference.predict_logits(params, feats, mesh, config, policy, 8)
  assert np.isfinite(want_s).all() and np.isfinite(want_e).all()
  got_s, got_e, timing = inference.predict_logits(params, feats, mesh, config, policy, 8, **how)
  for w, n in enumerate(lengths):
    np.testing.assert_allclose(got_s[w, :n], want_s[w, :n], atol=0.05)
    np.testing.assert_allclose(got_e[w, :n], want_e[w, :n], atol=0.05)
  return timing


@pytest.mark.skipif(jax.default_backend() != 'gpu', reason='cuDNN packed attention needs a GPU')
@pytest.mark.parametrize('precision', ['fp16', 'bf16'])
def test_packed_prediction_on_cudnn_gives_the_padded_logits_on_gpu(precision):
  lengths = np.random.default_rng(5).integers(10, 129, 40)
  timing = _cudnn_prediction_matches_padded(precision, lengths, packed=True)
  assert len(timing['latencies_ms']) < 4   # 40 windows in fewer than 5 calls of 8 rows


@pytest.mark.skipif(jax.default_backend() != 'gpu', reason='cuDNN attention needs a GPU')
@pytest.mark.parametrize('precision', ['fp16', 'bf16'])
def test_bucketed_prediction_on_cudnn_gives_the_padded_logits_on_gpu(precision):
  # widths of 16-128, not only multiples of 64: eval.bucket_width takes any multiple of 8
  lengths = np.random.default_rng(7).integers(3, 129, 40)
  lengths[:8] = np.minimum(lengths[:8], 16)        # one call cut to 16
  timing = _cudnn_prediction_matches_padded(precision, lengths, bucket_width=16)
  assert timing['widths'][0] == 16 and len(timing['widths']) >= 2


def test_packed_prediction_refuses_a_row_count_the_devices_do_not_split():
  with pytest.raises(ConfigError, match='eval.batch_size.*multiple of the 8 devices'):
    packing.PackedEval(features_of_lengths([10, 20]), 12, _sharding(8), 4)


def test_packing_settings_refuse_bad_values():
  with pytest.raises(ConfigError, match='data.bucket_width.*packing'):
    DataSettings(packing=True, bucket_width=64)
  with pytest.raises(ConfigError, match='eval.bucket_width.*eval.packing'):
    EvalSettings(packing=True, bucket_width=64)
  with pytest.raises(ConfigError, match='eval.bucket_width.*multiple of 8'):
    EvalSettings(bucket_width=60)
  with pytest.raises(ConfigError, match='data.max_windows_per_row'):
    DataSettings(packing=True, max_windows_per_row=0)
  feats = features_of_lengths([60] * 10)
  with pytest.raises(ConfigError, match='train.batch_size.*pack into'):
    packing.PackedBatches(feats, 16, 0, _sharding(1), max_windows=4)


def test_packed_training_runs_learns_and_counts_windows(tmp_path):
  # rows of 160: the sample contexts are short, so two windows (67-74 tokens) share a row
  out = run_tiny_job(tmp_path / 'p', '--config.data.packing=True', '--config.train.batch_size=8',
             '--config.eval.packing=True', '--config.eval.batch_size=4',
             '--config.train.num_epochs=2', '--config.data.max_seq_length=160',
             '--config.data.doc_stride=64')
  assert out.returncode == 0, out.stderr[-2000:]
  res = json.loads((tmp_path / 'p' / 'eval_results.json').read_text())
  assert res['packing'] is True and res['compiled_widths'] == [160]
  rec, infer = [json.loads(line) for line in open(tmp_path / 'p' / 'records.jsonl')]
  assert rec['packing'] is True and rec['sentences_per_s'] > 1.3 * rec['rows_per_s']
  # the dev windows packed too (eval.packing): 4 rows a call, more windows than rows a second
  assert res['eval_packing'] is True and infer['packing'] is True and infer['batch_size'] == 4
  lat = infer['latency_ms']
  assert infer['sentences_per_s'] > 1.3 * 4 / (lat['mean'] / 1e3)
  assert res['f1'] > 0
  losses = [json.loads(line)['loss'] for line in open(tmp_path / 'p' / 'metrics.jsonl')]
  assert losses[-1] < 0.7 * losses[0]
  # the same checkpoint evaluated again, its calls cut to buckets of 32 instead of packed:
  # the windows' 67-74 tokens fit 96, and the answers are the packed calls' (the same
  # logits to float rounding: a near tie may flip an answer, not many)
  packed = json.loads((tmp_path / 'p' / 'predictions.json').read_text())
  out = run_tiny_job(tmp_path / 'p', '--mode=evaluate', '--config.data.max_seq_length=160',
                     '--config.data.doc_stride=64', '--config.eval.bucket_width=32',
                     '--config.eval.batch_size=4')
  assert out.returncode == 0, out.stderr[-2000:]
  got = json.loads(out.stdout[out.stdout.index('{'):])
  assert got['inference_widths'] == [96] and got['eval_features'] == res['eval_features']
  assert got['eval_group_by_width'] and got['inference_warmup_s'] > 0
  cut = json.loads((tmp_path / 'p' / 'predictions.json').read_text())
  assert cut.keys() == packed.keys()
  assert sum(cut[q] == packed[q] for q in cut) >= 0.95 * len(cut)
  assert abs(got['f1'] - res['f1']) < 2


@pytest.mark.skipif(jax.default_backend() != 'gpu', reason='cuDNN packed attention needs a GPU')
def test_cudnn_packed_attention_matches_the_einsum_path_on_gpu():
  from bert_jax import attention as attn
  rng = np.random.default_rng(4)
  b, t, n, h = 4, 384, 16, 64
  lengths = [[200, 150, -1], [384, -1, -1], [100, 100, 150], [300, 84, -1]]
  seg = np.zeros((b, t), np.int32)
  starts = np.full((b, 4), -1, np.int32)
  lens = np.full((b, 4), -1, np.int32)
  for r, row in enumerate(lengths):
    at = 0
    for k, m in enumerate(x for x in row if x > 0):
      seg[r, at:at + m] = k + 1
      starts[r, k], lens[r, k] = at, m
      at += m
    if at < t:
      starts[r, k + 1], lens[r, k + 1] = at, t - at
  q, k_, v = (jnp.asarray(rng.normal(size=(b, t, n, h)), jnp.bfloat16) for _ in range(3))
  ct = jnp.asarray(rng.normal(size=(b, t, n, h)), jnp.bfloat16)

  def run(fn):
    out, vjp = jax.vjp(fn, q, k_, v)
    return (out, *vjp(ct))

  fused = run(lambda q, k, v: attn.packed_fused_attention(q, k, v, starts, lens))
  ref = run(lambda q, k, v: attn.xla_attention(q, k, v, attn.segment_mask(jnp.asarray(seg)),
                                               precision=None))
  for got, want in zip(fused, ref):
    err = np.abs(np.asarray(got, np.float32) - np.asarray(want, np.float32)).max()
    assert err < 0.05 * max(1.0, float(np.abs(np.asarray(want, np.float32)).max())), err


def test_packed_train_step_on_a_mesh_matches_one_device():
  """The jitted train step over packed rows split across 8 devices gives the one-device loss
  and update (the rows' segment arrays are split with them)."""
  from bert_jax import batches, benchmark, optim, train
  from bert_jax.settings import TrainSettings
  rng = np.random.default_rng(5)
  feats = features_of_lengths(rng.integers(8, 40, 64))
  feats.start_positions[:] = 1
  feats.end_positions[:] = 3
  rows = packing.pack_rows(feats.attention_mask.sum(1), np.arange(64), 64, 4)[:8]
  host = packing.pack_host_rows(feats, rows, 4)
  opt = optim.make_optimizer(TrainSettings(), 1000)
  out = {}
  for n in (1, 8):
    mesh = mesh_lib.make_mesh(MeshSettings(num_devices=n))
    key = jax.random.PRNGKey(0)
    state = benchmark.random_train_state(mesh, TINY, FP32, opt, key, key)
    batch = batches.to_device(host, mesh_lib.batch_sharding(mesh))
    new, metrics = train.jit_train_step(mesh, TINY, FP32, opt)(state, batch)
    out[n] = (metrics['loss'], new.params)
  np.testing.assert_allclose(out[8][0], out[1][0], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(out[8][1]), jax.tree.leaves(out[1][1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
