"""The whole job: fine-tune, checkpoint, predict the dev set, score it, write records."""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time

import jax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from bert_jax import (batches, checkpointing, hf_weights, inference, mesh as mesh_lib,
                      optim, packing, pretrained, records, settings as settings_lib, steps)
from bert_jax.loss_scale import LossScale
from bert_jax.metrics_writer import MetricsWriter
from bert_jax.squad import evaluate, features as features_lib, postprocess, sources
from bert_jax.squad.features import Features
from bert_jax.tokenizer import check_fits, load_tokenizer, vocab_fingerprint
from bert_jax.weights import Pretrained


@dataclasses.dataclass
class Job:
  """What every stage needs: validated settings, devices, weights and tokenizer."""
  settings: settings_lib.Settings
  mesh: Mesh
  pretrained: Pretrained
  tokenizer: object

  @property
  def model_config(self):
    return self.pretrained.config


def setup(config) -> Job:
  """Validates the config, joins the hosts, builds the mesh, loads weights and tokenizer."""
  s = settings_lib.from_config(config)
  mesh_lib.initialize_distributed(s.mesh)
  mesh_lib.use_compilation_cache(s.train.compilation_cache_dir)
  mesh = mesh_lib.make_mesh(s.mesh)
  mesh_lib.log_topology(mesh)
  # Both batches split over the devices: checked now, not when the dev set is reached after
  # the whole training run (a JAX IndivisibleError there)
  for field, size in (('train.batch_size', s.train.batch_size),
                      ('eval.batch_size', s.eval.batch_size)):
    batches.process_rows(size, mesh_lib.batch_sharding(mesh), field)
  rng = jax.random.PRNGKey(s.train.seed)
  if s.source.init_checkpoint:
    pre = pretrained.load_pretrained(s.source.init_checkpoint,
                                     checkpoint_format=s.source.checkpoint_format, rng=rng)
    if s.source.vocab_dir:
      pre = dataclasses.replace(pre, vocab_dir=s.source.vocab_dir)
  else:
    pre = pretrained.random_init(s.model_config(), rng, s.source.vocab_dir)
  pre = dataclasses.replace(pre, config=s.model_config(pre.config))
  if pre.vocab_dir is None:
    raise settings_lib.ConfigError('model.vocab_dir', s.source.vocab_dir,
                                   'the checkpoint has no vocab.txt; point at a folder with one')
  tokenizer = load_tokenizer(pre.vocab_dir, pre.do_lower_case)
  check_fits(tokenizer, pre.config.vocab_size, pre.vocab_dir)
  return Job(s, mesh, pre, tokenizer)


def load_features(job: Job, split: str) -> tuple[list, Features, object]:
  """Examples and (cached) windowed features of the train or dev split."""
  d = job.settings.data
  is_training = split == 'train'
  spec = d.train_file if is_training else d.dev_file
  limit = d.max_train_examples if is_training else d.max_eval_examples
  cache_dir = d.cache_dir or sources.default_cache_dir()
  examples, report, identity = sources.read(spec, split, is_training=is_training,
                                            version_2=d.version_2, cache_dir=cache_dir,
                                            limit=limit)
  feats = features_lib.cached_featurize(
      examples, job.tokenizer, data_identity=identity,
      vocab_fingerprint=vocab_fingerprint(job.tokenizer), cache_dir=cache_dir,
      is_training=is_training, max_seq_length=d.max_seq_length, doc_stride=d.doc_stride,
      max_query_length=d.max_query_length)
  return examples, feats, report


def total_steps(train: settings_lib.TrainSettings, steps_per_epoch: int) -> int:
  return train.max_steps or max(1, math.ceil(train.num_epochs * steps_per_epoch))


