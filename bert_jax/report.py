"""Benchmark records -> the seed's tables (markdown) and PNG plots.

  python run.py --mode=report --workdir=runs/bench    # reads every *.jsonl there

Writes <workdir>/report/report.md and, per sequence length, train_throughput_seq*.png
(sentences/s per GPU against batch size, one line per precision and GPU count, the
peer's points beside ours), train_scaling_seq*.png (scaling efficiency against GPU
count) and infer_latency_seq*_*.png (latency percentiles against batch size).
A point measured more than once is shown with its latest record.
"""
from __future__ import annotations

import collections
import datetime
import glob
import os

from bert_jax import records

PCTS = ('p50', 'p90', 'p95', 'p99', 'p100')


def load(workdir: str) -> list[dict]:
  """Every record line of every *.jsonl in workdir (ours and the peer's), in file order."""
  out = []
  for path in sorted(glob.glob(os.path.join(workdir, '*.jsonl'))):
    for rec in records.read(path):
      if rec.get('schema', '').startswith('bert_jax.record') and rec.get('kind') in (
          'train', 'infer'):
        out.append(rec)
  return out


# The peer's training records before benchmarks/peer_hf.py's --attention-dropout carry no such
# field: they trained with transformers' default attention-probability dropout.
PEER_ATTENTION_DROPOUT_BEFORE = 0.1


ACTIVATION_TITLES = {'gelu_tanh': 'tanh GELU (model.activation=gelu_tanh; the peer with '
                                  "transformers' gelu_pytorch_tanh)"}
ACTIVATION_NOTES = {'gelu_tanh': 'tanh GELU'}   # the shorter name plot titles end with


def activation(rec: dict) -> str:
  """The feed-forward GELU a record ran: 'gelu' (exact; every record before the field) or
  'gelu_tanh'. The report gives each its own section, so that no ratio crosses them."""
  return rec.get('activation', 'gelu')


def system(rec: dict) -> str:
  """'bert_jax' or the peer with its mode, e.g. 'pytorch-hf compile'; a peer training point
  with attention-probability dropout (which bert_jax's cuDNN attention does not do) says so,
  e.g. 'pytorch-hf compile, attention dropout 0.1', so that it is never the like-for-like one.
  A peer on real SQuAD windows (peer_hf.py --train-file/--dev-file) is 'pytorch-hf compile,
  real windows'; without it the peer ran synthetic full windows."""
  fw = rec.get('framework', 'bert_jax')
  if fw == 'bert_jax':
    return fw
  name = f"{fw} {rec.get('mode', '')}".strip() + (', real windows' if rec.get('data') == 'squad'
                                                   else '')
  rate = rec.get('attention_dropout', PEER_ATTENTION_DROPOUT_BEFORE)
  return f'{name}, attention dropout {rate:g}' if rec.get('kind') == 'train' and rate else name


def infer_system(rec: dict) -> str:
  """system(rec), and rows of their own for our inference with the layers as one lax.scan
  (model.encode's scan_layers: 'bert_jax, layers scanned') and with the weights passed to
  each call where the bench now compiles them into the program (bench.bind_params False:
  'bert_jax, weights passed each call'; records from before the option have no such field),
  on packed rows, and with each call cut to its longest window (bench.bucket_width)."""
  return (system(rec) + (', layers scanned' if rec.get('scan_layers') else '')
          + (', weights passed each call' if rec.get('params_bound') is False else '')
          + (', packed rows (batch: rows a call)' if rec.get('packing') else '')
          + (f", calls cut to buckets of {rec['bucket_width']}" if rec.get('bucket_width')
             else ''))


def _latest(recs, key):
  table = {}
  for r in recs:
    table[key(r)] = r
  return table


def superseded_note(count: int) -> list[str]:
  """Where a table's rows left records out (a point measured again, or on two GPUs of one
  call), a line saying how many: each row is its point's latest record."""
  if not count:
    return []
  return [f'{count} record{"s" if count > 1 else ""} of points measured again '
          f'{"are" if count > 1 else "is"} not shown above: each row is its point\'s latest '
          'record (the folder\'s *.jsonl files hold them all).', '']


