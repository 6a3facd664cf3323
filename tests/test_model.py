"""The model against transformers' PyTorch BERT, and its properties."""
import numpy as np
import pytest

import jax
import jax.numpy as jnp
from bert_jax import hf_weights, model
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy
from helpers import FP32, TINY


def random_batch(rng, vocab, batch=3, length=24):
  ids = rng.integers(1, vocab, (batch, length))
  types = (np.arange(length)[None] > rng.integers(3, length // 2, (batch, 1))).astype(np.int64)
  lengths = rng.integers(length // 3, length + 1, batch)
  lengths[0] = length
  mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int64)
  return ids * mask, types * mask, mask


def torch_logits(hf_model, ids, types, mask):
  import torch   # the callers' torch_hf fixture has skipped where it is absent
  with torch.no_grad():
    out = hf_model(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(types),
                   attention_mask=torch.tensor(mask))
  return out.start_logits.numpy(), out.end_logits.numpy()


@pytest.fixture(scope='module')
def random_hf(tmp_path_factory, torch_hf):
  torch, transformers = torch_hf
  torch.manual_seed(0)
  config = transformers.BertConfig(
      vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=48, max_position_embeddings=64, type_vocab_size=2)
  hf = transformers.BertForQuestionAnswering(config).eval()
  folder = str(tmp_path_factory.mktemp('random_hf'))
  hf.save_pretrained(folder)
  return hf, folder


@pytest.mark.parametrize('attention', ['xla', 'fused'])
def test_parity_random_config(random_hf, attention):
  hf, folder = random_hf
  pre = hf_weights.load_folder(folder, attention=attention)
  assert pre.has_qa_head
  ids, types, mask = random_batch(np.random.default_rng(1), 101)
  want_s, want_e = torch_logits(hf, ids, types, mask)
  got_s, got_e = model.qa_logits(pre.params, ids, types, mask, config=pre.config, policy=FP32)
  live = mask.astype(bool)
  assert np.abs(np.asarray(got_s) - want_s)[live].max() <= 1e-4
  assert np.abs(np.asarray(got_e) - want_e)[live].max() <= 1e-4


def test_parity_pretrained_minilm(minilm, minilm_tokenizer, torch_hf):
  """The real checkpoint (fp16 on disk, keys without 'bert.'), QA head copied across."""
  torch, transformers = torch_hf
  torch.manual_seed(0)
  hf = transformers.BertForQuestionAnswering.from_pretrained(minilm, dtype=torch.float32).eval()
  pre = hf_weights.load_folder(minilm)
  assert not pre.has_qa_head and pre.config.num_layers == 6
  params = dict(pre.params)
  params['qa'] = {'kernel': hf.qa_outputs.weight.detach().numpy().T,
                  'bias': hf.qa_outputs.bias.detach().numpy()}
  enc = minilm_tokenizer(['Who founded the town?', 'When?'],
                         ['The town was founded by a miller in 1409.', 'In 1409, said Ada.'],
                         padding='max_length', max_length=32, return_tensors='np')
  args = (enc['input_ids'], enc['token_type_ids'], enc['attention_mask'])
  want_s, want_e = torch_logits(hf, *args)
  got_s, got_e = model.qa_logits(params, *args, config=pre.config, policy=FP32)
  live = enc['attention_mask'].astype(bool)
  assert np.abs(np.asarray(got_s) - want_s)[live].max() <= 1e-4
  assert np.abs(np.asarray(got_e) - want_e)[live].max() <= 1e-4


@pytest.mark.parametrize('attention', ['xla', 'fused'])
def test_masked_tokens_do_not_leak(attention):
  """Changing tokens under the mask leaves every unmasked logit unchanged."""
  config = TINY.replace(attention=attention)
  params = model.init_params(jax.random.PRNGKey(0), config)
  rng = np.random.default_rng(2)
  for _ in range(3):
    ids, types, mask = random_batch(rng, 101)
    noisy = np.where(mask == 1, ids, rng.integers(1, 101, ids.shape))
    a = model.qa_logits(params, ids, types, mask, config=config, policy=FP32)
    b = model.qa_logits(params, noisy, types, mask, config=config, policy=FP32)
    live = mask.astype(bool)
    for x, y in zip(a, b):
      np.testing.assert_allclose(np.asarray(x)[live], np.asarray(y)[live], atol=1e-5)


def test_jitted_init_gives_the_eager_values():
  """init_params is jitted (one compile, not one a weight shape): the weights the function
  gives run op by op, to float32 rounding (the same random bits; the scaling fused into the
  program may round the last bit otherwise, as here under the tests' -O0)."""
  key = jax.random.PRNGKey(7)
  jitted = model.init_params(key, TINY)
  eager = model.init_params.__wrapped__(key, TINY)
  assert jax.tree.structure(jitted) == jax.tree.structure(eager)
  for x, y in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=0)


def test_jit_equals_no_jit():
  params = model.init_params(jax.random.PRNGKey(1), TINY)
  ids, types, mask = random_batch(np.random.default_rng(3), 101)
  fn = lambda p, i, t, m: model.qa_logits(p, i, t, m, config=TINY, policy=FP32)
  eager = fn(params, ids, types, mask)
  jitted = jax.jit(fn)(params, ids, types, mask)
  for x, y in zip(eager, jitted):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)