# On GPU the train step's matmuls come from cuBLAS only: with XLA's Triton gemm fusions off,
# the seq-384 BERT-Large step ran 4 % faster on the same H200 (docs/performance_notes.md, 22).
# Inference compiles with cuBLAS only too (inference.GPU_EVAL_COMPILER_OPTIONS, entry 52).
# With the state split over several GPUs (mesh.shard_state), the weights' all-gathers and the
# gradients' reduce-scatters are combined up to 64 MiB: 4 x H200 ran the step 1.2 % faster
# than with XLA's default, and 8 MiB 2.1 % slower (entry 39). Without a split they do nothing.
GPU_TRAIN_COMPILER_OPTIONS = {
    'xla_gpu_enable_triton_gemm': False,
    'xla_gpu_all_gather_combine_threshold_bytes': 64 << 20,
    'xla_gpu_reduce_scatter_combine_threshold_bytes': 64 << 20,
}


def default_compiler_options(mesh: Mesh) -> dict:
  """The XLA options jit_train_step compiles with unless told otherwise (records carry them)."""
  return mesh_lib.gpu_options(mesh, GPU_TRAIN_COMPILER_OPTIONS)


def jit_train_step(mesh: Mesh, config, policy, optimizer, accumulation: int = 1,
                   compiler_options: dict | None = None, state_sharding=None):
  """The jitted step. State in and out as state_sharding says (donated); the batch split over
  'data'.
  compiler_options (XLA's, e.g. {'xla_gpu_enable_triton_gemm': True}) replace the default:
  GPU_TRAIN_COMPILER_OPTIONS on GPU, none elsewhere. state_sharding: the state's shardings
  (a tree like the state, e.g. mesh.state_shardings'); None replicates it. Where any of them
  splits an array, the step gathers the layers' weights before use."""
  split = state_sharding is not None and not all(
      s.is_fully_replicated for s in jax.tree.leaves(state_sharding))
  fn = functools.partial(steps.train_step, config=config, policy=policy, optimizer=optimizer,
                         accumulation=accumulation, gather=split)
  fn = mesh_lib.traced_under(mesh, fn, 'train_step')
  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  if compiler_options is None:
    compiler_options = default_compiler_options(mesh)
  state_sharding = rep if state_sharding is None else state_sharding
  return jax.jit(fn, in_shardings=(state_sharding, data), out_shardings=(state_sharding, rep),
                 donate_argnums=0,
                 compiler_options=compiler_options or None)


def make_train_step(job: Job, optimizer, state):
  """The jitted step for `state` as initial_state placed it (split or replicated)."""
  s = job.settings
  return jit_train_step(job.mesh, job.model_config, s.precision, optimizer,
                        s.train.num_accumulation_steps,
                        state_sharding=jax.tree.map(lambda x: x.sharding, state))


def initial_state(job: Job, optimizer) -> steps.TrainState:
  """The state at step 0, replicated, or split over the devices where mesh.shard_state."""
  t = job.settings.train
  scale = LossScale.for_policy(job.settings.precision, t.loss_scale_init,
                               t.loss_scale_growth_interval)
  rng = jax.random.fold_in(jax.random.PRNGKey(t.seed), 1)
  params = jax.device_put(job.pretrained.params, mesh_lib.replicated(job.mesh))
  create = lambda p: steps.create_state(p, optimizer, rng, scale)
  shardings = mesh_lib.state_shardings(job.mesh, jax.eval_shape(create, params),
                                       job.settings.mesh.shard_state)
  return jax.jit(create, out_shardings=shardings)(params)


def make_batches(s: settings_lib.Settings, train_features: Features, mesh: Mesh):
  """Training batches: padded rows, length buckets, or packed rows (data.packing)."""
  sharding = mesh_lib.batch_sharding(mesh)
  if s.data.packing:
    return packing.PackedBatches(train_features, s.train.batch_size, s.train.seed, sharding,
                                 s.data.max_windows_per_row)
  return batches.TrainBatches(train_features, s.train.batch_size, s.train.seed, sharding,
                              s.data.bucket_width)


