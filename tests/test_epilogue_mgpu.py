"""benchmarks/epilogue_mgpu.py: its Mosaic GPU matmul with the bias and GELU in the epilogue,
run in Mosaic GPU's interpreter on CPU, gives XLA's result for every epilogue and every block
layout (not every pair); its GELU is the model's; bad tiles and shapes are refused with the
reason."""
import functools
import os

import jax
import jax.numpy as jnp
from jax.scipy.stats import norm
import numpy as np
import pytest

from bert_jax import model


@pytest.fixture(scope='module')
def em(load_script):
  return load_script('epilogue_mgpu')


def _inputs(m=256, k=128, n=256, dtype=jnp.bfloat16):
  kx, kw, kb = jax.random.split(jax.random.PRNGKey(3), 3)
  x = jax.random.normal(kx, (m, k), jnp.float32).astype(dtype)
  w = (jax.random.normal(kw, (k, n), jnp.float32) / np.sqrt(k)).astype(dtype)
  b = jax.random.normal(kb, (n,), jnp.float32).astype(dtype)
  return x, w, b


def _rounding(x):
  """One bf16 rounding at each value of x (bf16 keeps 8 significant bits)."""
  _, exponent = np.frexp(np.abs(np.asarray(x, np.float32)))   # |x| = f 2^e, f in [0.5, 1)
  return np.ldexp(1.0, exponent - 8)


def _close(got, want, carried=0.0):
  """At most one bf16 rounding apart, or 2^-12 where the value is near zero, plus `carried`:
  the kernel adds the same float32 products as XLA in another order, which can move a
  rounding."""
  got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
  return bool(np.all(np.abs(got - want) <= np.maximum(_rounding(want), 2.0 ** -12) + carried))


def _carried(outputs, index):
  """What the output `index` of (h,) or (h, GELU(h)) may carry from before its own rounding:
  nothing for h; for GELU(h), h's rounding times GELU's slope there. Where GELU is small
  and h is not (h near -2), that is several of GELU's own roundings: one value of 65,536 sat
  3.5 apart on an H200 host's CPU (`docs/measurements/2026-11-29_h200_suite`)."""
  if index == 0:
    return 0.0
  h = np.asarray(outputs[0], np.float32)
  slope = norm.cdf(h) + h * norm.pdf(h)
  return np.abs(np.asarray(slope)) * _rounding(h)


# A case takes about 10 s interpreted on 2 cores, whatever its size. The default run keeps
# one of each kind: the GELU epilogue (bias, GELU and its slope: every store) in the
# specialized and plain kernel bodies, once with the piecewise stores (the pingpong body
# runs it in test_pingpong_blocks_cover_every_tile, pieces included); no bias (one output,
# no bias to wait for) and the bias without the GELU once each. The rest
# (`every_kernel_case`) run with --every-kernel-case (gpu_run.sh's suite3 does).
EVERY = pytest.mark.every_kernel_case


@pytest.mark.parametrize('tiles, epilogue', [
    ('m64n64k64s2i0', 'gelu'),    # two compute warpgroups and a producer; 4 tiles, 4 blocks
    ('m64n64k64s2i0c2p', 'gelu'),   # one warpgroup a block issuing its own copies, 2 an SM
    ('m64n64k64s3i1e64x32b2', 'gelu'),   # 3 stages, a matmul left in flight, 64 x 32 pieces
    ('m64n64k64s2i0', 'none'),
    ('m64n64k64s2i0', 'bias'),
    pytest.param('m64n64k64s3i1e64x32b2g', 'gelu', marks=EVERY),  # the compute warpgroups
    # taking whole tiles in turn (as the default pingpong cover below, on one block's tiles)
    pytest.param('m64n128k64s2i0w1c2d500p', 'gelu', marks=EVERY),  # the second block's
    # stagger (a no-op interpreted)
    pytest.param('m64n64k64s2i0g', 'gelu', marks=EVERY),
    *[pytest.param(tiles, 'none', marks=EVERY)
      for tiles in ('m64n64k64s2i0c2p', 'm64n64k64s2i0g', 'm64n64k64s3i1e64x32b2')],
])
def test_kernel_matches_xla(em, tiles, epilogue):
  x, w, b = _inputs()
  t = em.parse_tiles(tiles)
  got = em.dense_epilogue(x, w, b, epilogue=epilogue, tiles=t, interpret=True)
  want = em.reference(x, w, b, epilogue)
  assert len(got) == len(want) == (2 if epilogue == 'gelu' else 1)
  for i, (g, r) in enumerate(zip(got, want)):
    assert g.shape == r.shape and g.dtype == r.dtype
    assert _close(g, r, _carried(want, i))