# One device call lasts at most ~10 minutes: records further apart than this come from
# different calls (or machines), and a ratio between them is not a same-run comparison.
SAME_CALL_MINUTES = 15
CALL_NOTE = ('Step percentiles synchronise every step; sent/s does not (steps queue). '
             'call ms: how long a step call takes to return, the host\'s work before the GPU '
             'runs it (median); where it nears the step time, the host sets the pace. '
             'SM MHz: the median SM clock over the timed steps (nvidia-smi every 100 ms), '
             'with the share of samples where the driver held it down for the board\'s '
             'power cap (its SW power cap clock-event reason; in records without '
             'gpu_power_cap_from, made before 2026-11-29\'s cap1 call, the averaged draw '
             'within 3 % of the limit, which lags the work by about a second): a short '
             'point can hold a higher clock than a long job does.')
TOKENS_NOTE = ('real tokens a window: the timed calls\' real (unmasked) tokens a window on '
               'average, where they read real dev windows spread over the set (records made '
               'after 2026-11-29\'s trim calls); — where the record does not say (synthetic '
               'full windows, packed rows, or older records, which timed the dev set\'s first '
               'windows).')
APART_NOTE = (f'† the peer point was measured more than {SAME_CALL_MINUTES} minutes away from '
              'ours (another run or device call): the ratio is not a same-run comparison.')


def _apart(a: dict, b: dict) -> bool:
  """Whether two records were measured more than SAME_CALL_MINUTES apart."""
  try:
    ta, tb = (datetime.datetime.fromisoformat(r['time']) for r in (a, b))
    return abs((ta - tb).total_seconds()) > 60 * SAME_CALL_MINUTES
  except (KeyError, TypeError, ValueError):  # no time, or one naive and one aware
    return False


def _fmt(x, digits=1):
  if x is None:
    return '—'
  if isinstance(x, float):
    return f'{x:,.{2 if abs(x) < 10 else digits}f}'
  return f'{x:,}' if isinstance(x, int) else str(x)


def _header(recs) -> list[str]:
  devices = sorted({f"{r.get('device', '?')}" for r in recs})
  mine = [r for r in recs if system(r) == 'bert_jax']
  versions = sorted({f"jax {r.get('jax')}, jaxlib {r.get('jaxlib')}, flax {r.get('flax')}"
                     for r in mine if r.get('jax')})
  peers = sorted({f"torch {r.get('torch')}, transformers {r.get('transformers')}"
                  for r in recs if r.get('torch')})
  commits = sorted({r.get('git_commit', '') for r in mine if r.get('git_commit')})
  prints = sorted({r['code_fingerprint'] for r in mine if r.get('code_fingerprint')})
  flags = sorted({r.get('xla_flags', '') for r in mine if r.get('xla_flags')})
  options = []
  for kind, name in (('train', 'train-step'), ('infer', 'inference')):
    seen = sorted({', '.join(f'{k}={v}' for k, v in sorted(r['xla_compiler_options'].items()))
                   for r in mine if r.get('kind') == kind and r.get('xla_compiler_options')})
    if seen:
      options.append(f"{name} compiler options: {'; '.join(seen)}")
  data = sorted({r['data'] for r in recs if r.get('data')})
  times = sorted(r.get('time', '') for r in recs if r.get('time'))
  lines = ['# Benchmark report', '',
           f"- Devices: {', '.join(devices)}",
           f"- bert_jax: {'; '.join(versions) or '—'}; commit {', '.join(commits) or '—'}"
           + (f"; code fingerprint {', '.join(prints)} (benchmarks/which_commit.py names its "
              "commits: a copied checkout's git commit can be stale)" if prints else ''),
           f"- Peer: {'; '.join(peers) or 'none in these records'}",
           f"- XLA flags: {', '.join(flags) or 'none'}"
           + ''.join(f'; {o}' for o in options),
           f"- Inputs: {', '.join(data)} windows; measured {times[0] if times else '?'} to "
           f"{times[-1] if times else '?'}",
           '- Warm-up and compilation are excluded from every throughput and latency below.', '']
  return lines


