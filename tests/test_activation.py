"""The tanh GELU (model.activation='gelu_tanh'): its math, its gradient, its parity with
transformers' tanh-GELU BERT, its config plumbing and, on a GPU, its matmul epilogue."""
import re

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from bert_jax import benchmark, hf_weights, inference, model, pretrained, settings, train
from bert_jax import mesh as mesh_lib
from bert_jax.errors import ConfigError
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy
from bert_jax.settings import MeshSettings
from helpers import FP32, TINY


def tanh_gelu_f64(x):
  x = np.asarray(x, np.float64)
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def tanh_gelu_slope_f64(x):
  x = np.asarray(x, np.float64)
  c = np.sqrt(2 / np.pi)
  t = np.tanh(c * (x + 0.044715 * x ** 3))
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)


def test_tanh_gelu_and_its_gradient_match_float64():
  x = np.linspace(-12, 12, 20001).astype(np.float32)
  y, vjp = jax.vjp(model._gelu_tanh, jnp.asarray(x))
  (dx,) = vjp(jnp.ones_like(y))
  # atol: float32's 1 + tanh cancels in the negative tail
  np.testing.assert_allclose(np.asarray(y), tanh_gelu_f64(x), rtol=2e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(dx), tanh_gelu_slope_f64(x), rtol=2e-6, atol=1e-5)
  # the same values as jax's own tanh form, and never NaN where x^3 overflows (fp16)
  np.testing.assert_allclose(np.asarray(y), np.asarray(jax.nn.gelu(x, approximate=True)),
                             rtol=1e-6, atol=1e-7)
  big = jnp.asarray([-300.0, -60.0, 60.0, 300.0], jnp.float16)
  assert np.array_equal(np.asarray(model._gelu_tanh(big), np.float32), [0, 0, 60, 300])


def test_tanh_gelu_backward_takes_float32_for_a_bf16_input():
  x = jnp.asarray(np.linspace(-6, 6, 4097), jnp.bfloat16)
  g = jnp.asarray(np.random.default_rng(0).normal(size=x.shape), jnp.bfloat16)
  (dx,) = jax.vjp(model._gelu_tanh, x)[1](g)
  assert dx.dtype == jnp.bfloat16
  want = np.asarray(g, np.float64) * tanh_gelu_slope_f64(np.asarray(x, np.float32))
  # one bf16 rounding of the float32 product (relative 2^-8), no more
  np.testing.assert_allclose(np.asarray(dx, np.float64), want, rtol=2 ** -8, atol=1e-5)


def test_tanh_gelu_is_close_to_the_exact_one():
  x = jnp.linspace(-10, 10, 200001)
  gap = float(jnp.max(jnp.abs(model._gelu_tanh(x) - model._gelu(x))))
  assert 4e-4 < gap < 5e-4     # the tanh form's known distance from x Phi(x) (4.7e-4)


@pytest.mark.parametrize('hidden_act', ['gelu_pytorch_tanh', 'gelu_new'])
def test_parity_with_transformers_tanh_gelu_bert(tmp_path, hidden_act, torch_hf):
  torch, transformers = torch_hf
  torch.manual_seed(0)
  hf_config = transformers.BertConfig(
      vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=48, max_position_embeddings=64, hidden_act=hidden_act)
  hf = transformers.BertForQuestionAnswering(hf_config).eval()
  with torch.no_grad():   # weights large enough that the GELU sees |x| of a few units,
    for name, p in hf.named_parameters():   # where the two GELUs differ most
      if 'dense' in name or 'qa_outputs' in name:
        p.normal_(0, 0.5 if name.endswith('bias') else 0.3)
  hf.save_pretrained(str(tmp_path))
  pre = hf_weights.load_folder(str(tmp_path), attention='xla')
  assert pre.config.activation == 'gelu_tanh'
  rng = np.random.default_rng(1)
  ids = rng.integers(1, 101, (3, 20))
  mask = np.ones((3, 20), np.int64)
  mask[1, 12:] = 0
  types = np.zeros_like(ids)
  with torch.no_grad():
    out = hf(input_ids=torch.tensor(ids * mask), token_type_ids=torch.tensor(types),
             attention_mask=torch.tensor(mask))
  got_s, got_e = model.qa_logits(pre.params, ids * mask, types, mask, config=pre.config,
                                 policy=FP32)
  live = mask.astype(bool)
  assert np.abs(np.asarray(got_s) - out.start_logits.numpy())[live].max() <= 1e-4
  assert np.abs(np.asarray(got_e) - out.end_logits.numpy())[live].max() <= 1e-4
  # the exact GELU on the same weights is measurably another model
  exact = model.qa_logits(pre.params, ids * mask, types, mask,
                          config=pre.config.replace(activation='gelu'), policy=FP32)[0]
  assert np.abs(np.asarray(exact) - out.start_logits.numpy())[live].max() > 1e-4


