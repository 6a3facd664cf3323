#!/usr/bin/env bash
# The GPU measurements behind README.md and docs/benchmarks.md, in the groups they ran in.
# Expects .gpu/minilm (the MiniLM checkpoint), .gpu/squad (SQuAD json.gz) and, where the
# image lacks ml_collections, its wheel in .whl/. Usage: bash benchmarks/gpu_run.sh GROUP
# Groups: minilm, large (1 GPU or NDEV GPUs), profile, profile2, gridlast, autotune, gelukernel, stack1, cmdbuf1, stack2, stack4, gelu1, gelu3, gelu4, gridfill, scan1, scan2, scan3, scan4, dsf1, inf1, inf2, fill1, host1, host2, ln1, ln2, ln3, bound1, bound2, bound3, bound4, tanh1, tanh2, tanh3, tanh4, tanh5, wait1, wait2, spin1, rep1, rep2, cudnn1, suite1, suite2, qlen4, packgpu1, sink1, sink2, sink3, sink4, sink5, stream1, stream2, stream3, cat1, epi1, epi2, epi3, epi4, epi5, epi6, epi7, epi8, epi9, epi10, epi11, epi12, epi13, epi14, power1, power2, slope1, slope2, slope3, slope4, join1, join2, join3, join4, clock1, trim1, trim2, trim3, cap1, trim4, trim6, bucketgpu1, evalbucket1, evalbucket2, evalbucket3, verify1, calls1, calls2, calls3, group1, group2, group3, groupgpu1, join5 (1 GPU); grid, rest, fullgrid,
# gridrest, headline, final, kernels, adopted, cublas, triton, next, scale, profile3, scale4, scale5, scale6, scale7, split1, stack3,
# grid2, next1, recut1 (4 GPUs: one job per GPU at once); scalepack1 (4 GPUs, one sweep at a time); suite3 (4 GPUs: test shards at once); multi1 (4 GPUs, one
# job on all four at a time);
# pair1, pair2, pair3, pack1, pack2, pack3, pack4, drop1, zero1, gelu2, epochs1, recheck1, qlen1, qlen2, qlen3, peerreal1, unpad1, trim5, multi2 (2 GPUs). Results go to $OUT (or
# ./gpu_out); most 4-GPU groups pack them into $OUT/results.tgz, since the device tool returns
# at most 8 files. DEADLINE (s, default 560) stops every job in time for the 10-minute cap.
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
show() { grep -E '^\{|Error' | cut -c1-250; }   # a tool's JSON records and errors (some older
# groups define their own, wider or matching more)

# One-GPU bench points pinned to one GPU of a several-GPU machine; records in $OUT/g<GPU>.
B="--mode=bench --config.model.vocab_dir=.gpu/minilm --config.bench.num_devices=(1,)
   --config.data.train_file=$SQ/train-v1.1.reconstructed.json.gz --config.data.dev_file=$SQ/dev-v1.1.json.gz"
left() { local l=$(( ${DEADLINE:-560} - SECONDS )); echo $(( l > 1 ? l : 1 )); }  # secs to deadline
ours() {  # GPU kind seq precisions batches, e.g. ours 0 train 384 bf16,fp16 '(32,64)' (XB: more
  # run.py flags; a --config.bench.* flag given again would append to the tuple, not replace it;
  # OLD: a folder holding an older commit's run.py, configs and bert_jax, which then run)
  CUDA_VISIBLE_DEVICES=$1 timeout $(left) python3 ${OLD:+$OLD/}run.py --config=${OLD:+$OLD/}configs/bench_$2.py $B --workdir="${WD:-$OUT/g$1}" \
    --config.data.cache_dir=/tmp/cache_g$1 --config.bench.seq_lens="($3,)" \
    --config.bench.precisions="(\"${4//,/\",\"}\",)" --config.bench.batch_sizes="$5" ${XB:-} 2>&1 | grep -E 'Error|error:' | head -5; }
peer() { CUDA_VISIBLE_DEVICES=$1 timeout $(left) python3 benchmarks/peer_hf.py --out "$OUT/g$1/peer.jsonl" "${@:2}" 2>&1 | grep -E '^\{|Error' | cut -c1-200; }
merge() {  # every GPU's records in $OUT/all, and the report of them
  mkdir -p "$OUT/all"; cat "$OUT"/g*/records.jsonl > "$OUT/all/records.jsonl" 2>/dev/null
  cat "$OUT"/g*/peer.jsonl > "$OUT/all/peer.jsonl" 2>/dev/null
  python3 run.py --mode=report --workdir="$OUT/all" 2>&1 | tail -3; }
sweep() {  # the bench step (seq 384, bf16, 32 per GPU) on 1, 2 and 4 GPUs in one run; $1: time limit
  local sc="${B/--config.bench.num_devices=(1,)/--config.bench.num_devices=(1,2,4)} --config.bench.seq_lens=(384,)"
  sc="$sc --config.bench.batch_sizes=(32,) --config.bench.precisions=(\"bf16\",) --config.data.cache_dir=/tmp/cache_s"
  mkdir -p "$OUT/s"
  timeout "$1" python3 run.py --config=configs/bench_train.py $sc --workdir="$OUT/s" 2>&1 | grep -E 'Error' | head -3; }
lnab() {  # seq batch steps [more profile_step flags]: fp16 inference, XLA's LayerNorm (ln_fwd_xla)
  # then the kernel (base), one process, records in $OUT/p0
  timeout $(left) python3 benchmarks/profile_step.py --kind infer --precision fp16 --out "$OUT/p0" \
    --seq $1 --batch $2 --steps $3 --variants ln_fwd_xla base "${@:4}" 2>&1 | grep -E '^\{|Error' | cut -c1-250; }
shared_dir() {  # /tmp/shared laid out as ../shared is, for the tests (BERT_JAX_SHARED): the
  # carried MiniLM checkpoint and SQuAD files
  mkdir -p /tmp/shared/models /tmp/shared/data
  ln -sfn "$PWD/.gpu/minilm" /tmp/shared/models/all-MiniLM-L6-v2-fp16; ln -sfn "$PWD/$SQ" /tmp/shared/data/squad; }
gputests() {  # GPU FILE PYTEST-ARGS...: tests run on that GPU (conftest would take the CPU),
  # their whole output and exit status in FILE
  CUDA_VISIBLE_DEVICES=$1 JAX_PLATFORMS=cuda XLA_PYTHON_CLIENT_PREALLOCATE=false timeout $(left) \
    python3 -m pytest -q -p no:cacheprovider "${@:3}" > "$2" 2>&1; echo "rc $?" >> "$2"; }
brief() {  # FILE...: one line a record (code, kind, data, seq, batch, sent/s, train s, mean ms)
  grep -h '^{' "$@" | python3 -c '
import json, sys
for r in map(json.loads, sys.stdin):
    print(r.get("code_fingerprint"), r.get("kind"), r.get("data"), r.get("seq_len"), r.get("batch_size"),
          r.get("sentences_per_s"), r.get("total_train_time_s"), (r.get("latency_ms") or {}).get("mean"))'; }
train_parts() {  # EVAL_RESULTS_JSON: a job's train() wall time and its parts, timed apart
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print({k: r.get(k) for k in (
    "train_time_s", "train_setup_s", "compile_s", "final_checkpoint_s", "train_sentences_per_s")})' "$1"; }
evaluate_at() {  # CONFIG WORKDIR CACHE WIDTH BATCH SCAN KEYS [FLAGS...]: --mode=evaluate on
  # WORKDIR's last checkpoint, the whole dev set at one bucket width and eval batch (and
  # eval.scan_layers SCAN, the config's where empty); its JSON kept in $OUT, KEYS of it printed
  local out="$OUT/evaluate_b$4_batch$5${6:+_scan$6}${TAG:+_$TAG}.json"   # TAG: a name part
  timeout $(left) python3 run.py --config=configs/$1.py --workdir=$2 --mode=evaluate \
    --config.data.cache_dir=$3 --config.data.train_file=$SQ/train-v1.1.reconstructed.json.gz \
    --config.data.dev_file=$SQ/dev-v1.1.json.gz --config.eval.bucket_width=$4 \
    --config.eval.batch_size=$5 ${6:+--config.eval.scan_layers=$6} "${@:8}" 2>/dev/null > "$out"
  python3 -c 'import json, sys; t = open(sys.argv[1]).read(); r = json.loads(t[t.index("{"):])
print(sys.argv[1], {k: r.get(k) for k in sys.argv[2].split(",")})' "$out" "$7"
}
calls() {  # [prediction_calls.py flags...]: the job's prediction calls timed (entry 95)
  timeout $(left) python3 benchmarks/prediction_calls.py --dev-file $SQ/dev-v1.1.json.gz \
    --vocab-dir .gpu/minilm --out "$OUT/calls.jsonl" --cache-dir /tmp/cache "$@" 2>&1 | show; }
pack() {  # everything under $OUT in one tarball: the device tool returns at most 8 files
  tar czf /tmp/results.tgz -C "$OUT" . && rm -rf "${OUT:?}"/* && mv /tmp/results.tgz "$OUT/"; }

R="--vocab-dir .gpu/minilm --train-file $SQ/train-v1.1.reconstructed.json.gz --dev-file $SQ/dev-v1.1.json.gz"
unpad_train() {  # GPU: seq-384 bf16 training on real windows, padded batch 32, packed 16 and
  # 32 rows (bench.packing), then the compiled peer on the same real windows at batch 32
  ours $1 train 384 bf16 '(32,)'
  XB=--config.bench.packing=True ours $1 train 384 bf16 '(16,32)'
  peer $1 --train 384:32 --precision bf16 --modes compile $R --cache-dir /tmp/cache_g$1; }
unpad_infer() {  # GPU: fp16 seq-384 inference on real dev windows, padded batches 1 and 8,
  # packed 4 and 8 rows, the compiled peer on the same windows, then MiniLM (the peer's recipe)
  # predicting on packed rows (eval.packing: F1 against qlen1's padded 81.68, the predict rate)
  ours $1 infer 384 fp16 '(1,8)'
  XB=--config.bench.packing=True ours $1 infer 384 fp16 '(4,8)'
  peer $1 --infer 384:1 384:8 --precision fp16 --modes compile $R --cache-dir /tmp/cache_g$1
  CUDA_VISIBLE_DEVICES=$1 CACHE=/tmp/cache_m EVALPACK=True timeout $(left) bash $0 minilm; }
qlen_profile() {  # GPU: where entry 64's +7.4 % comes from. profile_step on windows padded to
  # SQuAD-like lengths (squadlen), the product against the attention given the key lengths
  # only (kv_lengths, the code before), both profiled; then full windows (base). Then fp16
  # inference at batch 8 (weights bound, as the bench), the same pair, profiled. In $OUT/p<GPU>
  local o="$OUT/p$1"; mkdir -p "$o"
  CUDA_VISIBLE_DEVICES=$1 timeout $(left) python3 benchmarks/profile_step.py --kind train --seq 384 \
    --batch 32 --out "$o" --variants squadlen squadlen+kv_lengths base \
    --profile squadlen squadlen+kv_lengths 2>&1 | show
  CUDA_VISIBLE_DEVICES=$1 timeout $(left) python3 benchmarks/profile_step.py --kind infer --seq 384 \
    --batch 8 --precision fp16 --out "$o" --steps 100 --variants squadlen+bound \
    squadlen+bound+kv_lengths --profile squadlen+bound squadlen+bound+kv_lengths 2>&1 | show
  rm -rf "$o"/trace_*/plugins/profile/*/*.xplane.pb; }

case "$1" in
minilm)  # issue 4: MiniLM-L6 with the peer's recipe, F1 and training time (BUCKET=64: buckets;
  # PACK=True ROWS=15: packed rows, 15 a step, about the recipe's 32 windows; ACT=gelu_tanh:
  # the tanh GELU, model.activation, from the checkpoint's exact-GELU weights; EVALPACK=True:
  # the dev windows packed into rows for prediction, eval.packing; EVALBUCKET=64: prediction's
  # calls cut to buckets, eval.bucket_width)
  W=/tmp/minilm${NDEV:+_${NDEV}gpu}${BUCKET:+_b$BUCKET}${ROWS:+_p$ROWS}${ACT:+_$ACT}${EVALPACK:+_evalpacked}${EVALBUCKET:+_evalb$EVALBUCKET}  # NDEV: GPUs
  python3 run.py --config=configs/minilm_squad_1gpu.py --workdir=$W \
    --config.model.init_checkpoint=.gpu/minilm --config.data.cache_dir=${CACHE:-/tmp/cache} \
    --config.data.train_file=$SQ/train-v1.1.reconstructed.json.gz \
    --config.data.packing=${PACK:-False} --config.train.batch_size=${ROWS:-32} --config.mesh.num_devices=${NDEV:-1} \
    --config.data.bucket_width=${BUCKET:-0} --config.model.activation=${ACT:-} \
    --config.eval.packing=${EVALPACK:-False} --config.eval.bucket_width=${EVALBUCKET:-0} \
    --config.data.dev_file=$SQ/dev-v1.1.json.gz 2>&1 | quiet 30
  mkdir -p "$OUT/$(basename $W)"; cp $W/eval_results.json $W/records.jsonl $W/metrics.jsonl "$OUT/$(basename $W)/" ;;
large)  # issue 4: BERT-Large from random init on real SQuAD features, a few hundred steps
  # (BUCKET=64: buckets; PACK=True: packed rows, BATCH of them per GPU; EVALPACK=True: the
  # dev windows predicted on packed rows, eval.packing)
  W=${LARGE_DIR:-/tmp/large_${NDEV:-1}gpu${BUCKET:+_b$BUCKET}${PACK:+_packed}${EVALPACK:+_evalpacked}}  # LARGE_DIR under $OUT: kept if cut off
  python3 run.py --config=configs/large_1gpu.py --workdir=$W \
    --config.model.init_checkpoint= --config.model.vocab_dir=.gpu/minilm \
    --config.data.cache_dir=${CACHE:-/tmp/cache} --config.data.train_file=$SQ/train-v1.1.reconstructed.json.gz \
    --config.data.dev_file=$SQ/dev-v1.1.json.gz --config.data.max_eval_examples=${EVAL:-2000} \
    --config.train.max_steps=${STEPS:-300} --config.train.learning_rate=1e-4 \
    --config.train.log_every=25 --config.train.checkpoint_every=0 --config.mesh.num_devices=${NDEV:-1} \
    --config.data.bucket_width=${BUCKET:-0} --config.data.packing=${PACK:-False} \
    --config.data.max_windows_per_row=${MAXW:-8} --config.train.batch_size=$((${BATCH:-32} * ${NDEV:-1})) \
    --config.eval.packing=${EVALPACK:-False} 2>&1 | quiet 12
  [ -n "${LARGE_DIR:-}" ] || { mkdir -p "$OUT/$(basename $W)"
    cp $W/metrics.jsonl $W/records.jsonl $W/eval_results.json "$OUT/$(basename $W)/"; } ;;
grid)  # issue 5 on a 4-GPU machine: one job per GPU, ours and the peer's, then the report
  mkdir -p "$OUT"/g{0,1,2,3}
  ( ours 0 train 384 bf16 '(1,4,16,32,64)'; ours 0 train 384 fp16 '(32,)'; ours 0 train 384 fp32 '(32,)' ) &
  ( ours 1 train 128 bf16 '(1,16,64)'; ours 1 train 128 fp16 '(64,)'; ours 1 train 128 fp32 '(64,)'
    ours 1 infer 384 fp16 '(1,2,4,8,16,32,64)'; ours 1 infer 128 fp16 '(1,8,64)' ) &
  ( peer 2 --train 384:32 --precision bf16 --modes compile; peer 2 --train 384:32 128:64 --precision bf16 --modes eager
    peer 2 --infer 384:1 384:8 384:64 128:1 --precision fp16 --modes eager; ours 2 infer 384 bf16 '(1,8,64)' ) &
  ( peer 3 --train 128:64 --precision bf16 --modes compile; peer 3 --infer 384:1 384:8 128:1 384:64 --precision fp16 --modes compile ) &
  wait; merge; pack ;;
rest)  # the grid points the 'grid' call did not reach before its time limit
  B="$B --workdir=$OUT/g3"
  python3 run.py --config=configs/bench_train.py $B --config.bench.seq_lens='(384,)' \
    --config.bench.precisions='("fp32",)' --config.bench.batch_sizes='(32,)' 2>&1 | grep -E 'Error' | head -3
  python3 run.py --config=configs/bench_infer.py $B --config.bench.seq_lens='(384,)' \
    --config.bench.precisions='("fp16",)' --config.bench.batch_sizes='(16,32)' 2>&1 | grep -E 'Error' | head -3
  python3 run.py --config=configs/bench_infer.py $B --config.bench.seq_lens='(128,)' \
    --config.bench.precisions='("fp16",)' --config.bench.batch_sizes='(1,8,64)' 2>&1 | grep -E 'Error' | head -3 ;;
fullgrid)  # SEQ=384 or 128 (one call each): every one-GPU point at that length, ours and the peer's.
  # Everything stops by DEADLINE seconds (records are appended per point); merge with
  # 'run.py --mode=report' where the records land (9.9 min per call is too short for both).
  S=${SEQ:-384}; ALL='(1,2,4,8,16,32,64)'; P=$([ "$S" = 384 ] && echo 32 || echo 64)
  mkdir -p "$OUT"/g{0,1,2,3}
  ( ours 0 train $S bf16 "$ALL" ) &
  ( ours 1 train $S fp16 "$ALL" ) &
  ( ours 2 train $S fp32 "$ALL" ) &
  ( peer 3 --train $S:$P --precision bf16 --modes eager compile
    peer 3 --infer $S:1 $S:8 $S:64 --precision fp16 --modes eager compile
    ours 3 infer $S fp16 "$ALL"; ours 3 infer $S bf16 "$ALL"; ours 3 infer $S fp32 '(1,8,64)' ) &
  wait ;;
gridrest)  # 4 GPUs, about 9 min: the one-GPU points the two fullgrid calls left; the peer at 384
  # and our headline seq-384 points on one GPU in the same call; issue 6's next variants (GELU
  # and LayerNorm residuals in the compute dtype) beside the base step, and the host time of a
  # batch-1 inference call with XLA's command buffers as they are, off, and widened;
  # BERT-Large fine-tuning with length buckets of 64
  mkdir -p "$OUT"/g{0,1,2,3}
  ( ours 0 train 384 fp32 '(64,)'; ours 0 infer 384 fp32 '(2,4,16,32)'
    ours 0 infer 128 bf16 '(32,64)'; ours 0 infer 128 fp32 '(1,2,4,8,16,32,64)' ) &
  ( CUDA_VISIBLE_DEVICES=1 BUCKET=64 STEPS=400 CACHE=/tmp/cache_b LARGE_DIR="$OUT/large_1gpu_b64" \
    timeout $(left) bash $0 large ) &
  ( peer 2 --train 384:32 --precision bf16 --modes eager compile
    peer 2 --infer 384:1 384:8 384:64 --precision fp16 --modes eager compile
    ours 2 infer 384 fp16 '(1,8,64)'; ours 2 train 384 bf16 '(32,64)' ) &
  ( export CUDA_VISIBLE_DEVICES=3; PS="python3 benchmarks/profile_step.py --seq 384 --out $OUT/g3"
    show() { grep -E '^\{|Error' | cut -c1-300; }
    # (ran at commit 40ab3e2 as base gelu_res16 ln_res16 gelu_res16+ln_res16; those are the model now)
    timeout $(left) $PS --kind train --batch 32 --variants gelu_autodiff+ln_autodiff ln_autodiff \
      gelu_autodiff base --profile base 2>&1 | show
    IB="--kind infer --batch 1 --precision fp16 --variants base --steps 200"
    timeout $(left) $PS $IB 2>&1 | show
    XLA_FLAGS=--xla_gpu_enable_command_buffer= timeout $(left) $PS $IB 2>&1 | show
    XLA_FLAGS="--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUDNN,CUSTOM_CALL --xla_gpu_graph_min_graph_size=1" \
      timeout $(left) $PS $IB 2>&1 | show ) &
  wait; rm -rf "$OUT"/g3/trace_*/plugins/profile/*/*.xplane.pb "$OUT"/large_1gpu_b64/checkpoints; pack ;;
headline)  # 4 GPUs, about 9 min: issue 6's targets with the peer in the same call after the
  # custom VJPs (GELU, LayerNorm) and stacked inference params; the stacked/unstacked and
  # autodiff/custom-VJP comparisons on one GPU; the last issue-5 grid point
  mkdir -p "$OUT"/g{0,1,2,3}
  ( export CUDA_VISIBLE_DEVICES=0; PS="python3 benchmarks/profile_step.py --seq 384 --out $OUT/g0"
    show() { grep -E '^\{|Error' | cut -c1-300; }
    timeout $(left) $PS --kind infer --batch 1 --precision fp16 --variants base unstacked --profile base \
      --steps 200 2>&1 | show
    timeout $(left) $PS --kind infer --batch 8 --precision fp16 --variants base unstacked --steps 100 2>&1 | show
    timeout $(left) $PS --kind train --batch 32 --variants base gelu_autodiff+ln_autodiff 2>&1 | show ) &
  ( peer 1 --train 384:32 128:64 --precision bf16 --modes compile
    ours 1 train 384 bf16 '(32,64)'; ours 1 train 384 fp16 '(32,)' ) &
  ( peer 2 --infer 384:1 384:8 128:1 128:8 --precision fp16 --modes compile
    ours 2 infer 384 fp16 '(1,8,64)'; ours 2 infer 128 fp16 '(1,8)'; ours 2 infer 384 bf16 '(1,8)'
    ours 2 infer 128 fp32 '(64,)' ) &
  ( ours 3 train 128 bf16 '(64,)'; ours 3 train 128 fp16 '(64,)' ) &
  wait; rm -rf "$OUT"/g0/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
final)  # 4 GPUs, about 6 min: scaling of the bench step (seq 384, 32 per GPU, bf16) over 1, 2
  # and 4 GPUs of one machine in one sweep; then seq-128 training, ours and the peer's, on an
  # otherwise idle machine (the peer's seq-128 figure moved between busy calls)
  mkdir -p "$OUT"/g0 "$OUT"/g1
  sweep $(left)
  ( peer 1 --train 128:64 --precision bf16 --modes compile eager ) & ( ours 0 train 128 bf16 '(64,)' ) &
  wait; pack ;;
kernels)  # 4 GPUs, about 9 min: the LayerNorm backward Pallas kernel (GPU 0) and the erfc GELU
  # (GPU 1), each beside the step without them, with kernel profiles; the last grid point,
  # then the base step under XLA's experimental all-fusion emitter flags (GPU 2); inference at
  # seq 384, batch 1 and 8: erfc GELU, and cuBLAS instead of Triton gemms (GPU 3). Ran at commit
  # 44b8fda, where the kernel and the GELU were variants (lnpallas, lnpallas_r4, gelu_erfc);
  # they are the model now, so the same comparisons are spelled with today's variants
  # (gelu_lax_erf+ln_xla = that commit's base; +triton_gemm = its matmuls, before the cuBLAS
  # default; the 16-row kernel is no longer selectable).
  PS="python3 benchmarks/profile_step.py --seq 384"
  show() { grep -E '^\{|Error|Unknown|unknown' | cut -c1-300; }
  T=triton_gemm; OLD=gelu_lax_erf+ln_xla+$T
  ( export CUDA_VISIBLE_DEVICES=0
    timeout $(left) $PS --kind train --batch 32 --variants $OLD gelu_lax_erf+$T \
      --profile gelu_lax_erf+$T --out $OUT/g0 2>&1 | show ) &
  ( export CUDA_VISIBLE_DEVICES=1
    timeout $(left) $PS --kind train --batch 32 --variants $OLD gelu_shared+ln_xla+$T gelu_shared+$T \
      --profile gelu_shared+ln_xla+$T --out $OUT/g1 2>&1 | show ) &
  ( mkdir -p "$OUT"/g2; ours 2 infer 128 fp32 '(64,)'; export CUDA_VISIBLE_DEVICES=2
    for f in xla_gpu_experimental_autotune_all_fusions_with_block_level_emitter \
             xla_gpu_experimental_all_fusions_with_triton; do
      XLA_FLAGS=--$f=true timeout $(left) $PS --kind train --batch 32 --variants $OLD \
        --out $OUT/g2 2>&1 | show; done ) &
  ( export CUDA_VISIBLE_DEVICES=3; I="--kind infer --precision fp16 --out $OUT/g3"
    timeout $(left) $PS $I --batch 1 --steps 200 --variants gelu_lax_erf base 2>&1 | show
    XLA_FLAGS=--xla_gpu_enable_triton_gemm=false timeout $(left) $PS $I --batch 1 --steps 200 \
      --variants gelu_lax_erf 2>&1 | show
    timeout $(left) $PS $I --batch 8 --steps 100 --variants gelu_lax_erf base 2>&1 | show
    XLA_FLAGS=--xla_gpu_enable_triton_gemm=false timeout $(left) $PS $I --batch 8 --steps 100 \
      --variants gelu_lax_erf 2>&1 | show ) &
  wait; rm -rf "$OUT"/g*/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
adopted)  # (ran at commit 07280f4, before the train step's cuBLAS default of e0a0c8a: add
  # +triton_gemm to the train variants to repeat its comparisons; the bench rows now use cuBLAS)
  # 4 GPUs, about 8 min: issue 6's one-GPU targets with the peer in the same call after the
  # LayerNorm backward kernel and the erfc GELU went into the model; the kernel's tests on the
  # GPUs (Triton, and per device under a 4-GPU mesh) while the jobs compile; on GPU 0 the step
  # beside the GELU without its barrier and the step as it was (jax erf, XLA LayerNorm backward)
  mkdir -p "$OUT"/g{0,1,2,3}
  ( JAX_PLATFORMS=cuda XLA_PYTHON_CLIENT_PREALLOCATE=false timeout $(left) python3 -m pytest -q \
      tests/test_layer_norm_kernel.py tests/test_profile_step.py -k "kernel or exact or gelu" \
      -p no:cacheprovider 2>&1 | tail -15 > "$OUT/gpu_tests.txt" ) &
  ( export CUDA_VISIBLE_DEVICES=0; PS="python3 benchmarks/profile_step.py --seq 384 --out $OUT/g0"
    timeout $(left) $PS --kind train --batch 32 --variants base gelu_shared gelu_lax_erf+ln_xla \
      --profile base 2>&1 | grep -E '^\{|Error' | cut -c1-300 ) &
  ( peer 1 --train 384:32 --precision bf16 --modes compile
    ours 1 train 384 bf16 '(32,64)'; ours 1 train 384 fp16 '(32,)' ) &
  ( peer 2 --infer 384:1 384:8 128:1 128:8 --precision fp16 --modes compile
    ours 2 infer 384 fp16 '(1,8,64)'; ours 2 infer 128 fp16 '(1,8)' ) &
  ( peer 3 --train 128:64 --precision bf16 --modes compile
    ours 3 train 128 bf16 '(64,)'; ours 3 train 128 fp16 '(64,)' ) &
  wait; rm -rf "$OUT"/g0/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
cublas)  # (ran at commit 6cdf8d0, before the train step's cuBLAS default: its GPU-3 pair and the
  # sweep then used Triton gemms; now use profile_step's base vs triton_gemm, as 'triton' does)
  # 4 GPUs, about 9 min: inference with XLA's gemms from cuBLAS only (Triton gemm fusions
  # off) against the default, and the peer, all in one call (GPUs 0-2); the training step with
  # and without Triton gemms (GPU 3); then the scaling sweep over 1, 2 and 4 GPUs with the
  # LayerNorm kernel running per device (shard_map)
  mkdir -p "$OUT"/g{0,1,2,3}
  OFF=--xla_gpu_enable_triton_gemm=false
  ( export DEADLINE=330; ours 0 infer 384 fp16 '(1,8,64)'; ours 0 infer 128 fp16 '(1,8,64)' ) &
  ( export DEADLINE=330 XLA_FLAGS=$OFF; ours 1 infer 384 fp16 '(1,8,64)'; ours 1 infer 128 fp16 '(1,8,64)' ) &
  ( export DEADLINE=330; peer 2 --infer 384:1 384:8 384:64 128:1 128:8 128:64 --precision fp16 --modes compile ) &
  ( export DEADLINE=330 CUDA_VISIBLE_DEVICES=3; PS="python3 benchmarks/profile_step.py --seq 384 --out $OUT/g3"
    timeout $(left) $PS --kind train --batch 32 --variants base 2>&1 | grep -E '^\{|Error' | cut -c1-300
    XLA_FLAGS=$OFF timeout $(left) $PS --kind train --batch 32 --variants base 2>&1 | grep -E '^\{|Error' | cut -c1-300 ) &
  wait; sweep $(left); pack ;;
triton)  # 4 GPUs, about 7 min: the train step with XLA's Triton gemm fusions off (the new GPU
  # default, bert_jax/train.py) against on, alternating on one GPU (GPU 0: seq 384 batch 32;
  # GPU 3: seq 128 batch 64 and seq 384 batch 64); issue 6's training targets with the peer
  # in the same call (GPUs 1 and 2)
  mkdir -p "$OUT"/g{0,1,2,3}
  PS="python3 benchmarks/profile_step.py --kind train"
  show() { grep -E '^\{|Error' | cut -c1-300; }
  ( export CUDA_VISIBLE_DEVICES=0
    timeout $(left) $PS --seq 384 --batch 32 --variants base triton_gemm base triton_gemm \
      --out $OUT/g0 2>&1 | show ) &
  ( peer 1 --train 384:32 --precision bf16 --modes compile
    ours 1 train 384 bf16 '(32,64)'; ours 1 train 384 fp16 '(32,)' ) &
  ( peer 2 --train 128:64 --precision bf16 --modes compile
    ours 2 train 128 bf16 '(64,)'; ours 2 train 128 fp16 '(64,)' ) &
  ( export CUDA_VISIBLE_DEVICES=3
    timeout $(left) $PS --seq 128 --batch 64 --variants base triton_gemm --out $OUT/g3 2>&1 | show
    timeout $(left) $PS --seq 384 --batch 64 --variants base triton_gemm --out $OUT/g3 2>&1 | show ) &
  wait; pack ;;
