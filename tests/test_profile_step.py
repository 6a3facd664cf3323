"""benchmarks/profile_step.py: its variants keep the model's math, and its HLO reader names
what each kernel computes."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bert_jax import model
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy


@pytest.fixture(scope='module')
def ps(load_script):
  module = load_script('profile_step')
  yield module
  module.apply_variant('base')


def _grads(ps, variant, precision):
  config = ModelConfig.preset('tiny').replace(hidden_dropout=0.0, attention_dropout=0.0)
  # full float32 products, so the comparison also holds on a GPU (TF32 would not at 1e-5)
  policy = PrecisionPolicy(precision, fp32_matmul='float32')
  params = model.init_params(jax.random.PRNGKey(0), config)
  rng = np.random.default_rng(0)
  ids = jnp.asarray(rng.integers(0, config.vocab_size, (3, 16)))
  mask = jnp.ones_like(ids).at[:, 12:].set(0)

  def loss(p):
    s, e = model.qa_logits(p, ids, jnp.zeros_like(ids), mask, config=config, policy=policy)
    return jnp.sum(s ** 2) + jnp.sum(e * jnp.arange(16))

  ps.apply_variant(variant)
  try:
    return jax.grad(loss)(params)
  finally:
    ps.apply_variant('base')


@pytest.mark.parametrize('variant', ['qkv3', 'qkv_bwd3', 'qkv_bwd3b', 'biasmm', 'gelu_autodiff',
                                     'ln_autodiff', 'qkv3+biasmm+gelu_autodiff+ln_autodiff',
                                     'ln_xla', 'ln_twopass', 'gelu_lax_erf', 'gelu_shared',
                                     'gelu_kernel', 'gelu_kernel_fwd', 'dwstream',
                                     'dwstream_w', 'qkv_cat', 'qkv_catbar', 'gelu_slope',
                                     'gelu_input', 'ln_apart', 'qkv_join'])
def test_exact_variants_give_the_same_gradients(ps, variant):
  base, other = _grads(ps, 'base', 'fp32'), _grads(ps, variant, 'fp32')
  for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(other)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(a))))


def _assert_same_within_rounding(grads, grads_ref, dtype):
  """Same dtypes leaf by leaf; values within float32 rounding (bf16: one bf16 step)."""
  assert jax.tree.map(lambda a: a.dtype, grads) == jax.tree.map(lambda a: a.dtype, grads_ref)
  tol = 1e-5 if dtype == jnp.float32 else 2 ** -7
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * float(np.max(np.abs(b))))


def test_gelu_keeps_a_bf16_residual_and_matches_autodiff(ps):
  h = jax.random.normal(jax.random.PRNGKey(0), (4, 64), jnp.bfloat16) * 3
  y, vjp = jax.vjp(model._gelu, h)
  assert [r.dtype for r in jax.tree.leaves(vjp)] == [jnp.bfloat16]
  y_ref, vjp_ref = jax.vjp(ps._gelu_autodiff, h)
  assert any(r.dtype == jnp.float32 for r in jax.tree.leaves(vjp_ref))  # what it saves
  g = jnp.ones_like(y)
  np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(y_ref, np.float32))
  # Within one bf16 rounding step of autodiff's gradient (its float32 math differs a little).
  np.testing.assert_allclose(np.asarray(vjp(g)[0], np.float32),
                             np.asarray(vjp_ref(g)[0], np.float32), rtol=2 ** -7, atol=1e-6)
  x = jnp.linspace(-6, 6, 101)  # and float32 against the closed form
  np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(model._gelu(v)))(x),
                             jax.grad(lambda v: jnp.sum(ps._gelu_autodiff(v)))(x), atol=1e-6)


@pytest.mark.parametrize('name', ['model', 'gelu_slope'])
def test_the_kept_gelu_slope_stays_bf16_and_matches_the_recomputed_one(ps, name):
  """The model's GELU (since entry 81; profile_step's gelu_slope_bar) and the unpinned
  gelu_slope keep the derivative in bf16; the gradient is within two bf16 steps of the slope
  recomputed in float32 (gelu_input, the model before), and mostly the same bits."""
  assert ps.PATCHES['gelu_slope_bar']['_gelu'] is model._gelu
  gelu = model._gelu if name == 'model' else ps.PATCHES[name]['_gelu']
  recomputed = ps.PATCHES['gelu_input']['_gelu']
  h = jax.random.normal(jax.random.PRNGKey(1), (8, 256), jnp.bfloat16) * 3
  y, vjp = jax.vjp(gelu, h)
  y_ref, vjp_ref = jax.vjp(recomputed, h)
  assert [r.dtype for r in jax.tree.leaves(vjp)] == [jnp.bfloat16]
  np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(y_ref, np.float32))
  g = jax.random.normal(jax.random.PRNGKey(2), h.shape, jnp.bfloat16)
  assert vjp(g)[0].dtype == jnp.bfloat16
  dx, dx_ref = (np.asarray(f(g)[0], np.float32) for f in (vjp, vjp_ref))
  np.testing.assert_allclose(dx, dx_ref, rtol=2 ** -7, atol=1e-6)
  assert 0 < np.mean(dx != dx_ref) < 0.5  # one more rounding shows, in a minority of elements
  x = jnp.linspace(-6, 6, 101)  # float32 keeps a float32 slope: the recomputed gradient
  np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(gelu(v)))(x),
                             jax.grad(lambda v: jnp.sum(recomputed(v)))(x), rtol=1e-6)


def test_erfc_gelu_matches_the_exact_gelu(ps):
  """The model's GELU (erfc fit) against float64, as jax's erf GELU is; in bf16 the same
  outputs but for rare rounding ties, and the residual stays bf16."""
  x = jnp.linspace(-10, 10, 400_001, dtype=jnp.float32)
  x64 = np.asarray(x, np.float64)
  exact = 0.5 * x64 * (1 + np.vectorize(math.erf)(x64 / np.sqrt(2)))
  for gelu in (model._gelu, ps._gelu_lax_erf):
    err = np.abs(np.asarray(gelu(x), np.float64) - exact)
    assert np.max(err / np.maximum(np.abs(exact), 1e-3)) < 2e-6
  dx = jax.grad(lambda v: jnp.sum(model._gelu(v)))(x)
  np.testing.assert_allclose(dx, jax.grad(lambda v: jnp.sum(ps._gelu_lax_erf(v)))(x), atol=2e-6)
  h = x.astype(jnp.bfloat16)
  y, vjp = jax.vjp(model._gelu, h)
  assert [r.dtype for r in jax.tree.leaves(vjp)] == [jnp.bfloat16] and y.dtype == jnp.bfloat16
  y_ref = ps._gelu_lax_erf(h)
  assert np.sum(np.asarray(y != y_ref)) < 1e-3 * y.size
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32),
                             rtol=2 ** -7, atol=1e-6)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_layer_norm_keeps_its_input_dtype_and_matches_autodiff(ps, dtype):
  x = (jax.random.normal(jax.random.PRNGKey(1), (2, 5, 64), jnp.float32) * 2 + 0.5).astype(dtype)
  p = {'scale': jnp.linspace(0.5, 1.5, 64), 'bias': jnp.linspace(-0.1, 0.1, 64)}
  g = jax.random.normal(jax.random.PRNGKey(2), x.shape, jnp.float32).astype(dtype)
  y, vjp = jax.vjp(lambda x, p: model._layer_norm(x, p, 1e-12, dtype), x, p)
  y_ref, vjp_ref = jax.vjp(lambda x, p: ps._layer_norm_autodiff(x, p, 1e-12, dtype), x, p)
  big = [r for r in jax.tree.leaves(vjp) if r.size == x.size]
  assert [r.dtype for r in big] == [dtype]           # only the input itself, in its dtype
  # within rounding, not equal: the model takes the variance in one pass (E[x^2] - E[x]^2)
  _assert_same_within_rounding(y, y_ref, dtype)
  _assert_same_within_rounding(vjp(g), vjp_ref(g), dtype)


def test_apply_variant_restores_the_model(ps):
  original = model._gelu
  ps.apply_variant('gelu_tanh_autodiff')
  assert model._gelu is not original
  ps.apply_variant('base')
  assert model._gelu is original
  ps.apply_variant('ln_blocks8+gelu_tanh_autodiff')  # settings of the modules model uses, too
  assert model.layer_norm_kernel.BLOCKS == 8 and model._gelu is not original
  ps.apply_variant('base')
  assert model.layer_norm_kernel.BLOCKS == 1 and model._gelu is original
  ps.apply_variant('ln_fwd_rows16+ln_fwd_warps8')    # the LayerNorm forward kernel's shape
  assert (model.layer_norm_kernel.FWD_ROWS, model.layer_norm_kernel.FWD_NUM_WARPS) == (16, 8)
  ps.apply_variant('base')
  assert (model.layer_norm_kernel.FWD_ROWS, model.layer_norm_kernel.FWD_NUM_WARPS) == (4, 4)
  ps.apply_variant('gelu_kernel_fwd')                # and benchmarks/gelu_pallas.py's switch
  assert ps.gelu_pallas.FORWARD_KERNEL and model._ffn_block is ps.gelu_pallas.ffn_block
  ps.apply_variant('base')
  assert not ps.gelu_pallas.FORWARD_KERNEL and model._ffn_block is not ps.gelu_pallas.ffn_block
  with pytest.raises(SystemExit, match="unknown part.*'lnpallas'"):
    ps.apply_variant('gelu_tanh+lnpallas')


def test_gelu_tanh_is_the_models_option_and_epilogues_are_counted(ps):
  parts = ps.apply_variant('bound+gelu_tanh')
  assert model._gelu is ps.ORIGINALS['_gelu']         # no patch: the model's own option
  assert ps._activation(ModelConfig(), parts).activation == 'gelu_tanh'
  assert ps._activation(ModelConfig(), ps.apply_variant('bound')).activation == 'gelu'
  hlo = ('custom-call(a, b), backend_config={"gemm_backend_config":{"epilogue":"BIAS_GELU_AUX"}}\n'
         '{"epilogue":"BIAS"} {"epilogue":"BIAS"} {"epilogue":"DEFAULT"}')
  assert ps.gemm_epilogues(hlo) == {'BIAS_GELU_AUX': 1, 'BIAS': 2, 'DEFAULT': 1}
  assert ps.gemm_epilogues('fusion(x)') == {}
  hlo += ('\n%c = custom-call(a, b), custom_call_target="__cublas$lt$matmul"'
          '\n%d = custom-call(a, b), custom_call_target="__cublas$lt$matmul"'
          '\n%f = fusion(a, b), kind=kCustom, backend_config={"fusion_backend_config":'
          '{"kind":"__cudnn$fusion"}}\n%g = fusion(a), kind=kLoop'
          '\n%h = fusion(a, b), kind=kCustom, backend_config={"fusion_backend_config":'
          '{"kind":"__triton_nested_gemm_fusion"}}')
  assert ps.gemm_backends(hlo) == {'cublaslt': 2, 'cudnn': 1, 'triton': 1}


def test_hlo_fusions_reads_tuple_shapes_operands_and_ops(ps):
  text = '\n'.join([
      'fused_gelu {',
      '  p0 = bf16[8,16]{1,0} parameter(0)',
      '  c = f32[8,16]{1,0} convert(p0)',
      '  m = f32[8,16]{1,0} multiply(c, c)',
      '  ROOT t = (bf16[8,16]{1,0}, f32[8,16]{1,0}) tuple(p0, m)',
      '}',
      '',
      'ENTRY main {',
      '  %x.1 = bf16[8,16]{1,0} parameter(0)',
      '  %loop_convert_fusion.2 = (bf16[8,16]{1,0}, f32[8,16]{1,0}) fusion(%x.1), kind=kLoop, '
      'calls=%fused_gelu, metadata={op_name="jit(step)/jvp()/convert_element_type"}',
      '}'])
  info = ps.hlo_fusions(text)['loop_convert_fusion_2']
  assert info['shape'] == '(bf16[8,16], f32[8,16])'
  assert info['operands'] == ['bf16[8,16]'] and info['kind'] == 'kLoop'
  assert info['ops'] == {'convert': 1, 'multiply': 1, 'tuple': 1}
  assert info['op_name'] == 'jit(step)/jvp()/convert_element_type'
  summary = {'top_kernels': [{'name': 'loop_convert_fusion_2'}, {'name': 'nvjet_gemm'}]}
  ps.annotate(summary, ps.hlo_fusions(text))
  assert summary['top_kernels'][0]['hlo']['hlo'] == 'loop_convert_fusion.2'
  assert 'hlo' not in summary['top_kernels'][1]


def test_hlo_fusions_on_a_compiled_step(ps):
  f = jax.jit(lambda x: jnp.tanh(x) * 2 + 1)
  text = f.lower(jnp.ones((32, 64), jnp.float32)).compile().as_text()
  fusions = ps.hlo_fusions(text)
  assert fusions, 'no fusion found in the compiled HLO'
  assert any(v['shape'] == 'f32[32,64]' and 'tanh' in v['ops'] for v in fusions.values())


@pytest.mark.parametrize('variant', ['base', 'unstacked', 'scan', 'bound'])   # each count
def test_infer_host_probe_counts_every_param_leaf(ps, variant):
  run, config, _ = ps.build_infer(variant, 16, 2, PrecisionPolicy('bf16'), 'tiny')
  run(1)
  host = run.host_probe()
  # 5 embedding leaves (word, position, token type, LayerNorm scale and bias), 2 qa, and
  # 12 per layer, or 12 in all once stacked; unrolled (base), 8 stacked and 4 kernels a layer;
  # none where the weights are inside the program (bound)
  per_layer = {'unstacked': 12 * config.num_layers,
               'base': 8 + 4 * config.num_layers}.get(variant, 12)
  assert host['param_leaves'] == (0 if 'bound' in variant else 5 + per_layer + 2)
  assert 0 < host['args_ms'] and 0 < host['enqueue_ms']
  assert all(host[f'wait_{name}_ms'] > 0 for name in ('block', 'spin', 'fetch', 'fetch1',
                                                      'device_get'))


def test_wait_probe_times_each_way_of_waiting(ps):
  f = jax.jit(lambda a, x: (x @ x + a, x.sum()))
  x = jnp.ones((64, 64), jnp.float32)
  compiled = f.lower(1.0, x).compile()
  probe = ps.wait_probe(compiled, (1.0,), x, n=3)
  assert sorted(probe) == ['wait_block_ms', 'wait_device_get_ms', 'wait_fetch1_ms',
                           'wait_fetch_ms', 'wait_spin_ms']
  assert all(v > 0 for v in probe.values())


@pytest.mark.slow_tool
def test_infer_records_compare_each_variants_logits_with_the_first(ps, tmp_path, monkeypatch):
  import json
  import sys
  monkeypatch.setattr(sys, 'argv', ['profile_step.py', '--kind', 'infer', '--seq', '16',
                                    '--batch', '2', '--steps', '1', '--preset', 'tiny',
                                    '--variants', 'noscan', 'scan', 'stacked_kernels',
                                    'gelu_tanh', 'two_outputs', 'fresh_inputs+cmdbuf_serial',
                                    '--out', str(tmp_path)])
  ps.main()
  recs = [json.loads(line) for line in (tmp_path / 'profile.jsonl').read_text().splitlines()]
  diffs = {r['variant']: r['logits_max_abs_diff'] for r in recs}
  assert {d['against'] for d in diffs.values()} == {'noscan'}
  assert diffs['noscan']['value'] == 0
  for same in ('scan', 'stacked_kernels'):                # the same model, bf16 rounding apart
    assert diffs[same]['value'] < 0.05
  assert diffs['gelu_tanh']['value'] > diffs['scan']['value']   # another GELU: other logits
  assert diffs['two_outputs']['value'] < 1e-5    # the same logits, returned as two arrays
  # 16 input batches cycled, and a compiler option: the first batch's logits unchanged
  assert diffs['fresh_inputs+cmdbuf_serial']['value'] == 0
  assert recs[-1]['xla_compiler_options']['xla_gpu_command_buffer_scheduling_mode'] == 'SERIALIZE'


def _write_trace(tmp_path, events):
  """A jax.profiler-like trace folder holding `events` as its perfetto_trace.json.gz."""
  import gzip
  import json
  path = tmp_path / 'plugins' / 'profile' / 'x'
  path.mkdir(parents=True)
  with gzip.open(path / 'perfetto_trace.json.gz', 'wt') as f:
    json.dump({'traceEvents': events}, f)


def test_summarise_averages_over_the_gpus_that_ran(ps, tmp_path):
  """A trace of 2 steps on two GPUs (and one idle GPU): per-GPU, per-step figures, with the
  NCCL kernel in its own class."""
  events = [{'ph': 'M', 'name': 'process_name', 'pid': p, 'args': {'name': f'/device:GPU:{p}'}}
            for p in (0, 1, 2)]
  events += [{'ph': 'M', 'name': 'thread_name', 'pid': p, 'tid': 7,
              'args': {'name': 'Stream #14(Compute)'}} for p in (0, 1, 2)]
  for p in (0, 1):
    events += [{'ph': 'X', 'pid': p, 'tid': 7, 'name': 'nvjet_sm90_tst_128x160', 'dur': 300},
               {'ph': 'X', 'pid': p, 'tid': 7, 'name': 'ncclDevKernel_AllReduce_Sum_f32_RING',
                'dur': 100}] * 2
  _write_trace(tmp_path, events)
  out = ps.summarise(str(tmp_path), steps_profiled=2)
  assert out['module_span_ms_per_step'] is None      # no 'XLA Modules' line in this trace
  assert out['gpus_with_kernels'] == 2
  assert out['kernel_ms_per_step'] == pytest.approx(0.4)
  assert out['class_ms_per_step'] == pytest.approx({'matmul': 0.3, 'collective': 0.1})


def test_summarise_reports_the_hosts_calls_and_the_gpus_module_span(ps, tmp_path):
  """Two calls: the host's events per call, largest first (its Python thread and CUDA's
  launches, none of the GPU's lines), and the GPU's 'XLA Modules' span beside its kernels."""
  events = [{'ph': 'M', 'name': 'process_name', 'pid': 0, 'args': {'name': '/device:GPU:0'}},
            {'ph': 'M', 'name': 'process_name', 'pid': 9, 'args': {'name': '/host:CPU'}},
            {'ph': 'M', 'name': 'thread_name', 'pid': 0, 'tid': 7,
             'args': {'name': 'Stream #14(Compute)'}},
            {'ph': 'M', 'name': 'thread_name', 'pid': 0, 'tid': 8, 'args': {'name': 'XLA Modules'}}]
  for call in range(2):
    events += [{'ph': 'X', 'pid': 9, 'tid': 1, 'name': 'PjitFunction(f)', 'dur': 900},
               {'ph': 'X', 'pid': 9, 'tid': 1, 'name': 'cuGraphLaunch', 'dur': 40},
               {'ph': 'X', 'pid': 9, 'tid': 2, 'name': 'cuLaunchKernel', 'dur': 5},
               {'ph': 'X', 'pid': 9, 'tid': 2, 'name': 'cuLaunchKernel', 'dur': 5},
               {'ph': 'X', 'pid': 0, 'tid': 8, 'name': 'jit_f', 'dur': 1500},
               {'ph': 'X', 'pid': 0, 'tid': 7, 'name': 'nvjet_sm90_tst_128x160', 'dur': 1200}]
  _write_trace(tmp_path, events)
  out = ps.summarise(str(tmp_path), steps_profiled=2)
  assert out['kernel_ms_per_step'] == pytest.approx(1.2)
  assert out['module_span_ms_per_step'] == pytest.approx(1.5)
  host = out['host']
  assert [h['name'] for h in host] == ['PjitFunction(f)', 'cuGraphLaunch', 'cuLaunchKernel']
  assert host[0]['ms_per_step'] == pytest.approx(0.9)
  assert host[2] == {'name': 'cuLaunchKernel', 'calls_per_step': 2.0, 'ms_per_step': 0.01}


def test_summarise_reads_the_newest_trace_of_a_variant_traced_twice(ps, tmp_path,
                                                                   monkeypatch):
  import gzip
  import json
  import os
  meta = [{'ph': 'M', 'name': 'process_name', 'pid': 0, 'args': {'name': '/device:GPU:0'}},
          {'ph': 'M', 'name': 'thread_name', 'pid': 0, 'tid': 7,
           'args': {'name': 'Stream #14(Compute)'}}]
  for run, (name, dur) in enumerate([('old_kernel', 100), ('new_kernel', 200)]):
    path = tmp_path / 'plugins' / 'profile' / f'run{run}'
    path.mkdir(parents=True)
    with gzip.open(path / 'perfetto_trace.json.gz', 'wt') as f:
      json.dump({'traceEvents': meta + [{'ph': 'X', 'pid': 0, 'tid': 7, 'name': name,
                                         'dur': dur}]}, f)
    os.utime(path / 'perfetto_trace.json.gz', (1e9 + run, 1e9 + run))
  listed = ps.glob.glob
  monkeypatch.setattr(ps.glob, 'glob', lambda *a, **k: sorted(listed(*a, **k)))  # older first
  out = ps.summarise(str(tmp_path), steps_profiled=1)
  assert [k['name'] for k in out['top_kernels']] == ['new_kernel']


def test_summarise_counts_collective_time_no_other_kernel_overlapped(ps, tmp_path):
  """GPU 0: a 100 us all-reduce half under a matmul (50 us exposed); GPU 1: one wholly
  exposed (100 us). One step: 75 us exposed per GPU."""
  events = [{'ph': 'M', 'name': 'process_name', 'pid': p, 'args': {'name': f'/device:GPU:{p}'}}
            for p in (0, 1)]
  events += [{'ph': 'M', 'name': 'thread_name', 'pid': p, 'tid': t,
              'args': {'name': f'Stream #{t}'}} for p in (0, 1) for t in (7, 8)]
  nccl, gemm = 'ncclDevKernel_AllReduce_Sum_bf16_RING', 'nvjet_sm90_tst_128x160'
  events += [{'ph': 'X', 'pid': 0, 'tid': 7, 'name': gemm, 'ts': 0, 'dur': 300},
             {'ph': 'X', 'pid': 0, 'tid': 8, 'name': nccl, 'ts': 250, 'dur': 100},
             {'ph': 'X', 'pid': 1, 'tid': 7, 'name': gemm, 'ts': 0, 'dur': 300},
             {'ph': 'X', 'pid': 1, 'tid': 8, 'name': nccl, 'ts': 300, 'dur': 100}]
  _write_trace(tmp_path, events)
  out = ps.summarise(str(tmp_path), steps_profiled=1)
  assert out['exposed_collective_ms_per_step'] == pytest.approx(0.075)
  assert out['class_ms_per_step']['collective'] == pytest.approx(0.1)
  # busy: 350 us on GPU 0 (50 us of overlap), 400 on GPU 1; the kernels' sum 400 on each
  assert out['kernel_busy_ms_per_step'] == pytest.approx(0.375)
  assert out['kernel_ms_per_step'] == pytest.approx(0.4)


def test_dwstream_puts_the_weight_gradients_on_a_second_stream(ps):
  """The backward pass's dW matmuls (and, in dwstream, bias sums) sit in calls annotated for
  GPU stream 1; dx stays outside them."""
  x = jnp.ones((2, 3, 8), jnp.float32)
  p = {'kernel': jnp.ones((8, 4)), 'bias': jnp.zeros(4)}
  policy = PrecisionPolicy('fp32')
  for variant, side_outputs in (('dwstream', 2), ('dwstream_w', 1)):
    ps.apply_variant(variant)
    try:
      text = jax.jit(jax.grad(lambda x, p: jnp.sum(model._dense(x, p, policy) ** 2),
                              argnums=(0, 1))).lower(x, p).as_text()
    finally:
      ps.apply_variant('base')
    calls = [line for line in text.splitlines() if '_xla_stream_annotation = "1"' in line
             and ' call @' in line]
    assert len(calls) == 1, calls
    assert calls[0].count('tensor<') == 2 + side_outputs   # x and dy in; dW (, db) out


def test_interval_helpers(ps):
  assert ps._union([(5, 7), (0, 2), (1, 3), (7, 8)]) == [[0, 3], [5, 8]]
  assert ps._overlap([[0, 3], [5, 8]], [[2, 6], [7, 9]]) == 1 + 1 + 1
  assert ps._overlap([[0, 1]], []) == 0 and ps._length([[0, 3], [5, 8]]) == 6


def test_hlo_collectives_on_a_compiled_data_parallel_sum(ps):
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ('data',))
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  x = jax.device_put(jnp.ones((4, 6, 5), jnp.float32), sharded)
  text = jax.jit(lambda x: x.sum(0)).lower(x).compile().as_text()
  out = ps.hlo_collectives(text)
  assert out['all-reduce']['count'] == 1
  assert out['all-reduce']['bytes'] == {'f32': 6 * 5 * 4}
  # as jax 0.11.2 wrote it on the H200s: the start's result holds operand and output
  assert ps.hlo_collectives(
      '%s = ((bf16[8,2]{1,0}), bf16[8,2]{1,0}) all-reduce-start(%x), channel_id=2\n'
      '%d = bf16[8,2]{1,0} all-reduce-done(%s)\n'
      '%t = ((f32[3]{0}, f32[2]{0}), (f32[3]{0}, f32[2]{0})) all-reduce-start(%y, %z)\n'
      '%e = (f32[3]{0}, f32[2]{0}) all-reduce-done(%t)') == {
      'all-reduce': {'count': 2, 'bytes': {'bf16': 32, 'f32': 20}}}


def test_option_parts_reach_the_compiler_options(ps, monkeypatch):
  seen = {}

  class Seen(Exception):
    pass

  def spy(*args, compiler_options=None, **kw):   # stops build_train before its compile
    seen.update(compiler_options)
    raise Seen
  monkeypatch.setattr(ps.train, 'jit_train_step', spy)
  with pytest.raises(Seen):
    ps.build_train('lhs+ar8mb', 16, 1, PrecisionPolicy('bf16'), 'tiny')
  assert seen == {'xla_gpu_enable_latency_hiding_scheduler': True,
                  'xla_gpu_all_reduce_combine_threshold_bytes': 8 << 20}


def test_a_variant_that_fails_to_build_is_reported_and_skipped(ps, tmp_path, monkeypatch):
  import json
  import sys

  def build(variant, *args, **kw):
    raise RuntimeError(f'no such XLA option for {variant}')
  monkeypatch.setattr(ps, 'build_train', build)
  monkeypatch.setattr(sys, 'argv', ['profile_step.py', '--variants', 'lhs', 'ar8mb',
                                    '--preset', 'tiny', '--out', str(tmp_path)])
  ps.main()
  recs = [json.loads(line) for line in (tmp_path / 'profile.jsonl').read_text().splitlines()]
  assert [r['variant'] for r in recs] == ['lhs', 'ar8mb']
  assert recs[0]['error'] == 'RuntimeError: no such XLA option for lhs'
  monkeypatch.setattr(sys, 'argv', ['profile_step.py', '--variants', 'base', '--profile', 'nope'])
  with pytest.raises(SystemExit, match="unknown part.*'nope'"):  # before anything compiles
    ps.main()
  monkeypatch.setattr(sys, 'argv', ['profile_step.py', '--variants', 'base', 'bound+two_outputs'])
  with pytest.raises(SystemExit, match=r"\['two_outputs'\].*only run with --kind infer, not "
                                       r"--kind train"):   # it breaks the train step's build
    ps.main()
  assert ps.check_variant('bound+two_outputs', 'infer') == ['bound', 'two_outputs']


def test_summarise_counts_what_kernels_beside_a_collective_cost(ps, tmp_path):
  """One GPU, one step: a gemm alone (300 us) and again beside an all-reduce (500 us): 200 us
  excess; a copy only ever beside one counts as beside but adds no excess."""
  import gzip
  import json
  events = [{'ph': 'M', 'name': 'process_name', 'pid': 0, 'args': {'name': '/device:GPU:0'}}]
  events += [{'ph': 'M', 'name': 'thread_name', 'pid': 0, 'tid': t,
              'args': {'name': f'Stream #{t}'}} for t in (7, 8)]
  gemm, nccl = 'nvjet_sm90_tst_128x160', 'ncclDevKernel_AllReduce_Sum_bf16_RING_LL'
  events += [{'ph': 'X', 'pid': 0, 'tid': 7, 'name': gemm, 'ts': 0, 'dur': 300},
             {'ph': 'X', 'pid': 0, 'tid': 7, 'name': gemm, 'ts': 1000, 'dur': 500},
             {'ph': 'X', 'pid': 0, 'tid': 7, 'name': 'memcpy128', 'ts': 1500, 'dur': 40},
             {'ph': 'X', 'pid': 0, 'tid': 8, 'name': nccl, 'ts': 1100, 'dur': 420}]
  path = tmp_path / 'perfetto_trace.json.gz'               # the file itself will do
  with gzip.open(path, 'wt') as f:
    json.dump({'traceEvents': events}, f)
  out = ps.summarise(str(path), steps_profiled=1)
  assert out['beside_collective_ms_per_step'] == pytest.approx(0.54)
  assert out['beside_collective_excess_ms_per_step'] == pytest.approx(0.2)
  assert out['beside_collective_excess_by_class'] == pytest.approx({'matmul': 0.2})
  assert out['exposed_collective_ms_per_step'] == pytest.approx(0.0)


def _sgd_step_params(ps, monkeypatch, variant, policy):
  """params after one step of plain SGD at learning rate 1 (params minus the gradient), so
  that a step's params show its gradient; AdamW's first steps move each weight by about the
  warm-up's tiny learning rate whatever the gradient is."""
  monkeypatch.setattr(ps.optim, 'make_optimizer', lambda *a, **k: optax.sgd(1.0))
  run = ps.build_train(variant, 16, 2, policy, 'tiny')[0]
  before = jax.tree.map(np.asarray, model.stack_layers(run.state().params))
  run(1)
  return run, before, jax.tree.map(np.asarray, model.stack_layers(run.state().params))