def train_tables(recs) -> list[str]:
  train = [r for r in recs if r['kind'] == 'train' and r.get('source', 'bench') == 'bench']
  ok = [r for r in train if r.get('status', 'ok') == 'ok']
  # a state split over the GPUs (mesh.shard_state) is a row of its own: 'GPUs' reads '2 split'
  packed = [r for r in ok if r.get('packing')]
  ok = [r for r in ok if not r.get('packing')]
  mine = _latest([r for r in ok if system(r) == 'bert_jax'],
                 lambda r: (r['seq_len'], r['precision'], r['num_devices'],
                            r['batch_size_per_device'], bool(r.get('shard_state'))))
  peer = _latest([r for r in ok if system(r) != 'bert_jax'],
                 lambda r: (r['seq_len'], r['precision'], r['batch_size'], system(r)))
  hidden = len(ok) - len(mine) - len(peer)
  peer_systems = sorted({k[3] for k in peer})
  failed = [r for r in train if r.get('status', 'ok') != 'ok']
  lines, apart = [], False
  for seq in sorted({k[0] for k in mine}):
    lines += [f'## Training, seq {seq}: sentences/s', '']
    head = ['precision', 'GPUs', 'batch/GPU', 'sent/s', 'per GPU', 'MFU', 'step p50 ms',
            'p90', 'p99', 'call ms', 'memory GB', '2 epochs (s)', 'SM MHz']
    head += [f'{p} sent/s' for p in peer_systems] + (['ours ÷ best peer'] if peer_systems else [])
    lines += ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
    for key in sorted(k for k in mine if k[0] == seq):
      r = mine[key]
      st = r.get('step_time_ms') or {}
      gpus = f"{r['num_devices']} split" if key[4] else r['num_devices']
      row = [r['precision'], gpus, r['batch_size_per_device'], r['sentences_per_s'],
             r['sentences_per_s_per_device'], f"{100 * r['mfu']:.1f} %" if r.get('mfu') else None,
             st.get('p50'), st.get('p90'), st.get('p99'), r.get('call_return_ms_p50'),
             r.get('peak_memory_gb'), r.get('projected_2_epochs_s'), sm_clock(r)]
      if peer_systems:
        peers = [peer.get((seq, r['precision'], r['batch_size'], p)) if r['num_devices'] == 1
                 else None for p in peer_systems]
        row += [_fmt(q['sentences_per_s']) + (' †' if _apart(q, r) else '') if q else None
                for q in peers]
        best = max((q for q in peers if q), key=lambda q: q['sentences_per_s'], default=None)
        row.append(f"{r['sentences_per_s'] / best['sentences_per_s']:.2f}"
                   + (' †' if _apart(best, r) else '') if best else None)
        apart = apart or any(q and _apart(q, r) for q in peers)
      lines.append('| ' + ' | '.join(_fmt(x) for x in row) + ' |')
    lines += ['', CALL_NOTE, '']
    lines += _scaling_table(mine, seq)
  if apart:
    lines += [APART_NOTE, '']
  lines += superseded_note(hidden) if mine else []
  lines += _packed_train_table(packed)
  if failed:
    lines += ['## Training points not measured', '', '| precision | seq | GPUs | batch/GPU | status |',
              '| --- | --- | --- | --- | --- |']
    for r in failed:
      lines.append('| ' + ' | '.join(_fmt(r.get(k)) for k in (
          'precision', 'seq_len', 'num_devices', 'batch_size_per_device', 'status')) + ' |')
    lines.append('')
  return lines


