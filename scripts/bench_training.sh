#!/usr/bin/env bash
# scripts/bench_training.sh — training throughput of qnn vs the PyTorch reference,
# in one run, on the same machine and data.
#
#   scripts/bench_training.sh [--peer PATH/torch_mnist.py] [--threads 2] [--epochs 1] [--out runs/bench_training.json]
#
# Runs, for the MNIST MLP 784-2048-2048-2048-10 (batch 100):
#   qnn  fp  and qnn bnn           (build/apps/mnist_mlp, --epochs N; the app picks
#                                   its OpenBLAS kernels, see kernels/sgemm.h)
#   torch fp and torch bnn         (the peer script, if given and python3-torch is installed)
# PyTorch fp and bnn each run in three settings and the fastest counts: its
# default (N torch threads), 1 torch thread + N OpenBLAS threads (the issue's
# "fastest setting"), and the default with OPENBLAS_CORETYPE=Haswell (the
# kernels qnn picks on Zen 4).
# Writes images/s for each plus the ratios qnn/torch as JSON. Timing runs
# otherwise unset OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (see the team's env notes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PEER=""; THREADS=2; EPOCHS=1; OUT="runs/bench_training.json"; EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --peer) PEER="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --epochs) EPOCHS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "bench_training: unknown argument '$1' (see --help)" >&2; exit 1 ;;
  esac
done
mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
E=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)

qnn_ips() {  # model -> images/s of the last epoch
  "${E[@]}" build/apps/mnist_mlp --model "$1" --epochs "$EPOCHS" --threads "$THREADS" --seed 1 \
     --json "$TMP/qnn_$1.json" "${EXTRA[@]}" >"$TMP/qnn_$1.log" 2>/dev/null
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['epochs'][-1]['images_per_s'])" "$TMP/qnn_$1.json"
}
torch_ips() {  # model extra-args -> images/s of the last epoch
  local m=$1; shift
  "${E[@]}" /usr/bin/python3 "$PEER" --data datasets/mnist --model "$m" --hidden 2048 --layers 3 \
     --epochs "$EPOCHS" --threads "$THREADS" --reps 1 --b1-images 200 "$@" >"$TMP/torch_$m.log" 2>&1
  grep '^epoch' "$TMP/torch_$m.log" | tail -n 1 | sed -E 's/.*train_img_per_s=([0-9.]+).*/\1/'
}

torch_settings() {  # model -> "default 1-thread haswell" images/s, one run each
  local m=$1 a b c
  echo "torch $m (default threads) ..." >&2;  a=$(torch_ips "$m")
  echo "torch $m (1 torch thread) ..." >&2;   b=$(torch_ips "$m" --omp-threads 1)
  echo "torch $m (Haswell kernels) ..." >&2;  c=$(E=(env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=Haswell); torch_ips "$m")
  echo "$a $b $c"
}
best() { python3 -c "import sys; print(max(float(v) for v in sys.argv[1:]))" "$@"; }

echo "qnn fp ..." >&2;  QFP=$(qnn_ips fp)
echo "qnn bnn ..." >&2; QBNN=$(qnn_ips bnn)
TFP=null; TBNN=null; TFP_DEF=null; TFP_ONE=null; TFP_HSW=null; TBNN_DEF=null; TBNN_ONE=null; TBNN_HSW=null
if [ -n "$PEER" ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then
  read -r TFP_DEF TFP_ONE TFP_HSW < <(torch_settings fp)
  TFP=$(best "$TFP_DEF" "$TFP_ONE" "$TFP_HSW")
  read -r TBNN_DEF TBNN_ONE TBNN_HSW < <(torch_settings bnn)
  TBNN=$(best "$TBNN_DEF" "$TBNN_ONE" "$TBNN_HSW")
fi
QCORE=$(grep -m1 -o 'core=[A-Za-z0-9]*' "$TMP/qnn_fp.log" | cut -d= -f2 || true)
python3 - "$OUT" "$QFP" "$QBNN" "$TFP" "$TBNN" "$THREADS" "$EPOCHS" "$TFP_DEF" "$TFP_ONE" "$TFP_HSW" "$QCORE" \
  "$TBNN_DEF" "$TBNN_ONE" "$TBNN_HSW" <<'PY'
import json, sys
out, qfp, qbnn, tfp, tbnn, threads, epochs, tdef, tone, thsw, qcore, bdef, bone, bhsw = sys.argv[1:]
f = lambda s: None if s == "null" else float(s)
qfp, qbnn, tfp, tbnn, tdef, tone, thsw, bdef, bone, bhsw = map(f, (qfp, qbnn, tfp, tbnn, tdef, tone, thsw, bdef, bone, bhsw))
r = {"threads": int(threads), "epochs": int(epochs), "batch": 100, "model": "784-2048-2048-2048-10",
     "qnn_blas_core": qcore,
     "qnn_fp_images_per_s": qfp, "qnn_bnn_images_per_s": qbnn,
     "torch_fp_images_per_s": tfp, "torch_bnn_images_per_s": tbnn,
     "torch_fp_settings": {"default": tdef, "omp_threads_1": tone, "default_haswell_kernels": thsw},
     "torch_bnn_settings": {"default": bdef, "omp_threads_1": bone, "default_haswell_kernels": bhsw},
     "fp_speedup_vs_torch": qfp / tfp if tfp else None, "bnn_speedup_vs_torch": qbnn / tbnn if tbnn else None}
open(out + ".tmp", "w").write(json.dumps(r, indent=2) + "\n")
import os; os.replace(out + ".tmp", out)
print(json.dumps(r, indent=2))
PY
