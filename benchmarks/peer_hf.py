"""The peer: transformers' PyTorch BertForQuestionAnswering on the same shapes, same schema.

  python benchmarks/peer_hf.py --out records.jsonl --train 384:32 128:64 --infer 384:1 384:8
Random BERT-Large weights; bf16/fp16 autocast; eager and torch.compile. Writes one JSON
line per point with the fields bert_jax's records use (tagged framework=pytorch-hf).

Training runs without attention-probability dropout by default (--attention-dropout 0.0), as
bert_jax's training step does on GPU: its cuDNN attention has none (README, model.attention).
Hidden dropout stays 0.1 on both sides. Before this option the peer trained with
transformers' default of 0.1, a step with more work in it than ours; its train records then
carried no 'attention_dropout' field (bert_jax.report labels them so).

--activation gelu_tanh gives the peer the tanh GELU (transformers' 'gelu_pytorch_tanh', one
PyTorch kernel), to stand beside bert_jax's model.activation=gelu_tanh; records carry
'activation' (those from before the option have none and ran the exact 'gelu').

--train-file / --dev-file (with --vocab-dir) give the peer the real SQuAD windows bert_jax's
bench takes for the same point (train: its first batches, seed 0; inference: batches spread
over the dev set, 'timed_windows': 'spread'; up to and including 2026-11-29's trim calls,
the first dev windows in order), where it otherwise runs synthetic full windows; records say
which in 'data'.
bert_jax's fused attention skips a real window's padding, so this is the like-for-like peer
for its real-window records.
"""
import argparse
import datetime
import json
import os
import time
import types

os.environ.setdefault('JAX_PLATFORMS', 'cpu')  # the featuriser's jax must not take the GPU

import numpy as np
import torch
import transformers

from bert_jax.model_config import HF_HIDDEN_ACT  # our activation names -> transformers'
from bert_jax import gpu_telemetry  # the clock and power the timed steps ran at, as ours
from bert_jax.records import SCHEMA, percentiles, real_tokens_mean  # the same as ours


def bert_config(layers, hidden, heads, ff, attention_dropout=0.0, activation='gelu'):
  """BERT's config at this shape; hidden dropout 0.1 (transformers' default, and ours)."""
  return transformers.BertConfig(num_hidden_layers=layers, hidden_size=hidden,
                                 num_attention_heads=heads, intermediate_size=ff,
                                 hidden_dropout_prob=0.1,
                                 hidden_act=HF_HIDDEN_ACT[activation],
                                 attention_probs_dropout_prob=attention_dropout)


def make_model(layers, hidden, heads, ff, attention_dropout=0.0, activation='gelu'):
  return transformers.BertForQuestionAnswering(
      bert_config(layers, hidden, heads, ff, attention_dropout, activation)).cuda()


