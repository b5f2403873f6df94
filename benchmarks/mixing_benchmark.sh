#!/usr/bin/env bash
# The mixing benchmark of BENCHMARKS.md ("Mixing benchmark"), every setting, resumable: rerun the same
# command and finished runs are read back (jobs/compare.py --resume). About 40-60 min per setting on
# 2 quiet CPU cores; run one setting at a time:
#   bash benchmarks/mixing_benchmark.sh main|ablations|decoys|swamped|swamped-named|junk|merged [--set ...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1  # one thread per Ray worker; more only oversubscribes the 2 cores
OUT=${OUT:-results}
ACODM=${ACODM:-$(dirname "$PY")/acodm}
# a derived corpus is rewritten by derived_corpus.py, so its prepared shards are keyed anew: prepare
# them here, on the driver, before the comparison (inside two concurrent proxy tasks holding both
# CPUs of a 2-CPU Ray cluster, the prepare's Ray Data workers get no CPU and the comparison hangs)
derive() { $PY benchmarks/derived_corpus.py "$1" && $ACODM corpus prepare --config configs/bench.yaml --set corpus.path="debian-v1-$1" >/dev/null; }
setting=${1:?usage: mixing_benchmark.sh main|ablations|decoys|swamped|swamped-named|junk|merged}; shift
common=(--config configs/bench.yaml --output-dir "$OUT")
resume=()
# the decoy settings evaluate on the bundled corpus's seven real domains only
REAL_ONLY='train.eval_domains=[python_code,dictionary,c_headers,manuals,literature,latex,legal]'
# named targets: the default (eval score, evidence temperature, 8-step window, no floor, lcb objective), its ablations, variants
NAMED_METHODS=uniform,file,acodm,acodm-total,acodm-fixedtemp,acodm-nowindow,acodm-floor,acodm-softmax,acodm-projection,acodm-floormass,acodm-online,sac
case "$setting" in
  main)
    [ -d "$OUT/bench-main" ] && resume=(--resume)
    $PY jobs/compare.py "${common[@]}" --name bench-main "${resume[@]}" "$@" ;;
  ablations)
    [ -d "$OUT/bench-ablations" ] && resume=(--resume)
    $PY jobs/compare.py "${common[@]}" --name bench-ablations --seeds 3 "${resume[@]}" \
      --methods uniform,odm,odm-exp3,acodm,acodm-iid,acodm-zscore,acodm-meanq,acodm-noguard,acodm-horizon,acodm-paperwarmup,ppo,acodm-cross "$@" ;;
  decoys)
    derive decoys
    [ -d "$OUT/bench-decoys" ] && resume=(--resume)
    $PY jobs/compare.py "${common[@]}" --name bench-decoys --seeds 3 "${resume[@]}" \
      --set corpus.path=debian-v1-decoys --set train.grad_accum=10 \
      --set "$REAL_ONLY" \
      --methods uniform,odm,alignment,acodm-reference,acodm-paper,acodm "$@" ;;
  swamped)
    derive swamped
    [ -d "$OUT/bench-swamped" ] && resume=(--resume)
    $PY jobs/compare.py "${common[@]}" --name bench-swamped --seeds 3 "${resume[@]}" \
      --set corpus.path=debian-v1-swamped --set train.grad_accum=14 \
      --set "$REAL_ONLY" \
      --set mixer.weights_file=benchmarks/weights/swamped_real_only.yaml \
      --methods uniform,odm,acodm,file,acodm-eval,acodm-evalppl "$@" ;;
  swamped-named)  # the named-targets default, its ablations and variants (docs/method.md "Named targets")
    derive swamped
    [ -d "$OUT/bench-swamped-named" ] && resume=(--resume)
    $PY jobs/compare.py "${common[@]}" --name bench-swamped-named --seeds 3 "${resume[@]}" \
      --set corpus.path=debian-v1-swamped --set train.grad_accum=14 \
      --set "$REAL_ONLY" \
      --set mixer.weights_file=benchmarks/weights/swamped_real_only.yaml \
      --methods "$NAMED_METHODS" "$@" ;;
  junk)  # seven decoys of four other kinds (benchmarks/derived_corpus.py), fixed before any run
    derive junk
    [ -d "$OUT/bench-junk" ] && resume=(--resume)
    $PY jobs/compare.py "${common[@]}" --name bench-junk --seeds 3 "${resume[@]}" \
      --set corpus.path=debian-v1-junk --set train.grad_accum=14 \
      --set "$REAL_ONLY" \
      --set mixer.weights_file=benchmarks/weights/junk_real_only.yaml \
      --methods "odm,$NAMED_METHODS" "$@" ;;
  merged)
    derive merged
    [ -d "$OUT/bench-merged" ] && resume=(--resume)
    $PY jobs/compare.py "${common[@]}" --name bench-merged --seeds 3 "${resume[@]}" \
      --set corpus.path=debian-v1-merged \
      --methods uniform,odm,alignment,acodm-reference,acodm-paper,acodm "$@" ;;
  *) echo "unknown setting $setting; choose main, ablations, decoys, swamped, swamped-named, junk or merged" >&2; exit 2 ;;
esac