next)  # 4 GPUs, about 9 min. Not run as such: only 1- and 2-GPU machines were lent, so its one-
  # and two-GPU parts ran as pair1-pair3 (docs/measurements/2026-11-27_h200x2_pair*) and its
  # 4-GPU sweep as scale4; the 4-GPU profile is still to run. As written: the LayerNorm kernel
  # with 4 and 8 blocks of rows per program and XLA's cuBLASLt path beside the base step, with
  # the base step's profile under today's cuBLAS default (GPU 0); MiniLM's F1 with the erfc GELU,
  # padded and with buckets of 64 (GPU 1); second same-call samples of the seq-384 training and
  # inference targets (GPUs 2, 3); then, alone on the machine, the scaling sweep with the cuBLAS
  # default and the profile of the 4-GPU step (where its extra 11 ms go)
  mkdir -p "$OUT"/g{0,1,2,3} "$OUT"/p4
  ( export DEADLINE=300 CUDA_VISIBLE_DEVICES=0
    timeout $(left) python3 benchmarks/profile_step.py --kind train --seq 384 --batch 32 \
      --variants base ln_blocks4 cublaslt ln_blocks8 --profile base --out $OUT/g0 2>&1 \
      | grep -E '^\{|Error' | cut -c1-300 ) &
  ( export DEADLINE=300 CUDA_VISIBLE_DEVICES=1; OUT=$OUT/g1 timeout $(left) bash $0 minilm
    OUT=$OUT/g1 BUCKET=64 CACHE=/tmp/cache_b timeout $(left) bash $0 minilm ) &
  ( export DEADLINE=300; peer 2 --train 384:32 --precision bf16 --modes compile
    ours 2 train 384 bf16 '(32,64)' ) &
  ( export DEADLINE=300; peer 3 --infer 384:1 384:8 --precision fp16 --modes compile
    ours 3 infer 384 fp16 '(1,8)' ) &
  wait
  T=$(( $(left) - 90 )); [ "$T" -gt 1 ] || T=1; sweep $T   # leaves 90 s for the 4-GPU profile
  timeout $(left) python3 benchmarks/profile_step.py --kind train --seq 384 --batch 32 --devices 4 \
    --variants base --profile base --out $OUT/p4 2>&1 | grep -E '^\{|Error' | cut -c1-300
  rm -rf "$OUT"/g0/trace_*/plugins/profile/*/*.xplane.pb "$OUT"/p4/trace_*/plugins/profile/*/*.xplane.pb
  pack ;;
pair1)  # 2 GPUs, about 9.5 min: what next was to measure, on the 2-GPU machines lent now.
  # Phase 1: the LayerNorm kernel with 4 blocks of rows per program and XLA's cuBLASLt path
  # beside the base step, with the base step's profile (GPU 0); MiniLM's F1 with the erfc
  # GELU, padded and with buckets of 64, both at once on GPU 1 (their speeds are not
  # comparable: they share the GPU), and the exact-variant tests on that GPU.
  # Phase 2, alone on the machine: the 2-GPU step's profile (is the all-reduce overlapped?)
  # and XLA's latency-hiding scheduler, with and without 8 MiB all-reduce combining
  mkdir -p "$OUT"/g{0,1} "$OUT"/p2
  show() { grep -E '^\{|Error' | cut -c1-300; }
  PS="python3 benchmarks/profile_step.py --kind train --seq 384 --batch 32"
  ( export DEADLINE=300 CUDA_VISIBLE_DEVICES=0
    timeout $(left) $PS --variants base ln_blocks4 cublaslt --profile base --out $OUT/g0 2>&1 | show ) &
  ( export DEADLINE=330 CUDA_VISIBLE_DEVICES=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.4
    ( OUT=$OUT/g1 timeout $(left) bash $0 minilm ) &
    ( OUT=$OUT/g1 BUCKET=64 CACHE=/tmp/cache_b timeout $(left) bash $0 minilm ) &
    JAX_PLATFORMS=cuda XLA_PYTHON_CLIENT_PREALLOCATE=false timeout $(left) python3 -m pytest -q \
      tests/test_profile_step.py -k "exact or gelu" -p no:cacheprovider 2>&1 | tail -8 > "$OUT/gpu_tests.txt"
    wait ) &
  wait
  timeout $(left) $PS --devices 2 --variants base lhs lhs+ar8mb --profile base lhs --out $OUT/p2 2>&1 | show
  rm -rf "$OUT"/g0/trace_*/plugins/profile/*/*.xplane.pb "$OUT"/p2/trace_*/plugins/profile/*/*.xplane.pb
  pack ;;
pair2)  # 2 GPUs, about 9.5 min: BERT-Large fine-tuning on one GPU with buckets of 64 at batch 64
  # (issue 6's time-to-train with buckets; random init, 300 steps, 100 dev questions), GPU 0;
  # issue 6's seq-384 training and inference targets with the peer in the same call, GPU 1
  mkdir -p "$OUT"/g1
  ( CUDA_VISIBLE_DEVICES=0 BUCKET=64 BATCH=64 STEPS=300 EVAL=100 CACHE=/tmp/cache_b \
    LARGE_DIR="$OUT/large_1gpu_b64_batch64" timeout $(left) bash $0 large ) &
  ( peer 1 --train 384:32 --precision bf16 --modes compile
    ours 1 train 384 bf16 '(32,64)'
    peer 1 --infer 384:1 384:8 --precision fp16 --modes compile
    ours 1 infer 384 fp16 '(1,8)' ) &
  wait; rm -rf "$OUT"/large_1gpu_b64_batch64/checkpoints; pack ;;
pack1)  # 2 GPUs, about 8 min: sequence packing (data.packing). GPU 0: the cuDNN packed-attention
  # test, then BERT-Large fine-tuning at batch 64 packed rows and padded, one after the other
  # (random init, 300 steps, 100 dev questions); GPU 1: MiniLM's F1 padded (batch 32) and
  # packed (15 rows a step, about 33 windows), both at once (their speeds are not comparable)
  mkdir -p "$OUT"/g0 "$OUT"/g1
  ( export CUDA_VISIBLE_DEVICES=0 DEADLINE=540
    JAX_PLATFORMS=cuda timeout 120 python3 -m pytest -q tests/test_packing.py -k cudnn \
      -p no:cacheprovider 2>&1 | tail -5 > "$OUT/g0/gpu_tests.txt"
    export BATCH=64 STEPS=300 EVAL=100 CACHE=/tmp/cache_l
    PACK=True LARGE_DIR="$OUT/large_packed_b64" timeout $(left) bash $0 large
    LARGE_DIR="$OUT/large_padded_b64" timeout $(left) bash $0 large ) &
  ( export CUDA_VISIBLE_DEVICES=1 DEADLINE=540 XLA_PYTHON_CLIENT_MEM_FRACTION=0.45
    ( OUT=$OUT/g1 timeout $(left) bash $0 minilm ) &
    ( OUT=$OUT/g1 PACK=True ROWS=15 CACHE=/tmp/cache_p timeout $(left) bash $0 minilm ) &
    wait ) &
  wait; rm -rf "$OUT"/large_*/checkpoints; pack ;;
pack2)  # 2 GPUs, about 6 min. GPU 0: BERT-Large fine-tuned for the whole 2 epochs with packed
  # rows, 64 a step (random init, 100 dev questions): issue 6's time to train, measured end to
  # end. GPU 1: the train step at 64 rows padded, packed, and packed with one-hot position
  # embeddings, with the packed step's profile (where packing's extra time per row goes)
  mkdir -p "$OUT"/g1
  ( CUDA_VISIBLE_DEVICES=0 PACK=True BATCH=64 STEPS=0 EVAL=100 CACHE=/tmp/cache_l \
    LARGE_DIR="$OUT/large_packed_2ep" timeout $(left) bash $0 large ) &
  ( CUDA_VISIBLE_DEVICES=1 timeout $(left) python3 benchmarks/profile_step.py --kind train \
      --seq 384 --batch 64 --variants base packed packed+pos_onehot --profile packed \
      --out $OUT/g1 2>&1 | grep -E '^\{|Error' | cut -c1-300
    rm -rf "$OUT"/g1/trace_*/plugins/profile/*/*.xplane.pb ) &
  wait; rm -rf "$OUT"/large_*/checkpoints; pack ;;
pack3)  # 2 GPUs, about 6 min: does capping rows at 4 windows (5 segments for cuDNN's packed
  # attention, not 9) win back packing's slower attention (pack2's profile)? It packs SQuAD
  # v1.1 at 384 as tightly (benchmarks/bucket_padding.py). GPU 0: pack2's whole 2-epoch run
  # again, capped at 4; GPU 1: the step at 64 rows packed with at most 8 and 4 windows a row
  mkdir -p "$OUT"/g1
  ( CUDA_VISIBLE_DEVICES=0 PACK=True MAXW=4 BATCH=64 STEPS=0 EVAL=100 CACHE=/tmp/cache_l \
    LARGE_DIR="$OUT/large_packed4_2ep" timeout $(left) bash $0 large ) &
  ( CUDA_VISIBLE_DEVICES=1 timeout $(left) python3 benchmarks/profile_step.py --kind train \
      --seq 384 --batch 64 --variants packed packed4 --profile packed4 \
      --out $OUT/g1 2>&1 | grep -E '^\{|Error' | cut -c1-300
    rm -rf "$OUT"/g1/trace_*/plugins/profile/*/*.xplane.pb ) &
  wait; rm -rf "$OUT"/large_*/checkpoints; pack ;;
drop1)  # 2 GPUs, about 6 min: hash dropout (then bert_jax/dropout.py, now benchmarks/hash_dropout.py) against threefry byte masks,
  # alone (GPU 0, with its profile) and with the bias + GELU kernels at the swept tiles (GPU 1),
  # each compared only with runs on its own GPU; then GPU 0 profiles fp16 inference at batch 8
  mkdir -p "$OUT"/g0 "$OUT"/g1
  T="--kind train --seq 384 --batch 32"
  ( export CUDA_VISIBLE_DEVICES=0
    timeout $(left) python3 benchmarks/profile_step.py $T --variants base hashdrop base \
      --profile hashdrop --out $OUT/g0 2>&1 | grep -E '^\{|Error' | cut -c1-300
    timeout $(left) python3 benchmarks/profile_step.py --kind infer --seq 384 --batch 8 \
      --precision fp16 --variants base --profile base --out $OUT/g0 2>&1 | grep -E '^\{|Error' | cut -c1-300 ) &
  ( export CUDA_VISIBLE_DEVICES=1
    timeout $(left) python3 benchmarks/profile_step.py $T --variants hashdrop hashdrop+gelu_kernel_fwd \
      hashdrop+gelu_kernel hashdrop --out $OUT/g1 2>&1 | grep -E '^\{|Error' | cut -c1-300 ) &
  wait; rm -rf "$OUT"/g*/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
