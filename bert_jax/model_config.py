"""Typed, frozen description of a BERT encoder's shape (never a ConfigDict)."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from bert_jax.errors import ConfigError

ATTENTION_IMPLS = ('xla', 'fused', 'cudnn')
ACTIVATIONS = ('gelu', 'gelu_tanh')
# Hugging Face's hidden_act names for each of ours ('gelu_new' and 'gelu_pytorch_tanh' are the
# same tanh formula; transformers' own BERT checkpoints say 'gelu', the exact one)
HF_ACTIVATIONS = {'gelu': 'gelu', 'gelu_new': 'gelu_tanh', 'gelu_pytorch_tanh': 'gelu_tanh'}
HF_HIDDEN_ACT = {'gelu': 'gelu', 'gelu_tanh': 'gelu_pytorch_tanh'}   # ours -> what we write


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shape and regularisation of a BERT encoder with a SQuAD span head.

  Attributes:
    attention: 'xla' (einsum + softmax; any mask; attention-probability dropout),
      'fused' (jax.nn.dot_product_attention: cuDNN on GPU under bf16/fp16, JAX's XLA
      implementation otherwise) or
      'cudnn' (force cuDNN fused attention). The fused paths take the mask as
      per-sequence lengths, so padding must sit at the end (as in SQuAD features),
      and they have no attention-probability dropout.
    activation: the feed-forward GELU. 'gelu' is the exact x Phi(x) (erf) that Hugging Face
      BERT checkpoints name; 'gelu_tanh' is the tanh approximation
      0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) of Google's original BERT code
      (transformers' 'gelu_pytorch_tanh' / 'gelu_new'; at most 4.7e-4 from the exact one).
      On GPU, XLA folds the tanh form into the FFN-in matmul's cuBLASLt epilogue with its
      bias (and, when training, the pre-activation as a second output), so the GELU costs no
      pass of its own (docs/performance_notes.md, 58). Google's bert_config.json says 'gelu'
      too, which Google's TF code computed in the tanh form; it loads as the exact GELU, as
      transformers loads it (--config.model.activation=gelu_tanh gives Google's back).
  """
  vocab_size: int = 30522
  hidden_size: int = 1024
  num_layers: int = 24
  num_heads: int = 16
  intermediate_size: int = 4096
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  initializer_range: float = 0.02
  attention: str = 'xla'
  activation: str = 'gelu'

  def __post_init__(self):
    for name in ('vocab_size', 'hidden_size', 'num_layers', 'num_heads',
                 'intermediate_size', 'max_position_embeddings', 'type_vocab_size'):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ConfigError(f'model.{name}', value, 'must be a positive integer')
    if self.hidden_size % self.num_heads:
      raise ConfigError('model.num_heads', self.num_heads,
                        f'must divide hidden_size={self.hidden_size}')
    for name in ('hidden_dropout', 'attention_dropout'):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        raise ConfigError(f'model.{name}', value, 'must lie in [0, 1)')
    if self.attention not in ATTENTION_IMPLS:
      raise ConfigError('model.attention', self.attention,
                        f'choose one of {ATTENTION_IMPLS}')
    if self.activation not in ACTIVATIONS:
      raise ConfigError('model.activation', self.activation, f'choose one of {ACTIVATIONS}')

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  def replace(self, **changes) -> 'ModelConfig':
    return dataclasses.replace(self, **changes)

  @classmethod
  def preset(cls, name: str, **overrides) -> 'ModelConfig':
    """'tiny', 'mini' (MiniLM-L6-H384), 'base' or 'large' (the BERT paper's shapes)."""
    if name not in PRESETS:
      raise ConfigError('model.preset', name, f'choose one of {sorted(PRESETS)}')
    return cls(**{**PRESETS[name], **overrides})

  @classmethod
  def from_hf_dict(cls, hf: Mapping[str, Any], **overrides) -> 'ModelConfig':
    """From a Hugging Face BertConfig dict (config.json) or Google's bert_config.json."""
    act = hf.get('hidden_act', 'gelu')
    if act not in HF_ACTIVATIONS:
      raise ConfigError('hidden_act', act, f'bert_jax implements {sorted(HF_ACTIVATIONS)} '
                        "(the exact GELU, or its tanh form); a BERT checkpoint says 'gelu'")
    kind = hf.get('position_embedding_type', 'absolute')
    if kind != 'absolute':
      raise ConfigError('position_embedding_type', kind, "only 'absolute' is supported")
    fields = dict(
        vocab_size=hf['vocab_size'], hidden_size=hf['hidden_size'],
        num_layers=hf['num_hidden_layers'], num_heads=hf['num_attention_heads'],
        intermediate_size=hf['intermediate_size'],
        max_position_embeddings=hf.get('max_position_embeddings', 512),
        type_vocab_size=hf.get('type_vocab_size', 2),
        layer_norm_eps=hf.get('layer_norm_eps', 1e-12),
        hidden_dropout=hf.get('hidden_dropout_prob', 0.1),
        attention_dropout=hf.get('attention_probs_dropout_prob', 0.1),
        initializer_range=hf.get('initializer_range', 0.02), activation=HF_ACTIVATIONS[act])
    return cls(**{**fields, **overrides})

  def to_hf_dict(self) -> dict:
    """The Hugging Face BertConfig dict for this shape."""
    return {
        'architectures': ['BertForQuestionAnswering'], 'model_type': 'bert',
        'vocab_size': self.vocab_size, 'hidden_size': self.hidden_size,
        'num_hidden_layers': self.num_layers, 'num_attention_heads': self.num_heads,
        'intermediate_size': self.intermediate_size,
        'hidden_act': HF_HIDDEN_ACT[self.activation],
        'max_position_embeddings': self.max_position_embeddings,
        'type_vocab_size': self.type_vocab_size, 'layer_norm_eps': self.layer_norm_eps,
        'hidden_dropout_prob': self.hidden_dropout,
        'attention_probs_dropout_prob': self.attention_dropout,
        'initializer_range': self.initializer_range, 'pad_token_id': 0,
        'position_embedding_type': 'absolute',
    }

  def num_params(self) -> int:
    d, f = self.hidden_size, self.intermediate_size
    emb = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size + 2) * d
    layer = 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d
    return emb + self.num_layers * layer + 2 * d + 2


PRESETS = {
    'tiny': dict(vocab_size=30522, hidden_size=64, num_layers=2, num_heads=4,
                 intermediate_size=128, max_position_embeddings=512),
    'mini': dict(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536),
    'base': dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
    'large': dict(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096),
}
