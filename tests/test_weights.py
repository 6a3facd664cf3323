"""Weight import (HF folder, pytorch_model.bin, Google TF checkpoint) and export."""
import json
import os

import numpy as np
import pytest

import jax
from bert_jax import hf_weights, model, pretrained, tf_weights
from bert_jax.errors import CheckpointError
from bert_jax.model_config import ModelConfig
from helpers import FP32

CONFIG = ModelConfig(vocab_size=64, hidden_size=16, num_layers=2, num_heads=2,
                     intermediate_size=24, max_position_embeddings=32)


def inputs():
  rng = np.random.default_rng(0)
  mask = np.ones((2, 12), np.int32)
  mask[1, 7:] = 0
  return rng.integers(1, 64, (2, 12)) * mask, np.zeros((2, 12), np.int32), mask


def logits(params, config=CONFIG):
  s, e = model.qa_logits(params, *inputs(), config=config, policy=FP32)
  return np.asarray(s), np.asarray(e)


@pytest.fixture
def params():
  p = model.init_params(jax.random.PRNGKey(0), CONFIG)
  return jax.tree.map(lambda x: x + 0.01 * jax.random.normal(jax.random.PRNGKey(1), x.shape), p)


def test_export_opens_in_transformers_with_same_logits(params, tmp_path, torch_hf):
  torch, transformers = torch_hf
  folder = hf_weights.export_folder(params, CONFIG, str(tmp_path / 'hf'))
  hf = transformers.BertForQuestionAnswering.from_pretrained(folder).eval()
  ids, types, mask = inputs()
  with torch.no_grad():
    out = hf(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(types),
             attention_mask=torch.tensor(mask))
  want = logits(params)
  live = mask.astype(bool)
  assert np.abs(out.start_logits.numpy() - want[0])[live].max() <= 1e-4
  assert np.abs(out.end_logits.numpy() - want[1])[live].max() <= 1e-4
  back = pretrained.load_pretrained(folder)
  assert back.has_qa_head
  np.testing.assert_allclose(logits(back.params, back.config)[0], want[0], atol=1e-6)


def test_pytorch_bin_without_prefix_and_old_layernorm_names(params, tmp_path, torch_hf):
  torch, _ = torch_hf
  folder = hf_weights.export_folder(params, CONFIG, str(tmp_path / 'hf'))
  from safetensors.numpy import load_file
  tensors = load_file(os.path.join(folder, 'model.safetensors'))
  renamed = {k.replace('bert.', '').replace('LayerNorm.weight', 'LayerNorm.gamma')
             .replace('LayerNorm.bias', 'LayerNorm.beta'): torch.tensor(v)
             for k, v in tensors.items()}
  renamed['pooler.dense.weight'] = torch.zeros(16, 16)  # ignored
  os.remove(os.path.join(folder, 'model.safetensors'))
  torch.save(renamed, os.path.join(folder, 'pytorch_model.bin'))
  back = hf_weights.load_folder(folder)
  np.testing.assert_allclose(logits(back.params)[0], logits(params)[0], atol=1e-6)


def test_missing_tensor_is_named(params, tmp_path):
  folder = hf_weights.export_folder(params, CONFIG, str(tmp_path / 'hf'))
  from safetensors.numpy import load_file, save_file
  path = os.path.join(folder, 'model.safetensors')
  tensors = load_file(path)
  del tensors['bert.encoder.layer.1.intermediate.dense.weight']
  save_file(tensors, path)
  with pytest.raises(CheckpointError, match=r"encoder\.layer\.1\.intermediate\.dense\.weight.*"
                                            r"missing.*\(24, 16\)"):
    hf_weights.load_folder(folder)


def test_wrong_shape_names_tensor_and_both_shapes(params, tmp_path):
  folder = hf_weights.export_folder(params, CONFIG, str(tmp_path / 'hf'))
  with open(os.path.join(folder, 'config.json')) as f:
    cfg = json.load(f)
  cfg['intermediate_size'] = 20
  with open(os.path.join(folder, 'config.json'), 'w') as f:
    json.dump(cfg, f)
  with pytest.raises(CheckpointError, match=r"intermediate\.dense\.weight.*shape \(24, 16\).*"
                                            r"expected \(20, 16\)"):
    hf_weights.load_folder(folder)


def test_not_a_checkpoint(tmp_path):
  with pytest.raises(CheckpointError, match='neither config.json'):
    pretrained.load_pretrained(str(tmp_path))
  with pytest.raises(CheckpointError, match='no such folder'):
    pretrained.load_pretrained(str(tmp_path / 'nope' / 'deeper'))


def test_google_tf_checkpoint_loads_to_same_logits(params, tmp_path):
  """A checkpoint written by TensorFlow with Google's variable names and bert_config.json."""
  tf = pytest.importorskip('tensorflow')
  from bert_jax import weights
  folder = tmp_path / 'uncased_L-2_H-16'
  folder.mkdir()
  graph = tf.Graph()
  with graph.as_default():
    variables = []
    for name, value in weights.canonical_tensors(jax.device_get(params)):
      value = np.asarray(value, np.float32)
      if name == 'qa/kernel':
        value = value.T  # run_squad.py stores output_weights as [2, hidden]
      variables.append(tf.compat.v1.Variable(value, name=tf_weights.tf_name(name)))
    saver = tf.compat.v1.train.Saver(variables)
    with tf.compat.v1.Session(graph=graph) as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      saver.save(sess, str(folder / 'bert_model.ckpt'))
  hf_cfg = CONFIG.to_hf_dict()
  with open(folder / 'bert_config.json', 'w') as f:
    json.dump({k: v for k, v in hf_cfg.items() if k not in ('architectures', 'model_type')}, f)
  loaded = pretrained.load_pretrained(str(folder))
  assert loaded.has_qa_head and loaded.do_lower_case
  np.testing.assert_allclose(logits(loaded.params, loaded.config)[0], logits(params)[0],
                             atol=1e-6)
  np.testing.assert_allclose(logits(loaded.params, loaded.config)[1], logits(params)[1],
                             atol=1e-6)