def test_the_tanh_gelu_barely_moves_a_pretrained_exact_gelu_checkpoint(minilm):
  """MiniLM was pretrained with the exact GELU: read with the tanh one, its hidden states
  move by under 1 % (0.4 % measured on 384-token windows), each token's direction by under
  1e-4, a start fine-tuning absorbs; not the same model, as the parity tests show."""
  pre = pretrained.load_pretrained(minilm)
  config = pre.config.replace(attention='xla')
  rng = np.random.default_rng(0)
  ids = rng.integers(1000, 30000, (4, 128))
  mask = (np.arange(128)[None] < np.array([[128], [100], [64], [128]])).astype(np.int32)
  ids, types = ids * mask, np.zeros_like(ids)
  a, b = (np.asarray(model.encode(pre.params, ids, types, mask, config=config.replace(
      activation=act), policy=FP32))[mask.astype(bool)] for act in ('gelu', 'gelu_tanh'))
  cos = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
  relative = np.linalg.norm(a - b) / np.linalg.norm(a)
  assert 1e-4 < relative < 1e-2 and cos.min() > 1 - 1e-4


def test_a_tanh_gelu_export_reopens_as_tanh_gelu(tmp_path, torch_hf):
  _, transformers = torch_hf
  config = TINY.replace(activation='gelu_tanh')
  params = benchmark.trained_like(model.init_params(jax.random.PRNGKey(0), config),
                                  jax.random.PRNGKey(1), scale=0.3)
  folder = hf_weights.export_folder(params, config, str(tmp_path / 'hf'))
  hf = transformers.BertForQuestionAnswering.from_pretrained(folder).eval()
  assert hf.config.hidden_act == 'gelu_pytorch_tanh'
  back = pretrained.load_pretrained(folder)
  assert back.config.activation == 'gelu_tanh'


def test_config_names_and_errors():
  assert ModelConfig.from_hf_dict({**TINY.to_hf_dict()}).activation == 'gelu'
  for name in ('gelu_new', 'gelu_pytorch_tanh'):
    hf = {**TINY.to_hf_dict(), 'hidden_act': name}
    assert ModelConfig.from_hf_dict(hf).activation == 'gelu_tanh'
  with pytest.raises(ConfigError, match="hidden_act.*'relu'.*gelu_pytorch_tanh"):
    ModelConfig.from_hf_dict({**TINY.to_hf_dict(), 'hidden_act': 'relu'})
  with pytest.raises(ConfigError, match='model.activation'):
    ModelConfig(activation='swish')
  assert TINY.replace(activation='gelu_tanh').to_hf_dict()['hidden_act'] == 'gelu_pytorch_tanh'


def test_run_config_keeps_the_checkpoints_activation_unless_asked():
  from configs import tiny_cpu
  c = tiny_cpu.get_config()
  tanh_checkpoint = TINY.replace(activation='gelu_tanh')
  assert settings.from_config(c).model_config(tanh_checkpoint).activation == 'gelu_tanh'
  c.model.activation = 'gelu'
  assert settings.from_config(c).model_config(tanh_checkpoint).activation == 'gelu'
  c.model.activation = 'gelu_tanh'
  assert settings.from_config(c).model_config(TINY).activation == 'gelu_tanh'
  c.model.activation = 'tanh'
  with pytest.raises(ConfigError, match=r"model.activation.*'tanh'.*gelu_tanh"):
    settings.from_config(c)


