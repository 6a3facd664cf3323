"""The GPUs' SM clock and board power while a benchmark's timed work runs.

Why: an H200 training BERT-Large holds its 700 W power cap, and its SM clock falls from the
1,980 MHz boost to about 1,740 MHz (docs/performance_notes.md, entry 78); a short benchmark
point can hold a higher clock than a long job and so read faster than the job runs. Each
timed record therefore says what clock and power it ran at, so readers can compare like
with like.

    with gpu_telemetry.sample(num_devices) as telemetry:
      ...timed work...
    record.update(telemetry.fields())

nvidia-smi, run beside the work, samples every `interval_ms`; where it is missing or fails
(CPU, other vendors) the fields say why instead and the work is timed as before.

Whether a sample is at the power cap is read from the driver's clock-event reasons (the SW
power cap bit), not from power.draw: that is an average over about a second, so in a point of
under a second it still reads 150-500 W while the driver already holds the clock down for the
cap (clock1, docs/performance_notes.md entry 85).
"""

import contextlib
import functools
import os
import shutil
import subprocess

BASE_QUERY = 'index,clocks.sm,power.draw,power.limit'
# the clock-event reasons' field, under its name since driver R535 and its older one
REASON_FIELDS = ('clocks_event_reasons.active', 'clocks_throttle_reasons.active')
QUERY = f'{BASE_QUERY},{REASON_FIELDS[0]}'
AT_CAP = 0.97   # without reasons: a sample's draw within 3 % of the limit counts as at the cap
# NVML's clock-event reason bits (nvmlClocksEventReason*), as nvidia-smi prints them in hex
REASONS = {0x1: 'gpu_idle', 0x2: 'applications_clocks_setting', 0x4: 'sw_power_cap',
           0x8: 'hw_slowdown', 0x10: 'sync_boost', 0x20: 'sw_thermal_slowdown',
           0x40: 'hw_thermal_slowdown', 0x80: 'hw_power_brake_slowdown',
           0x100: 'display_clock_setting'}
SW_POWER_CAP = 0x4


def _quantile(values, q: float) -> float:
  ordered = sorted(values)
  return ordered[round(q * (len(ordered) - 1))]


def _reasons(text: str) -> int | None:
  try:
    return int(text, 16)
  except ValueError:   # '[N/A]', '[Not Supported]'
    return None


def parse(text: str) -> list[tuple[int, float, float, float, int | None]]:
  """nvidia-smi's `--format=csv,noheader,nounits` lines of QUERY (or BASE_QUERY) ->
  (index, MHz, W, limit W, clock-event reason bits or None where the driver gives none);
  lines it could not read ('[N/A]' numbers, half-written at the end) are left out."""
  rows = []
  for line in text.splitlines():
    parts = [p.strip() for p in line.split(',')]
    if len(parts) not in (4, 5):   # 4: a driver that gives no reasons (query_for)
      continue
    try:
      rows.append((int(parts[0]), float(parts[1]), float(parts[2]), float(parts[3]),
                   _reasons(parts[4]) if len(parts) == 5 else None))
    except ValueError:
      continue
  return rows


def reason_shares(bits: list[int]) -> dict[str, float]:
  """Each clock-event reason set in any of the samples' bits, with the share that carry it."""
  return {name: sum(bool(b & bit) for b in bits) / len(bits)
          for bit, name in REASONS.items() if any(b & bit for b in bits)}


def summarize(rows) -> dict:
  """Percentiles over every sample of every sampled GPU. gpu_at_power_cap: the share of
  samples with the driver's SW power cap reason set (gpu_power_cap_from says so), or, where no
  sample carries reasons, with the averaged draw within 3 % of the limit.
  gpu_clock_reasons: each reason seen, with the share of samples that carried it."""
  if not rows:
    return {'gpu_telemetry': 'no samples (the timed work ended before nvidia-smi sampled)'}
  mhz = [r[1] for r in rows]
  watts = [r[2] for r in rows]
  limit = max(r[3] for r in rows)
  known = [r[4] for r in rows if r[4] is not None]
  if known:
    capped, source = sum(bool(b & SW_POWER_CAP) for b in known) / len(known), 'clock-event reason'
  else:
    capped, source = sum(r[2] >= AT_CAP * r[3] for r in rows) / len(rows), 'averaged draw'
  return {
      'gpu_telemetry': 'nvidia-smi',
      'gpu_samples': len(rows),
      'gpu_sm_clock_mhz': {'p10': _quantile(mhz, 0.1), 'p50': _quantile(mhz, 0.5),
                           'p90': _quantile(mhz, 0.9)},
      'gpu_power_w': {'p50': _quantile(watts, 0.5), 'max': max(watts)},
      'gpu_power_limit_w': limit,
      'gpu_at_power_cap': capped,
      'gpu_power_cap_from': source,
      'gpu_clock_reasons': reason_shares(known),
  }


def visible_ids(num_devices: int) -> str:
  """nvidia-smi's -i for the first num_devices GPUs this process sees: CUDA_VISIBLE_DEVICES's
  entries (indices or UUIDs) where it is set, else 0 .. num_devices - 1."""
  visible = os.environ.get('CUDA_VISIBLE_DEVICES')
  ids = ([v.strip() for v in visible.split(',') if v.strip()] if visible is not None
         else [str(i) for i in range(num_devices)])
  return ','.join(ids[:num_devices])


@functools.cache
def query_for(exe: str, ids: str) -> str:
  """The query this nvidia-smi answers: QUERY, or the reasons under their pre-R535 name, or
  BASE_QUERY where it knows neither (an unknown field fails the whole query)."""
  for field in REASON_FIELDS:
    try:
      probe = subprocess.run([exe, f'--query-gpu={field}', '--format=csv,noheader',
                              f'--id={ids}'], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
      break
    if probe.returncode == 0:
      return f'{BASE_QUERY},{field}'
  return BASE_QUERY


class Telemetry:
  """What one sample() block saw; fields() gives the record's entries."""

  def __init__(self, reason: str = ''):
    self.reason = reason
    self.output = ''

  def fields(self) -> dict:
    if self.reason:
      return {'gpu_telemetry': self.reason}
    return summarize(parse(self.output))


@contextlib.contextmanager
def sample(num_devices: int = 1, interval_ms: int = 100, platform: str | None = None,
           command: str = 'nvidia-smi'):
  """Samples the GPUs' clock and power while the block runs (see the module's docstring).
  platform: jax's ('gpu' samples; anything else records why not); None: jax's default."""
  if platform is None:
    import jax
    platform = jax.devices()[0].platform
  exe, name = shutil.which(command), os.path.basename(command)
  if platform != 'gpu' or exe is None or not visible_ids(num_devices):
    why = (f'platform {platform}' if platform != 'gpu' else f'{name} not found' if exe is None
           else 'CUDA_VISIBLE_DEVICES names no GPU')
    yield Telemetry(f'not sampled ({why})')
    return
  args = [exe, f'--query-gpu={query_for(exe, visible_ids(num_devices))}',
          '--format=csv,noheader,nounits',
          f'--loop-ms={interval_ms}', f'--id={visible_ids(num_devices)}']
  try:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  except OSError as e:
    yield Telemetry(f'not sampled ({name}: {e})')
    return
  telemetry = Telemetry()
  try:
    yield telemetry
  finally:
    proc.terminate()
    try:
      out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
      proc.kill()
      out, err = proc.communicate()
    telemetry.output = out
    if not parse(out) and err.strip():
      telemetry.reason = f'not sampled ({name}: {err.strip().splitlines()[0][:200]})'