@pytest.mark.parametrize('name,dtype', [('fp32', jnp.float32), ('bf16', jnp.bfloat16),
                                        ('fp16', jnp.float16)])
def test_dtypes_per_policy(name, dtype):
  policy = PrecisionPolicy(name)
  params = model.init_params(jax.random.PRNGKey(0), TINY)
  ids, types, mask = random_batch(np.random.default_rng(4), 101)
  hidden = model.encode(params, ids, types, mask, config=TINY, policy=policy)
  start, end = model.qa_logits(params, ids, types, mask, config=TINY, policy=policy)
  assert hidden.dtype == dtype
  assert start.dtype == end.dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  full = model.qa_logits(params, ids, types, mask, config=TINY, policy=FP32)[0]
  tol = {'fp32': 1e-5, 'bf16': 0.1, 'fp16': 0.02}[name]
  live = mask.astype(bool)
  assert np.abs(np.asarray(start) - np.asarray(full))[live].max() < tol


@pytest.mark.parametrize('policy', ['fp32', 'bf16'])
def test_attention_paths_agree(policy):
  params = model.init_params(jax.random.PRNGKey(5), TINY)
  ids, types, mask = random_batch(np.random.default_rng(5), 101)
  pol = PrecisionPolicy(policy)
  a = model.qa_logits(params, ids, types, mask, config=TINY.replace(attention='xla'), policy=pol)
  b = model.qa_logits(params, ids, types, mask, config=TINY.replace(attention='fused'),
                      policy=pol)
  live = mask.astype(bool)
  tol = 1e-5 if policy == 'fp32' else 0.05
  for x, y in zip(a, b):
    assert np.abs(np.asarray(x) - np.asarray(y))[live].max() < tol


@pytest.mark.parametrize('implementation', [None, 'cudnn'])
def test_fused_attention_skips_padded_queries(implementation):
  """The fused path gives zeros at padded queries (cuDNN does no work for them) and the einsum
  path's output at real ones; on GPU, cuDNN's too (bf16)."""
  from bert_jax import attention as attn
  if implementation == 'cudnn' and jax.default_backend() != 'gpu':
    pytest.skip('cuDNN attention needs a GPU')
  dtype, tol = (jnp.float32, 1e-5) if implementation is None else (jnp.bfloat16, 2e-2)
  rng = np.random.default_rng(7)
  q, k, v = (jnp.asarray(rng.normal(size=(3, 256, 2, 64)), dtype) for _ in range(3))
  mask = np.arange(256)[None] < np.asarray([256, 129, 40])[:, None]
  with jax.default_matmul_precision('float32'):   # JAX's XLA path: no TF32 on a GPU
    fused = np.asarray(attn.fused_attention(q, k, v, jnp.asarray(mask),
                                            implementation=implementation), np.float32)
  einsum = np.asarray(attn.xla_attention(q, k, v, jnp.asarray(mask), precision='highest'),
                      np.float32)
  np.testing.assert_allclose(fused[mask], einsum[mask], atol=tol)
  assert not fused[~mask].any()