def train(job: Job, workdir: str, train_features: Features) -> tuple[steps.TrainState, dict]:
  """Runs (or resumes) training; returns the final state and timing figures: besides the
  compiling steps and the steady ones, the set-up before the first step (batches, the initial
  or restored state, the step function) and the final checkpoint, written and closed."""
  t_enter = time.perf_counter()
  s = job.settings
  data = make_batches(s, train_features, job.mesh)
  n_steps = total_steps(s.train, data.steps_per_epoch)
  optimizer = optim.make_optimizer(s.train, n_steps)
  state = initial_state(job, optimizer)
  step_fn = make_train_step(job, optimizer, state)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'), s.train.keep_checkpoints)
  start = 0
  if ckpt.latest_step() is not None:
    state = checkpointing.restore_state(ckpt, checkpointing.abstract_like(
        state, jax.tree.map(lambda x: x.sharding, state)))
    start = int(ckpt.latest_step())
  writer = MetricsWriter(workdir)
  logging.info('training steps %d..%d (%d per epoch, global batch %d)', start, n_steps,
               data.steps_per_epoch, s.train.batch_size)
  # Steps that compile (the first, and the first of each new bucket width) are timed
  # apart, synchronised on both sides, and kept out of the throughput.
  timing = {'steps': n_steps, 'start_step': start, 'compile_s': 0.0, 'steady_s': 0.0,
            'steady_steps': 0, 'steady_sentences': 0, 'compiled_widths': []}
  jax.block_until_ready(state)
  timing['setup_s'] = time.perf_counter() - t_enter
  bar = tqdm(total=n_steps, initial=start, desc='training', unit='step',
             disable=jax.process_index() != 0)
  pending, t_steady, later_compiles = None, None, 0.0
  every = s.train.checkpoint_every
  for step, batch in zip(range(start, n_steps),
                         batches.prefetch(data.device_batch, range(start, n_steps))):
    width = batch['input_ids'].shape[1]
    compiles = width not in timing['compiled_widths']
    if compiles:
      jax.block_until_ready(state)
      t0 = time.perf_counter()
    state, metrics = step_fn(state, batch)
    if compiles:
      jax.block_until_ready(state)
      took = time.perf_counter() - t0
      timing['compile_s'] += took
      timing['compiled_widths'].append(width)
      if t_steady is None:
        t_steady = time.perf_counter()
      else:
        later_compiles += took
    else:
      timing['steady_sentences'] += data.windows(step)   # packed rows hold several
    if pending is not None and (step % s.train.log_every == 0 or step == n_steps - 1):
      _log(writer, bar, *pending, t_steady, later_compiles, timing['steady_sentences'])
    pending = (step, metrics)
    bar.update(1)
    if every and (step + 1) % every == 0 and step + 1 < n_steps:
      ckpt.save(step + 1, state)
  jax.block_until_ready(state)
  t_end = time.perf_counter()
  if t_steady is not None:
    timing['steady_s'] = t_end - t_steady - later_compiles
    timing['steady_steps'] = n_steps - start - len(timing['compiled_widths'])
    _log(writer, bar, *pending, t_steady, later_compiles, timing['steady_sentences'])
    if ckpt.latest_step() != n_steps:
      ckpt.save(n_steps, state)
  bar.close()
  ckpt.close()   # waits for the checkpoint's asynchronous save
  timing['final_checkpoint_s'] = time.perf_counter() - t_end
  return state, timing


def _log(writer, bar, step, metrics, t_steady, excluded_s, steady_sentences):
  m = {k: float(v) for k, v in jax.device_get(metrics).items()}
  elapsed = time.perf_counter() - t_steady - excluded_s
  if steady_sentences > 0 and elapsed > 0:
    m['sentences_per_s'] = steady_sentences / elapsed
  bar.set_postfix(loss=f"{m['loss']:.3f}", sent_s=f"{m.get('sentences_per_s', 0):.0f}")
  writer.write(step, m)


def predict_and_score(job: Job, params, workdir: str) -> dict:
  """Dev-set predictions files, official metrics and inference timing."""
  s = job.settings
  examples, feats, _ = load_features(job, 'dev')
  start, end, timing = inference.predict_logits(params, feats, job.mesh, job.model_config,
                                                s.precision, s.eval.batch_size,
                                                s.eval.scan_layers, s.eval.packing,
                                                s.data.max_windows_per_row, s.eval.bucket_width,
                                                s.eval.group_by_width)
  preds, nbest, odds = postprocess.predict_answers(
      examples, feats, start, end, n_best_size=s.eval.n_best_size,
      max_answer_length=s.eval.max_answer_length, version_2=s.data.version_2,
      null_score_diff_threshold=s.eval.null_score_diff_threshold)
  scores = {}
  if jax.process_index() == 0:
    postprocess.write_predictions(workdir, preds, nbest, odds)
    gold = _gold_data(examples)
    scores = evaluate.evaluate(gold, preds)
  return {'scores': scores, 'timing': timing, 'num_examples': len(examples),
          'num_features': len(feats)}