def test_bench_weights_have_no_zero_bias_or_unit_scale_for_the_compiler_to_fold():
  p = model.init_params(jax.random.PRNGKey(0), TINY)
  q = benchmark.trained_like(p, jax.random.PRNGKey(1))
  for (path, before), after in zip(jax.tree_util.tree_flatten_with_path(p)[0],
                                   jax.tree.leaves(q)):
    name = jax.tree_util.keystr(path)
    if name.endswith("['bias']"):
      assert np.all(np.asarray(before) == 0) and np.all(np.asarray(after) != 0), name
    elif name.endswith("['scale']"):
      assert np.all(np.asarray(after) != 1), name
    else:
      np.testing.assert_array_equal(after, before, err_msg=name)


@pytest.mark.skipif(jax.default_backend() != 'gpu', reason='cuBLASLt epilogues need a GPU')
@pytest.mark.parametrize('name', ['bf16', 'fp16'])
def test_tanh_gelu_folds_into_the_matmul_epilogue_on_gpu(name):
  """On GPU the FFN-in matmul applies bias + tanh GELU itself (BIAS_GELU; BIAS_GELU_AUX when
  the backward needs the pre-activation), and the numbers agree with float32 math."""
  policy = PrecisionPolicy(name)
  config = ModelConfig.preset('base').replace(activation='gelu_tanh', hidden_dropout=0.0)
  d, f = config.hidden_size, config.intermediate_size
  key = iter(jax.random.split(jax.random.PRNGKey(0), 3))
  p = {'ffn_in': {'kernel': 0.02 * jax.random.normal(next(key), (d, f)),
                  'bias': 0.5 * jax.random.normal(next(key), (f,))}}
  x = jax.random.normal(next(key), (4, 128, d)).astype(policy.compute_dtype)

  def hidden(p, x):
    return model._dense(x, p['ffn_in'], policy)

  def ffn(p, x, act):
    h = model._dense(x, p['ffn_in'], policy)
    return act(h)

  fwd = jax.jit(lambda p, x: ffn(p, x, model._gelu_tanh))
  # a loss whose gradient needs the GELU's output as well as its input (as the train step's,
  # where the output feeds the next matmul), so that the forward GELU stays in the program
  grad = jax.jit(jax.grad(lambda p, x: jnp.sum(jnp.square(
      ffn(p, x, model._gelu_tanh).astype(jnp.float32)))))
  # compiled as the product compiles its steps: matmuls on cuBLAS(Lt), not XLA's Triton gemms
  mesh = mesh_lib.make_mesh(MeshSettings(num_devices=1))
  epilogues = lambda fn, options: re.findall(r'"epilogue":"(\w+)"', fn.lower(p, x).compile(
      compiler_options=options).as_text())
  assert 'BIAS_GELU' in epilogues(fwd, inference.default_compiler_options(mesh))
  assert 'BIAS_GELU_AUX' in epilogues(grad, train.default_compiler_options(mesh))
  h32 = np.asarray(hidden(p, x), np.float64)
  # the epilogue takes the float32 sum before its bf16/fp16 rounding, and its tanh is an
  # approximation: on an H200, 0.015 % of the outputs were 2e-3 to 3e-3 off, in the negative
  # tail where 1 + tanh cancels (x near -3, GELU about -0.02)
  np.testing.assert_allclose(np.asarray(fwd(p, x), np.float64), tanh_gelu_f64(h32),
                             rtol=2e-2, atol=4e-3)
  # the gradient through the epilogue's aux output against the float32 custom VJP off it
  want = jax.grad(lambda p, x: jnp.sum(jnp.square(
      model._gelu_tanh(hidden(p, x).astype(jnp.float32)))))(p, x)
  got = grad(p, x)
  for a, b in zip(jax.tree.leaves(got['ffn_in']), jax.tree.leaves(want['ffn_in'])):
    scale = float(np.max(np.abs(np.asarray(b))))
    assert float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b)))) <= 2e-2 * scale