def test_dropout_is_random_and_off_without_rng():
  config = TINY.replace(hidden_dropout=0.3, attention_dropout=0.3)
  params = model.init_params(jax.random.PRNGKey(0), config)
  ids, types, mask = random_batch(np.random.default_rng(6), 101)
  run = lambda rng: np.asarray(model.qa_logits(params, ids, types, mask, config=config,
                                               policy=FP32, dropout_rng=rng)[0])
  assert np.array_equal(run(None), run(None))
  assert not np.allclose(run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(2)))


@pytest.mark.parametrize('shape,rate,expected_rate', [
    ((32, 64, 128), 0.1, 26 / 256),    # byte masks: 0.1 -> round(25.6) / 256
    ((32, 64, 128), 0.25, 0.25),       # exactly 64 / 256
    ((32, 64, 127), 0.1, 0.1),         # last axis not a multiple of 4: one float draw each
    ((32, 64, 128), 0.001, 0.001)])    # too far from a byte step: one float draw each
def test_dropout_rate_and_expectation(shape, rate, expected_rate):
  x = jnp.ones(shape, jnp.float32)
  y = model._dropout(x, rate, jax.random.PRNGKey(3))
  dropped = float(jnp.mean(y == 0))
  n = x.size
  assert abs(dropped - expected_rate) < 5 * (expected_rate * (1 - expected_rate) / n) ** 0.5
  kept = np.unique(np.asarray(y[y != 0]))
  np.testing.assert_allclose(kept, [1 / (1 - expected_rate)], rtol=1e-6)  # unbiased scale
  y2 = model._dropout(x, rate, jax.random.PRNGKey(4))
  assert not np.array_equal(np.asarray(y), np.asarray(y2))


@pytest.mark.parametrize('policy', ['fp32', 'bf16'])
def test_stacked_layers_give_the_same_logits_and_gradients(policy):
  config = ModelConfig.preset('tiny')
  params = model.init_params(jax.random.PRNGKey(0), config)
  stacked = model.stack_layers(params)
  assert len(jax.tree.leaves(stacked)) == 5 + 12 + 2
  first = params['layers'][0]['qkv']['kernel']
  assert stacked['layers']['qkv']['kernel'].shape == (config.num_layers, *first.shape)
  assert model.stack_layers(stacked) is stacked
  ids = jnp.asarray(np.random.default_rng(0).integers(0, config.vocab_size, (2, 16)))
  mask = jnp.ones_like(ids).at[1, 9:].set(0)

  def loss(p):
    s, e = model.qa_logits(p, ids, jnp.zeros_like(ids), mask, config=config,
                           policy=PrecisionPolicy(policy), dropout_rng=jax.random.PRNGKey(3))
    return jnp.sum(s * e)
  np.testing.assert_array_equal(loss(params), loss(stacked))
  g, g_stacked = jax.grad(loss)(params), jax.grad(loss)(stacked)
  for i, layer in enumerate(model.layer_params(g_stacked['layers'])):
    for a, b in zip(jax.tree.leaves(g['layers'][i]), jax.tree.leaves(layer)):
      np.testing.assert_array_equal(a, b)


def test_traced_stacks_are_cut_in_place_with_jnp_splits_numbers(monkeypatch):
  # a jitted step's stacked matrices are cut at indices XLA cannot fold (so each layer's cast
  # reads its slice in place, performance_notes 70); weights bound into a program, and
  # vectors, by jnp.split. Both give the same logits and gradients, bit for bit.
  config = ModelConfig.preset('tiny').replace(hidden_dropout=0.0, attention_dropout=0.0)
  stacked = model.stack_layers(model.init_params(jax.random.PRNGKey(0), config))
  ids = jnp.asarray(np.random.default_rng(0).integers(0, config.vocab_size, (2, 16)))

  def loss(p):
    s, e = model.qa_logits(p, ids, jnp.zeros_like(ids), jnp.ones_like(ids), config=config,
                           policy=PrecisionPolicy('bf16'))
    return jnp.sum(s ** 2) + jnp.sum(e * jnp.arange(16))

  step = jax.jit(jax.value_and_grad(loss))
  assert 'dynamic_slice' in step.lower(stacked).as_text()
  assert 'dynamic_slice' not in jax.jit(lambda: loss(stacked)).lower().as_text()
  in_place = step(stacked)
  monkeypatch.setattr(model, '_split_stack', model._split_static)
  static = jax.jit(jax.value_and_grad(loss))(stacked)
  for a, b in zip(jax.tree.leaves(in_place), jax.tree.leaves(static)):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize('policy', ['fp32', 'bf16', 'fp16'])