zero1)  # 2 GPUs, about 7 min: the train state's layer matrices and Adam moments split over the
  # GPUs (mesh.sharded_state; profile_step variant zero: each GPU updates its share, gathers
  # the bf16 weights before use and gets its share of the gradients by reduce-scatter) against
  # the replicated state, with the one-GPU step first for the ratio; profile of zero (ran twice:
  # first with zero+lhs third; then, after the bf16 gather fix, with ZERO2=zero, repeated)
  mkdir -p "$OUT"/g0 "$OUT"/p2
  T="--kind train --seq 384 --batch 32"
  CUDA_VISIBLE_DEVICES=0 timeout $(left) python3 benchmarks/profile_step.py $T --variants base \
    --out $OUT/g0 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) python3 benchmarks/profile_step.py $T --devices 2 --variants base zero ${ZERO2:-zero+lhs} \
    base --profile zero --out $OUT/p2 2>&1 | grep -E '^\{|Error' | cut -c1-300
  rm -rf "$OUT"/p2/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
recheck1)  # 2 GPUs, about 8.5 min: suite1's 8 failures fixed (tests only), their files and the
  # two it did not reach, under the image's jax 0.11.2 on the CPU (carry as suite1); then, with
  # nothing else on the machine, the scaling sweep on 1 and 2 GPUs with the code as it is
  shared_dir
  BERT_JAX_SHARED=/tmp/shared JAX_PLATFORMS=cpu timeout 300 python3 -m pytest -q -p no:cacheprovider \
    tests/test_gelu_pallas.py tests/test_inference.py tests/test_layer_norm_kernel.py \
    tests/test_train.py tests/test_weights.py > "$OUT/cpu_tests.txt" 2>&1; echo "rc $?" >> "$OUT/cpu_tests.txt"
  tail -3 "$OUT/cpu_tests.txt"
  SWEEP="(1,2)" DEADLINE=$(( $(left) - 5 )) bash $0 scale7 ;;
epochs1)  # 2 GPUs, about 9 min: issue 6's two time-to-train targets run end to end with the
  # code as it is (random init, batch 64, 100 dev questions): GPU 0 the whole 2 epochs padded
  # (till now a rate times the windows), GPU 1 packed (last run end to end in pack3, before
  # the stacked state and the GELU of entry 44), then the bench's seq-384 training point with
  # the compiled peer right after, like for like
  mkdir -p "$OUT"/g1
  ( CUDA_VISIBLE_DEVICES=0 BATCH=64 STEPS=0 EVAL=100 CACHE=/tmp/cache_l \
    LARGE_DIR="$OUT/large_padded_2ep" timeout $(left) bash $0 large ) &
  ( CUDA_VISIBLE_DEVICES=1 PACK=True BATCH=64 STEPS=0 EVAL=100 CACHE=/tmp/cache_p \
    LARGE_DIR="$OUT/large_packed_2ep" timeout $(left) bash $0 large
    ours 1 train 384 bf16 '(32,)'
    peer 1 --train 384:32 --precision bf16 --modes compile ) &
  wait; rm -rf "$OUT"/large_*/checkpoints; merge; pack ;;
qlen1)  # 2 GPUs, about 9.5 min: cuDNN's attention given the query lengths too, so that it
  # skips the padded queries (the padded loss now leaves their positions out). GPU 0: the
  # bench's seq-384 training on real windows, this code and the code before it (a1237ed's
  # package in .gpu/old: git archive a1237ed bert_jax run.py configs), alternating; then the
  # old code on synthetic full windows (the sweeps' data). GPU 1: the attention tests on the
  # GPU, MiniLM's F1 with the new loss (the peer's recipe), fp16 inference new and old
  # alternating, then the compiled peer's seq-384 training
  mkdir -p "$OUT"/g0 "$OUT"/g0old "$OUT"/g1 "$OUT"/g1old
  ( for _ in 1 2; do ours 0 train 384 bf16 '(32,)'; WD=$OUT/g0old OLD=.gpu/old ours 0 train 384 bf16 '(32,)'; done
    WD=$OUT/g0old OLD=.gpu/old XB=--config.data.train_file=synthetic ours 0 train 384 bf16 '(32,)' ) &
  ( CUDA_VISIBLE_DEVICES=1 XLA_PYTHON_CLIENT_PREALLOCATE=false timeout $(left) python3 -m pytest -q \
      -p no:cacheprovider tests/test_model.py -k "skips_padded or agree or leak" > "$OUT/g1/gpu_tests.txt" 2>&1
    echo "rc $?" >> "$OUT/g1/gpu_tests.txt"
    CUDA_VISIBLE_DEVICES=1 CACHE=/tmp/cache_m timeout $(left) bash $0 minilm
    for _ in 1 2; do ours 1 infer 384 fp16 '(1,8)'; WD=$OUT/g1old OLD=.gpu/old ours 1 infer 384 fp16 '(1,8)'; done
    peer 1 --train 384:32 --precision bf16 --modes compile ) &
  wait; tail -3 "$OUT/g1/gpu_tests.txt"; brief "$OUT"/g*/records.jsonl; merge; pack ;;
qlen2)  # 2 GPUs, about 9.5 min: qlen1's code with the peer in the same call. GPU 0: the
  # attention tests on the GPU (cuDNN's padded queries), the bench's seq-384 training at
  # batches 32 and 64, the compiled peer's seq-384 and seq-128 training, then ours at seq 128.
  # GPU 1: fp16 inference on real dev windows, this code and the old (.gpu/old) alternating,
  # then the compiled peer's
  mkdir -p "$OUT"/g0 "$OUT"/g1 "$OUT"/g1old
  ( gputests 0 "$OUT/g0/gpu_tests.txt" tests/test_model.py -k "skips_padded"
    ours 0 train 384 bf16 '(32,64)'
    peer 0 --train 384:32 128:64 --precision bf16 --modes compile
    ours 0 train 128 bf16 '(64,)' ) &
  ( for _ in 1 2; do ours 1 infer 384 fp16 '(1,8)'; WD=$OUT/g1old OLD=.gpu/old ours 1 infer 384 fp16 '(1,8)'; done
    peer 1 --infer 384:1 384:8 --precision fp16 --modes compile ) &
  wait; tail -3 "$OUT/g0/gpu_tests.txt"; brief "$OUT"/g*/records.jsonl; merge; pack ;;
qlen3)  # 2 GPUs, about 8 min: GPU 0, the padded 2-epoch time-to-train run end to end with
  # qlen1's code (as epochs1's padded run: random init, batch 64, 100 dev questions); GPU 1,
  # the attention tests on the GPU again (the fp32 case now without TF32), fp16 inference on
  # real dev windows, the compiled peer's, then the old code's (.gpu/old) as time allows
  mkdir -p "$OUT"/g1 "$OUT"/g1old
  ( CUDA_VISIBLE_DEVICES=0 BATCH=64 STEPS=0 EVAL=100 CACHE=/tmp/cache_l \
    LARGE_DIR="$OUT/large_padded_2ep" timeout $(left) bash $0 large ) &
  ( gputests 1 "$OUT/g1/gpu_tests.txt" tests/test_model.py -k "skips_padded"
    ours 1 infer 384 fp16 '(1,8)'
    peer 1 --infer 384:1 384:8 --precision fp16 --modes compile
    WD=$OUT/g1old OLD=.gpu/old ours 1 infer 384 fp16 '(1,8)' ) &
  wait; rm -rf "$OUT"/large_*/checkpoints; tail -2 "$OUT/g1/gpu_tests.txt"
  brief "$OUT"/large_*/records.jsonl "$OUT"/g*/records.jsonl; merge; pack ;;
peerreal1)  # 2 GPUs, about 8 min (not run as such: next1 ran its parts on 4 GPUs): the peer on the real
  # windows our bench takes (peer_hf.py --train-file/--dev-file), beside the peer on synthetic
  # full windows and ours on real ones: the like-for-like ratio entry 64 lacks. GPU 0 training
  # (seq 384 batch 32, bf16), GPU 1 fp16 inference (seq 384, batches 1 and 8)
  mkdir -p "$OUT"/g0 "$OUT"/g1
  ( ours 0 train 384 bf16 '(32,)'
    peer 0 --train 384:32 --precision bf16 --modes compile $R --cache-dir /tmp/cache_g0
    peer 0 --train 384:32 --precision bf16 --modes compile ) &
  ( ours 1 infer 384 fp16 '(1,8)'
    peer 1 --infer 384:1 384:8 --precision fp16 --modes compile $R --cache-dir /tmp/cache_g1
    peer 1 --infer 384:1 384:8 --precision fp16 --modes compile ) &
  wait; merge; pack ;;
packgpu1)  # 1 GPU, about 1 min (written 2026-11-28): packed prediction (eval.packing,
  # bench.packing) on cuDNN's packed attention, fp16 and bf16, against padded; and cuDNN's
  # packed attention itself. Nothing timed
  mkdir -p "$OUT"/g0
  gputests 0 "$OUT/g0/gpu_tests.txt" tests/test_packing.py -k "cudnn"
  tail -4 "$OUT/g0/gpu_tests.txt" ;;
unpad1)  # 2 GPUs, about 9 min (not run as such: next1 ran unpad_train and unpad_infer): the padding's work removed
  # from the bench (bench.packing: the same real windows packed into rows) beside the padded
  # points and the peer on the same real windows (unpad_train, unpad_infer above)
  mkdir -p "$OUT"/g0 "$OUT"/g1
  unpad_train 0 & unpad_infer 1 &
  wait; brief "$OUT"/g*/records.jsonl "$OUT"/minilm*/records.jsonl; merge; pack ;;
qlen4)  # 1 GPU, about 8 min (ran inside next1): qlen_profile 0 (above)
  qlen_profile 0; pack ;;
next1)  # 4 GPUs, about 9.5 min (ran: docs/measurements/2026-11-28_h200x4_unpad/next1): unpad1 (GPUs 0, 1), qlen4
  # (GPU 2) and packgpu1's tests (GPU 3) in one call; then on GPU 3 the compiled peer on
  # synthetic full windows, so that both of the peer's data sit in the same call
  mkdir -p "$OUT"/g0 "$OUT"/g1 "$OUT"/g3
  unpad_train 0 & unpad_infer 1 & qlen_profile 2 &
  ( gputests 3 "$OUT/g3/gpu_tests.txt" tests/test_packing.py -k "cudnn"
    peer 3 --train 384:32 --precision bf16 --modes compile
    peer 3 --infer 384:1 384:8 --precision fp16 --modes compile ) &
  wait; tail -3 "$OUT/g3/gpu_tests.txt"; brief "$OUT"/g*/records.jsonl "$OUT"/minilm*/records.jsonl
  merge; pack ;;
scalepack1)  # 4 GPUs, about 9 min (entry 66): the bench on 1, 2 and 4 GPUs in one sweep each,
  # nothing else on the machine, real windows, seq 384 bf16, 30 timed steps a point: packed
  # rows (bench.packing, 16 a GPU) in $OUT/pk, then padded (32 a GPU) in $OUT/pd
  sc="${B/--config.bench.num_devices=(1,)/} --config.bench.seq_lens=(384,) --config.bench.steps=30"
  sc="$sc --config.bench.precisions=(\"bf16\",) --config.data.cache_dir=/tmp/cache_s"
  mkdir -p "$OUT/pk" "$OUT/pd"
  timeout $(left) python3 run.py --config=configs/bench_train.py $sc --config.bench.packing=True \
    --config.bench.batch_sizes="(16,)" --config.bench.num_devices="(1,2,4)" --workdir="$OUT/pk" 2>&1 | grep -E 'Error' | head -3
  timeout $(left) python3 run.py --config=configs/bench_train.py $sc \
    --config.bench.batch_sizes="(32,)" --config.bench.num_devices="(1,2,4)" --workdir="$OUT/pd" 2>&1 | grep -E 'Error' | head -3
  brief "$OUT"/p?/records.jsonl
  for d in pk pd; do python3 run.py --mode=report --workdir="$OUT/$d" 2>&1 | tail -1; done
  pack ;;
multi1)  # 4 GPUs, about 5 min (entry 67): packing end to end on 4 GPUs, training and prediction
  # (data.packing, eval.packing), each job on all four GPUs in turn: MiniLM with the peer's
  # recipe (16 rows a step, 4 a GPU; its F1 says the path is right), then BERT-Large from
  # random init for the whole 2 epochs, 16 rows a GPU, 500 dev questions (their F1 means
  # nothing: random init; the time to train is what it shows)
  CUDA_VISIBLE_DEVICES=0,1,2,3 NDEV=4 PACK=True ROWS=16 EVALPACK=True CACHE=/tmp/cache_m \
    timeout $(left) bash $0 minilm
  CUDA_VISIBLE_DEVICES=0,1,2,3 NDEV=4 PACK=True BATCH=16 STEPS=0 EVAL=500 EVALPACK=True \
    CACHE=/tmp/cache_l LARGE_DIR="$OUT/large_4gpu_packed_2ep" timeout $(left) bash $0 large
  rm -rf "$OUT"/large_*/checkpoints
  brief "$OUT"/*/records.jsonl; grep -h '"f1"\|train_time_s\|train_sentences' "$OUT"/*/eval_results.json
  pack ;;
sink1)  # 1 GPU, about 9 min (entry 68): XLA's slice sinker off (profile_step noslicesink) against
  # the product at seq 384 batch 32 on SQuAD-like lengths, in the order A B B A, B profiled
  # (both times); then seq 128 batch 64 (full windows, as SQuAD's are 88 % full at 128) base and
  # noslicesink, base profiled; then fp16 at seq 128 batch 64 profiled (its loss-scale cost)
  PS="python3 benchmarks/profile_step.py --kind train --steps 30"
  timeout $(left) $PS --seq 384 --batch 32 --variants squadlen squadlen+noslicesink \
    squadlen+noslicesink squadlen --profile squadlen+noslicesink --out "$OUT/p0" 2>&1 | show
  timeout $(left) $PS --seq 128 --batch 64 --variants base noslicesink --profile base \
    --out "$OUT/p1" 2>&1 | show
  timeout $(left) $PS --seq 128 --batch 64 --precision fp16 --variants base --profile base \
    --out "$OUT/p2" 2>&1 | show
  rm -rf "$OUT"/p*/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
sink2)  # 1 GPU, about 9 min (entries 68, 69): BERT-Large from random init for the whole 2 epochs
  # on packed rows (64 a step), 100 dev questions predicted on packed rows, train() timing its
  # set-up and final checkpoint apart; then XLA's convert mover off (profile_step
  # noconvertmover) against the product at seq 384 batch 32 on SQuAD-like lengths, A B B A,
  # B profiled
  PACK=True BATCH=64 STEPS=0 EVAL=100 EVALPACK=True CACHE=/tmp/cache_l \
    LARGE_DIR="$OUT/large_packed_2ep" timeout $(( $(left) - 230 )) bash $0 large
  rm -rf "$OUT"/large_*/checkpoints
  train_parts "$OUT"/large_packed_2ep/eval_results.json
  timeout $(left) python3 benchmarks/profile_step.py --kind train --steps 30 --seq 384 --batch 32 \
    --variants squadlen squadlen+noconvertmover squadlen+noconvertmover squadlen \
    --profile squadlen+noconvertmover --out "$OUT/p0" 2>&1 | show
  rm -rf "$OUT"/p*/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
sink3)  # 1 GPU, about 6.5 min (entry 70): each layer's slice of the stacked weights at an index XLA
  # cannot fold against jnp.split's static slices, seq 384 batch 32 on SQuAD-like lengths,
  # A B B A, the in-place cut profiled; then seq 128 batch 64 (full windows). It ran (commit
  # 5d8d2ef) with the in-place cut as the variant 'layercast' and jnp.split as the product;
  # since 9b3e403 the in-place cut is the product and 'layersplit' the variant, so the same
  # pair now reads: layersplit (then's base), base (then's layercast)
  PS="python3 benchmarks/profile_step.py --kind train --steps 30"
  timeout $(left) $PS --seq 384 --batch 32 --variants squadlen+layersplit squadlen \
    squadlen squadlen+layersplit --profile squadlen --out "$OUT/p0" 2>&1 | show
  timeout $(left) $PS --seq 128 --batch 64 --variants layersplit base --out "$OUT/p1" 2>&1 | show
  rm -rf "$OUT"/p*/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
sink4)  # 1 GPU, about 6 min (entry 71): the bench's seq-384 bf16 training at batch 32 on real
  # windows with the per-layer cut of entry 70 adopted, then the compiled peer on the same windows
  mkdir -p "$OUT"/g0
  ours 0 train 384 bf16 '(32,)'
  peer 0 --train 384:32 --precision bf16 --modes compile $R --cache-dir /tmp/cache_g0
  brief "$OUT"/g0/records.jsonl; merge; pack ;;
sink5)  # 1 GPU, about 3 min (entry 71): sink4 at seq 128, batch 64
  mkdir -p "$OUT"/g0
  ours 0 train 128 bf16 '(64,)'
  peer 0 --train 128:64 --precision bf16 --modes compile $R --cache-dir /tmp/cache_g0
  brief "$OUT"/g0/records.jsonl; merge; pack ;;
stream1)  # 1 GPU, 9.5 min (entry 72): every dense layer's weight and bias gradients on a second
  # GPU stream (profile_step dwstream, XLA's stream annotation on), with XLA's latency-hiding
  # scheduler to start them early, against the product at seq 384 batch 32 on SQuAD-like
  # lengths, A B B A, B profiled; then dwstream without the scheduler, the scheduler alone,
  # the weight gradients only (dwstream_w); then seq 128 batch 64 base and B (B did not fit
  # before DEADLINE=560)
  PS="python3 benchmarks/profile_step.py --kind train --steps 30"
  V=squadlen+dwstream+annot+lhs
  timeout $(left) $PS --seq 384 --batch 32 --variants squadlen $V $V squadlen \
    squadlen+dwstream+annot squadlen+lhs squadlen+dwstream_w+annot+lhs --profile $V \
    --out "$OUT/p0" 2>&1 | show
  timeout $(left) $PS --seq 128 --batch 64 --variants base dwstream+annot+lhs --out "$OUT/p1" \
    2>&1 | show
  rm -rf "$OUT"/p*/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