def _assert_same_step(a, b):
  (_, before, after_a), (_, _, after_b) = a, b
  moved = max(float(np.abs(x - y).max())
              for x, y in zip(jax.tree.leaves(after_a), jax.tree.leaves(before)))
  assert moved > 1e-3                                     # the gradient is in the comparison
  for x, y in zip(jax.tree.leaves(after_a), jax.tree.leaves(after_b)):
    np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)


@pytest.mark.slow_tool
def test_layer_list_state_trains_as_the_stacked_state_does(ps, monkeypatch):
  """The train state holds its layers stacked (one [L, ...] array per layer weight); the
  'layer_list' variant, a list of per-layer dicts as before, takes the same step on the same
  init and batch with more state arrays (their count grows with the layers: 892 for
  BERT-Large, 64 stacked). Under bf16, the product's precision, where the stacked weights
  are cast once a step (fp32 too doubled the test's 42 s on 2 cores)."""
  policy = PrecisionPolicy('bf16')
  base = _sgd_step_params(ps, monkeypatch, 'base', policy)
  listed = _sgd_step_params(ps, monkeypatch, 'layer_list', policy)
  _assert_same_step(base, listed)
  state, listed_state = base[0].state(), listed[0].state()
  assert isinstance(state.params['layers'], dict)                  # [L, ...] arrays
  assert isinstance(listed_state.params['layers'], list)
  assert len(jax.tree.leaves(state)) < len(jax.tree.leaves(listed_state))  # 64 vs 100 here
  probe = base[0].host_probe(n=2)
  assert probe['state_arrays'] == len(jax.tree.leaves(state))
  assert probe['train_call_return_ms_p50'] > 0