def _gold_data(examples) -> dict:
  """The examples back in SQuAD layout (so scoring follows what was actually read)."""
  qas = [{'id': e.qas_id, 'answers': [{'text': t, 'answer_start': 0} for t in e.all_answers],
          'is_impossible': e.is_impossible} for e in examples]
  return {'data': [{'title': '', 'paragraphs': [{'context': '', 'qas': qas}]}]}


def inference_figures(timing: dict) -> tuple[dict | None, float | None]:
  """Latency percentiles (ms) and windows a second over predict_logits' timed calls; (None,
  None) where none was timed. The first call compiles and is left out, so a dev set that
  fills one call has no timing: null, not zeros that would read as a measurement."""
  timed = timing['latencies_ms']
  if not timed:
    return None, None
  # the windows the timed calls held (with eval.packing, more than the calls' rows)
  return records.percentiles(timed), sum(timing['windows_per_call']) / (sum(timed) / 1e3)


def train_and_evaluate(config, workdir: str) -> dict:
  """Fine-tunes, predicts and scores; writes eval_results.json and records.jsonl in workdir."""
  os.makedirs(workdir, exist_ok=True)
  job = setup(config)
  s = job.settings
  _, train_features, report = load_features(job, 'train')
  t0 = time.perf_counter()
  state, timing = train(job, workdir, train_features)
  train_wall = time.perf_counter() - t0
  final = predict_and_score(job, state.params, workdir)
  steady_rate = (timing['steady_sentences'] / timing['steady_s']
                 if timing['steady_s'] else 0.0)
  # Rows of max_seq_length: sentences, or with packing the rows that hold them.
  row_rate = (timing['steady_steps'] * s.train.batch_size / timing['steady_s']
              if timing['steady_s'] else 0.0)
  timed = final['timing']['latencies_ms']
  lat, infer_rate = inference_figures(final['timing'])
  if not timed:
    logging.warning(
        'inference not timed: the %d dev windows filled only one call of eval.batch_size=%d '
        '(%s), and the first call compiles. A smaller --config.eval.batch_size or more dev '
        'questions (data.max_eval_examples) gives latency and throughput.',
        final['num_features'], s.eval.batch_size, 'packed rows' if s.eval.packing else 'windows')
  results = {
      **final['scores'], 'train_time_s': train_wall, 'train_sentences_per_s': steady_rate,
      'compile_s': timing['compile_s'], 'compiled_widths': timing['compiled_widths'],
      'train_setup_s': timing['setup_s'], 'final_checkpoint_s': timing['final_checkpoint_s'],
      'bucket_width': s.data.bucket_width, 'packing': s.data.packing, 'steps': timing['steps'],
      'resumed_from_step': timing['start_step'], 'train_features': len(train_features),
      'train_questions_skipped': sum(report.skipped.values()),
      'eval_examples': final['num_examples'], 'eval_features': final['num_features'],
      'inference_sentences_per_s': infer_rate, 'inference_latency_ms': lat,
      'inference_timed_calls': len(timed),
      'inference_scan_layers': final['timing']['scan_layers'], 'eval_packing': s.eval.packing,
      'eval_bucket_width': s.eval.bucket_width, 'inference_widths': final['timing']['widths'],
      'eval_group_by_width': final['timing']['group_by_width'],
      'inference_warmup_s': final['timing']['warmup_s'],
      'loss_scale_skipped_steps': int(jax.device_get(state.loss_scale.skipped)),
  }
  mc = job.model_config
  flops = records.train_flops_per_sequence(mc.num_layers, mc.hidden_size, mc.intermediate_size,
                                           s.data.max_seq_length)
  common = {'config': s.name, 'precision': s.precision.name, 'seq_len': s.data.max_seq_length,
            'num_devices': job.mesh.size, 'model_layers': mc.num_layers,
            'model_hidden': mc.hidden_size, 'activation': mc.activation, 'data': 'squad',
            'source': 'train_and_evaluate',
            'bucket_width': s.data.bucket_width, 'packing': s.data.packing,
            'shard_state': mesh_lib.splits_state(job.mesh, s.mesh.shard_state)}
  rec_path = os.path.join(workdir, 'records.jsonl')
  records.append(rec_path, {
      **common, 'kind': 'train', 'batch_size': s.train.batch_size,
      'xla_compiler_options': default_compiler_options(job.mesh),
      'batch_size_per_device': s.train.batch_size // job.mesh.size,
      'sentences_per_s': steady_rate, 'sentences_per_s_per_device': steady_rate / job.mesh.size,
      'compile_s': timing['compile_s'], 'timed_steps': timing['steady_steps'],
      'total_train_time_s': train_wall, 'rows_per_s': row_rate,
      'setup_s': timing['setup_s'], 'final_checkpoint_s': timing['final_checkpoint_s'],
      # FLOPs are counted at max_seq_length a row, so with buckets MFU would overstate: left
      # out. Packed rows are full length: MFU from rows/s (attention within windows only, a
      # few % of the FLOPs at 384, is still counted as full rows).
      'mfu': None if s.data.bucket_width else records.mfu(flops, row_rate / job.mesh.size)})
  records.append(rec_path, {
      **common, 'kind': 'infer', 'batch_size': s.eval.batch_size,
      'sentences': final['num_features'], 'warmup_s': final['timing']['warmup_s'],
      'total_inference_s': sum(timed) / 1e3, 'timed_calls': len(timed),
      'latency_ms': lat, 'sentences_per_s': infer_rate,
      'scan_layers': final['timing']['scan_layers'], 'packing': s.eval.packing,
      'bucket_width': s.eval.bucket_width, 'widths': final['timing']['widths'],
      'group_by_width': final['timing']['group_by_width'],
      'xla_compiler_options': inference.default_compiler_options(job.mesh)})
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'eval_results.json'), 'w') as f:
      json.dump(results, f, indent=2)
  logging.info('results: %s', json.dumps({k: results[k] for k in
                                          ('train_time_s', 'train_sentences_per_s')}))
  return results