stream2)  # 1 GPU, about 6.5 min (entry 73): sink5 again with time for the peer (the bench's seq-128
  # bf16 training at batch 64 on real windows, then the compiled peer on the same windows);
  # then XLA's latency-hiding scheduler alone against the product at seq 384 batch 32 on
  # SQuAD-like lengths, A B B A (stream1 had one sample of each)
  mkdir -p "$OUT"/g0
  ours 0 train 128 bf16 '(64,)'
  peer 0 --train 128:64 --precision bf16 --modes compile $R --cache-dir /tmp/cache_g0
  brief "$OUT"/g0/records.jsonl; merge
  timeout $(left) python3 benchmarks/profile_step.py --kind train --steps 30 --seq 384 \
    --batch 32 --variants squadlen+lhs squadlen squadlen squadlen+lhs --out "$OUT/p0" 2>&1 | show
  pack ;;
stream3)  # 1 GPU, about 5.5 min (entry 74): the padded 2 epochs end to end (qlen3's GPU 0) with
  # entry 70's cut adopted: BERT-Large from random init, 64 windows a step, 100 dev questions
  ( BATCH=64 STEPS=0 EVAL=100 CACHE=/tmp/cache_l LARGE_DIR="$OUT/large_padded_2ep" \
    timeout $(left) bash $0 large )
  rm -rf "$OUT"/large_*/checkpoints
  train_parts "$OUT"/large_padded_2ep/eval_results.json
  brief "$OUT"/large_*/records.jsonl; pack ;;
cat1)  # 1 GPU, 401 s (entry 75; ran 2026-11-29, no gain): the q/k/v gradients joined by one
  # concatenation written out before the bias sum (profile_step qkv_catbar) against the
  # product at seq 384 batch 32 on SQuAD-like lengths, A B B A, B profiled; then the
  # concatenation alone (qkv_cat); then seq 128 batch 64 base and qkv_catbar
  PS="python3 benchmarks/profile_step.py --kind train --steps 30"
  timeout $(left) $PS --seq 384 --batch 32 --variants squadlen squadlen+qkv_catbar \
    squadlen+qkv_catbar squadlen squadlen+qkv_cat --profile squadlen+qkv_catbar \
    --out "$OUT/p0" 2>&1 | show
  timeout $(left) $PS --seq 128 --batch 64 --variants base qkv_catbar --out "$OUT/p1" 2>&1 | show
  rm -rf "$OUT"/p*/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
epi1)  # 1 GPU, 68 s (entry 76): our Mosaic GPU matmul with the bias + GELU in its
  # epilogue against XLA's cuBLASLt matmul + GELU pass and jax's example matmul: the FFN-in
  # forward at seq 384 batch 32, then the FFN-out shape, then seq 128 batch 64
  EM="python3 benchmarks/epilogue_mgpu.py --iterations 30"
  timeout $(left) $EM --tiles m128n128k64s3i0 m128n128k64s3i1 m128n128k64s4i1e64x32 \
    --out "$OUT/epi.jsonl" 2>&1 | show
  timeout $(left) $EM --k 4096 --n 1024 --epilogues none bias --tiles m128n128k64s3i1 \
    m128n128k64s4i1 --out "$OUT/epi.jsonl" 2>&1 | show
  timeout $(left) $EM --m 8192 --epilogues none gelu --tiles m128n128k64s3i1 --no-lib \
    --out "$OUT/epi.jsonl" 2>&1 | show ;;
epi2)  # 1 GPU, 59 s (entry 76): epilogue_mgpu with one compute warpgroup per block
  # and two blocks per SM, so that one block's GELU can run while the other's matmul does;
  # the two-warpgroup block of epi1 again for a same-call comparison; seq 384 then seq 128
  EM="python3 benchmarks/epilogue_mgpu.py --iterations 30 --no-lib --epilogues none gelu"
  T="m128n128k64s3i0 m128n128k64s2i0e64x64b8w1c2 m128n128k64s2i0e64x32b8w1c2
     m128n128k64s3i0e64x32b8w1c2 m64n128k64s3i0e64x64b8w1c2 m64n256k64s2i0e64x64b8w1c2"
  timeout $(left) $EM --tiles $T --out "$OUT/epi.jsonl" 2>&1 | show
  timeout $(left) $EM --m 8192 --tiles $T --out "$OUT/epi.jsonl" 2>&1 | show ;;
epi3)  # 1 GPU, 52 s (entry 76): epilogue_mgpu with Mosaic GPU's approximate math
  # off and on, at 3 stages and at 4 stages with 64 x 32 pieces; seq 384 then seq 128
  EM="python3 benchmarks/epilogue_mgpu.py --iterations 30 --no-lib --epilogues none gelu
      --approx both --tiles m128n128k64s3i0 m128n128k64s4i0e64x32"
  timeout $(left) $EM --out "$OUT/epi.jsonl" 2>&1 | show
  timeout $(left) $EM --m 8192 --out "$OUT/epi.jsonl" 2>&1 | show ;;
epi4)  # 1 GPU, 59 s (entry 76): epilogue_mgpu with one warpgroup a block that issues
  # its own copies (no producer warpgroup), two blocks an SM, approximate math; the
  # specialized block of epi1 again; seq 384 then seq 128
  EM="python3 benchmarks/epilogue_mgpu.py --iterations 30 --no-lib --epilogues none gelu
      --approx on --tiles m128n128k64s3i0 m128n128k64s2i0e64x64c2p m128n128k64s3i0e64x32c2p
      m128n128k64s3i1e64x32c2p m64n256k64s2i0e64x64c2p m128n128k64s4i1e64x64c1p"
  timeout $(left) $EM --out "$OUT/epi.jsonl" 2>&1 | show
  timeout $(left) $EM --m 8192 --out "$OUT/epi.jsonl" 2>&1 | show ;;
epi5)  # 1 GPU, 27 s (entry 76): what ptxas and Mosaic GPU give epi4's kernels
  # (registers, spills, shared memory), to say whether two blocks fit on an SM
  MOSAIC_GPU_DUMP_PTXAS=1 MOSAIC_GPU_DUMP_RESOURCES=1 timeout $(left) python3 \
    benchmarks/epilogue_mgpu.py --iterations 3 --no-lib --epilogues none gelu --approx on \
    --tiles m128n128k64s3i0 m128n128k64s2i0e64x64c2p m128n128k64s3i0e64x32c2p \
    --out "$OUT/epi.jsonl" > "$OUT/ptxas.txt" 2>&1
  grep -iE "registers|spill|smem|shared|^\{" "$OUT/ptxas.txt" | cut -c1-200 | head -60 ;;
epi6)  # 1 GPU, 34 s (entry 76): epi4's fitting two-blocks-an-SM kernel with the
  # second block of each SM started 0, 2, 4 or 8 us late, so the blocks' epilogues need not
  # coincide; the specialized block again
  timeout $(left) python3 benchmarks/epilogue_mgpu.py --iterations 30 --no-lib \
    --epilogues none gelu --approx on --tiles m128n128k64s3i0 m128n128k64s2i0e64x64c2p \
    m128n128k64s2i0e64x64c2d2000p m128n128k64s2i0e64x64c2d4000p \
    m128n128k64s2i0e64x64c2d8000p --out "$OUT/epi.jsonl" 2>&1 | show ;;
epi7)  # 1 GPU, 150 s (entry 76): Nsight Compute's launch and occupancy sections for
  # the specialized kernel and the two-blocks-an-SM one, both with the GELU, if ncu is there
  NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu \
    2>/dev/null | head -1)
  echo "ncu: ${NCU:-none}"; [ -n "$NCU" ] || exit 0
  timeout $(left) "$NCU" --section LaunchStats --section Occupancy \
    --section SpeedOfLight -k regex:body_mosaic -c 2 python3 benchmarks/epilogue_mgpu.py \
    --no-timing --no-lib --epilogues gelu --approx on \
    --tiles m128n128k64s3i0 m128n128k64s2i0e64x64c2p > "$OUT/ncu.txt" 2>&1
  grep -vE '^\{' "$OUT/ncu.txt" | grep -E "body_mosaic|Registers|Shared Memory|Block Limit|Occupancy|Waves|Grid Size|Block Size|Throughput|ERR|==PROF==|==WARNING==" | cut -c1-160 | head -70 ;;
epi8)  # 1 GPU, 30 s (entry 76): two-blocks-an-SM kernels that leave one matmul in
  # flight, fitted by 32-wide k steps or 2 stages; the specialized block again
  timeout $(left) python3 benchmarks/epilogue_mgpu.py --iterations 30 --no-lib \
    --epilogues none gelu --approx on --tiles m128n128k64s3i0 m128n128k32s4i1e64x64c2p \
    m128n128k32s4i0e64x64c2p m128n128k64s2i1e64x64c2p m128n128k32s3i1e64x64c2p \
    --out "$OUT/epi.jsonl" 2>&1 | show ;;
epi9)  # 1 GPU, 73 s (entry 77): ping-pong blocks (the two compute warpgroups take whole tiles in
  # turn, one's matmuls beside the other's epilogue) against entry 76's best, at seq 384 then
  # seq 128; then ptxas's registers and spills for the first ping-pong tile set
  T="m128n128k64s3i0 m128n128k64s4i0g m128n128k64s4i1g m128n128k64s5i1e64x32g
     m128n128k64s2i1g m64n256k64s4i1g"
  EM="python3 benchmarks/epilogue_mgpu.py --iterations 30 --no-lib --epilogues none gelu
      --approx on"
  timeout $(left) $EM --tiles $T --out "$OUT/epi.jsonl" 2>&1 | show
  timeout $(left) $EM --tiles $T --m 8192 --out "$OUT/epi.jsonl" 2>&1 | show
  MOSAIC_GPU_DUMP_PTXAS=1 timeout $(left) $EM --iterations 3 --epilogues gelu \
    --tiles m128n128k64s4i1g > "$OUT/ptxas.txt" 2>&1
  grep -iE "registers|spill|smem|shared" "$OUT/ptxas.txt" | cut -c1-200 | head -20 ;;
epi10)  # 1 GPU, 278 s (entry 77): Nsight Compute's throughput, pipe and stall sections for the
  # specialized block and the best ping-pong block, each without and with the GELU
  NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
  echo "ncu: ${NCU:-none}"; [ -n "$NCU" ] || exit 0
  timeout $(left) "$NCU" --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
    -k regex:body_mosaic -c 4 python3 benchmarks/epilogue_mgpu.py --no-timing --no-lib \
    --epilogues none gelu --approx on --tiles m128n128k64s3i0 m128n128k64s5i1e64x32g \
    > "$OUT/ncu.txt" 2>&1
  grep -E "body_mosaic|Duration|Throughput|Busy|Pipe|Issue|Stall|Warp Cycles|L2 Hit|Eligible" \
    "$OUT/ncu.txt" | cut -c1-160 | head -90 ;;
epi11)  # 1 GPU, 39 s (entry 77): whether ping-pong hides the GELU where a tile's main loop is
  # longer than its epilogue: K 4096 (4x the k steps a tile), N 1024; then FFN-in again
  # with 128 x 64 epilogue pieces (more independent work a thread)
  EM="python3 benchmarks/epilogue_mgpu.py --iterations 30 --no-lib --epilogues none gelu
      --approx on"
  timeout $(left) $EM --k 4096 --n 1024 --tiles m128n128k64s3i0 m128n128k64s5i1e64x32g \
    m128n128k64s4i1g --out "$OUT/epi.jsonl" 2>&1 | show
  timeout $(left) $EM --tiles m128n128k64s3i1e128x64g m128n128k64s5i1e64x32g \
    --out "$OUT/epi.jsonl" 2>&1 | show ;;
epi12)  # 1 GPU, 59 s (entry 77): the ping-pong GELU kernel's SASS (its barriers and matmul
  # waits); then the SM clock and power (nvidia-smi every 100 ms) while each of five kernels
  # runs alone for 4 s, to say whether the GELU's arithmetic slows the clock
  MOSAIC_GPU_DUMP_SASS=1 timeout $(left) python3 benchmarks/epilogue_mgpu.py --no-timing \
    --no-lib --epilogues gelu --approx on --tiles m128n128k64s5i1e64x32g > "$OUT/sass.txt" 2>&1
  grep -oE "(BAR|WARPGROUP|WARPSYNC|HGMMA|SYNCS)[A-Z0-9._]*" "$OUT/sass.txt" | sort | uniq -c
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader \
    -lms 100 > "$OUT/smi.csv" & SMI=$!
  timeout $(left) python3 - > "$OUT/sustain.txt" 2>&1 <<'PY'
import datetime, functools, sys, time
import jax, jax.numpy as jnp
sys.path.insert(0, 'benchmarks')
import epilogue_mgpu as em
k = jax.random.split(jax.random.PRNGKey(0), 3)
x = jax.random.normal(k[0], (12288, 1024)).astype(jnp.bfloat16)
w = (jax.random.normal(k[1], (1024, 4096)) / 32).astype(jnp.bfloat16)
b = jax.random.normal(k[2], (4096,)).astype(jnp.bfloat16)
fns = {name: jax.jit(fn) for name, fn in [
    ('xla_matmul', lambda x, w, b: x @ w), ('xla_bias_gelu', em._model_forward)]}
for tiles, epi in [('m128n128k64s5i1e64x32g', 'none'), ('m128n128k64s5i1e64x32g', 'gelu'),
                   ('m128n128k64s3i0', 'gelu')]:
  fns[f'ours_{epi}[{tiles}]'] = jax.jit(functools.partial(
      em.dense_epilogue, epilogue=epi, tiles=em.parse_tiles(tiles), approx_math=True))
for name, fn in fns.items():
  jax.block_until_ready(fn(x, w, b))
  time.sleep(1.0)
  start, calls = time.time(), 0
  while time.time() - start < 4.0:
    for _ in range(50):
      out = fn(x, w, b)
    jax.block_until_ready(out)
    calls += 50
  took = time.time() - start
  print(f'{name} from {datetime.datetime.fromtimestamp(start):%H:%M:%S.%f} for {took:.2f} s:'
        f' {calls} calls, {took / calls * 1e6:.1f} us a call', flush=True)
PY
  kill $SMI; cat "$OUT/sustain.txt" | tail -6 ;;
epi13)  # 1 GPU, 33 s (entry 77): the SASS of the ping-pong and specialized GELU kernels, for
  # epi10's open question; needs nvdisasm, which the image lacks: carry .gpu/bin/nvdisasm
  # (from PyPI's nvidia-cuda-nvdisasm wheel). Then which barrier and wait instructions each
  # kernel holds
  for T in m128n128k64s5i1e64x32g m128n128k64s3i0; do
    PATH=$PWD/.gpu/bin:$PATH MOSAIC_GPU_DUMP_SASS=1 MOSAIC_GPU_DUMP_PTX=1 timeout $(left) \
      python3 benchmarks/epilogue_mgpu.py --no-timing --no-lib --epilogues gelu --approx on \
      --tiles $T > "$OUT/dump_$T.txt" 2>&1
    echo "$T: $(wc -l < "$OUT/dump_$T.txt") lines"
    grep -oE "(BAR|WARPGROUP|WARPSYNC|SYNCS|DEPBAR|HGMMA|MEMBAR|FENCE|ERRBAR|CCTL|UTMA|UBLKCP)[A-Z0-9._]*" \
      "$OUT/dump_$T.txt" | sort | uniq -c
    gzip -f "$OUT/dump_$T.txt"
  done ;;
epi14)  # 1 GPU, 54 s (entry 77): Mosaic GPU's in-kernel trace (epilogue_mgpu --trace) of each
  # compute warpgroup's k steps ('mma', 'wait') and epilogues, one call a case, summarised in
  # the records (trace_summary): ping-pong and specialized, FFN-in without and with the GELU,
  # then ping-pong at K 4096; the traces packed in trace.tgz. (The specialized block takes
  # 64 x 32 pieces here: with 64 x 64 and the profiler's buffer it overflows shared memory)
  EM="python3 benchmarks/epilogue_mgpu.py --no-lib --approx on --trace $OUT/trace"
  timeout $(left) $EM --epilogues none gelu --tiles m128n128k64s5i1e64x32g m128n128k64s3i0e64x32 \
    --out "$OUT/epi.jsonl" 2>&1 | show
  timeout $(left) $EM --epilogues gelu --k 4096 --n 1024 --tiles m128n128k64s5i1e64x32g \
    --out "$OUT/epi.jsonl" 2>&1 | show
  tar czf "$OUT/trace.tgz" -C "$OUT" trace && rm -r "$OUT/trace"; ls -la "$OUT" ;;
power1)  # 1 GPU, 151 s (entry 78): the SM clock and board power (nvidia-smi every 100 ms) while the
  # product trains BERT-Large for 400 steps at seq 384 batch 32 (the large job), then while
  # the bench times its seq-384 batch-32 bf16 point; summarised per phase
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,utilization.gpu,temperature.gpu \
    --format=csv,noheader -lms 100 > "$OUT/smi.csv" & SMI=$!
  phase() { echo "$1 $(date +%H:%M:%S.%N)" >> "$OUT/phases.txt"; }
  phase large; ( STEPS=400 EVAL=100 LARGE_DIR=/tmp/large_power timeout $(left) bash $0 large )
  phase bench; ours 0 train 384 bf16 '(32,)'; phase end
  kill $SMI; cp "$OUT"/g0/records.jsonl "$OUT/records.jsonl" 2>/dev/null
  python3 - "$OUT" <<'PY'
import datetime, statistics, sys
out = sys.argv[1]
clock = lambda s: datetime.datetime.strptime(s.split()[-1][:15], '%H:%M:%S.%f')
rows = [l.strip().split(', ') for l in open(f'{out}/smi.csv') if l.count(',') == 4]
phases = [l.split() for l in open(f'{out}/phases.txt')]
for (name, t0), (_, t1) in zip(phases, phases[1:]):
  t0, t1 = clock(t0), clock(t1)
  busy = [r for r in rows if t0 <= clock(r[0]) <= t1 and float(r[2].split()[0]) > 300]
  if not busy:
    print(name, 'no samples above 300 W'); continue
  mhz = [float(r[1].split()[0]) for r in busy]; watts = [float(r[2].split()[0]) for r in busy]
  q = lambda v, p: sorted(v)[int(p * (len(v) - 1))]
  print(f'{name}: {len(busy)} samples above 300 W; SM clock MHz p10/p50/p90 {q(mhz, .1):.0f}/'
        f'{q(mhz, .5):.0f}/{q(mhz, .9):.0f}; power W p10/p50/p90 {q(watts, .1):.0f}/'
        f'{q(watts, .5):.0f}/{q(watts, .9):.0f}')
PY
  grep -E '^\{' "$OUT/records.jsonl" | cut -c1-300 | tail -2 ;;
power2)  # 1 GPU, 220 s (entry 79): the bench's records with the clock and power they
  # ran at (bert_jax.gpu_telemetry): seq-384 batch-32 bf16 training on real windows timed
  # over 20 steps (the default) and over 200, then the compiled peer on the same windows
  mkdir -p "$OUT"/g0
  ours 0 train 384 bf16 '(32,)'
  XB="--config.bench.steps=200" ours 0 train 384 bf16 '(32,)'
  peer 0 --train 384:32 --precision bf16 --modes compile $R --cache-dir /tmp/cache_g0
  python3 - "$OUT"/g0/records.jsonl "$OUT"/g0/peer.jsonl <<'PY'
import json, sys
for path in sys.argv[1:]:
  for line in open(path):
    r = json.loads(line)
    print(r.get('framework', 'bert_jax'), r.get('timed_steps'), round(r['sentences_per_s'], 1),
          r.get('gpu_sm_clock_mhz'), r.get('gpu_power_w'), r.get('gpu_at_power_cap'),
          r.get('gpu_telemetry'))
