#!/usr/bin/env bash
# The GPU measurements behind README.md and docs/benchmarks.md, in the groups they ran in.
# Expects .gpu/minilm (the MiniLM checkpoint), .gpu/squad (SQuAD json.gz) and, where the
# image lacks ml_collections, its wheel in .whl/. Usage: bash benchmarks/gpu_run.sh GROUP
# Results go to $OUT (or ./gpu_out).
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
if ! python3 -c 'import ml_collections' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
SQ=.gpu/squad
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())' | tee -a "$OUT/gpu.txt"
quiet() { grep -vE 'it/s\]|s/it\]|step/s|^\s*$' | tr '\r' '\n' | grep -vE 'it/s|step/s|^\s*$' | tail -"$1"; }

case "$1" in
minilm)  # issue 4: MiniLM-L6 with the peer's recipe, F1 and training time
  python3 run.py --config=configs/minilm_squad_1gpu.py --workdir=/tmp/minilm \
    --config.model.init_checkpoint=.gpu/minilm --config.data.cache_dir=/tmp/cache \
    --config.data.train_file=$SQ/train-v1.1.reconstructed.json.gz \
    --config.data.dev_file=$SQ/dev-v1.1.json.gz 2>&1 | quiet 30
  cp /tmp/minilm/eval_results.json "$OUT/minilm_eval_results.json"
  cp /tmp/minilm/records.jsonl "$OUT/minilm_records.jsonl"
  cp /tmp/minilm/metrics.jsonl "$OUT/minilm_metrics.jsonl" ;;
large)  # issue 4: BERT-Large from random init on real SQuAD features, a few hundred steps
  python3 run.py --config=configs/large_1gpu.py --workdir=/tmp/large_${NDEV:-1}gpu \
    --config.model.init_checkpoint= --config.model.vocab_dir=.gpu/minilm \
    --config.data.cache_dir=/tmp/cache --config.data.train_file=$SQ/train-v1.1.reconstructed.json.gz \
    --config.data.dev_file=$SQ/dev-v1.1.json.gz --config.data.max_eval_examples=2000 \
    --config.train.max_steps=${STEPS:-300} --config.train.learning_rate=1e-4 \
    --config.train.log_every=25 --config.train.checkpoint_every=0 --config.mesh.num_devices=${NDEV:-1} \
    --config.train.batch_size=$((32 * ${NDEV:-1})) 2>&1 | quiet 12
  cp /tmp/large_${NDEV:-1}gpu/metrics.jsonl "$OUT/large_${NDEV:-1}gpu_metrics.jsonl"
  cp /tmp/large_${NDEV:-1}gpu/records.jsonl "$OUT/large_${NDEV:-1}gpu_records.jsonl" ;;
bench)  # issues 5/6: our train and inference points, then the PyTorch peer on the same shapes
  for spec in "384 32 bf16,fp16" "128 64 bf16"; do set -- $spec
    python3 run.py --config=configs/bench_train.py --mode=bench --workdir="$OUT" \
      --config.bench.seq_lens="($1,)" --config.bench.batch_sizes="($2,)" \
      --config.bench.precisions="(\"${3//,/\",\"}\",)" --config.bench.num_devices='(1,)' 2>&1 | tail -2
  done
  python3 run.py --config=configs/bench_infer.py --mode=bench --workdir="$OUT" \
    --config.bench.seq_lens='(384,)' --config.bench.batch_sizes='(1,8,64)' \
    --config.bench.precisions='("fp16","bf16")' 2>&1 | tail -2
  python3 run.py --config=configs/bench_infer.py --mode=bench --workdir="$OUT" \
    --config.bench.seq_lens='(128,)' --config.bench.batch_sizes='(1,)' \
    --config.bench.precisions='("fp16",)' 2>&1 | tail -2
  python3 benchmarks/peer_hf.py --out "$OUT/peer.jsonl" --train 384:32 128:64 \
    --precision bf16 --modes eager compile 2>&1 | grep -E '^\{|Error' | cut -c1-300
  python3 benchmarks/peer_hf.py --out "$OUT/peer.jsonl" --infer 384:1 384:8 128:1 \
    --precision fp16 --modes eager compile 2>&1 | grep -E '^\{|Error' | cut -c1-300 ;;
esac