def export(job: Job, params, folder: str) -> str:
  """The fine-tuned model in Hugging Face layout (opens with transformers)."""
  return hf_weights.export_folder(jax.device_get(params), job.model_config, folder,
                                  vocab_dir=job.pretrained.vocab_dir)


def from_checkpoint(config, workdir: str, mode: str) -> dict:
  """'evaluate': predict and score with the last checkpoint; 'export': write it in HF layout."""
  job = setup(config)
  optimizer = optim.make_optimizer(job.settings.train, 1)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                    job.settings.train.keep_checkpoints)
  if ckpt.latest_step() is None:
    raise FileNotFoundError(f'{workdir}/checkpoints holds no checkpoint: train first with '
                            '--mode=train_and_evaluate and the same --workdir')
  state = jax.eval_shape(lambda: initial_state(job, optimizer))
  state = checkpointing.restore_state(ckpt, checkpointing.abstract_like(
      state, jax.tree.map(lambda _: mesh_lib.replicated(job.mesh), state)))
  ckpt.close()
  if mode == 'export':
    return {'exported_to': export(job, state.params, os.path.join(workdir, 'hf_export'))}
  final = predict_and_score(job, state.params, workdir)
  lat, rate = inference_figures(final['timing'])
  return {**final['scores'], 'eval_features': final['num_features'],
          'inference_widths': final['timing']['widths'],
          'eval_group_by_width': final['timing']['group_by_width'],
          'inference_warmup_s': final['timing']['warmup_s'],   # each width's first call
          'inference_sentences_per_s': rate, 'inference_latency_ms': lat}