PY
  merge; pack ;;
slope1)  # 1 GPU, 499 s (entry 81): the GELU keeping its bf16 derivative for the backward pass
  # (profile_step gelu_slope) and the LayerNorm kernel's two partial sums added in one
  # reduction (ln_joint), both and each against the product at seq 384 batch 32 on
  # SQuAD-like lengths, A B C D B A, both profiled; then seq 128 batch 64, base and both
  PS="python3 benchmarks/profile_step.py --kind train --steps 30"
  timeout $(left) $PS --seq 384 --batch 32 --variants squadlen squadlen+gelu_slope+ln_joint \
    squadlen+gelu_slope squadlen+ln_joint squadlen+gelu_slope+ln_joint squadlen \
    --profile squadlen+gelu_slope+ln_joint --out "$OUT/p0" 2>&1 | show
  timeout $(left) $PS --seq 128 --batch 64 --variants base gelu_slope+ln_joint \
    --out "$OUT/p1" 2>&1 | show
  rm -rf "$OUT"/p*/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
slope2)  # 1 GPU, 525 s (entry 81): slope1 again with the GELU's kept derivative pinned by an
  # optimization barrier (gelu_slope_bar; unpinned, XLA kept a float32 array instead), and
  # ln_joint against the product once more: seq 384 batch 32 on SQuAD-like lengths,
  # A B C D B A, the product and both together profiled; then seq 128 batch 64, base and ln_joint
  PS="python3 benchmarks/profile_step.py --kind train --steps 30"
  timeout $(left) $PS --seq 384 --batch 32 --variants squadlen squadlen+ln_joint \
    squadlen+gelu_slope_bar squadlen+gelu_slope_bar+ln_joint squadlen+ln_joint squadlen \
    --profile squadlen squadlen+gelu_slope_bar+ln_joint --out "$OUT/p0" 2>&1 | show
  timeout $(left) $PS --seq 128 --batch 64 --variants base ln_joint --out "$OUT/p1" 2>&1 | show
  rm -rf "$OUT"/p*/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
slope3)  # 1 GPU, 311 s (entry 82): the bench with entry 81's GELU and LayerNorm sums
  # adopted, seq 384 batch 32 then seq 128 batch 64, bf16 on real windows, each with the
  # compiled peer on the same windows right after it
  mkdir -p "$OUT"/g0
  ours 0 train 384 bf16 '(32,)'
  peer 0 --train 384:32 --precision bf16 --modes compile $R --cache-dir /tmp/cache_g0
  ours 0 train 128 bf16 '(64,)'
  peer 0 --train 128:64 --precision bf16 --modes compile $R --cache-dir /tmp/cache_g0
  brief "$OUT"/g0/records.jsonl; merge; pack ;;
slope4)  # 1 GPU, 236 s (entry 82): the bench at seq 384 batch 32, bf16 on real windows, the code
  # before entry 81 (.gpu/old: commit 7a221e5's run.py, configs and bert_jax, made by
  # `git archive 7a221e5 run.py configs bert_jax | tar -x -C .gpu/old`) and the product in
  # turn on one card: old, new, old
  mkdir -p "$OUT"/g0
  WD=$OUT/g0old OLD=.gpu/old ours 0 train 384 bf16 '(32,)'
  ours 0 train 384 bf16 '(32,)'
  WD=$OUT/g0old OLD=.gpu/old ours 0 train 384 bf16 '(32,)'
  brief "$OUT"/g0/records.jsonl "$OUT"/g0old/records.jsonl; pack ;;
join1)  # 1 GPU, 361 s (entry 83; ran 2026-11-29 at 2e205e7, +2.0 %): the q/k/v gradients
  # joined with the bias gradient's sums by one Pallas kernel (profile_step qkv_join, the
  # model's since entry 84: now base, and the product before it qkv_autodiff) against the
  # product at seq 384 batch 32 on SQuAD-like lengths, A B B A, B profiled; then seq 128
  # batch 64, base and B
  PS="python3 benchmarks/profile_step.py --kind train --steps 30"
  timeout $(left) $PS --seq 384 --batch 32 --variants squadlen squadlen+qkv_join \
    squadlen+qkv_join squadlen --profile squadlen+qkv_join --out "$OUT/p0" 2>&1 | show
  timeout $(left) $PS --seq 128 --batch 64 --variants base qkv_join --out "$OUT/p1" 2>&1 | show
  rm -rf "$OUT"/p*/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
join2)  # 1 GPU, about 8.5 min (entry 84): the join kernel adopted. The bench at seq 384 batch 32
  # then seq 128 batch 64, bf16 on real windows, each with the compiled peer on the same
  # windows right after it (as slope3); then MiniLM-L6 with the peer's recipe (F1; carry the
  # whole .gpu/minilm)
  mkdir -p "$OUT"/g0
  ours 0 train 384 bf16 '(32,)'
  peer 0 --train 384:32 --precision bf16 --modes compile $R --cache-dir /tmp/cache_g0
  ours 0 train 128 bf16 '(64,)'
  peer 0 --train 128:64 --precision bf16 --modes compile $R --cache-dir /tmp/cache_g0
  brief "$OUT"/g0/records.jsonl; merge
  DEADLINE=$(left) CACHE=/tmp/cache_m bash $0 minilm; pack ;;
verify1)  # 1 GPU, about 8 min (entry 94): join2 again on the package of its day (the bench
  # at seq 384 batch 32 and seq 128 batch 64 with the compiled peer after each, MiniLM-L6 with
  # the peer's recipe; carry the whole .gpu/minilm), then MiniLM's checkpoint evaluated again
  # with the calls cut to buckets of 64 at batch 8 (evaluate_at, as evalbucket1 and 2 use it)
  DEADLINE=$(( ${DEADLINE:-560} - 60 )) bash $0 join2
  evaluate_at minilm_squad_1gpu /tmp/minilm /tmp/cache_m 64 8 '' \
    exact_match,f1,inference_widths,inference_sentences_per_s \
    --config.model.init_checkpoint=.gpu/minilm \
    --config.eval.group_by_width=False ;;   # as it ran; beside join2's results.tgz
calls1)  # 1 GPU, about 4 min (entry 95): where the job's batch-8 prediction call goes
  # (benchmarks/prediction_calls.py): BERT-Large on random weights, about 800 dev windows in
  # runs of 80, bf16 and fp16, layers unrolled and scanned, padded and cut to buckets of 64;
  # predict_logits' own latencies against the same eval step on batches made beforehand,
  # waited for by block_until_ready and by a spin. It ran the einsum attention, the script's
  # default then (not the job's): --attention xla keeps that (the script now also times the
  # loop orders calls2 added)
  calls --attention xla ;;
calls2)  # 1 GPU, about 3.5 min (entry 95): calls1 again with the job's attention (cuDNN, the
  # script's default now), bf16 only, and two more orders of the job's loop: the next batch
  # made after the dispatch (predict_logits' order) or before
  calls --precisions bf16 ;;
calls3)  # 1 GPU, about 4 min (entry 95): the unrolled prediction program's floor, traced:
  # profile_step, bf16 batch 8 at seq 192 then 384, the layers unrolled with the weights passed
  # (noscan), with them compiled in (bound), and scanned (scan), each traced (call phases)
  mkdir -p "$OUT"/p0
  for seq in 192 384; do
    timeout $(left) python3 benchmarks/profile_step.py --kind infer --precision bf16 --batch 8 \
      --seq $seq --steps 100 --variants noscan bound scan --profile noscan bound scan \
      --out "$OUT/p0/s$seq" 2>&1 | show
  done   # the traces themselves are too large to come back (calls3's did not): the records,
  # which hold each trace's summary, do
  find "$OUT" -type f \( -name '*.json.gz' -o -name '*.pb' \) -delete; pack ;;
group1)  # 1 GPU, about 6 min (entry 96): prediction's windows in order of their bucket width
  # (eval.group_by_width, the default now) against consecutive windows: evalbucket2's
  # BERT-Large checkpoint (20 steps from random init: its F1 means nothing, but must be the
  # same every way) and padded job, then --mode=evaluate cut to buckets of 64 at batches 64
  # and 8, grouped by width and not (bf16, scanned layers)
  EVALS="64,64,-,True 64,64,-,False 64,8,-,True 64,8,-,False" bash $0 evalbucket2 ;;
group2)  # 1 GPU, about 6 min (entry 96; carries the whole .gpu/minilm): group1 on a trained
  # model: MiniLM fine-tuned with the peer's recipe, predicting cut to buckets of 64 with the
  # windows grouped by width (the default with eval.bucket_width) at its eval batch of 128;
  # then its checkpoint evaluated again with consecutive windows and padded, same batch
  CACHE=/tmp/cache_m EVALBUCKET=64 bash $0 minilm
  for ev in "64 False" "0 True"; do set -- $ev
    TAG=group$2 evaluate_at minilm_squad_1gpu /tmp/minilm_evalb64 /tmp/cache_m $1 128 '' \
      exact_match,f1,inference_widths,eval_group_by_width,inference_sentences_per_s \
      --config.model.init_checkpoint=.gpu/minilm --config.eval.group_by_width=$2
  done ;;
group3)  # 1 GPU, about 4 min (entry 96): what grouping costs in compiles: group1's padded job
  # (its records give the padded pass's first call), then its grouped evaluation at batch 64
  # alone, whose results now say inference_warmup_s (each width's first call)
  EVALS="64,64,-,True" bash $0 evalbucket2 ;;
groupgpu1)  # 1 GPU, about 1.5 min (entry 96): the GPU-only prediction tests (cuDNN attention,
  # padded against cut and packed calls, bf16 and fp16) with the windows grouped by width,
  # the default since entry 96
  gputests 0 "$OUT/gpu_tests.txt" tests/test_packing.py -k "gpu or cudnn"
  tail -3 "$OUT/gpu_tests.txt" ;;
join5)  # 1 GPU, about 8.5 min (entry 97): multi2's one-GPU parts, one after another (no
  # 2-GPU machine was lent): the bench at seq 384 batch 32, bf16 then fp16, real windows;
  # prediction_calls' ways (bf16); the join and LayerNorm kernels' tests on the GPU
  mkdir -p "$OUT"/g0
  ours 0 train 384 bf16,fp16 '(32,)'
  brief "$OUT"/g0/records.jsonl
  DEADLINE=$(( ${DEADLINE:-560} - 90 )) calls --precisions bf16   # (ran as left - 90: cut at
  # 150 s with no record; a function's DEADLINE counts from this shell's start, as SECONDS does)
  gputests 0 "$OUT/gpu_tests.txt" tests/test_qkv_join_kernel.py tests/test_layer_norm_kernel.py
  tail -3 "$OUT/gpu_tests.txt"; pack ;;
multi2)  # 2 GPUs, about 8.5 min (entry 97): the join kernel (entry 84) on two GPUs, which it had
  # not run on. Alone on the machine: prediction_calls' ways (bf16, GPU 0; entry 95's
  # question, which join5 did not reach); the scaling sweep (scale7, 1 and 2 GPUs); the join
  # and LayerNorm kernels' tests on both GPUs (their mesh tests on two real devices)
  CUDA_VISIBLE_DEVICES=0 DEADLINE=$(( ${DEADLINE:-560} - 300 )) calls --precisions bf16
  SWEEP="(1,2)" DEADLINE=$(( $(left) - 80 )) bash $0 scale7   # a new shell: left() is right
  gputests 0,1 "$OUT/gpu_tests.txt" tests/test_qkv_join_kernel.py tests/test_layer_norm_kernel.py
  tail -3 "$OUT/gpu_tests.txt"; pack ;;
join3)  # 1 GPU, about 8.5 min (entry 84): the padded 2 epochs end to end with entries 81 and
  # 84 (stream3), then the join kernel's rows a program and warps, each against base, on
  # SQuAD-like lengths at seq 384 batch 32 (profile_step, one process); nvidia-smi's clock,
  # power, temperature and clock-event reasons every 500 ms throughout (smi.csv)
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active \
    --format=csv -lms 500 > "$OUT/smi.csv" 2>&1 & smi=$!
  ( BATCH=64 STEPS=0 EVAL=100 CACHE=/tmp/cache_l LARGE_DIR="$OUT/large_padded_2ep" \
    timeout $(left) bash $0 large )
  rm -rf "$OUT"/large_*/checkpoints
  train_parts "$OUT"/large_padded_2ep/eval_results.json
  brief "$OUT"/large_*/records.jsonl
  timeout $(left) python3 benchmarks/profile_step.py --kind train --steps 30 --seq 384 \
    --batch 32 --variants squadlen squadlen+join_rows32 squadlen+join_warps4 \
    --out "$OUT/p0" 2>&1 | show
  kill $smi; pack ;;
join4)  # 1 GPU, about 4.5 min (entry 84): join3's two block changes together (32 rows a
  # program, 4 warps) against the product's 16 rows and 8 warps, A B B A, seq 384 batch 32
  # on SQuAD-like lengths, one process
  timeout $(left) python3 benchmarks/profile_step.py --kind train --steps 30 --seq 384 \
    --batch 32 --variants squadlen squadlen+join_rows32+join_warps4 \
    squadlen+join_rows32+join_warps4 squadlen --out "$OUT/p0" 2>&1 | show
  pack ;;
clock1)  # 1 GPU, about 5 min (entry 85; not yet run): why our seq-128 bench point clocks
  # 180 MHz under the peer's on the same card (join2, slope3). nvidia-smi every 100 ms (clock,
  # power, temperature, clock-event reasons) beside: ours seq 128 batch 64, the peer, ours
  # again (a cooler card or a hotter one), then ours at seq 384 batch 32; smi.csv
  mkdir -p "$OUT"/g0
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active \
    --format=csv -lms 100 > "$OUT/smi.csv" 2>&1 & smi=$!
  ours 0 train 128 bf16 '(64,)'
  peer 0 --train 128:64 --precision bf16 --modes compile $R --cache-dir /tmp/cache_g0
  ours 0 train 128 bf16 '(64,)'
  ours 0 train 384 bf16 '(32,)'
  kill $smi; brief "$OUT"/g0/records.jsonl; merge; pack ;;
trim1)  # 1 GPU, about 6 min (entry 86; not yet run): fp16 seq-384 inference on real dev
  # windows at batches 1 and 8, padded, then each call cut to the multiple of 64 holding its
  # longest window (bench.bucket_width: the first 16 dev windows fit 192 at batch 1; at
  # batch 8 the calls are 192, 128 and 64 wide), then the compiled peer on the same windows
  mkdir -p "$OUT"/g0
  ours 0 infer 384 fp16 '(1,8)'
  XB=--config.bench.bucket_width=64 ours 0 infer 384 fp16 '(1,8)'
  peer 0 --infer 384:1 384:8 --precision fp16 --modes compile $R --cache-dir /tmp/cache_g0
  brief "$OUT"/g0/records.jsonl; merge; pack ;;
trim2)  # 1 GPU, over 6 min (entry 87; at DEADLINE=330 it ended after the cut points, and
  # trim3 ran the rest): trim1 with every width run once in the warm-up
  # (benchmark.warmup_inputs; trim1's batch-8 cut point ran two widths first in its timed
  # calls, 250 ms each): fp16 seq-384 inference cut to buckets of 64 at batches 1 and 8,
  # padded at batch 8, then the compiled peer on the same windows at 1 and 8
  mkdir -p "$OUT"/g0
  XB=--config.bench.bucket_width=64 ours 0 infer 384 fp16 '(1,8)'
  ours 0 infer 384 fp16 '(8,)'
  peer 0 --infer 384:1 384:8 --precision fp16 --modes compile $R --cache-dir /tmp/cache_g0
  brief "$OUT"/g0/records.jsonl; merge; pack ;;
trim3)  # 1 GPU, about 4 min (entry 87): what trim2 ran out of time for: fp16 seq-384 inference
  # padded at batch 8, then the compiled peer on the same windows at batches 1 and 8
  mkdir -p "$OUT"/g0
  ours 0 infer 384 fp16 '(8,)'
  peer 0 --infer 384:1 384:8 --precision fp16 --modes compile $R --cache-dir /tmp/cache_g0
  brief "$OUT"/g0/records.jsonl; merge; pack ;;
cap1)  # 1 GPU, about 3 min (entry 88): the bench's records with the power cap read from the
  # driver's clock-event reasons: ours at seq 128 batch 64 and seq 384 batch 32
  mkdir -p "$OUT"/g0
  ours 0 train 128 bf16 '(64,)'
  ours 0 train 384 bf16 '(32,)'
  brief "$OUT"/g0/records.jsonl; merge; pack ;;
trim4)  # 1 GPU, about 8 min (entry 89; not yet run): trim1 again with the timed calls spread
  # over the dev set (batches.spread_eval_batches; trim1-trim3 timed the first 16 or 128 dev
  # windows, 114 real tokens a window at batch 8 against the set's 178): fp16 seq-384
  # inference at batches 1 and 8, padded, then cut to buckets of 64, then the compiled peer
  mkdir -p "$OUT"/g0
  ours 0 infer 384 fp16 '(1,8)'
  XB=--config.bench.bucket_width=64 ours 0 infer 384 fp16 '(1,8)'
  peer 0 --infer 384:1 384:8 --precision fp16 --modes compile $R --cache-dir /tmp/cache_g0
  brief "$OUT"/g0/records.jsonl; merge; pack ;;
bucketgpu1)  # 1 GPU, about 2 min: prediction cut to buckets of 16 (eval.bucket_width, entry 91)
  # against padded calls on cuDNN attention, fp16 and bf16, and the packed ones beside it
  mkdir -p "$OUT"/g0; gputests 0 "$OUT/g0/gpu_tests.txt" tests/test_packing.py -k "cudnn_gives"
  tail -4 "$OUT/g0/gpu_tests.txt" ;;
evalbucket1)  # 1 GPU, about 7 min (entry 91; carries the whole .gpu/minilm): MiniLM
  # fine-tuned with the peer's recipe, predicting padded (eval.batch_size 128), then its last
  # checkpoint evaluated again (--mode=evaluate: F1, the dev set's rate and latency) with the
  # calls cut to buckets of 64 at batches 128 and 8, and padded at batch 8
  CACHE=/tmp/cache_m bash $0 minilm
  for ev in "64 128" "64 8" "0 8"; do set -- $ev
    evaluate_at minilm_squad_1gpu /tmp/minilm /tmp/cache_m $1 $2 '' \
      exact_match,f1,inference_widths,inference_sentences_per_s \
      --config.model.init_checkpoint=.gpu/minilm --config.eval.group_by_width=False  # as it ran
  done ;;
