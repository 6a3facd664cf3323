"""bert_jax: BERT fine-tuning, evaluation and benchmarks on SQuAD with JAX.

Notebook use:
  import bert_jax
  pre = bert_jax.load_pretrained('path/to/hf_or_tf_folder')   # or a hub name
  tok = bert_jax.load_tokenizer(pre.vocab_dir, pre.do_lower_case)
  batch = tok(['Who wrote it?'], ['It was written by Ada.'], return_tensors='np')
  start, end = bert_jax.qa_logits(pre.params, batch['input_ids'], batch['token_type_ids'],
                                  batch['attention_mask'], config=pre.config,
                                  policy=bert_jax.PrecisionPolicy('bf16'))
  fast = bert_jax.prepare_params(pre.params, bert_jax.PrecisionPolicy('bf16'))  # many calls
  mesh = bert_jax.make_mesh(bert_jax.MeshSettings(num_devices=1))
  fn = bert_jax.compile_bound_eval(mesh, pre.config, bert_jax.PrecisionPolicy('bf16'), fast,
                                   dict(batch))   # the weights inside: fn(batch) alone
  logits = fn(dict(batch))   # float32 [batch, time, 2]: [..., 0] start, [..., 1] end
"""
from bert_jax.errors import (BertJaxError, CheckpointError, ConfigError, SquadFormatError,
                             TopologyError)
from bert_jax.hf_weights import export_folder
from bert_jax.inference import compile_bound_eval, prepare_params
from bert_jax.mesh import make_mesh
from bert_jax.model import encode, init_params, qa_logits
from bert_jax.model_config import ModelConfig
from bert_jax.precision import PrecisionPolicy
from bert_jax.pretrained import load_pretrained, random_init
from bert_jax.settings import MeshSettings
from bert_jax.tokenizer import load_tokenizer
from bert_jax.weights import Pretrained

__version__ = '0.1.0'
