"""bert_jax.gpu_telemetry: nvidia-smi's samples read and summarised; a fake nvidia-smi on
PATH stands in for the GPU's; where nothing can be sampled the record says why."""
import os
import stat
import time

import pytest

from bert_jax import gpu_telemetry as gt
from bert_jax import report


def test_parse_keeps_whole_rows_and_drops_the_rest():
  text = ('0, 1740, 691.20, 700.00, 0x0000000000000004\n1, [N/A], 80.1, 700.00, 0x0\n'
          '0, 1755, 689.9\n\n0, 1980, 130.5, 700, [N/A]\n1, 1965, 120.0, 700\n')
  assert gt.parse(text) == [(0, 1740.0, 691.2, 700.0, 4), (0, 1980.0, 130.5, 700.0, None),
                            (1, 1965.0, 120.0, 700.0, None)]   # the last: BASE_QUERY's


def test_the_power_cap_is_the_drivers_reason_not_the_averaged_draw():
  """clock1: power.draw averages over about a second and read 150-500 W through the first
  half of a 0.75 s point the driver already held at its power cap (reason 0x4)."""
  rows = [(0, mhz, watts, 700.0, bits) for mhz, watts, bits in
          [(1965, 147, 0x4), (1800, 440, 0x4), (1725, 506, 0x4 | 0x20), (1890, 690, 0x4),
           (1980, 493, 0x0)]]
  s = gt.summarize(rows)
  assert s['gpu_samples'] == 5 and s['gpu_power_limit_w'] == 700.0
  assert s['gpu_sm_clock_mhz'] == {'p10': 1725, 'p50': 1890, 'p90': 1980}
  assert s['gpu_power_w'] == {'p50': 493, 'max': 690}
  assert s['gpu_at_power_cap'] == pytest.approx(4 / 5)   # by the draw rule: 1 / 5
  assert s['gpu_power_cap_from'] == 'clock-event reason'
  assert s['gpu_clock_reasons'] == {'sw_power_cap': pytest.approx(4 / 5),
                                    'sw_thermal_slowdown': pytest.approx(1 / 5)}
  assert 'no samples' in gt.summarize([])['gpu_telemetry']


def test_without_reasons_the_cap_falls_back_to_the_draw():
  rows = [(0, mhz, watts, 700.0, None) for mhz, watts in
          [(1980, 200), (1800, 650), (1740, 690), (1740, 692), (1665, 695)]]
  s = gt.summarize(rows)
  assert s['gpu_at_power_cap'] == pytest.approx(3 / 5)   # 690, 692, 695 >= 0.97 x 700
  assert s['gpu_power_cap_from'] == 'averaged draw' and s['gpu_clock_reasons'] == {}


def test_visible_ids_follow_cuda_visible_devices(monkeypatch):
  monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
  assert gt.visible_ids(3) == '0,1,2'
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '2,GPU-ab12, 5')
  assert gt.visible_ids(2) == '2,GPU-ab12'
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
  assert gt.visible_ids(1) == ''


def _fake_smi(tmp_path, body: str, prelude: str = '') -> str:
  """A fake nvidia-smi running `body`; called without --loop-ms (gpu_telemetry.query_for's
  probe of a field) it answers once and exits, as the real one does, after `prelude`."""
  path = tmp_path / 'fake-smi'
  path.write_text('#!/usr/bin/env bash\n' + prelude +
                  '[[ "$*" == *--loop-ms* ]] || { echo "0x0000000000000000"; exit 0; }\n' + body)
  path.chmod(path.stat().st_mode | stat.S_IEXEC)
  return str(path)


def test_sample_reads_a_running_nvidia_smi(tmp_path, monkeypatch):
  # the fake prints its arguments' --id and a sample every 20 ms until terminated
  smi = _fake_smi(tmp_path, 'echo "$@" > "$(dirname "$0")/args"\n'
                  'while true; do echo "0, 1740, 691.5, 700.00, 0x0000000000000004"\n'
                  'sleep 0.02; done\n')
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '3')
  with gt.sample(1, interval_ms=20, platform='gpu', command=smi) as telemetry:
    time.sleep(0.3)
  fields = telemetry.fields()
  assert fields['gpu_telemetry'] == 'nvidia-smi' and fields['gpu_samples'] >= 3
  assert fields['gpu_sm_clock_mhz']['p50'] == 1740 and fields['gpu_at_power_cap'] == 1.0
  args = (tmp_path / 'args').read_text()
  assert '--id=3' in args and '--loop-ms=20' in args and f'--query-gpu={gt.QUERY}' in args
  assert report.sm_clock(fields) == '1740 (cap 100 %)'


@pytest.mark.parametrize('known, query, cap_from', [
    ('clocks_event_reasons', gt.QUERY, 'clock-event reason'),
    ('clocks_throttle_reasons', gt.BASE_QUERY + ',clocks_throttle_reasons.active',
     'clock-event reason'),
    ('none', gt.BASE_QUERY, 'averaged draw')])