def test_persistent_blocks_cover_every_tile(em):
  """More output tiles than blocks: each block walks several, in the snake order."""
  x, w, b = _inputs(m=512, n=512)
  t = em.Tiles(m=64, n=64, k=64, stages=2, band=2)
  (h,) = em.dense_epilogue(x, w, b, epilogue='bias', tiles=t, num_sms=3, interpret=True)
  (want,) = em.reference(x, w, b, 'bias')
  assert _close(h, want)


@pytest.mark.parametrize('tiles, num_sms', [
    ('m64n64k64s3i1e64x32b2g', 3),  # 20 tiles over 3 blocks (7, 7, 6): odd counts per block,
    # 3 stages over 4 k steps, so a slot's reads change warpgroup within a tile
    pytest.param('m64n128k64s2i1g', 3, marks=EVERY),  # 4 tiles over 3 blocks: two blocks'
    # second warpgroup idles
])
def test_pingpong_blocks_cover_every_tile(em, tiles, num_sms):
  x, w, b = _inputs(m=256, k=256, n=320 if 'n64' in tiles else 256)
  got = em.dense_epilogue(x, w, b, epilogue='gelu', tiles=em.parse_tiles(tiles),
                          num_sms=num_sms, interpret=True)
  want = em.reference(x, w, b, 'gelu')
  for i, (g, r) in enumerate(zip(got, want)):
    assert _close(g, r, _carried(want, i))


def test_gelu_is_the_models(em):
  h = jnp.linspace(-8, 8, 4097, dtype=jnp.float32).astype(jnp.bfloat16)
  ours = em.gelu_model(h.astype(jnp.float32)).astype(jnp.bfloat16)
  np.testing.assert_array_equal(np.asarray(ours, np.float32),
                                np.asarray(model._gelu(h), np.float32))
  # and the exact GELU it stands for, to float32 accuracy
  x = jnp.linspace(-6, 6, 1001, dtype=jnp.float32)
  np.testing.assert_allclose(em.gelu_model(x), jax.nn.gelu(x, approximate=False),
                             rtol=2e-6, atol=1e-6)
  np.testing.assert_allclose(em.gelu_erf(x), jax.nn.gelu(x, approximate=False),
                             rtol=2e-6, atol=1e-6)


def test_parse_tiles_round_trips(em):
  for text in ['m128n128k64s3i0', 'm128n128k64s4i1e64x32', 'm128n128k64s2i0e64x64c2p',
               'm64n256k64s2i0e64x64b4w1c2d4000p', 'm128n128k64s4i1e64x32g']:
    t = em.parse_tiles(text)
    assert em.parse_tiles(t.label) == t
  t = em.parse_tiles('m128n128k64s2i0c2p')
  assert (t.wgs, t.blocks, t.specialized, t.pingpong) == (1, 2, False, False)
  t = em.parse_tiles('m128n128k64s4i1g')
  assert (t.wgs, t.specialized, t.pingpong, t.block_n) == (2, True, True, 128)
  assert em.parse_tiles('m128n128k64s4i1').block_n == 256
  with pytest.raises(ValueError, match='stagger is a delay in ns'):
    em.Tiles(stagger=-1)


@pytest.mark.parametrize('text, words', [
    ('m128n128', 'want mMnNkK'),
    ('m96n128k64s3i0', 'multiple of 64'),
    ('m128n128k64s3i2', 'inflight must be 0 or 1'),
    ('m128n128k64s3i0e48x64', 'must divide'),
    ('m128n128k64s3i0w2c2p', 'wgs must be 1'),
    ('m128n128k64s0i0', 'stages must be positive'),
    ('m128n128k64s2i0c3p', 'blocks must be 1 or 2'),
    ('m128n128k64s2i0w1g', 'ping-pong block has two compute'),
    ('m128n128k64s2i0c2g', 'ping-pong block has two compute'),
    ('m128n128k64s2i0pg', 'want mMnNkK'),
])
def test_bad_tiles_say_why(em, text, words):
  with pytest.raises(ValueError, match=words):
    em.parse_tiles(text)


@pytest.mark.parametrize('change, words', [
    (dict(w_shape=(64, 256)), 'shapes do not chain'),
    (dict(m=200), 'multiples of the tiles'),
    (dict(dtype=jnp.float32), 'bfloat16 or float16'),
    (dict(epilogue='relu'), 'epilogue must be one of'),
])
def test_bad_inputs_say_why(em, change, words):
  x, w, b = _inputs(m=change.get('m', 256), dtype=change.get('dtype', jnp.bfloat16))
  if 'w_shape' in change:
    w = jnp.zeros(change['w_shape'], x.dtype)
  call = functools.partial(em.dense_epilogue, epilogue=change.get('epilogue', 'gelu'),
                           tiles=em.Tiles(m=64, n=64), interpret=True)
  with pytest.raises(ValueError, match=words):
    call(x, w, b)


