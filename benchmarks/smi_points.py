"""The stretches of GPU work in an nvidia-smi log, with their clock, power and clock-event reasons.

  python benchmarks/smi_points.py docs/measurements/2026-11-29_h200_trim/clock1/smi.csv

Reads the CSV that benchmarks/gpu_run.sh's clock1 group writes (`nvidia-smi
--query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,
clocks_event_reasons.active --format=csv -lms 100`) and prints, as a markdown table, each run
of at least --min-samples consecutive busy samples: when it ran, its SM clock (median,
min-max), power and temperature at most, and the share of samples with each clock-event
reason (bert_jax.gpu_telemetry.reason_shares). A sample is busy when its power.draw reaches --watts
or the driver holds the clock for its power cap: power.draw averages over about a second, so
the first second of a point reads low while the cap reason is already set (clock1), and the
idle reason is no guide (a process compiling holds the GPU at its boost clock without it). A
training point's warm-up, timed and synchronised steps usually form one stretch; match them
to records by time. Inference points at batches 1 and 8 draw too little to count.
"""
import argparse
import csv
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bert_jax.gpu_telemetry import SW_POWER_CAP, reason_shares  # noqa: E402


def _number(text: str) -> float:
  """'1980 MHz', '110.88 W', '42' -> the number."""
  return float(text.strip().split()[0])


def read(path: str) -> list[dict]:
  """The log's samples: time (as written), MHz, W, °C and the reason bits."""
  with open(path, newline='') as f:
    rows = list(csv.reader(f))
  if not rows or not rows[0] or not rows[0][0].startswith('timestamp'):
    raise SystemExit(f'smi_points: {path} does not start with the header of nvidia-smi\'s '
                     'timestamp,clocks.sm,... query (see this script\'s docstring)')
  header = [h.strip().split(' [')[0] for h in rows[0]]
  need = ('timestamp', 'clocks.current.sm', 'power.draw', 'temperature.gpu',
          'clocks_event_reasons.active')
  missing = [n for n in need if n not in header]
  if missing:
    raise SystemExit(f'smi_points: {path} has no column {", ".join(missing)}; its header is '
                     f'{", ".join(header)}')
  at = {n: header.index(n) for n in need}
  samples = []
  for row in rows[1:]:
    try:
      samples.append({'time': row[at['timestamp']].strip(),
                      'mhz': _number(row[at['clocks.current.sm']]),
                      'watts': _number(row[at['power.draw']]),
                      'celsius': _number(row[at['temperature.gpu']]),
                      'reasons': int(row[at['clocks_event_reasons.active']].strip(), 16)})
    except (ValueError, IndexError):
      continue   # '[N/A]', a half-written last line
  return samples


def stretches(samples: list[dict], min_samples: int, watts: float) -> list[list[dict]]:
  """Runs of consecutive busy samples (see the module's docstring), of at least min_samples."""
  runs, current = [], []
  for s in samples + [None]:
    if s is not None and (s['watts'] >= watts or s['reasons'] & SW_POWER_CAP):
      current.append(s)
      continue
    if len(current) >= min_samples:
      runs.append(current)
    current = []
  return runs


def summary(run: list[dict]) -> dict:
  mhz = [s['mhz'] for s in run]
  capped = [s['mhz'] for s in run if s['reasons'] & SW_POWER_CAP]
  return {'from': run[0]['time'], 'to': run[-1]['time'], 'samples': len(run),
          'mhz_p50': statistics.median(mhz), 'mhz_min': min(mhz), 'mhz_max': max(mhz),
          'capped_mhz_p50': statistics.median(capped) if capped else None,
          'watts_max': max(s['watts'] for s in run),
          'celsius_max': max(s['celsius'] for s in run),
          'reasons': reason_shares([s['reasons'] for s in run])}


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('csv')
  p.add_argument('--min-samples', type=int, default=5)
  p.add_argument('--watts', type=float, default=200.0)
  args = p.parse_args()
  print('| from | to | samples | SM MHz p50 (min-max) | p50 while capped | W max | °C max | '
        'reasons (share of samples) |')
  print('| --- | --- | --- | --- | --- | --- | --- | --- |')
  for run in stretches(read(args.csv), args.min_samples, args.watts):
    s = summary(run)
    reasons = ', '.join(f'{n} {100 * v:.0f} %' for n, v in s['reasons'].items()) or 'none'
    capped = '—' if s['capped_mhz_p50'] is None else f"{s['capped_mhz_p50']:.0f}"
    print(f"| {s['from']} | {s['to']} | {s['samples']} | {s['mhz_p50']:.0f} "
          f"({s['mhz_min']:.0f}-{s['mhz_max']:.0f}) | {capped} | {s['watts_max']:.0f} | "
          f"{s['celsius_max']:.0f} | {reasons} |")
  return 0


if __name__ == '__main__':
  sys.exit(main())