evalbucket2)  # 1 GPU, about 5 min (entry 92): BERT-Large from random init, 20 steps (a
  # checkpoint to predict from; its F1 means nothing), the whole dev set predicted padded at
  # the job's eval batch of 64; then --mode=evaluate on that checkpoint with the calls cut to
  # buckets of 64 at batches 64 and 8, and padded at batch 8 (bf16, the config's policy).
  # EVALS: width,batch[,scan_layers[,group_by_width]] each, scan_layers '-' for the config's;
  # group_by_width False unless given (consecutive windows, as evalbucket2 and 3 ran)
  LARGE_DIR=/tmp/large_eval STEPS=20 EVAL=0 CACHE=/tmp/cache_l bash $0 large
  cp /tmp/large_eval/eval_results.json /tmp/large_eval/records.jsonl "$OUT/"
  K=f1,inference_widths,eval_group_by_width,inference_warmup_s,inference_sentences_per_s
  for ev in ${EVALS:-"64 64" "64 8" "0 8"}; do set -- ${ev//,/ }
    scan=${3:-}; scan=${scan/#-/}
    TAG=${4:+group$4} evaluate_at large_1gpu /tmp/large_eval /tmp/cache_l $1 $2 "$scan" \
      $K,inference_latency_ms --config.model.init_checkpoint= \
      --config.model.vocab_dir=.gpu/minilm --config.eval.group_by_width=${4:-False}
  done ;;
evalbucket3)  # 1 GPU, about 5 min (entry 93): evalbucket2 again with the layers unrolled in
  # prediction (eval.scan_layers=False) at batch 8, cut to buckets of 64 and padded, then
  # scanned and cut, on one card
  EVALS="64,8,False 0,8,False 64,8,True" bash $0 evalbucket2 ;;
trim6)  # 1 GPU, about 6 min: what trim4 left when it reached its deadline on a one-GPU
  # machine, on the same held card: the compiled peer at batches 1 and 8, then our batch-8
  # point cut to buckets of 64
  mkdir -p "$OUT"/g0
  peer 0 --infer 384:1 384:8 --precision fp16 --modes compile $R --cache-dir /tmp/cache_g0
  XB=--config.bench.bucket_width=64 ours 0 infer 384 fp16 '(8,)'
  brief "$OUT"/g0/records.jsonl; merge; pack ;;
trim5)  # 2 GPUs, about 8 min (entries 89, 90; not yet run). GPU 0: trim4 (fp16 seq-384
  # inference at batches 1 and 8, padded, cut to buckets of 64, the compiled peer), the timed
  # calls spread over the dev set. GPU 1: packed rows (bench.packing, 4 and 8 rows a call) on
  # the same spread windows, then the compiled peer again on that card
  mkdir -p "$OUT"/g0 "$OUT"/g1
  ( ours 0 infer 384 fp16 '(1,8)'
    XB=--config.bench.bucket_width=64 ours 0 infer 384 fp16 '(1,8)'
    peer 0 --infer 384:1 384:8 --precision fp16 --modes compile $R --cache-dir /tmp/cache_g0 ) &
  ( XB=--config.bench.packing=True ours 1 infer 384 fp16 '(4,8)'
    peer 1 --infer 384:1 384:8 --precision fp16 --modes compile $R --cache-dir /tmp/cache_g1 ) &
  wait; brief "$OUT"/g*/records.jsonl; merge; pack ;;
recut1)  # 4 GPUs, about 9 min (not yet run): what entry 70's in-place cut changes, with the peer in
  # the same call. GPU 0: the padded 2 epochs end to end (as qlen3's); GPU 1: seq-128
  # training at batch 64, ours then the compiled peer on the same windows; GPU 2: seq-384 at
  # batches 32 and 64, ours then the peer at 32; GPU 3: the model's tests on the GPU. The
  # scaling sweep needs the machine to itself: run scalepack1 after it
  mkdir -p "$OUT"/g1 "$OUT"/g2 "$OUT"/g3
  ( CUDA_VISIBLE_DEVICES=0 BATCH=64 STEPS=0 EVAL=100 CACHE=/tmp/cache_l \
    LARGE_DIR="$OUT/large_padded_2ep" timeout $(left) bash $0 large ) &
  ( ours 1 train 128 bf16 '(64,)'
    peer 1 --train 128:64 --precision bf16 --modes compile $R --cache-dir /tmp/cache_g1 ) &
  ( ours 2 train 384 bf16 '(32,64)'
    peer 2 --train 384:32 --precision bf16 --modes compile $R --cache-dir /tmp/cache_g2 ) &
  ( gputests 3 "$OUT/g3/gpu_tests.txt" tests/test_model.py ) &
  wait; rm -rf "$OUT"/large_*/checkpoints; tail -2 "$OUT/g3/gpu_tests.txt"
  brief "$OUT"/large_*/records.jsonl "$OUT"/g*/records.jsonl; merge; pack ;;
pack4)  # 2 GPUs, about 4.5 min. GPU 0: pack2's whole 2-epoch packed run with the code's defaults
  # (segment slots sized to the fullest row); GPU 1: the bias + GELU kernels alone over tile
  # shapes and warps against XLA's fusions (benchmarks/gelu_sweep.py)
  mkdir -p "$OUT"/g1
  ( CUDA_VISIBLE_DEVICES=0 PACK=True BATCH=64 STEPS=0 EVAL=100 CACHE=/tmp/cache_l \
    LARGE_DIR="$OUT/large_packed_2ep" timeout $(left) bash $0 large ) &
  ( CUDA_VISIBLE_DEVICES=1 timeout $(left) python3 benchmarks/gelu_sweep.py \
      --out $OUT/g1/gelu_sweep.jsonl 2>&1 | grep -E 'Error' | cut -c1-300 ) &
  wait; rm -rf "$OUT"/large_*/checkpoints; pack ;;
scale5)  # 4 GPUs, about 6 min: the scaling target with the train state split over the GPUs
  # (mesh.shard_state): the bench step (seq 384, 32 per GPU, bf16, synthetic full windows) on
  # 1, 2 and 4 GPUs in one sweep, nothing else on the machine; then, as time allows, the 4-GPU
  # point with the state replicated, for a same-call comparison
  sc="${B/--config.bench.num_devices=(1,)/} --config.bench.seq_lens=(384,) --config.bench.batch_sizes=(32,)"
  sc="$sc --config.bench.precisions=(\"bf16\",) --config.data.train_file=synthetic"
  mkdir -p "$OUT/s"
  timeout $(left) python3 run.py --config=configs/bench_train.py $sc --config.mesh.shard_state=True \
    --config.bench.num_devices="(1,2,4)" --workdir="$OUT/s" 2>&1 | grep -E 'Error' | head -3
  timeout $(left) python3 run.py --config=configs/bench_train.py $sc \
    --config.bench.num_devices="(4,)" --workdir="$OUT/s" 2>&1 | grep -E 'Error' | head -3
  python3 run.py --mode=report --workdir="$OUT/s" 2>&1 | tail -2 ;;
stack1)  # 1 GPU, about 5 min (ran: docs/measurements/2026-11-27_h200_stack; its variant
  # 'stacked' left profile_step when the train state became stacked, 918dd30: rerun at
  # 3209521). The train state's layers stacked (64 state arrays instead of 892): the step at
  # batch 1 and at batch 32, base and stacked, each profiled (kernel counts)
  mkdir -p "$OUT"/g0
  T="--kind train --seq 384 --precision bf16"
  timeout $(left) python3 benchmarks/profile_step.py $T --batch 1 --variants base stacked \
    --profile base stacked --out $OUT/g0/b1 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) python3 benchmarks/profile_step.py $T --batch 32 --variants base stacked \
    --profile base stacked --out $OUT/g0 2>&1 | grep -E '^\{|Error' | cut -c1-300
  rm -rf "$OUT"/g0/trace_*/plugins/profile/*/*.xplane.pb "$OUT"/g0/b1/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
cmdbuf1)  # 1 GPU, about 8 min: the train step without XLA's command buffers (CUDA graphs).
  # stack1's traces: at batch 1 the host spent 15.7 ms a step updating the step's one CUDA
  # graph and 10.7 ms in cuGraphLaunch, for 8.9 ms of kernels (step 21.8 ms)
  mkdir -p "$OUT"/g0
  T="--kind train --precision bf16"
  timeout $(left) python3 benchmarks/profile_step.py $T --seq 384 --batch 1 --variants base nocmdbuf \
    --profile nocmdbuf --out $OUT/g0/b1 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) python3 benchmarks/profile_step.py $T --seq 384 --batch 32 --variants base nocmdbuf \
    --out $OUT/g0 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) python3 benchmarks/profile_step.py $T --seq 128 --batch 64 --variants base nocmdbuf \
    --out $OUT/g0/s128 2>&1 | grep -E '^\{|Error' | cut -c1-300
  rm -rf "$OUT"/g0/b1/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
stack2)  # 1 GPU, about 3.5 min (ran, as stack1; its split_layers parts left profile_step in
  # 918dd30, where split_layers became the product: rerun at 3209521). stack1's stacked
  # state lost 2 % at batch 32 (+2.1 ms of
  # kernels: the layers' gradients summed from a pad per layer into float32 stacks, in extra
  # passes). Layers taken out by jnp.split (gradient one concatenate), in float32 or with the
  # stacks cast to bfloat16 first
  mkdir -p "$OUT"/g0
  T="--kind train --seq 384 --precision bf16"
  timeout $(left) python3 benchmarks/profile_step.py $T --batch 32 \
    --variants base stacked+split_layers stacked+split_layers_bf16 \
    --profile stacked+split_layers stacked+split_layers_bf16 --out $OUT/g0 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) python3 benchmarks/profile_step.py $T --batch 1 --variants stacked+split_layers_bf16 \
    --out $OUT/g0/b1 2>&1 | grep -E '^\{|Error' | cut -c1-300
  rm -rf "$OUT"/g0/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
stack4)  # 1 GPU, about 2.5 min: the stacked train state (the product) profiled at batches 1
  # and 8: what is left of the small-batch step (kernels against host)
  mkdir -p "$OUT"/g0
  for b in 1 8; do
    timeout $(left) python3 benchmarks/profile_step.py --kind train --seq 384 --precision bf16 \
      --batch $b --variants base --profile base --out $OUT/g0/b$b 2>&1 | grep -E '^\{|Error' | cut -c1-300
  done
  rm -rf "$OUT"/g0/b*/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
gelu1)  # 1 GPU, about 5 min: what the GELU's arithmetic costs (benchmarks/gelu_math.py, alone),
  # then the step with the cheaper Phi formulas (profile_step gelu_<candidate>), base before
  # and after, and inference at batch 8 with them
  mkdir -p "$OUT"/g0
  timeout $(left) python3 benchmarks/gelu_math.py --out $OUT/g0/gelu_math.jsonl 2>&1 | grep -E 'Error' | head -3
  timeout $(left) python3 benchmarks/profile_step.py --kind train --seq 384 --precision bf16 --batch 32 \
    --variants base gelu_fit gelu_fit_rsqrt gelu_rsqrt base --profile gelu_fit_rsqrt \
    --out $OUT/g0 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) python3 benchmarks/profile_step.py --kind infer --seq 384 --precision fp16 --batch 8 \
    --variants base gelu_fit gelu_fit_rsqrt base --out $OUT/g0/infer 2>&1 | grep -E '^\{|Error' | cut -c1-300
  rm -rf "$OUT"/g0/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
gelu2)  # 2 GPUs, about 9 min. GPU 0, profile_step (synthetic): the step with the new Phi (base)
  # against the old (gelu_erfcc) at seq 384 batch 32 and seq 128 batch 64, and the q/k/v
  # projection's backward as three matmuls (qkv_bwd3; qkv3 again for comparison). GPU 1: the
  # product bench on real windows beside the compiled peer, one after the other on that GPU
  mkdir -p "$OUT"/g0 "$OUT"/g1
  PS="python3 benchmarks/profile_step.py --kind train --precision bf16"
  ( export CUDA_VISIBLE_DEVICES=0
    timeout $(left) $PS --seq 384 --batch 32 --variants base gelu_erfcc qkv_bwd3 qkv3 base \
      --profile qkv_bwd3 --out $OUT/g0 2>&1 | grep -E '^\{|Error' | cut -c1-300
    timeout $(left) $PS --seq 128 --batch 64 --variants base gelu_erfcc base --out $OUT/g0/s128 2>&1 \
      | grep -E '^\{|Error' | cut -c1-300 ) &
  ( peer 1 --train 384:32 --precision bf16 --modes compile
    ours 1 train 384 bf16 '(32,)'
    peer 1 --train 128:64 --precision bf16 --modes compile
    ours 1 train 128 bf16 '(64,)'
    ours 1 infer 384 fp16 '(1,8)'
    peer 1 --infer 384:1 384:8 --precision fp16 --modes compile
    ours 1 train 384 bf16 '(64,)' ) &
  wait; merge; rm -rf "$OUT"/g0/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
gelu3)  # 1 GPU, about 5 min: the new GELU on real work. The GELU and profile_step tests on the
  # GPU (its approximate rsqrt), MiniLM's F1 with the peer's recipe, and the bench at seq 384
  # batch 64 (the padded 2-epoch rate gelu2 did not reach)
  mkdir -p "$OUT"/g0
  JAX_PLATFORMS=cuda XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 150 python3 -m pytest -q \
    tests/test_gelu_math.py tests/test_profile_step.py -k "gelu or exact" -p no:cacheprovider 2>&1 \
    | tail -4 > "$OUT/gpu_tests.txt"; cat "$OUT/gpu_tests.txt"
  OUT=$OUT timeout $(left) bash $0 minilm
  ours 0 train 384 bf16 '(64,)'; merge; pack ;;
gelu4)  # 1 GPU, about 3 min: qkv_bwd3 with x kept from XLA's dot merger (qkv_bwd3b) beside base
  mkdir -p "$OUT"/g0
  timeout $(left) python3 benchmarks/profile_step.py --kind train --seq 384 --precision bf16 --batch 32 \
    --variants base qkv_bwd3b --out $OUT/g0 2>&1 | grep -E '^\{|Error' | cut -c1-300 ;;
grid2)  # SEQ=384 or 128, one 4-GPU call each (about 9.5 min): the whole one-GPU grid at that
  # length with the code as it is, and the peer in the same call, like for like (no
  # attention-probability dropout, as our cuDNN step) and with BERT's 0.1 (as before
  # peer_hf's --attention-dropout). GPU 3 then runs our target point after the peer on the
  # same GPU ($OUT/same3, outside the grid's records). GPU 0 then times LayerNorm's two-pass
  # statistics against base at seq 384 batch 32, in the order ORDER gives (it ran at e2dcf8c,
  # before the one-pass statistics were the model, as ln_fastvar against base)
  S=${SEQ:-384}; ALL='(1,2,4,8,16,32,64)'; P=$([ "$S" = 384 ] && echo 32 || echo 64)
  mkdir -p "$OUT"/g{0,1,2,3}
  ( ours 0 train $S bf16 "$ALL"
    CUDA_VISIBLE_DEVICES=0 timeout $(left) python3 benchmarks/profile_step.py --kind train --seq 384 \
      --batch 32 --precision bf16 --variants ${ORDER:-base ln_twopass} --profile base \
      --out "$OUT/p0" 2>&1 | grep -E '^\{|Error' | cut -c1-300 ) &
  ( ours 1 train $S fp16 "$ALL"; ours 1 infer $S bf16 "$ALL" ) &
  ( ours 2 train $S fp32 "$ALL"; ours 2 infer $S fp32 "$ALL" ) &
  ( peer 3 --train $S:$P --precision bf16 --modes compile eager
    peer 3 --train $S:$P --precision bf16 --modes compile --attention-dropout 0.1
    peer 3 --infer $S:1 $S:8 $S:64 --precision fp16 --modes compile eager
    ours 3 infer $S fp16 "$ALL"
    WD="$OUT/same3" ours 3 train $S bf16 "($P,)" ) &
  wait; merge; rm -rf "$OUT"/p0/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
gridfill)  # 1 GPU, about 7 min: the inference points the two grid2 calls left (their inference
  # jobs shared the host with three compiling jobs, about 45 s a point), most wanted first;
  # whatever DEADLINE leaves out stays out (it ran as is, about 70 s a point, 40 of them
  # compiling; then, FILL=128, from the seq-128 points on)
  mkdir -p "$OUT"/g0
  [ "${FILL:-}" = 128 ] || { ours 0 infer 384 fp16 '(64,)'; ours 0 infer 384 bf16 '(8,16,32,64)'; }
  ours 0 infer 128 fp16 '(64,)'; ours 0 infer 128 bf16 '(8,16,32,64)'
  ours 0 infer 384 fp32 '(4,8,16,32,64)'; ours 0 infer 128 fp32 '(8,16,32,64)'
  merge; pack ;;
scan1)  # 1 GPU, about 9 min, one job at a time (compile times want an idle host): inference
  # compile time and latency with the stacked layers as one lax.scan against unrolled (noscan),
  # the list layout (unstacked) and unrolled without autotuning; then the product (scan, one-pass
  # LayerNorm statistics) in the bench against the compiled peer, training and inference
  mkdir -p "$OUT"/g0 "$OUT"/p0
  PI="python3 benchmarks/profile_step.py --kind infer --seq 384 --precision fp16 --steps 100 --out $OUT/p0"
  timeout $(left) $PI --batch 1 --variants scan noscan unstacked noscan+noautotune 2>&1 | grep -E '^\{|Error' | cut -c1-400
  timeout $(left) $PI --batch 8 --variants scan noscan 2>&1 | grep -E '^\{|Error' | cut -c1-400
  ours 0 train 384 bf16 '(32,64)'
  peer 0 --train 384:32 --precision bf16 --modes compile
  ours 0 infer 384 fp16 '(1,8,64)'
  peer 0 --infer 384:1 384:8 --precision fp16 --modes compile
  merge; pack ;;
scan2)  # 1 GPU, about 5 min: scan1's inference variants again, profiled (where scan's extra
  # time goes), two layers a loop trip (scan2), and autotuning off at batches 8 and 64
  mkdir -p "$OUT"/p0
  PI="python3 benchmarks/profile_step.py --kind infer --seq 384 --precision fp16 --steps 100 --out $OUT/p0"
  timeout $(left) $PI --batch 1 --variants noscan scan scan2 noscan+noautotune --profile noscan scan 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) $PI --batch 8 --variants noscan+noautotune scan noscan --profile scan noscan 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) $PI --batch 64 --variants noscan+noautotune noscan 2>&1 | grep -E '^\{|Error' | cut -c1-300
  rm -rf "$OUT"/p0/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
scan3)  # 1 GPU, about 8 min: scan with XLA's dynamic slice fusion (cuBLAS reads each layer's
  # weights in place; scan2's profile showed 96 weight copies a call), alone and with every
  # matmul on cuBLAS, against unrolled, at batches 1, 8, 64; then the compiled peer
  mkdir -p "$OUT"/p0 "$OUT"/g0
  PI="python3 benchmarks/profile_step.py --kind infer --seq 384 --precision fp16 --steps 100 --out $OUT/p0"
  timeout $(left) $PI --batch 1 --variants noscan scan+dsf scan+dsf+notriton --profile scan+dsf+notriton 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) $PI --batch 8 --variants scan+dsf+notriton scan+dsf noscan 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) $PI --batch 64 --variants scan+dsf+notriton noscan 2>&1 | grep -E '^\{|Error' | cut -c1-300
  peer 0 --infer 384:1 384:8 384:64 --precision fp16 --modes compile
  rm -rf "$OUT"/p0/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
scan4)  # 1 GPU, about 4 min: the product's paths on real dev windows, seq 384 bf16: the bench
  # with the layers scanned (the evaluation default, eval.scan_layers) at batches 1, 8, 64 and
  # unrolled (the bench default) at 64; compile_s and throughput per point
  mkdir -p "$OUT"/g0
  XB=--config.bench.scan_layers=True ours 0 infer 384 bf16 '(1,8,64)'
  ours 0 infer 384 bf16 '(64,)'
  merge; pack ;;
dsf1)  # 1 GPU, about 5 min: legacy cuBLAS gemms (nolt: cuBLASLt off), which XLA's dynamic slice
  # fusion matches (scan3: with cuBLASLt gemms the 96 weight copies stayed), scanned and
  # unrolled, against the unrolled default; logits compared with the default's in each record
  mkdir -p "$OUT"/p0
  PI="python3 benchmarks/profile_step.py --kind infer --seq 384 --precision fp16 --steps 100 --out $OUT/p0"
  V="scan+notriton+nolt+dsf noscan+notriton+nolt+dsf"
  timeout $(left) $PI --batch 1 --variants noscan $V noscan+notriton scan+notriton+nolt --profile $V 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) $PI --batch 8 --variants noscan $V --profile $V 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) $PI --batch 64 --variants noscan $V 2>&1 | grep -E '^\{|Error' | cut -c1-300
  rm -rf "$OUT"/p0/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