def _packed_train_table(packed) -> list[str]:
  """Our training on packed rows (bench.packing): apart from the padded table, since a row
  holds about two windows, so batch and rate count different things there."""
  rows = _latest(packed, lambda r: (r['seq_len'], r['precision'], r['num_devices'],
                                    r['batch_size_per_device']))
  if not rows:
    return []
  head = ['seq', 'precision', 'GPUs', 'rows/GPU', 'windows a step', 'windows/s', 'rows/s',
          'rows/s vs 1 GPU', 'MFU (rows)', 'step p50 ms', '2 epochs (s)']
  lines = ['## Training on packed rows (bench.packing): windows/s', '',
           'The same real windows as the padded points, laid end to end in rows (bert_jax.packing), '
           'so a step holds more windows than rows; MFU counts each row as a full window. Scaling '
           'is taken on rows/s (every row is the same work; the windows a row holds vary with the '
           'rows drawn).', '',
           '| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
  for key in sorted(rows):
    r = rows[key]
    one = rows.get((key[0], key[1], 1, key[3]))
    scaling = (_scaling(r['rows_per_s'], one['rows_per_s'], key[2])
               if key[2] > 1 and one and one.get('rows_per_s') and r.get('rows_per_s') else None)
    row = [r['seq_len'], r['precision'], r['num_devices'], r['batch_size_per_device'],
           r.get('windows_per_step_mean'), r['sentences_per_s'], r.get('rows_per_s'), scaling,
           f"{100 * r['mfu']:.1f} %" if r.get('mfu') else None,
           (r.get('step_time_ms') or {}).get('p50'), r.get('projected_2_epochs_s')]
    lines.append('| ' + ' | '.join(_fmt(x) for x in row) + ' |')
  return lines + ['']


def _scaling(rate: float, one_rate: float, n: int) -> str:
  """'1.90× (95 %)': n devices' rate against one device's, and that per device."""
  ratio = rate / one_rate
  return f'{ratio:.2f}× ({100 * ratio / n:.0f} %)'


def _scaling_table(mine, seq) -> list[str]:
  counts = sorted({k[2] for k in mine if k[0] == seq})
  if len(counts) < 2:
    return []
  lines = [f'### Scaling, seq {seq}: total sentences/s (efficiency = rate_n ÷ (n × rate_1))', '',
           '| precision | batch/GPU | ' + ' | '.join(f'{n} GPU' for n in counts) + ' |',
           '|' + ' --- |' * (2 + len(counts))]
  rows = sorted({(k[1], k[3], k[4]) for k in mine if k[0] == seq})
  for prec, bs, split in rows:
    if not split and (prec, bs, True) in rows and not any(
        (seq, prec, n, bs, False) in mine for n in counts if n > 1):
      continue  # only its 1-GPU point, which the split row shows
    one = mine.get((seq, prec, 1, bs, False))
    cells = []
    for n in counts:
      r = mine.get((seq, prec, n, bs, split if n > 1 else False))
      if r is None:
        cells.append('—')
      elif one and n > 1:
        eff = r['sentences_per_s'] / (n * one['sentences_per_s'])
        cells.append(f"{r['sentences_per_s']:,.1f} ({100 * eff:.0f} %)")
      else:
        cells.append(f"{r['sentences_per_s']:,.1f}")
    lines.append(f'| {prec} | {bs}{" (state split)" if split else ""} | ' + ' | '.join(cells) + ' |')
  return lines + ['']


def job_tables(recs) -> list[str]:
  """Fine-tuning jobs (--mode=train_and_evaluate): steady sentences/s and scaling."""
  jobs = [r for r in recs if r.get('source') == 'train_and_evaluate' and r['kind'] == 'train']
  if not jobs:
    return []
  # a packed job (data.packing: batch counts rows) is never the base of a padded one's scaling
  key = lambda r: (r['config'], bool(r.get('packing')), r.get('bucket_width', 0),
                   r.get('batch_size_per_device'))
  one = {key(r): r for r in jobs if r['num_devices'] == 1}
  lines = ['## Fine-tuning jobs (train_and_evaluate): steady training throughput', '',
           '| config | GPUs | batch (global) | rows | sent/s | per GPU | scaling vs 1 GPU '
           '| MFU | compile s | training s (incl. compile) |', '|' + ' --- |' * 10]
  for r in sorted(jobs, key=lambda r: (*key(r), r['num_devices'])):
    base = one.get(key(r))
    scale = (_scaling(r['sentences_per_s'], base['sentences_per_s'], r['num_devices'])
             if base and r['num_devices'] > 1 else None)
    rows = ('packed' if r.get('packing') else
            f"buckets of {r['bucket_width']}" if r.get('bucket_width') else 'padded')
    row = [r['config'], r['num_devices'], r['batch_size'], rows, r['sentences_per_s'],
           r['sentences_per_s_per_device'], scale,
           f"{100 * r['mfu']:.1f} %" if r.get('mfu') else None, r.get('compile_s'),
           r.get('total_train_time_s')]
    lines.append('| ' + ' | '.join(_fmt(x) for x in row) + ' |')
  return lines + ['']


def infer_tables(recs) -> list[str]:
  infer = [r for r in recs if r['kind'] == 'infer' and r.get('status', 'ok') == 'ok'
           and r.get('source', 'bench') == 'bench']
  rows = _latest(infer, lambda r: (r['seq_len'], r['precision'], r['batch_size'],
                                   infer_system(r)))
  lines, apart = [], False
  for seq in sorted({k[0] for k in rows}):
    lines += [f'## Inference, seq {seq}: latency (ms) and throughput', '',
              '| system | precision | batch | total s | sentences | p50 | p90 | p95 | p99 | p100 '
              '| average | sent/s | p100 ≤ 2 × p99 | real tokens a window | '
              'compile s (peer: warm-up) | SM MHz |',
              '|' + ' --- |' * 16]
    for key in sorted((k for k in rows if k[0] == seq),
                      key=lambda k: (k[1], k[2], not _is_ours(k[3]), k[3])):
      r = rows[key]
      lat = r['latency_ms']
      ours = [rows[k] for k in rows if _is_ours(k[3]) and (k[0], k[2]) == (seq, key[2])]
      far = not _is_ours(key[3]) and bool(ours) and all(_apart(r, o) for o in ours)
      apart = apart or far
      row = ([key[3] + (' †' if far else ''), r['precision'], r['batch_size'],
              r.get('total_inference_s'), r.get('sentences')] + [lat[p] for p in PCTS]
             + [lat['mean'], r['sentences_per_s'],
                'yes' if lat['p100'] <= 2 * lat['p99'] else 'NO', r.get('real_tokens_mean'),
                r.get('compile_s', r.get('warmup_s')), sm_clock(r)])
      lines.append('| ' + ' | '.join(_fmt(x, 2) for x in row) + ' |')
    lines += ['', TOKENS_NOTE, '']
  return lines + ([APART_NOTE, ''] if apart else []) + superseded_note(len(infer) - len(rows))


def sm_clock(rec: dict) -> str | None:
  """The median SM clock over a record's timed work (bert_jax.gpu_telemetry), with the share
  of samples at the board's power cap where any were: '1740 (cap 100 %)'."""
  clock = (rec.get('gpu_sm_clock_mhz') or {}).get('p50')
  if clock is None:
    return None
  cap = rec.get('gpu_at_power_cap') or 0.0
  return f'{clock:.0f}' + (f' (cap {100 * cap:.0f} %)' if cap else '')


def _is_ours(system_name: str) -> bool:
  return system_name.startswith('bert_jax')


def _save(fig, out_dir: str, name: str, written: list[str], note: str = '') -> None:
  import matplotlib.pyplot as plt
  if note:
    for ax in fig.axes:
      ax.set_title(f'{ax.get_title()}, {note}')
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, name), dpi=110)
  plt.close(fig)
  written.append(name)