def test_command_line_runs_in_the_interpreter(em, tmp_path, capsys):
  out = tmp_path / 'epi.jsonl'
  assert em.main(['--interpret', '--m', '128', '--k', '64', '--n', '128', '--tiles',
                  'm64n64k64s2i0', '--epilogues', 'gelu', '--out', str(out)]) == 0
  import json
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert [r['case'] for r in records] == [
      'xla_matmul', 'xla_bias_gelu', 'ours_gelu[m64n64k64s2i0e64x64b8w2c1]']
  assert all('error' not in r and r['max_abs_err'] <= 0.0625 for r in records)
  with pytest.raises(SystemExit):
    em.main(['--tiles', 'nonsense'])
  assert 'want mMnNkK' in capsys.readouterr().err


def _events(tid, ranges):
  out = []
  for name, b, e in ranges:
    out += [{'name': name, 'ph': 'B', 'ts': b, 'pid': 1, 'tid': tid},
            {'name': name, 'ph': 'E', 'ts': e, 'pid': 1, 'tid': tid}]
  return out


def test_trace_summary_measures_how_the_warpgroups_overlap(em):
  # block 0 (threads 1, 2; the producer, thread 3, records nothing): a perfect ping-pong,
  # each epilogue (4 µs) beside the other warpgroup's matmuls (10 µs); waits do not count
  ping = (_events(1, [('mma', 0, 10), ('epilogue', 10, 14), ('mma', 20, 30),
                      ('epilogue', 30, 34)])
          + _events(2, [('wait', 0, 10), ('mma', 10, 20), ('epilogue', 20, 24)]))
  # block 1 (threads 4, 5): side by side, both epilogues together with nothing beside them
  side = (_events(4, [('mma', 0, 10), ('epilogue', 10, 14)])
          + _events(5, [('mma', 0, 10), ('epilogue', 10, 14)]))
  s = em.trace_summary({'traceEvents': ping})
  assert s['trace_blocks'] == 1 and s['span_us'] == 34
  assert s['main_busy'] == pytest.approx(30 / 34) and s['both_main'] == 0
  assert s['epi_beside_main'] == pytest.approx(8 / 34)   # two of the three epilogues
  assert s['epi_alone'] == pytest.approx(4 / 34)          # the last one
  assert s['epilogue_hidden'] == pytest.approx(8 / 12)
  s = em.trace_summary({'traceEvents': side})
  assert (s['main_busy'], s['both_main'], s['epi_beside_main']) == (
      pytest.approx(10 / 14), pytest.approx(10 / 14), 0)
  assert s['epi_alone'] == pytest.approx(4 / 14) and s['epilogue_hidden'] == 0
  both = em.trace_summary({'traceEvents': ping + side})
  assert both['trace_blocks'] == 2 and both['span_us'] == 24
  assert em.trace_summary({'traceEvents': []}) == {'trace_blocks': 0}


def test_trace_needs_a_gpu(em, capsys):
  with pytest.raises(SystemExit):
    em.main(['--interpret', '--trace', '/tmp/unused'])
  assert '--trace needs a GPU' in capsys.readouterr().err


def test_trace_folders_are_made_for_the_profiler(em, tmp_path):
  """Mosaic GPU's profiler opens its trace file in the case's folder, which must exist."""
  names = [name for name, _, _ in em.cases([em.parse_tiles('m64n64k64s2i0g')], ['gelu'],
                                             lib=False, interpret=False,
                                             trace_dir=str(tmp_path / 'trace'))]
  assert names[-1] == 'ours_gelu[m64n64k64s2i0e64x64b8w2c1g]'
  assert os.path.isdir(tmp_path / 'trace' / 'ours_gelu_m64n64k64s2i0e64x64b8w2c1g_')


def test_read_traces_takes_this_runs_trace(em, tmp_path):
  import json
  import time
  old = _events(1, [('mma', 0, 10), ('epilogue', 10, 30)])
  new = _events(1, [('mma', 0, 10), ('epilogue', 10, 14)])
  (tmp_path / '9-trace.json').write_text(json.dumps({'traceEvents': old}))
  time.sleep(0.05)
  (tmp_path / '1-trace.json').write_text(json.dumps({'traceEvents': new}))
  got = em._read_traces(str(tmp_path))
  assert got['trace_file'].endswith('1-trace.json') and got['span_us'] == 14
  assert 'no trace in' in em._read_traces(str(tmp_path / 'none'))['trace_error']
