"""Where SQuAD comes from: a local file, the bundled sample, the official URL, or TFDS."""
from __future__ import annotations

import hashlib
import os
import urllib.request

from bert_jax.errors import SquadFormatError
from bert_jax.squad import reader

OFFICIAL_URL = 'https://rajpurkar.github.io/SQuAD-explorer/dataset/{name}'
# sha256 of the official files; v2.0's are not pinned here (no trusted copy was at hand),
# so those downloads are reported with their hash but not verified.
OFFICIAL_SHA256 = {
    'train-v1.1.json': '3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955',
    'dev-v1.1.json': '95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9',
}


def default_cache_dir() -> str:
  return os.path.join(os.path.expanduser('~'), '.cache', 'bert_jax')


def official_name(split: str, version_2: bool) -> str:
  return f'{split}-v{"2.0" if version_2 else "1.1"}.json'


def download(split: str, version_2: bool, cache_dir: str = '') -> str:
  """The official SQuAD JSON, downloaded once into cache_dir and checksum-verified."""
  name = official_name(split, version_2)
  folder = os.path.join(cache_dir or default_cache_dir(), 'squad')
  path = os.path.join(folder, name)
  if not os.path.exists(path):
    os.makedirs(folder, exist_ok=True)
    url = OFFICIAL_URL.format(name=name)
    try:
      with urllib.request.urlopen(url, timeout=60) as r:
        payload = r.read()
    except OSError as e:
      raise SquadFormatError(
          f'could not download {url} ({e}). Offline? Fetch {name} on a connected machine '
          f'and pass its path as data.{split}_file, or install the tfds extra and use '
          "'tfds'.") from e
    _verify(name, payload, url)
    tmp = path + '.partial'
    with open(tmp, 'wb') as f:
      f.write(payload)
    os.replace(tmp, path)
  return path


def _verify(name: str, payload: bytes, origin: str) -> None:
  want = OFFICIAL_SHA256.get(name)
  got = hashlib.sha256(payload).hexdigest()
  if want and got != want:
    raise SquadFormatError(f'{origin}: sha256 {got} does not match the official {want}; '
                           'the download is corrupt or not the official file')


def read(spec: str, split: str, *, is_training: bool, version_2: bool, cache_dir: str = '',
         limit: int = 0):
  """Examples from a spec: a path, 'sample', 'download' or 'tfds'.

  Returns:
    (examples, report, identity) where identity names the data for the feature cache.
  """
  if not spec:
    raise SquadFormatError(f'data.{split}_file is empty: give a SQuAD JSON path, '
                           "'sample', 'download' or 'tfds'")
  if spec == 'sample':
    if version_2:
      raise SquadFormatError("the bundled 'sample' data is SQuAD v1.1; set data.version_2=False")
    spec = os.path.join(reader.SAMPLE_DIR, f'{split}.json')
  elif spec == 'download':
    spec = download(split, version_2, cache_dir)
  elif spec == 'tfds':
    return _read_tfds(split, is_training, version_2, limit)
  examples, report = reader.read_examples(spec, is_training=is_training, version_2=version_2,
                                          limit=limit)
  return examples, report, spec


def _read_tfds(split, is_training, version_2, limit):
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise SquadFormatError("'tfds' needs tensorflow-datasets: pip install 'bert_jax[tfds]'") from e
  name = f'squad/{"v2.0" if version_2 else "v1.1"}'
  tfds_split = 'validation' if split == 'dev' else 'train'
  try:
    ds = tfds.load(name, split=tfds_split)
  except Exception as e:
    raise SquadFormatError(f'tensorflow-datasets could not load {name} ({e}); it needs the '
                           'network once, or a prepared data_dir') from e
  examples, report = reader.from_records(tfds.as_numpy(ds), f'tfds:{name}:{tfds_split}',
                                         is_training=is_training, version_2=version_2,
                                         limit=limit)
  return examples, report, f'tfds:{name}:{tfds_split}'