def _throughput_plot(plt, train, seq):
  series = collections.defaultdict(dict)
  for r in train:
    if r['seq_len'] == seq:
      label = (f"{system(r)} {r['precision']} {r.get('num_devices', 1)} GPU"
               + (' split state' if r.get('shard_state') else '')
               + (' packed rows (x: rows, y: windows)' if r.get('packing') else ''))
      series[label][r.get('batch_size_per_device', r['batch_size'])] = r.get(
          'sentences_per_s_per_device', r['sentences_per_s'])
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for label, pts in sorted(series.items()):
    xs = sorted(pts)
    ax.plot(xs, [pts[x] for x in xs], '-o' if label.startswith('bert_jax') else '--s',
            label=label)
  ax.set_xscale('log', base=2)
  ax.set(xlabel='batch size per GPU', ylabel='training sentences/s per GPU',
         title=f'Training throughput, seq {seq}')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  return fig


def _scaling_plot(plt, mine, seq):
  fig, ax = plt.subplots(figsize=(6, 4))
  for prec, bs, split in sorted({(k[0], k[1], k[3]) for k in mine}):
    base = mine.get((prec, bs, 1, False))
    if base:
      ns = sorted(k[2] for k in mine if (k[0], k[1]) == (prec, bs) and (k[3] == split or k[2] == 1))
      eff = [mine[(prec, bs, n, split if n > 1 else False)]['sentences_per_s']
             / (n * base['sentences_per_s']) for n in ns]
      ax.plot(ns, eff, '-o', label=f'{prec}, batch {bs}/GPU' + (', state split' if split else ''))
  ax.axhline(1.0, color='grey', lw=0.8)
  ax.set(xlabel='GPUs', ylabel='scaling efficiency', title=f'Data-parallel scaling, seq {seq}')
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  return fig