def test_call_phases_split_a_calls_wall_time_between_host_and_gpu(ps, tmp_path):
  """Two traced calls: the host's way to the launch, the launch's way to the first kernel, the
  GPU's span and the host's wait after the last kernel, as medians; nested call events count
  once; kernels after the last call's wait still belong to it."""
  events = [{'ph': 'M', 'name': 'process_name', 'pid': 0, 'args': {'name': '/device:GPU:0'}},
            {'ph': 'M', 'name': 'process_name', 'pid': 9, 'args': {'name': '/host:CPU'}},
            {'ph': 'M', 'name': 'thread_name', 'pid': 0, 'tid': 7,
             'args': {'name': 'Stream #14(Compute)'}}]
  for t0, wait_end in ((0, 1500), (2000, 3700)):
    events += [{'ph': 'X', 'pid': 9, 'tid': 1, 'name': 'PjitFunction(f)', 'ts': t0, 'dur': 600},
               {'ph': 'X', 'pid': 9, 'tid': 1, 'name': 'PjitFunction(f)', 'ts': t0, 'dur': 599},
               {'ph': 'X', 'pid': 9, 'tid': 1, 'name': 'cuGraphLaunch', 'ts': t0 + 100,
                'dur': 400},
               {'ph': 'X', 'pid': 0, 'tid': 7, 'name': 'k1', 'ts': t0 + 130, 'dur': 500},
               {'ph': 'X', 'pid': 0, 'tid': 7, 'name': 'k2', 'ts': t0 + 640, 'dur': 560},
               {'ph': 'X', 'pid': 9, 'tid': 1, 'name': '$api.py:2757 block_until_ready',
                'ts': t0 + 610, 'dur': wait_end - t0 - 610}]
  _write_trace(tmp_path, events)
  out = ps.summarise(str(tmp_path), steps_profiled=2)['call_phases']
  assert out['calls'] == 2
  assert out['call_to_launch_us'] == 100 and out['launch_to_first_kernel_us'] == 30
  assert out['gpu_span_us'] == 1070                    # 130 .. 1200
  assert out['last_kernel_to_return_us_range'] == [300, 500]
  assert out['last_kernel_to_return_us'] == 400 and out['call_to_return_us'] == 1600
  assert ps.call_phases([], set(), set()) == {}
  no_wait = [e for e in events if 'block_until_ready' not in e.get('name', '')]
  lines = {(0, 7)}
  out = ps.call_phases(no_wait, {0}, lines)
  assert out['gpu_span_us'] == 1070 and out['last_kernel_to_return_us'] is None
  assert out['call_to_return_us'] is None and out['last_kernel_to_return_us_range'] is None


