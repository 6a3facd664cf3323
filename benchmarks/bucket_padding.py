"""How much padded work length buckets leave, per bucket width, on a SQuAD train file.

  python benchmarks/bucket_padding.py --train-file ../shared/data/squad/train-v1.1.reconstructed.json.gz \
      --vocab-dir ../shared/models/all-MiniLM-L6-v2-fp16 --batch 64 --widths 128 64 32 16

For each width: how many step widths get compiled, and the positions an epoch's batches hold
as a share of the padded run's (bert_jax.batches.TrainBatches.token_share, the same batches
training uses). 1 / share bounds the speed-up over the padded run. The 'packing' rows are the
rows data.packing fills (bert_jax.packing) per window padded one a row; the last row is the
share of real tokens, the bound for any packing. With --dev-file, the same for prediction
on packed rows (eval.packing, bert_jax.packing.PackedEval): the rows the dev windows take as
a share of one a row. Runs on CPU in seconds.
"""
import argparse

from bert_jax import batches, mesh as mesh_lib, packing
from bert_jax.settings import MeshSettings
from bert_jax.squad import features as features_lib
from bert_jax.squad import reader
from bert_jax.tokenizer import load_tokenizer


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--train-file', required=True)
  p.add_argument('--dev-file', help='also the rows eval.packing packs this file\'s windows into')
  p.add_argument('--vocab-dir', required=True, help='a folder with vocab.txt')
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--widths', type=int, nargs='+', default=[128, 64, 32, 16])
  p.add_argument('--max-seq-length', type=int, default=384)
  p.add_argument('--doc-stride', type=int, default=128)
  p.add_argument('--max-windows', type=int, nargs='+', default=[8],
                 help='packing rows: at most this many windows a row (data.max_windows_per_row)')
  args = p.parse_args()
  tokenizer = load_tokenizer(args.vocab_dir, True)

  def windows(path, is_training):
    examples, _ = reader.read_examples(reader.load_json(path), is_training=is_training)
    return features_lib.featurize(examples, tokenizer, max_seq_length=args.max_seq_length,
                                  doc_stride=args.doc_stride, max_query_length=64,
                                  is_training=is_training)
  feats = windows(args.train_file, True)
  sharding = mesh_lib.batch_sharding(mesh_lib.make_mesh(MeshSettings(num_devices=1)))
  lengths = packing.window_lengths(feats)
  print(f'{len(feats):,} windows at {args.max_seq_length}, mean length {lengths.mean():.1f}, '
        f'batch {args.batch}')
  print('| bucket width | compiled widths | share of padded positions | bound on speed-up |')
  print('| --- | --- | --- | --- |')
  for width in [0, *args.widths]:
    tb = batches.TrainBatches(feats, args.batch, 0, sharding, bucket_width=width)
    n = len({tb.step_width(s) for s in range(tb.steps_per_epoch)})
    share = tb.token_share()
    print(f'| {width or "none (padded)"} | {n} | {share:.3f} | {1 / share:.2f} × |')
  for cap in args.max_windows:
    pb = packing.PackedBatches(feats, args.batch, 0, sharding, max_windows=cap)
    share = pb.token_share()
    per_row = len(feats) / pb.rows_per_epoch
    print(f'| packing (`data.packing`, at most {cap} windows a row; {per_row:.2f} a row) '
          f'| 1 | {share:.3f} | {1 / share:.2f} × |')
  share = lengths.sum() / (len(feats) * args.max_seq_length)
  print(f'| real tokens only (the bound for any packing) | 1 | {share:.3f} | {1 / share:.2f} × |')
  if args.dev_file:
    dev = windows(args.dev_file, False)
    for cap in args.max_windows:
      pe = packing.PackedEval(dev, 1, sharding, cap)
      share = len(pe) / len(dev)                # one row a call: the calls are the rows
      print(f'| prediction on packed rows (`eval.packing`, {len(dev):,} dev windows, at most '
            f'{cap} a row; {len(dev) / len(pe):.2f} a row) | 1 | {share:.3f} | {1 / share:.2f} × |')


if __name__ == '__main__':
  main()
