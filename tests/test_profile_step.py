"""benchmarks/profile_step.py: its variants keep the model's math, and its HLO reader names
what each kernel computes."""
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import model
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def ps():
  spec = importlib.util.spec_from_file_location(
      'profile_step', os.path.join(ROOT, 'benchmarks', 'profile_step.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  yield module
  module.apply_variant('base')


def _grads(ps, variant, precision):
  config = ModelConfig.preset('tiny').replace(hidden_dropout=0.0, attention_dropout=0.0)
  policy = PrecisionPolicy(precision)
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


@pytest.mark.parametrize('variant', ['qkv3', 'biasmm', 'gelu_autodiff', 'ln_autodiff',
                                     'qkv3+biasmm+gelu_autodiff+ln_autodiff'])
def test_exact_variants_give_the_same_gradients(ps, variant):
  base, other = _grads(ps, 'base', 'fp32'), _grads(ps, variant, 'fp32')
  for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(other)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(a))))


def test_apply_variant_restores_the_model(ps):
  original = model._gelu
  ps.apply_variant('gelu_tanh')
  assert model._gelu is not original
  ps.apply_variant('base')
  assert model._gelu is original


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


@pytest.mark.parametrize('variant', ['base', 'unstacked'])
def test_infer_host_probe_counts_every_param_leaf(ps, variant):
  run, config, _ = ps.build_infer(variant, 16, 2, PrecisionPolicy('bf16'), 'tiny')
  run(1)
  host = run.host_probe()
  # 5 embedding leaves (word, position, token type, LayerNorm scale and bias), 2 qa, and
  # 12 per layer, or 12 in all once stacked
  per_layer = 12 * config.num_layers if variant == 'unstacked' else 12
  assert host['param_leaves'] == 5 + per_layer + 2
  assert 0 < host['args_ms'] and 0 < host['enqueue_ms']