def batch(b, s):
  g = torch.Generator().manual_seed(0)
  return {'input_ids': torch.randint(1000, 30000, (b, s), generator=g).cuda(),
          'token_type_ids': (torch.arange(s)[None] > s // 4).long().repeat(b, 1).cuda(),
          'attention_mask': torch.ones(b, s, dtype=torch.long).cuda(),
          'start_positions': torch.randint(0, s, (b,), generator=g).cuda(),
          'end_positions': torch.randint(0, s, (b,), generator=g).cuda()}


def squad_file(args, kind):
  """The SQuAD file whose real windows the peer takes for `kind` ('' for synthetic ones)."""
  return args.train_file if kind == 'train' else args.dev_file


def squad_windows(args, kind, seq, b, count):
  """`count` batches of the real windows bert_jax's bench times at this point, as CPU tensors:
  for training the first batches of batches.TrainBatches (seed 0, as benchmark.time_train),
  for inference batches spread over the dev set (batches.spread_eval_batches, as
  benchmark.time_infer)."""
  from bert_jax import batches, benchmark, mesh
  from bert_jax.settings import MeshSettings
  data = types.SimpleNamespace(train_file=args.train_file, dev_file=args.dev_file,
                               cache_dir=args.cache_dir, version_2=False, max_query_length=64)
  features = benchmark.squad_features(data, kind, seq, args.vocab_dir)
  if features is None:
    raise SystemExit(f'peer_hf: no {kind} file at {squad_file(args, kind)!r}')
  sharding = mesh.batch_sharding(mesh.make_mesh(MeshSettings(num_devices=1)))
  if kind == 'train':
    source = batches.TrainBatches(features, b, 0, sharding)
    hosts = [source.host_batch(i % source.steps_per_epoch) for i in range(count)]
  else:
    hosts = [x for x, _ in batches.spread_eval_batches(features, b, sharding, count)]
  return [{k: torch.from_numpy(np.asarray(v, np.int64)) for k, v in h.items()} for h in hosts]


def inputs(args, kind, seq, b, count):
  """The point's batches on the GPU: real windows where a SQuAD file is given, else one
  synthetic batch of full windows."""
  if squad_file(args, kind):
    return [{k: v.cuda() for k, v in x.items()} for x in squad_windows(args, kind, seq, b, count)]
  x = batch(b, seq)
  return [x if kind == 'train' else {k: v for k, v in x.items() if k.endswith(('ids', 'mask'))}]


def env():
  return {'schema': SCHEMA, 'device': torch.cuda.get_device_name(), 'torch': torch.__version__,
          'transformers': transformers.__version__, 'framework': 'pytorch-hf',
          'time': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}


def train_point(args, seq, b, compiled, dtype):
  torch.manual_seed(0)
  m = make_model(*args.shape, attention_dropout=args.attention_dropout,
                 activation=args.activation).train()
  opt = torch.optim.AdamW(m.parameters(), lr=5e-5, weight_decay=0.01, fused=True)
  step_model = torch.compile(m) if compiled else m
  scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
  xs, n = inputs(args, 'train', seq, b, min(args.steps, 4)), [0]
  def step():
    x = xs[n[0] % len(xs)]
    n[0] += 1
    with torch.autocast('cuda', dtype=dtype):
      loss = step_model(**x).loss
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    scaler.step(opt); scaler.update(); opt.zero_grad(set_to_none=True)
  t0 = time.perf_counter()
  for _ in range(3):
    step()
  torch.cuda.synchronize()
  warm = time.perf_counter() - t0
  with gpu_telemetry.sample(1, platform='gpu') as telemetry:
    t0 = time.perf_counter()
    for _ in range(args.steps):
      step()
    torch.cuda.synchronize()
    total = time.perf_counter() - t0
  step_ms = []
  for _ in range(args.steps):
    t = time.perf_counter()
    step()
    torch.cuda.synchronize()
    step_ms.append((time.perf_counter() - t) * 1e3)
  return {'kind': 'train', 'seq_len': seq, 'batch_size': b, 'batch_size_per_device': b,
          'num_devices': 1, 'attention_dropout': args.attention_dropout, 'warmup_s': warm,
          'timed_steps': args.steps,
          'step_time_ms': percentiles(step_ms), 'peak_memory_gb':
          torch.cuda.max_memory_allocated() / 2 ** 30,
          'sentences_per_s': args.steps * b / total,
          'sentences_per_s_per_device': args.steps * b / total, **telemetry.fields()}



def infer_point(args, seq, b, compiled, dtype):
  torch.manual_seed(0)
  m = make_model(*args.shape, activation=args.activation).eval().to(dtype)
  run = torch.compile(m, mode='reduce-overhead') if compiled else m
  xs = inputs(args, 'infer', seq, b, min(args.iters, 16))
  with torch.inference_mode():
    t0 = time.perf_counter()
    for i in range(5):
      run(**xs[i % len(xs)])
    torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    lat = []
    with gpu_telemetry.sample(1, platform='gpu') as telemetry:
      for i in range(args.iters):
        t = time.perf_counter()
        run(**xs[i % len(xs)])
        torch.cuda.synchronize()
        lat.append((time.perf_counter() - t) * 1e3)
  total = sum(lat) / 1e3
  real = {}
  if squad_file(args, 'infer'):   # the windows the timed calls held, as benchmark.time_infer
    masks = [x['attention_mask'].cpu().numpy() for x in xs]
    real = {'timed_windows': 'spread', 'real_tokens_mean': real_tokens_mean(
        [masks[i % len(xs)] for i in range(args.iters)])}
  return {'kind': 'infer', 'seq_len': seq, 'batch_size': b, 'num_devices': 1, 'warmup_s': warm,
          'sentences': args.iters * b, 'total_inference_s': total,
          'latency_ms': percentiles(lat), 'sentences_per_s': args.iters * b / total,
          **telemetry.fields(), **real}


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--out', required=True)
  p.add_argument('--train', nargs='*', default=[])
  p.add_argument('--infer', nargs='*', default=[])
  p.add_argument('--precision', nargs='*', default=['bf16'])
  p.add_argument('--modes', nargs='*', default=['eager', 'compile'])
  p.add_argument('--steps', type=int, default=20)
  p.add_argument('--iters', type=int, default=100)
  p.add_argument('--shape', type=int, nargs=4, default=[24, 1024, 16, 4096])
  p.add_argument('--attention-dropout', type=float, default=0.0,
                 help="training's attention-probability dropout; 0.0 matches bert_jax's "
                      "cuDNN attention, 0.1 is BERT's recipe (and what this script used before)")
  p.add_argument('--activation', choices=sorted(HF_HIDDEN_ACT), default='gelu',
                 help="the feed-forward GELU: exact 'gelu' (BERT's, the default) or 'gelu_tanh' "
                      "(transformers' gelu_pytorch_tanh), as bert_jax's model.activation")
  p.add_argument('--train-file', default='',
                 help="SQuAD train json(.gz): training on its real windows, as bert_jax's bench")
  p.add_argument('--dev-file', default='',
                 help="SQuAD dev json(.gz): inference on its real windows, as bert_jax's bench")
  p.add_argument('--vocab-dir', default='',
                 help="the tokenizer's folder for those files (BERT's uncased vocab)")
  p.add_argument('--cache-dir', default=None, help="the featuriser's cache (bert_jax's default)")
  args = p.parse_args()
  if not 0.0 <= args.attention_dropout < 1.0:
    p.error(f'--attention-dropout {args.attention_dropout}: a probability in [0, 1) is needed')
  dtypes = {'bf16': torch.bfloat16, 'fp16': torch.float16}
  for kind, specs, fn in (('train', args.train, train_point), ('infer', args.infer, infer_point)):
    for spec in specs:
      seq, b = map(int, spec.split(':'))
      for prec in args.precision:
        for mode in args.modes:
          try:
            rec = fn(args, seq, b, mode == 'compile', dtypes[prec])
            rec['status'] = 'ok'
          except torch.OutOfMemoryError as e:
            rec = {'kind': kind, 'seq_len': seq, 'batch_size': b, 'status': 'oom', 'error': str(e)[:200]}
          torch.cuda.empty_cache()
          torch.cuda.reset_peak_memory_stats()
          rec.update(env(), precision=prec, mode=mode, activation=args.activation,
                     model_layers=args.shape[0],
                     model_hidden=args.shape[1],
                     data='squad' if squad_file(args, kind) else 'synthetic')
          print(json.dumps(rec), flush=True)
          with open(args.out, 'a') as f:
            f.write(json.dumps(rec) + '\n')


if __name__ == '__main__':
  main()