def test_an_older_driver_is_asked_what_it_knows(tmp_path, monkeypatch, known, query, cap_from):
  """Drivers before R535 name the reasons 'throttle reasons', and an unknown field fails the
  whole query: the sampler asks which name this nvidia-smi knows, and samples without the
  reasons (the cap judged by the averaged draw) where it knows neither."""
  smi = _fake_smi(tmp_path, prelude=f"""
case "$1" in
  --query-gpu=*{known}*) ;;
  --query-gpu=*reasons*) echo "Field ${{1#--query-gpu=}} is not a valid field to query."
                         exit 2 ;;
esac
""", body="""echo "$1" > "$(dirname "$0")/query"
while true; do
  if [[ "$1" == *reasons* ]]; then echo "0, 1755, 300, 700, 0x4"; else echo "0, 1755, 690, 700"; fi
  sleep 0.02
done
""")
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '0')
  with gt.sample(1, interval_ms=20, platform='gpu', command=smi) as telemetry:
    time.sleep(0.3)
  assert (tmp_path / 'query').read_text().strip() == f'--query-gpu={query}'
  fields = telemetry.fields()
  assert fields['gpu_power_cap_from'] == cap_from and fields['gpu_at_power_cap'] == 1.0


def test_sample_says_why_when_nothing_was_sampled(tmp_path):
  with gt.sample(1, platform='cpu') as telemetry:
    pass
  assert telemetry.fields() == {'gpu_telemetry': 'not sampled (platform cpu)'}
  with gt.sample(1, platform='gpu', command=str(tmp_path / 'missing-smi')) as telemetry:
    pass
  assert 'not found' in telemetry.fields()['gpu_telemetry']
  broken = _fake_smi(tmp_path, 'echo "Failed to initialize NVML: Driver Not Loaded" >&2\nexit 9\n')
  with gt.sample(1, platform='gpu', command=broken) as telemetry:
    time.sleep(0.2)
  assert telemetry.fields() == {
      'gpu_telemetry': 'not sampled (fake-smi: Failed to initialize NVML: Driver Not Loaded)'}
  assert report.sm_clock(telemetry.fields()) is None


def test_sample_stops_nvidia_smi_when_the_timed_work_fails(tmp_path):
  smi = _fake_smi(tmp_path, 'echo $$ > "$(dirname "$0")/pid"\n'
                  'while true; do echo "0, 1980, 120, 700, 0x0"; sleep 0.02; done\n')
  with pytest.raises(RuntimeError, match='out of memory'):
    with gt.sample(1, interval_ms=20, platform='gpu', command=smi):
      time.sleep(0.1)
      raise RuntimeError('out of memory')
  pid = int((tmp_path / 'pid').read_text())
  time.sleep(0.1)
  with pytest.raises(ProcessLookupError):
    os.kill(pid, 0)


def test_smi_points_finds_the_busy_stretches_of_a_log(load_script, tmp_path, capsys,
                                                      monkeypatch):
  """benchmarks/smi_points.py: a stretch starts where the cap reason is set though the
  averaged draw still reads low (clock1's first second), ends where both are gone, and names
  each reason's share; a log without the reasons' column names what is missing."""
  smi_points = load_script('smi_points')
  header = ('timestamp, clocks.current.sm [MHz], clocks.current.memory [MHz], power.draw [W], '
            'temperature.gpu, clocks_event_reasons.active\n')
  rows = [(1980, 110, 0x0), (1965, 147, 0x4), (1800, 440, 0x4), (1725, 690, 0x24),
          (1890, 693, 0x4), (1980, 300, 0x0), (1980, 150, 0x0), (345, 80, 0x1),
          (1980, 250, 0x0), (1980, 120, 0x0)]
  log = tmp_path / 'smi.csv'
  log.write_text(header + ''.join(
      f'2026/11/29 14:55:0{i}.000, {mhz} MHz, 3201 MHz, {w} W, 55, 0x{bits:016x}\n'
      for i, (mhz, w, bits) in enumerate(rows)) + '2026/11/29 14:55:10.000, [N/A]\n')
  runs = smi_points.stretches(smi_points.read(str(log)), 2, 200.0)
  assert [len(r) for r in runs] == [5]                      # the lone 250 W sample is too short
  s = smi_points.summary(runs[0])
  assert s['from'].endswith('14:55:01.000') and s['to'].endswith('14:55:05.000')
  assert s['mhz_p50'] == 1890 and s['capped_mhz_p50'] == 1845 and s['watts_max'] == 693
  assert s['reasons'] == {'sw_power_cap': 0.8, 'sw_thermal_slowdown': 0.2}
  monkeypatch.setattr('sys.argv', ['smi_points.py', str(log), '--min-samples', '2'])
  assert smi_points.main() == 0
  out = capsys.readouterr().out
  assert ('| 5 | 1890 (1725-1980) | 1845 | 693 | 55 | sw_power_cap 80 %, '
          'sw_thermal_slowdown 20 % |') in out
  bare = tmp_path / 'bare.csv'
  bare.write_text('timestamp, clocks.current.sm [MHz], power.draw [W], temperature.gpu\n')
  with pytest.raises(SystemExit, match='no column clocks_event_reasons.active'):
    smi_points.read(str(bare))