def test_inference_params_give_the_same_logits(policy):
  import bert_jax
  from bert_jax import steps
  config = ModelConfig.preset('tiny')
  pol = PrecisionPolicy(policy)
  params = model.init_params(jax.random.PRNGKey(0), config)
  prepared = bert_jax.prepare_params(params, pol)   # the notebook API's name for it
  # unrolled: biases and LayerNorm stacked (8), each layer's 4 kernels arrays of their own
  assert len(jax.tree.leaves(prepared)) == 5 + 8 + 4 * config.num_layers + 2
  assert prepared['layers']['kernels'][1]['ffn_in'].dtype == pol.compute_dtype
  assert prepared['layers']['stacked']['ffn_in']['bias'].dtype == jnp.float32  # kernels only
  scanned = bert_jax.prepare_params(params, pol, scan_layers=True)
  assert len(jax.tree.leaves(scanned)) == 5 + 12 + 2
  assert scanned['layers']['ffn_in']['kernel'].dtype == pol.compute_dtype
  ids = jnp.asarray(np.random.default_rng(1).integers(0, config.vocab_size, (3, 16)))
  batch = {'input_ids': ids, 'token_type_ids': jnp.zeros_like(ids),
           'attention_mask': jnp.ones_like(ids).at[0, 5:].set(0)}
  run = jax.jit(lambda p, b: steps.eval_step(p, b, config=config, policy=pol))
  logits = run(params, batch)        # one [B, T, 2] array: qa_logits' start and end
  assert logits.shape == (3, 16, 2)
  start, end = jax.jit(lambda p, b: model.qa_logits(p, *(b[k] for k in steps.INPUT_KEYS),
                                                    config=config, policy=pol))(params, batch)
  np.testing.assert_allclose(logits[..., 0], start, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(logits[..., 1], end, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(logits, run(prepared, batch))
  scan = jax.jit(lambda p, b: steps.eval_step(p, b, config=config, policy=pol, scan_layers=True))
  np.testing.assert_allclose(run(params, batch), scan(scanned, batch), rtol=1e-5, atol=1e-5)


def test_split_kernels_holds_the_same_layers():
  config = ModelConfig.preset('tiny').replace(num_layers=3)
  params = model.init_params(jax.random.PRNGKey(0), config)
  split = model.split_kernels(params)
  assert [sorted(k) for k in split['layers']['kernels']] == [
      ['attn_out', 'ffn_in', 'ffn_out', 'qkv']] * 3
  assert 'kernel' not in split['layers']['stacked']['qkv']
  np.testing.assert_equal(jax.tree.map(np.asarray, model.split_kernels(split)),
                          jax.tree.map(np.asarray, split))
  for form in (model.stack_layers(split), model.unstack_layers(split)):
    want = jax.tree.map(np.asarray, model.stack_layers(params))
    np.testing.assert_equal(jax.tree.map(np.asarray, model.stack_layers(form)), want)
  for got, layer in zip(model.layer_params(split['layers']), params['layers']):
    np.testing.assert_equal(jax.tree.map(np.asarray, got), jax.tree.map(np.asarray, layer))


@pytest.mark.parametrize('policy', ['fp32', 'bf16'])
@pytest.mark.parametrize('dropout', [False, True])
def test_scanned_layers_give_the_unrolled_logits(policy, dropout, monkeypatch):
  """scan_layers runs the same layers (each with its own dropout key) as one lax.scan, from
  the stacked params or from a list, and is one loop in the compiled HLO."""
  config = ModelConfig.preset('tiny').replace(num_layers=3)
  pol = PrecisionPolicy(policy)
  params = model.init_params(jax.random.PRNGKey(0), config)
  stacked = model.stack_layers(params)
  ids = jnp.asarray(np.random.default_rng(2).integers(0, config.vocab_size, (2, 16)))
  mask = jnp.ones_like(ids).at[1, 11:].set(0)
  key = jax.random.PRNGKey(5) if dropout else None

  def logits(p, scan, rng=key):
    return jax.jit(lambda p: model.qa_logits(p, ids, jnp.zeros_like(ids), mask, config=config,
                                             policy=pol, dropout_rng=rng, scan_layers=scan))(p)
  want = logits(stacked, False)
  for p in (stacked, params):
    for a, b in zip(want, logits(p, True)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  if dropout:   # dropout changes the logits, so matching the loop means each layer drew its key
    assert not np.allclose(want[0], logits(stacked, False, None)[0], atol=1e-3)
  monkeypatch.setattr(model, 'SCAN_UNROLL', 2)   # two layers a trip, one left over
  for a, b in zip(want, logits(stacked, True)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  hlo = jax.jit(lambda p: model.qa_logits(p, ids, jnp.zeros_like(ids), mask, config=config,
                                           policy=pol, scan_layers=True)).lower(stacked).as_text()
  assert hlo.count('stablehlo.while') == 1


@pytest.mark.parametrize('ratio, tol', [(0.0, 1e-6), (1.0, 1e-6), (10.0, 1e-5), (100.0, 1e-3)])
def test_layer_norm_one_pass_statistics_stay_accurate(ratio, tol):
  """_ln_stats takes var as E[x^2] - E[x]^2 (one pass). Against float64's two-pass variance:
  exact to float32 rounding for rows whose |mean| is near their spread, and within 1e-3
  (relative, in 1 / sqrt(var + eps)) even at |mean| = 100 std."""
  x = np.random.default_rng(0).normal(size=(64, 1024))
  x = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True) * 0.7 + ratio * 0.7
  mean, rstd = model._ln_stats(jnp.asarray(x, jnp.float32), 1e-12)
  x64 = np.asarray(jnp.asarray(x, jnp.float32), np.float64)
  want = 1 / np.sqrt(x64.var(-1, keepdims=True) + 1e-12)
  np.testing.assert_allclose(np.asarray(rstd), want, rtol=tol)
  np.testing.assert_allclose(np.asarray(mean), x64.mean(-1, keepdims=True), rtol=1e-6, atol=1e-6)


def test_layer_norm_variance_that_rounds_below_zero_is_clamped():
  """For a constant row E[x^2] - E[x]^2 can round below zero (0.3 and -7.77 in float32 do):
  the clamp keeps rstd at 1 / sqrt(eps) and the output finite instead of NaN. (With BERT's eps
  of 1e-12 neither formula gives such a row its bias back: x - mean is rounding noise times
  1e6 either way.)"""
  for value in (0.3, -7.77):
    x = jnp.full((2, 3, 64), value, jnp.float32)
    assert float(jnp.max(jnp.mean(x * x, -1) - jnp.mean(x, -1) ** 2)) < 0     # per row
    _, rstd = model._ln_stats(x, 1e-12)
    np.testing.assert_allclose(np.asarray(rstd), 1e6, rtol=1e-6)
    p = {'scale': jnp.full((64,), 2.0), 'bias': jnp.linspace(-1, 1, 64)}
    assert bool(jnp.all(jnp.isfinite(model._layer_norm(x, p, 1e-12, jnp.float32))))


def test_predict_logits_scans_the_layers_by_default_with_the_same_logits():
  from bert_jax import inference, mesh as mesh_lib
  from bert_jax.settings import MeshSettings
  from helpers import features_of_lengths
  feats = features_of_lengths([5, 64, 30, 12, 40])
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=2))
  params = model.init_params(jax.random.PRNGKey(0), TINY)
  scan_s, scan_e, timing = inference.predict_logits(params, feats, mesh, TINY, FP32, 4)
  loop_s, loop_e, loop_timing = inference.predict_logits(params, feats, mesh, TINY, FP32, 4,
                                                         scan_layers=False)
  assert timing['scan_layers'] and not loop_timing['scan_layers']
  assert scan_s.shape == (5, 64) and len(timing['latencies_ms']) == 1   # 2 batches, 1 timed
  np.testing.assert_allclose(scan_s, loop_s, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(scan_e, loop_e, rtol=1e-5, atol=1e-5)