def _latency_plot(plt, infer, seq, prec):
  by_sys = collections.defaultdict(dict)
  for r in infer:
    if (r['seq_len'], r['precision']) == (seq, prec):
      by_sys[infer_system(r)][r['batch_size']] = r['latency_ms']
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for sys_name, pts in sorted(by_sys.items()):
    xs = sorted(pts)
    for p, alpha in zip(PCTS, (1.0, 0.8, 0.6, 0.45, 0.3)):
      ax.plot(xs, [pts[x][p] for x in xs], '-o' if _is_ours(sys_name) else '--s',
              alpha=alpha, label=f'{sys_name} {p}')
  ax.set_xscale('log', base=2)
  ax.set_yscale('log')
  ax.set(xlabel='batch size', ylabel='latency (ms)',
         title=f'Inference latency percentiles, seq {seq}, {prec}')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, ncol=2)
  return fig


def plots(recs, out_dir: str, prefix: str = '', note: str = '') -> list[str]:
  """PNG plots (file names start with `prefix`; titles end with `note`, e.g. the GELU where it
  is not BERT's exact one); returns the file names written."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  written: list[str] = []
  ok = [r for r in recs if r.get('status', 'ok') == 'ok' and r.get('source', 'bench') == 'bench']
  train = [r for r in ok if r['kind'] == 'train']
  for seq in sorted({r['seq_len'] for r in train}):
    _save(_throughput_plot(plt, train, seq), out_dir, f'{prefix}train_throughput_seq{seq}.png',
          written, note)
    mine = _latest([r for r in train if system(r) == 'bert_jax' and r['seq_len'] == seq
                    and not r.get('packing')],
                   lambda r: (r['precision'], r['batch_size_per_device'], r['num_devices'],
                              bool(r.get('shard_state'))))
    if len({k[2] for k in mine}) > 1:
      _save(_scaling_plot(plt, mine, seq), out_dir, f'{prefix}train_scaling_seq{seq}.png',
            written, note)
  infer = [r for r in ok if r['kind'] == 'infer']
  for seq, prec in sorted({(r['seq_len'], r['precision']) for r in infer}):
    _save(_latency_plot(plt, infer, seq, prec), out_dir,
          f'{prefix}infer_latency_seq{seq}_{prec}.png', written, note)
  return written


def write(workdir: str) -> dict:
  """report.md and the PNG plots under <workdir>/report; returns what was written."""
  recs = load(workdir)
  if not recs:
    raise FileNotFoundError(f'{workdir} holds no benchmark records (*.jsonl with schema '
                            f'{records.SCHEMA}); run --mode=bench with this --workdir first')
  out_dir = os.path.join(workdir, 'report')
  os.makedirs(out_dir, exist_ok=True)
  by_device = collections.defaultdict(list)
  for r in recs:
    by_device[(r.get('device', '?'), activation(r))].append(r)
  lines, images = _header(recs), []
  for (device, act), sub in sorted(by_device.items()):
    prefix = ''
    if len(by_device) > 1 or act != 'gelu':  # never mix cards, or GELUs, in one table: a
      # section for each; a GELU other than BERT's exact one always says so
      title = device + ('' if act == 'gelu' else f', {ACTIVATION_TITLES.get(act, act)}')
      lines += [f'# {title}', '']
      tag = device + ('' if act == 'gelu' else f' {act}')
      prefix = ''.join(c if c.isalnum() else '_' for c in tag).strip('_') + '_'
    lines += train_tables(sub) + job_tables(sub) + infer_tables(sub)
    images += plots(sub, out_dir, prefix, '' if act == 'gelu' else ACTIVATION_NOTES.get(act, act))
  if images:
    lines += ['## Plots', ''] + [f'![{name}]({name})' for name in images] + ['']
  path = os.path.join(out_dir, 'report.md')
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  return {'report': path, 'plots': [os.path.join(out_dir, n) for n in images],
          'records': len(recs)}
