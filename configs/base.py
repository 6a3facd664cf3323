"""Defaults every config starts from: BERT-Large on SQuAD v1.1, run_squad.py's recipe.

Variants import this, call get_config() and override a few fields. Every field is read
once by bert_jax.settings.from_config, which validates it into typed dataclasses.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = 'base'                      # shown in logs and every benchmark record

  c.model = ml_collections.ConfigDict()
  c.model.preset = 'large'             # tiny | mini | base | large: the shape when init_checkpoint is ''
  c.model.init_checkpoint = ''         # HF folder, Google TF checkpoint folder, or hub name ('' = random init)
  c.model.checkpoint_format = 'auto'   # auto | hf | tf | hub: how to read init_checkpoint
  c.model.vocab_dir = ''               # folder with vocab.txt when the checkpoint has none ('' = bundled sample vocab)
  c.model.attention = 'fused'          # xla (einsum, attention-prob dropout) | fused | cudnn (jax.nn.dot_product_attention)
  c.model.activation = ''              # '' keeps the checkpoint's (BERT: exact gelu) | gelu | gelu_tanh (Google's original tanh form; fused into the GPU matmul)
  c.model.hidden_dropout = -1.0        # -1 keeps the checkpoint's hidden_dropout_prob
  c.model.attention_dropout = -1.0     # -1 keeps the checkpoint's; only the 'xla' attention path applies it

  c.precision = ml_collections.ConfigDict()
  c.precision.policy = 'bf16'          # fp32 | bf16 | fp16 (fp16 adds dynamic loss scaling)
  c.precision.fp32_matmul = 'tf32'     # under fp32: tf32 (GPU tensor cores) | float32 (full products)

  c.mesh = ml_collections.ConfigDict()
  c.mesh.num_devices = 0               # data-parallel devices in all (0 = every visible device)
  c.mesh.coordinator_address = ''      # host:port of process 0 for multi-host runs ('' = detect the cluster)
  c.mesh.num_processes = 1             # hosts (processes) taking part (0 = read them from the SLURM/MPI/k8s environment)
  c.mesh.process_id = 0                # this process's index among them
  c.mesh.shard_state = True            # split layer weights and Adam moments over the devices (ZeRO-3 style; no-op on one)

  c.data = ml_collections.ConfigDict()
  c.data.train_file = 'download'       # SQuAD JSON(.gz) path | 'download' (official file, sha-checked, cached) | 'tfds'
  c.data.dev_file = 'download'         # same, for the evaluation set
  c.data.version_2 = False             # SQuAD v2.0: impossible questions point at [CLS]
  c.data.max_seq_length = 384          # tokens per window
  c.data.doc_stride = 128              # step between window starts (run_squad.py's meaning)
  c.data.max_query_length = 64         # question tokens kept
  c.data.cache_dir = ''                # feature cache ('' = ~/.cache/bert_jax)
  c.data.max_train_examples = 0        # keep the first N questions (0 = all)
  c.data.max_eval_examples = 0         # likewise for the dev set
  c.data.bucket_width = 0              # training batches cut to a multiple of this holding their longest window (0 = pad to max_seq_length)
  c.data.packing = False               # several windows a row (each sees only itself); train.batch_size then counts rows, ~2.2 windows each on SQuAD at 384
  c.data.max_windows_per_row = 8       # with packing: at most this many windows share a row

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 32              # global batch (all devices, all hosts)
  c.train.learning_rate = 5e-5         # peak, after warm-up
  c.train.num_epochs = 2.0             # passes over the training features
  c.train.max_steps = 0                # > 0 overrides num_epochs
  c.train.warmup_proportion = 0.1      # linear warm-up share of the steps, then linear decay to 0
  c.train.weight_decay = 0.01          # AdamW/LAMB decay; never on biases or LayerNorm
  c.train.optimizer = 'adamw'          # adamw | lamb
  c.train.max_grad_norm = 1.0          # global-norm clipping (0 = off)
  c.train.num_accumulation_steps = 1   # micro-batches per optimizer step (batch_size must divide)
  c.train.seed = 0                     # init, dropout and data order
  c.train.log_every = 50               # steps between logged metrics
  c.train.checkpoint_every = 500       # steps between orbax checkpoints (0 = only at the end)
  c.train.keep_checkpoints = 2         # checkpoints kept on disk
  c.train.loss_scale_init = 2.0 ** 15  # fp16 only: initial dynamic loss scale
  c.train.loss_scale_growth_interval = 2000  # fp16 only: finite steps before the scale doubles
  c.train.compilation_cache_dir = ''   # XLA's persistent cache: re-runs load compiled steps ('' = off)

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 64               # global eval batch
  c.eval.n_best_size = 20              # candidate starts/ends per window
  c.eval.max_answer_length = 30        # longest answer in tokens
  c.eval.null_score_diff_threshold = 0.0  # v2.0: predict '' when null beats best span by this
  c.eval.scan_layers = True            # layers as one lax.scan: compiles in seconds (model.encode)
  c.eval.packing = False               # dev windows packed into rows (same logits, ~half the work at 384); eval.batch_size then counts rows
  c.eval.bucket_width = 0              # e.g. 64: each call cut to the multiple of this holding its longest window (same logits; one program a width)
  c.eval.group_by_width = True         # with bucket_width: windows predicted in order of width, each call one width (same logits)
  return c
