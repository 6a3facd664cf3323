"""Experiment card: BERT-Large fine-tuned on SQuAD v1.1 on 4 GPU(s), bf16.

What: Google's bert-large-uncased weights (hub name in large_1gpu.py, or a local HF/TF folder via
--config.model.init_checkpoint=PATH), run_squad.py's recipe
(per-GPU batch 32, lr 5e-5 x sqrt(4), 2 epochs, seq 384, stride 128), then dev-set predictions and official EM/F1.
Command: python run.py --config=configs/large_4gpu.py --workdir=runs/large_4gpu
Hardware: 4 x H100/H200 (80 GB) on one host.
Expected: F1 90.9-91.5, EM about 84 (Google's and NVIDIA's published BERT-Large results).
Not yet reproduced by this project: see docs/benchmarks.md for what has been measured.
Measured speed (random init, real SQuAD windows, 4 x H200, docs/measurements/2026-11-28_h200x4_unpad):
the bench's padded step 2,392.8 sentences/s (3.88 x one GPU; 2 epochs about 74 s of steady
training); with --config.data.packing=True --config.train.batch_size=64 (16 packed rows a GPU)
the whole 2 epochs ran in 42.2 s of steady training, 38.1 s compiling apart.
"""

from configs import large_1gpu


def get_config():
  c = large_1gpu.get_config()
  c.name = 'large_4gpu'
  c.mesh.num_devices = 4
  c.train.batch_size = 32 * 4                 # per-GPU batch stays 32
  c.train.learning_rate = 5e-5 * 4 ** 0.5     # square-root scaling with the global batch
  return c