inf1)  # 1 GPU, about 7 min: inference with cuBLAS matmuls (the default since dsf1, entry 52)
  # against each layer's kernels as arrays of their own (kernels_apart: no slice copies, more
  # arguments), the list layout and Triton (the old default); then the bench at seq 384, fp16
  # and bf16, batches 1, 8, 64 on real dev windows, and the compiled peer (fp16)
  mkdir -p "$OUT"/p0 "$OUT"/g0
  PI="python3 benchmarks/profile_step.py --kind infer --seq 384 --precision fp16 --steps 100 --out $OUT/p0"
  timeout $(left) $PI --batch 1 --variants base kernels_apart unstacked triton_gemm --profile base kernels_apart 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) $PI --batch 8 --variants base kernels_apart --profile kernels_apart 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) $PI --batch 64 --variants base kernels_apart 2>&1 | grep -E '^\{|Error' | cut -c1-300
  ours 0 infer 384 fp16 '(1,8,64)'
  ours 0 infer 384 bf16 '(1,8,64)'
  peer 0 --infer 384:1 384:8 384:64 --precision fp16 --modes compile
  rm -rf "$OUT"/p0/trace_*/plugins/profile/*/*.xplane.pb; merge; pack ;;
inf2)  # 1 GPU, about 9 min: inference with each layer's kernels apart (the default since inf1,
  # entry 53): profile_step against the stacked kernels, the bench at seq 384 fp16 (batches 1,
  # 8, 64) and the compiled peer; then seq 128 training at batch 64, bf16 and fp16, and the
  # compiled peer like for like; bf16 inference last
  mkdir -p "$OUT"/p0 "$OUT"/g0
  PI="python3 benchmarks/profile_step.py --kind infer --seq 384 --precision fp16 --steps 100 --out $OUT/p0"
  timeout $(left) $PI --batch 1 --variants base stacked_kernels --profile base 2>&1 | grep -E '^\{|Error' | cut -c1-300
  ours 0 infer 384 fp16 '(1,8,64)'
  peer 0 --infer 384:1 384:8 384:64 --precision fp16 --modes compile
  ours 0 train 128 bf16,fp16 '(64,)'   # as run: XB='--config.bench.precisions=("bf16","fp16")',
  # which appended, so bf16 ran twice (bench settings now refuse a repeated value)
  peer 0 --train 128:64 --precision bf16 --modes compile
  ours 0 infer 384 bf16 '(1,8)'
  rm -rf "$OUT"/p0/trace_*/plugins/profile/*/*.xplane.pb; merge; pack ;;
host1)  # 1 GPU, about 8.5 min: where a batch-1 inference call's host time goes (the traces'
  # host events, profile_step) with XLA's command buffers as they are, off, and widened to every
  # command type; batch 8 likewise; then the bench at seq 384 bf16 and seq 128 fp16 (batches
  # 1, 8, 64) and the compiled peer at the same points (fp16)
  mkdir -p "$OUT"/p0 "$OUT"/g0
  PI="python3 benchmarks/profile_step.py --kind infer --seq 384 --precision fp16 --out $OUT/p0"
  V="base base+nocmdbuf base+cmdbuf_all"
  timeout $(left) $PI --batch 1 --steps 200 --variants $V --profile $V 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) $PI --batch 8 --steps 100 --variants $V --profile base 2>&1 | grep -E '^\{|Error' | cut -c1-300
  ours 0 infer 384 bf16 '(1,8,64)'
  ours 0 infer 128 fp16 '(1,8,64)'
  peer 0 --infer 384:1 384:8 384:64 128:1 128:8 128:64 --precision fp16 --modes compile
  rm -rf "$OUT"/p0/trace_*/plugins/profile/*/*.xplane.pb; merge; pack ;;
host2)  # 1 GPU, about 7.5 min: XLA's CUDA graph as a straight line (cmdbuf_serial: each node
  # waits on the one before, which recent drivers launch in constant time) against its default
  # DAG (host1: cuGraphLaunch held the host 0.7-0.9 ms a call), and with each call's inputs
  # at a new address (fresh_inputs, as the bench has them); seq 384 batches 1, 8, 64 and seq
  # 128 batch 1 at inference, then seq 128 training at batch 64
  mkdir -p "$OUT"/p0
  PI="python3 benchmarks/profile_step.py --kind infer --precision fp16 --out $OUT/p0"
  show() { grep -E '^\{|Error' | cut -c1-250; }
  timeout $(left) $PI --seq 384 --batch 1 --steps 200 --variants base cmdbuf_serial cmdbuf_concurrent \
    fresh_inputs fresh_inputs+cmdbuf_serial --profile cmdbuf_serial 2>&1 | show
  timeout $(left) $PI --seq 128 --batch 1 --steps 200 --variants base cmdbuf_serial fresh_inputs \
    fresh_inputs+cmdbuf_serial --profile base cmdbuf_serial 2>&1 | show
  timeout $(left) $PI --seq 384 --batch 8 --steps 100 --variants base cmdbuf_serial \
    fresh_inputs+cmdbuf_serial 2>&1 | show
  timeout $(left) $PI --seq 384 --batch 64 --steps 30 --variants base cmdbuf_serial 2>&1 | show
  timeout $(left) python3 benchmarks/profile_step.py --kind train --seq 128 --batch 64 \
    --variants base cmdbuf_serial --out $OUT/p0 2>&1 | show
  rm -rf "$OUT"/p0/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
ln1)  # 1 GPU, about 7.5 min: each LayerNorm at inference as one Pallas kernel (the product since
  # entry 56) against XLA's two or three (ln_fwd_xla), seq 384 batches 1, 8, 64 and seq 128 batch 1;
  # then the bench at seq 384 fp16 (batches 1, 8, 64) and the compiled peer; seq 128 if time
  mkdir -p "$OUT"/p0 "$OUT"/g0
  lnab 384 1 200 --profile base; lnab 128 1 200; lnab 384 8 100; lnab 384 64 30
  ours 0 infer 384 fp16 '(1,8,64)'
  peer 0 --infer 384:1 384:8 384:64 --precision fp16 --modes compile
  ours 0 infer 128 fp16 '(1,8,64)'
  rm -rf "$OUT"/p0/trace_*/plugins/profile/*/*.xplane.pb; merge; pack ;;
ln2)  # 1 GPU, about 5.5 min: ln1 again with split_kernels' LayerNorms reading their row of the
  # stacks in place (ln1's kernel took a slice, which XLA copied first: 96 memcpys a call)
  mkdir -p "$OUT"/p0 "$OUT"/g0
  lnab 384 1 200 --profile base; lnab 128 1 200; lnab 384 8 100
  ours 0 infer 384 fp16 '(1,8,64)'
  peer 0 --infer 384:1 384:8 384:64 --precision fp16 --modes compile
  lnab 384 64 30
  rm -rf "$OUT"/p0/trace_*/plugins/profile/*/*.xplane.pb; merge; pack ;;
ln3)  # 1 GPU, about 8 min (not yet run): what ln2 left, the LayerNorm kernel's batch-64 pair and
  # its rows / warps per program at batches 1 and 64; then the bench at bf16 seq 384 and fp16
  # seq 128 (batches 1, 8, 64) with the compiled peer at the same points (fp16)
  mkdir -p "$OUT"/p0 "$OUT"/g0
  lnab 384 64 30 ln_fwd_rows1 ln_fwd_rows8 ln_fwd_rows16 ln_fwd_warps8
  lnab 384 1 200 ln_fwd_rows1 ln_fwd_rows8 ln_fwd_warps8
  ours 0 infer 384 bf16 '(1,8,64)'
  ours 0 infer 128 fp16 '(1,8,64)'
  peer 0 --infer 384:1 384:8 384:64 128:1 128:8 128:64 --precision fp16 --modes compile
  merge; pack ;;
tanh1)  # 1 GPU, about 9 min: the tanh GELU (model.activation=gelu_tanh, entry 58), which XLA
  # folds into the FFN-in matmul's cuBLASLt epilogue, against the exact GELU (base), in one
  # process each: training seq 384 batch 32 (bf16), inference fp16 with the weights bound at
  # seq 384 batches 1, 8, 64, training seq 128 batch 64; records count the gemm epilogues
  mkdir -p "$OUT"/p0
  PT="python3 benchmarks/profile_step.py --kind train --precision bf16 --out $OUT/p0"
  PI="python3 benchmarks/profile_step.py --kind infer --precision fp16 --out $OUT/p0"
  show() { grep -E '^\{|Error' | cut -c1-250; }
  timeout $(left) $PT --seq 384 --batch 32 --variants base gelu_tanh 2>&1 | show
  timeout $(left) $PI --seq 384 --batch 1 --steps 200 --variants bound bound+gelu_tanh 2>&1 | show
  timeout $(left) $PI --seq 384 --batch 8 --steps 100 --variants bound bound+gelu_tanh 2>&1 | show
  timeout $(left) $PT --seq 128 --batch 64 --variants base gelu_tanh 2>&1 | show
  timeout $(left) $PI --seq 384 --batch 64 --steps 30 --variants bound bound+gelu_tanh 2>&1 | show
  pack ;;
tanh2)  # 1 GPU, about 9.5 min: the bench with the tanh GELU (model.activation=gelu_tanh) beside
  # the compiled peer running transformers' gelu_pytorch_tanh, each right after ours: fp16
  # inference at seq 384 (batches 1, 8, 64), bf16 training at seq 384 batch 32; then
  # profile_step's batch-1 trace and HLO, exact and tanh, to see why batch 1 did not move in tanh1
  mkdir -p "$OUT"/p0 "$OUT"/g0
  XB=--config.model.activation=gelu_tanh ours 0 infer 384 fp16 '(1,8,64)'
  peer 0 --infer 384:1 384:8 384:64 --precision fp16 --modes compile --activation gelu_tanh
  XB=--config.model.activation=gelu_tanh ours 0 train 384 bf16 '(32,)'
  peer 0 --train 384:32 --precision bf16 --modes compile --activation gelu_tanh
  timeout $(left) python3 benchmarks/profile_step.py --kind infer --precision fp16 --out $OUT/p0 \
    --seq 384 --batch 1 --steps 200 --variants bound bound+gelu_tanh --profile bound bound+gelu_tanh \
    2>&1 | grep -E '^\{|Error' | cut -c1-250
  rm -rf "$OUT"/p0/trace_*/plugins/profile/*/*.xplane.pb; merge; pack ;;
tanh3)  # 1 GPU, about 8.5 min: the bench's random weights now with non-zero biases and LayerNorm
  # scales off one (benchmark.trained_like; before, XLA folded the bound weights' zero biases
  # away, entry 58): the GPU test of the tanh GELU's epilogue; profile_step at fp16 seq 384
  # batches 1 and 8, weights passed (base), bound, bound with the tanh GELU; then the bench at
  # fp16 seq 384 (1, 8, 64), exact GELU and tanh, each followed by the compiled peer running it
  mkdir -p "$OUT"/p0 "$OUT"/g0
  timeout $(left) python3 -m pytest -q -p no:cacheprovider tests/test_activation.py -k gpu 2>&1 \
    | tail -3 | tee "$OUT/gpu_tests.txt"   # as run: skipped (tests/conftest.py picks the CPU
  # unless JAX_PLATFORMS is set; tanh4 ran it on the GPU). The bench's tanh points and the
  # peer's batch 64 did not fit in the call
  PI="python3 benchmarks/profile_step.py --kind infer --precision fp16 --seq 384 --out $OUT/p0"
  show() { grep -E '^\{|Error' | cut -c1-250; }
  timeout $(left) $PI --batch 1 --steps 200 --variants base bound bound+gelu_tanh 2>&1 | show
  timeout $(left) $PI --batch 8 --steps 100 --variants base bound bound+gelu_tanh 2>&1 | show
  ours 0 infer 384 fp16 '(1,8,64)'
  peer 0 --infer 384:1 384:8 384:64 --precision fp16 --modes compile
  XB=--config.model.activation=gelu_tanh ours 0 infer 384 fp16 '(1,8,64)'
  peer 0 --infer 384:1 384:8 384:64 --precision fp16 --modes compile --activation gelu_tanh
  merge; pack ;;
wait1)  # 1 GPU, about 9 min: tanh5's MiniLM pair again (its call lacked model.safetensors:
  # carry .gpu/minilm/model.safetensors), then batch-1 calls with each way of waiting for the
  # output (profile_step's wait_probe), bound weights, fp16, seq 384 (exact, tanh, Triton gemms)
  # and seq 128
  mkdir -p "$OUT"/g0 "$OUT"/p0
  CACHE=/tmp/cache_m timeout $(left) bash $0 minilm
  ACT=gelu_tanh CACHE=/tmp/cache_m timeout $(left) bash $0 minilm
  PI="python3 benchmarks/profile_step.py --kind infer --precision fp16 --out $OUT/p0"
  timeout $(left) $PI --seq 384 --batch 1 --steps 200 --variants bound bound+gelu_tanh bound+triton_gemm 2>&1 | show
  timeout $(left) $PI --seq 128 --batch 1 --steps 200 --variants bound 2>&1 | show
  pack ;;
wait2)  # 1 GPU, about 7 min: batch 1, bound weights, fp16, seq 384: copying the output home
  # (wait1: +1 ms a call) one array at a time, the first alone, and by jax.device_get; then the
  # tanh GELU's bench at fp16 seq 128 (1, 8, 64), the compiled peer with gelu_pytorch_tanh after
  mkdir -p "$OUT"/g0 "$OUT"/p0
  timeout $(left) python3 benchmarks/profile_step.py --kind infer --precision fp16 --out $OUT/p0 \
    --seq 384 --batch 1 --steps 200 --variants bound 2>&1 | show
  XB=--config.model.activation=gelu_tanh ours 0 infer 128 fp16 '(1,8,64)'
  peer 0 --infer 128:1 128:8 128:64 --precision fp16 --modes compile --activation gelu_tanh
  merge; pack ;;
rep1)  # 1 GPU, about 9 min: batch 1 and 8, weights bound, fp16 seq 384: the logits returned as
  # one [B, T, 2] array (one_output) against start and end apart, profile_step's wait probe
  # (one copy home instead of two); then the bench and the compiled peer twice each, in turn
  # (ours, peer, ours, peer), for more than one sample of the batch-1 and batch-8 ratios.
  # Ran at 418fbfa: one_output has since gone from profile_step, the product returning one
  # array (rep2's two_outputs is the old way)
  mkdir -p "$OUT"/g0 "$OUT"/p0
  PI="python3 benchmarks/profile_step.py --kind infer --precision fp16 --out $OUT/p0 --seq 384"
  timeout $(left) $PI --batch 1 --steps 200 --variants bound bound+one_output 2>&1 | show
  timeout $(left) $PI --batch 8 --steps 100 --variants bound bound+one_output 2>&1 | show
  for round in 1 2; do
    ours 0 infer 384 fp16 '(1,8)'
    peer 0 --infer 384:1 384:8 --precision fp16 --modes compile
  done
  merge; pack ;;
suite1)  # 1 GPU, about 8 min: the README's test command (CPU, 8 fake devices) under the image's
  # jax 0.11.2, torch and transformers, where CI has jax 0.10 (needs model.safetensors, and
  # hypothesis with its two dependencies in .whl); then the GPU-only tests and the LayerNorm
  # kernel's on the GPU
  shared_dir
  python3 -c 'import torch, transformers, hypothesis, chex, optax, orbax.checkpoint as o
print("torch", torch.__version__, "transformers", transformers.__version__, "hypothesis",
      hypothesis.__version__, "chex", chex.__version__, "optax", optax.__version__)' | tee -a "$OUT/gpu.txt"
  export BERT_JAX_SHARED=/tmp/shared
  JAX_PLATFORMS=cpu timeout $(( $(left) - 100 )) python3 -m pytest -q -p no:cacheprovider \
    --durations=10 > "$OUT/cpu_suite.txt" 2>&1; echo "rc $?" >> "$OUT/cpu_suite.txt"
  gputests 0 "$OUT/gpu_tests.txt" tests/test_activation.py tests/test_packing.py \
    tests/test_layer_norm_kernel.py -k "gpu or cudnn or kernel"
  tail -4 "$OUT/cpu_suite.txt" "$OUT/gpu_tests.txt" ;;
suite3)  # 4 GPUs, about 5 min: the README's test command (CPU, 8 fake devices) under the
  # image's jax 0.11.2, torch and transformers (torch parity included, which CI's jax 0.11.2
  # subset leaves out), in four shards of test files at once on the host's 64 cores; then the
  # GPU-only tests on GPU 0 (needs model.safetensors and .whl, as suite1)
  shared_dir; export BERT_JAX_SHARED=/tmp/shared
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' | tee -a "$OUT/gpu.txt"
  shard() { JAX_PLATFORMS=cpu timeout $(( $(left) - 90 )) python3 -m pytest -q -p no:cacheprovider \
    --durations=5 --every-kernel-case --slow-tools "${@:2}" > "$OUT/cpu_suite_$1.txt" 2>&1; echo "rc $?" >> "$OUT/cpu_suite_$1.txt"; }
  a="tests/test_train.py tests/test_distributed.py"
  b="tests/test_benchmark.py tests/test_profile_step.py tests/test_notebook.py"
  c="tests/test_model.py tests/test_weights.py tests/test_inference.py tests/test_squad.py"
  d=$(ls tests/test_*.py | grep -vxF -f <(tr ' ' '\n' <<< "$a $b $c"))   # every other file
  shard a $a & shard b $b & shard c $c & shard d $d &
  wait
  gputests 0 "$OUT/gpu_tests.txt" tests/test_activation.py tests/test_packing.py \
    tests/test_layer_norm_kernel.py tests/test_gelu_pallas.py -k "gpu or cudnn or kernel"
  gputests 0 "$OUT/gpu_tests_model.txt" tests/test_model.py -k "skips_padded"
  tail -n 2 "$OUT"/cpu_suite_*.txt "$OUT"/gpu_tests*.txt ;;
suite2)  # 1 GPU, about 1.5 min: the one test recheck1 left failing, fixed (it now caches every
  # compile), under the image's jax 0.11.2 on the CPU; no data needed (the bundled sample)
  JAX_PLATFORMS=cpu timeout $(left) python3 -m pytest -q -p no:cacheprovider tests/test_train.py \
    -k kill_and_resume > "$OUT/cpu_tests.txt" 2>&1; echo "rc $?" >> "$OUT/cpu_tests.txt"
  tail -3 "$OUT/cpu_tests.txt" ;;
cudnn1)  # 1 GPU, about 5 min: XLA's cuDNN GEMM fusions at inference (profile_step, weights
  # bound, fp16 seq 384, batch 8, then batch 1): cuBLAS (the product), Triton gemm fusions, and
  # those fusions autotuned against cuDNN's plans too; records count each backend's matmuls
  mkdir -p "$OUT"/p0
  PI="python3 benchmarks/profile_step.py --kind infer --precision fp16 --out $OUT/p0 --seq 384"
  V="bound bound+triton_gemm bound+triton_gemm+cudnn_gemm"
  timeout $(left) $PI --batch 8 --steps 100 --variants $V 2>&1 | show
  timeout $(left) $PI --batch 1 --steps 200 --variants bound bound+triton_gemm+cudnn_gemm 2>&1 | show ;;
rep2)  # 1 GPU, about 8.5 min: the product now returns one [B, T, 2] logits array (rep1's
  # one_output); profile_step, weights bound, fp16 seq 384, batch 1 then 8, the variants in
  # the order A B B A (two_outputs: start and end apart, as before), so that drift within the
  # process touches both alike; then the bench and the compiled peer once, as in rep1
  mkdir -p "$OUT"/g0 "$OUT"/p0
  PI="python3 benchmarks/profile_step.py --kind infer --precision fp16 --out $OUT/p0 --seq 384"
  V="bound bound+two_outputs bound+two_outputs bound"
  timeout $(left) $PI --batch 1 --steps 200 --variants $V 2>&1 | show
  timeout $(left) $PI --batch 8 --steps 100 --variants $V 2>&1 | show
  ours 0 infer 384 fp16 '(1,8)'
  peer 0 --infer 384:1 384:8 --precision fp16 --modes compile
  merge; pack ;;
spin1)  # 1 GPU, about 6 min: the bench as it now waits (a spin on is_ready, as the peer's
  # torch.cuda.synchronize), exact GELU, fp16 seq 384 (1, 8), the compiled peer right after
  mkdir -p "$OUT"/g0
  ours 0 infer 384 fp16 '(1,8)'
  peer 0 --infer 384:1 384:8 --precision fp16 --modes compile
  merge; pack ;;
tanh5)  # 1 GPU, about 7 min (ran; its MiniLM jobs found no weights, see wait1): what tanh3
  # left. MiniLM fine-tuned with the exact GELU, then with the tanh GELU from the same
  # exact-GELU checkpoint (F1 and speed, one GPU, one after the other); then the bench with the
  # tanh GELU on weights with non-zero biases at fp16 seq 384 (1, 8, 64), the compiled peer
  # with gelu_pytorch_tanh right after
  mkdir -p "$OUT"/g0
  CACHE=/tmp/cache_m timeout $(left) bash $0 minilm
  ACT=gelu_tanh CACHE=/tmp/cache_m timeout $(left) bash $0 minilm
  XB=--config.model.activation=gelu_tanh ours 0 infer 384 fp16 '(1,8,64)'
  peer 0 --infer 384:1 384:8 384:64 --precision fp16 --modes compile --activation gelu_tanh
  merge; pack ;;
tanh4)  # 1 GPU, about 1 min: the tanh GELU's GPU test (its cuBLASLt epilogue, its numbers)
  JAX_PLATFORMS=cuda XLA_PYTHON_CLIENT_PREALLOCATE=false timeout $(left) python3 -m pytest -q \
    -p no:cacheprovider tests/test_activation.py -k gpu 2>&1 | tail -4 | tee "$OUT/gpu_tests.txt" ;;
bound1)  # 1 GPU, about 9 min: the weights compiled into the program as constants (bound: a call
  # passes the batch alone) against passing 111 arrays each call (base), profile_step, fp16,
  # seq 384 batches 1 and 8, seq 128 batch 1, host events traced at batch 1; then the bench
  # with bind_params at fp16 seq 384 (1, 8, 64) and seq 128 (1, 8), the compiled peer at the
  # same points; last, ln3's batch-64 LayerNorm pair with 8 rows and 8 warps a program
  mkdir -p "$OUT"/p0 "$OUT"/g0
  PI="python3 benchmarks/profile_step.py --kind infer --precision fp16 --out $OUT/p0"
  show() { grep -E '^\{|Error' | cut -c1-250; }
  timeout $(left) $PI --seq 384 --batch 1 --steps 200 --variants base bound --profile base bound 2>&1 | show
  timeout $(left) $PI --seq 384 --batch 8 --steps 100 --variants base bound 2>&1 | show
  timeout $(left) $PI --seq 128 --batch 1 --steps 200 --variants base bound 2>&1 | show
  XB=--config.bench.bind_params=True ours 0 infer 384 fp16 '(1,8,64)'
  XB=--config.bench.bind_params=True ours 0 infer 128 fp16 '(1,8)'
  peer 0 --infer 384:1 384:8 384:64 128:1 128:8 --precision fp16 --modes compile
  lnab 384 64 30 ln_fwd_rows8 ln_fwd_warps8
  rm -rf "$OUT"/p0/trace_*/plugins/profile/*/*.xplane.pb; merge; pack ;;
bound2)  # 1 GPU, about 8 min: the bench with the weights in the program (bind_params, the default
  # since bound1) at bf16 seq 384 (1, 8, 64) and fp16 seq 128 batch 64; the compiled peer at
  # seq 128 (bound1 ran out of time there); the bench with the weights passed each call at
  # fp16 seq 384 (1, 8) for a same-call pair; ln3's batch-64 LayerNorm pair
  mkdir -p "$OUT"/p0 "$OUT"/g0
  ours 0 infer 384 bf16 '(1,8,64)'
  ours 0 infer 128 fp16 '(64,)'
  peer 0 --infer 128:1 128:8 128:64 --precision fp16 --modes compile
  XB=--config.bench.bind_params=False ours 0 infer 384 fp16 '(1,8)'
  lnab 384 64 30 ln_fwd_rows8 ln_fwd_warps8
  merge; pack ;;
bound3)  # 1 GPU, about 8 min: the product's inference (weights in the program) at fp16 seq 384 and
  # seq 128, batches 1, 8, 64, each length followed by the compiled peer at the same points;
  # then bf16 seq 384 batch 1 again (2.0 ms in bound2, where it was the call's first point)
  mkdir -p "$OUT"/g0
  ours 0 infer 384 fp16 '(1,8,64)'
  peer 0 --infer 384:1 384:8 384:64 --precision fp16 --modes compile
  ours 0 infer 128 fp16 '(1,8,64)'
  peer 0 --infer 128:1 128:8 128:64 --precision fp16 --modes compile
  ours 0 infer 384 bf16 '(1,)'
  merge; pack ;;
bound4)  # 1 GPU, about 2 min: fp32 with the weights bound (1.34 GB of constants), seq 384 batch 1,
  # the one precision the bound calls left
  mkdir -p "$OUT"/g0
  ours 0 infer 384 fp32 '(1,)'
  merge; pack ;;
fill1)  # 1 GPU, about 4 min: the fp32 inference points grid2 left (compiles took too long then;
  # seconds a point since entry 52), seq 384 and 128, and bf16 at seq 384 batches 1 and 8
  mkdir -p "$OUT"/g0
  ours 0 infer 384 fp32 '(4,8,16,32,64)'
  ours 0 infer 128 fp32 '(8,16,32,64)'
  ours 0 infer 384 bf16 '(1,8)'
  merge; pack ;;
stack3)  # 4 GPUs, about 8 min: the stacked train state (the product since stack2) on real
  # work. GPU 0: the bench's seq-384 training at batches 1-64 and seq 128 at 64; GPU 1: the
  # compiled peer at the same points; GPU 2: MiniLM's F1 (padded, 1 GPU); GPU 3: BERT-Large
  # padded at batch 64, 300 steps (the 2-epoch target's rate)
  mkdir -p "$OUT"/g0 "$OUT"/g1
  ( ours 0 train 384 bf16 '(1,8,32,64)'; ours 0 train 128 bf16 '(64,)' ) &
  ( peer 1 --train 384:32 128:64 --precision bf16 --modes compile ) &
  ( CUDA_VISIBLE_DEVICES=2 CACHE=/tmp/cache_m timeout $(left) bash $0 minilm ) &
  ( CUDA_VISIBLE_DEVICES=3 BATCH=64 STEPS=300 EVAL=100 CACHE=/tmp/cache_l \
    LARGE_DIR="$OUT/large_1gpu_batch64" timeout $(left) bash $0 large ) &
  wait; rm -rf "$OUT"/large_1gpu_batch64/checkpoints; merge; pack ;;
scale7)  # 4 GPUs (SWEEP="(1,2)": 2; SWEEP="(1,2,4,8)" on 8 GPUs), about 5.5 min: the
  # scaling target with the collectives combined up to 64 MiB (the default since scale6): the bench step (seq 384, 32 per GPU, bf16, synthetic full
  # windows) on 1, 2 and 4 GPUs in one sweep, nothing else on the machine; 60 timed steps a
  # point rather than 20, so the first step's dispatch weighs less
  sc="${B/--config.bench.num_devices=(1,)/} --config.bench.seq_lens=(384,) --config.bench.batch_sizes=(32,)"
  sc="$sc --config.bench.precisions=(\"bf16\",) --config.data.train_file=synthetic --config.bench.steps=60"
  mkdir -p "$OUT/s"
  timeout $(left) python3 run.py --config=configs/bench_train.py $sc \
    --config.bench.num_devices="${SWEEP:-(1,2,4)}" --workdir="$OUT/s" 2>&1 | grep -E 'Error' | head -3
  python3 run.py --mode=report --workdir="$OUT/s" 2>&1 | tail -2 ;;
split1)  # 4 GPUs, about 4 min: the split state (the default) on real data: MiniLM fine-tuned
  # with the peer's recipe on GPUs 0-1 (32 windows a step, 16 a GPU) and, packed (16 rows a
  # step), on GPUs 2-3; each evaluated on the whole dev set
  ( CUDA_VISIBLE_DEVICES=0,1 NDEV=2 CACHE=/tmp/cache_m0 timeout $(left) bash $0 minilm ) &
  ( CUDA_VISIBLE_DEVICES=2,3 NDEV=2 PACK=True ROWS=16 CACHE=/tmp/cache_m1 timeout $(left) bash $0 minilm ) &
  wait ;;
scale6)  # 4 GPUs, about 8 min (ran: docs/measurements/2026-11-27_h200x4_scale6): where the
  # 4-GPU step with the state split spends its 4.3 ms over the one-GPU step (scale5), and whether fewer or smaller all-gathers and
  # reduce-scatters help: the one-GPU step, then the 4-GPU split step (profiled), with the
  # collectives combined up to 8 MiB and up to 64 MiB, and again
  mkdir -p "$OUT"/g0 "$OUT"/p4
  T="--kind train --seq 384 --batch 32"
  CUDA_VISIBLE_DEVICES=0 timeout $(left) python3 benchmarks/profile_step.py $T --variants base \
    --out $OUT/g0 2>&1 | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) python3 benchmarks/profile_step.py $T --devices 4 --variants zero zero+coll8mb \
    zero+coll64mb zero --profile zero --out $OUT/p4 2>&1 | grep -E '^\{|Error' | cut -c1-300
  rm -rf "$OUT"/p4/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
scale4)  # 4 GPUs, about 5 min: issue 6's scaling target with the code as it is (cuBLAS default):
  # the bench step (seq 384, 32 per GPU, bf16, synthetic full windows: no minute of featurising)
  # on 1, 2 and 4 GPUs in one sweep; meanwhile, on GPU 3 and done before the 4-GPU point
  # starts, the bias + GELU kernel sweep
  sc="${B/--config.bench.num_devices=(1,)/} --config.bench.seq_lens=(384,) --config.bench.batch_sizes=(32,)"
  sc="$sc --config.bench.precisions=(\"bf16\",) --config.data.train_file=synthetic"
  mkdir -p "$OUT/s" "$OUT/g3"
  ( CUDA_VISIBLE_DEVICES=3 timeout 140 python3 benchmarks/gelu_sweep.py \
      --out $OUT/g3/gelu_sweep.jsonl 2>&1 | grep -E 'Error' | cut -c1-300 ) &
  timeout $(left) python3 run.py --config=configs/bench_train.py $sc \
    --config.bench.num_devices="(1,2,4)" --workdir="$OUT/s" 2>&1 | grep -E 'Error' | head -3
  wait; pack ;;
pair3)  # 2 GPUs, about 8.5 min: scaling of the bench step (seq 384, 32 per GPU, bf16) over 1 and
  # 2 GPUs under the cuBLAS default, then the 2-GPU point again under NCCL settings that may
  # slow the overlapped matmuls less (pair1's profile: the all-reduces hide under the backward
  # pass, 0.18 ms exposed, but the matmuls run 2.3 ms slower beside NCCL's LL-protocol
  # kernels); the persistent compilation cache makes the repeats skip compiling
  C="--config.train.compilation_cache_dir=/tmp/jaxcache"
  sc="${B/--config.bench.num_devices=(1,)/} --config.bench.seq_lens=(384,) --config.bench.batch_sizes=(32,)"
  sc="$sc --config.bench.precisions=(\"bf16\",) --config.data.cache_dir=/tmp/cache_s $C"
  bench2() {  # workdir, NCCL settings...
    mkdir -p "$OUT/$1"; echo "${@:2}" > "$OUT/$1/nccl_env.txt"
    env "${@:2}" timeout $(left) python3 run.py --config=configs/bench_train.py $sc \
      --config.bench.num_devices="(2,)" --workdir="$OUT/$1" 2>&1 | grep -E 'Error' | head -3; }
  mkdir -p "$OUT/s"
  timeout $(left) python3 run.py --config=configs/bench_train.py $sc --config.bench.num_devices="(1,2)" \
    --workdir="$OUT/s" 2>&1 | grep -E 'Error' | head -3
  bench2 s_simple NCCL_PROTO=Simple
  bench2 s_ll128 NCCL_PROTO=LL128
  bench2 s_simple_ch8 NCCL_PROTO=Simple NCCL_MAX_NCHANNELS=8
  bench2 s_default2 NCCL_DEBUG=WARN
  pack ;;
autotune)  # 1 GPU, about 3 min: the train step compiled without XLA's autotuning (cuBLAS's own
  # algorithm choice), then as it is, on the same GPU: compile time and step time
  mkdir -p "$OUT"/g0; PS="python3 benchmarks/profile_step.py --kind train --seq 384 --batch 32"
  XLA_FLAGS=--xla_gpu_autotune_level=0 timeout $(left) $PS --variants base --out $OUT/g0 2>&1 \
    | grep -E '^\{|Error' | cut -c1-300
  timeout $(left) $PS --variants base --out $OUT/g0 2>&1 | grep -E '^\{|Error' | cut -c1-300 ;;
gelukernel)  # 1 GPU, about 5 min: the FFN's bias + GELU backward as one Pallas kernel, then its
  # forward too (benchmarks/gelu_pallas.py), beside the step as it is, with the profile of the
  # step with both (ran: both slower, docs/performance_notes.md entry 29)
  mkdir -p "$OUT"/g0
  timeout $(left) python3 benchmarks/profile_step.py --kind train --seq 384 --batch 32 \
    --variants base gelu_kernel gelu_kernel_fwd base --profile gelu_kernel_fwd --out $OUT/g0 2>&1 \
    | grep -E '^\{|Error' | cut -c1-300
  rm -rf "$OUT"/g0/trace_*/plugins/profile/*/*.xplane.pb ;;
gridlast)  # 1 GPU, about 2 min: the one grid point no call reached (fp32 inference, seq 128,
  # batch 64); copy $OUT/g0/records.jsonl into the fullgrid folder as e_*.jsonl and re-run the report
  mkdir -p "$OUT"/g0; ours 0 infer 128 fp32 '(64,)' ;;
scale)  # issues 4/6 on a 4-GPU machine: MiniLM padded and bucketed, BERT-Large on 1, 2, 4 GPUs
  ( CUDA_VISIBLE_DEVICES=0 bash $0 minilm ) &
  ( CUDA_VISIBLE_DEVICES=1 BUCKET=64 CACHE=/tmp/cache_b bash $0 minilm ) &
  ( CUDA_VISIBLE_DEVICES=2,3 NDEV=2 STEPS=150 CACHE=/tmp/cache_2 bash $0 large
    CUDA_VISIBLE_DEVICES=2 NDEV=1 STEPS=150 CACHE=/tmp/cache_2 bash $0 large ) &
  ( sleep 240; CUDA_VISIBLE_DEVICES=3 bash $0 rest ) &  # starts when the 2-GPU run is done
  wait
  NDEV=4 STEPS=150 bash $0 large; pack ;;
profile)  # issue 6: variants side by side and a kernel breakdown (benchmarks/profile_step.py)
  python3 benchmarks/profile_step.py --kind train --seq 384 --batch 32 --precision bf16 \
    --variants bern base rbg nodrop --profile base --out "$OUT" 2>&1 | grep -E '^\{|Error' | cut -c1-400
  python3 benchmarks/profile_step.py --kind infer --seq 384 --batch 1 --precision fp16 \
    --variants base xla --profile base --steps 200 --out "$OUT" 2>&1 | grep -E '^\{|Error' | cut -c1-400
  python3 benchmarks/profile_step.py --kind infer --seq 384 --batch 8 --precision fp16 \
    --variants base --steps 100 --out "$OUT" 2>&1 | grep -E '^\{|Error' | cut -c1-400
  rm -rf "$OUT"/trace_*/plugins/profile/*/*.xplane.pb ;;
profile2)  # issue 6, next: q/k/v from three matmuls, tanh GELU, and XLA command buffers at batch 1
  python3 benchmarks/profile_step.py --kind train --seq 384 --batch 32 --precision bf16 \
    --variants base qkv3 gelu_tanh --profile qkv3 --out "$OUT" 2>&1 | grep -E '^\{|Error' | cut -c1-400
  python3 benchmarks/profile_step.py --kind infer --seq 384 --batch 1 --precision fp16 \
    --variants base qkv3 --steps 200 --out "$OUT" 2>&1 | grep -E '^\{|Error' | cut -c1-400
  XLA_FLAGS=--xla_gpu_enable_command_buffer= python3 benchmarks/profile_step.py --kind infer \
    --seq 384 --batch 1 --precision fp16 --variants base --steps 200 --out "$OUT" 2>&1 | grep -E '^\{|Error' | cut -c1-400
  rm -rf "$OUT"/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
profile3)  # issue 6 on a 4-GPU machine: one variant set per GPU, kernels named by their HLO;
  # then BERT-Large on 4 GPUs with and without the latency-hiding scheduler
  PS="python3 benchmarks/profile_step.py --seq 384"
  show() { grep -E '^\{|Error' | cut -c1-300; }
  ( CUDA_VISIBLE_DEVICES=0 $PS --kind train --batch 32 --variants base qkv3 --profile base --out "$OUT/p0" | show ) &
  ( CUDA_VISIBLE_DEVICES=1 $PS --kind train --batch 32 --variants biasmm qkv3+biasmm --profile qkv3+biasmm \
      --out "$OUT/p1" | show ) &
  ( CUDA_VISIBLE_DEVICES=2 XLA_FLAGS=--xla_gpu_enable_cudnn_layer_norm=true $PS --kind train --batch 32 \
      --variants base --out "$OUT/p2" | show
    CUDA_VISIBLE_DEVICES=2 $PS --kind train --batch 32 --variants gelu_tanh --out "$OUT/p2" | show ) &
  ( export CUDA_VISIBLE_DEVICES=3
    $PS --kind infer --batch 1 --precision fp16 --variants base qkv3 --profile base --steps 200 --out "$OUT/p3" | show
    XLA_FLAGS=--xla_gpu_enable_command_buffer= $PS --kind infer --batch 1 --precision fp16 --variants base \
      --steps 200 --out "$OUT/p3" | show
    $PS --kind infer --batch 8 --precision fp16 --variants base qkv3 --steps 100 --out "$OUT/p3" | show ) &
  wait
  S4="--config.bench.num_devices=(4,) --config.bench.seq_lens=(384,) --config.bench.batch_sizes=(32,)"
  S4="$S4 --config.bench.precisions=(\"bf16\",)"
  B4="${B/--config.bench.num_devices=(1,)/} $S4 --config.data.cache_dir=/tmp/cache4"
  timeout 200 python3 run.py --config=configs/bench_train.py $B4 --workdir="$OUT/s4" 2>&1 | grep -E 'Error' | head -3
  XLA_FLAGS=--xla_gpu_enable_latency_hiding_scheduler=true timeout 200 python3 run.py \
    --config=configs/bench_train.py $B4 --workdir="$OUT/s4" 2>&1 | grep -E 'Error' | head -3
  rm -rf "$OUT"/p*/trace_*/plugins/profile/*/*.xplane.pb; pack ;;
esac