@pytest.mark.slow_tool
def test_kv_lengths_trains_as_the_product_does_on_padded_windows(ps, monkeypatch):
  """'kv_lengths' (the fused attention given the key lengths only, the product before entry 64
  of docs/performance_notes.md) runs the padded queries too, whose outputs the loss leaves out:
  on squadlen's padded windows it takes the product's step."""
  lengths = ps.squad_like(np.random.default_rng(0), 64, 16, 101)['attention_mask'].sum(axis=1)
  assert lengths.min() < 16 and 0.35 < lengths.mean() / 16 < 0.6
  policy = PrecisionPolicy('fp32', fp32_matmul='float32')
  _assert_same_step(_sgd_step_params(ps, monkeypatch, 'squadlen', policy),
                    _sgd_step_params(ps, monkeypatch, 'squadlen+kv_lengths', policy))
  run = ps.build_infer('squadlen+kv_lengths', 16, 2, PrecisionPolicy('bf16'), 'tiny')[0]
  run(1)


def test_packed_inference_variant_runs_eval_packings_rows(ps):
  """packed (infer): eval_step on packed rows, each window seeing only itself: the model's
  logits with the rows' segments, not those of the same rows read as one sequence each."""
  from bert_jax import packing
  policy = PrecisionPolicy('fp32', 'float32')
  run, _, _ = ps.build_infer('packed', 64, 4, policy, 'tiny')
  run(1)
  assert run.windows_per_step > 4                      # rows of 0.45-of-64 windows hold several
  got = np.asarray(run.outputs()[0])
  ps.apply_variant('base')
  config = ModelConfig.preset('tiny')
  host = ps.packed_synthetic(np.random.default_rng(0), 4, 64, config.vocab_size)   # the same rows
  params = ps._INFER_PARAMS[('tiny', policy)]
  inputs = [host[k] for k in ('input_ids', 'token_type_ids', 'attention_mask')]
  logits = lambda segments: np.asarray(model.span_logits(
      params, *inputs, config=config, policy=policy, segments=segments, scan_layers=True)[..., 0])
  np.testing.assert_allclose(got, logits(packing.segments_of(host)), atol=1e-4)
  assert np.abs(got - logits(None)).max() > 1e-3


def test_qkv_cat_joins_the_three_gradients_by_one_concatenation(ps):
  """Autodiff joins dq, dk, dv by pads and adds; qkv_cat by one concatenation, and
  qkv_catbar writes that out (an optimization barrier) before the bias sum reads it."""
  config = ModelConfig.preset('tiny')
  p = model.init_params(jax.random.PRNGKey(0), config)['layers'][0]['qkv']
  x = jnp.ones((2, 8, config.hidden_size), jnp.float32)
  policy = PrecisionPolicy('fp32')

  def text(variant):
    ps.apply_variant(variant)
    try:
      loss = lambda x, p: sum(jnp.sum(y * (i + 1)) for i, y in
                              enumerate(model._qkv(x, p, config, policy)))
      return jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, p).as_text()
    finally:
      ps.apply_variant('base')

  base, cat, catbar = text('base'), text('qkv_cat'), text('qkv_catbar')
  assert 'stablehlo.pad' in base and 'stablehlo.concatenate' not in base
  assert 'stablehlo.pad' not in cat and 'stablehlo.concatenate' in cat
  assert 'optimization_barrier' not in cat and 'optimization_barrier' in catbar
