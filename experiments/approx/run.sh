#!/usr/bin/env bash
# The approximation studies recorded in experiments/approx/README.md, one `structlayers approx`
# command each (JSON + PNG under experiments/approx/). Single-threaded fits; each command takes a
# lock file when LOCK=path is set, so that heavy jobs on a shared machine run one at a time.
# Trained-weight targets first need experiments/approx/targets/make_targets.sh.
set -euo pipefail
export OMP_NUM_THREADS=1
OUT=experiments/approx
T=$OUT/targets
LOCK=${LOCK:-}
run() { if [ -n "$LOCK" ]; then flock "$LOCK" structlayers approx --no-progress "$@"; else structlayers approx --no-progress "$@"; fi; }
FAMILIES=acdc,afdf,afdf:cascade=complex,monarch,butterfly,kronecker,lowrank,lowrank_diag,circulant,toeplitz,blockdiag

case "${1:-all}" in
null)
  # 0. The test of the verdict test alone (the tables case below runs it too).
  python experiments/approx/verdict_null.py
  ;;
gaussian|all)
  # 1. ACDC stacks on 32x32 Gaussian targets, every shuffle, converged L-BFGS, fair baselines.
  run --layer acdc --n 32 --depth 1,2,4,8,16,32 --shuffle random,riffle,none --seeds 5 --steps 10000 \
      --json $OUT/gaussian_acdc_lbfgs.json --plot $OUT/gaussian_acdc_lbfgs.png | tee $OUT/gaussian_acdc_lbfgs.txt
  ;;&
log|all)
  # 2. The 2018 protocol (nn.Linear targets, X ~ U(0,1), 100 samples, 10 repeats), our L-BFGS ...
  run --protocol research-log --layer acdc --depth 1,2,4,8,16,32 --shuffle random,riffle,none --steps 5000 \
      --json $OUT/log_protocol_lbfgs.json --plot $OUT/log_protocol_lbfgs.png | tee $OUT/log_protocol_lbfgs.txt
  # ... and its own optimiser: scipy CG, 1000 iterations, scipy's default gtol.
  run --protocol research-log --layer acdc --depth 1,2,4,8,16,32 --shuffle random,riffle,none --optimizer cg \
      --steps 1000 --gtol 1e-5 --json $OUT/log_protocol_cg1000.json --plot $OUT/log_protocol_cg1000.png \
      | tee $OUT/log_protocol_cg1000.txt
  ;;&
families|all)
  # 3. Every family at equal parameter budgets on 32x32 targets: unstructured and structured.
  # The 5-seed records ran as seed shards merged by merge_seeds.py (gaussian: --seeds 0 1, then --seeds 2 3 4 --no-timing), equivalent to this command.
  for target in gaussian linear toeplitz dct lowrank_diag; do
    run --layer $FAMILIES --target $target --n 32 --params-budget 64,128,256,512,1024 --shuffle random --seeds 5 \
        --steps 5000 --json $OUT/families_$target.json --plot $OUT/families_$target.png | tee $OUT/families_$target.txt
  done
  ;;&
trained|all)
  # 4. Trained weights of the project's own MNIST / CIFAR-10 runs (64x64, and the 64x32 shortcut).
  for target in mnist_mlp.pt:hidden cifar_resnet18.pt:conv cifar_resnet18.pt:shortcut; do
    name=$(echo "$target" | sed 's/\.pt:/_/')
    run --layer $FAMILIES --target $T/$target --params-budget 256,512,1024,2048 --shuffle random --seeds 5 \
        --steps 3000 --json $OUT/families_$name.json --plot $OUT/families_$name.png | tee $OUT/families_$name.txt
  done
  ;;&
converged|all)
  # 5. How far L-BFGS is from a converged optimum: the same fits with trust-region least squares.
  run --layer acdc --n 32 --depth 2,4,8 --shuffle random --seeds 3 --optimizer trf --steps 3000 \
      --json $OUT/gaussian_acdc_trf.json | tee $OUT/gaussian_acdc_trf.txt
  ;;&
legacy|all)
  # 6. The 2018 fit itself: CG in float32 through the log's stale-value objective wrapper, K = 32 random.
  run --protocol research-log --layer acdc --depth 32 --shuffle random --optimizer cg --steps 1000 --gtol 1e-5 \
      --legacy-objective --no-timing --json $OUT/log_protocol_legacy.json | tee $OUT/log_protocol_legacy.txt
  ;;&
dimension|all)
  # 7. Baselines charged the local dimension (Jacobian rank at the fitted point) at 512 parameters.
  run --layer monarch,kronecker,lowrank_diag,acdc --target gaussian --n 32 --params-budget 512 --shuffle random \
      --seeds 5 --steps 2000 --charge dimension --no-timing --json $OUT/families_gaussian_dimension.json \
      | tee $OUT/families_gaussian_dimension.txt
  ;;&
default|all)
  # 8. The embedded default job as `make approx` runs it (torch's default threads; its fits in as many
  # processes as the CPUs hold), its wall time and the load average before and after; then the same
  # job with its fits in one process, for the ratio.
  { grep -m1 'model name' /proc/cpuinfo; echo "CPUs available: $(env -u OMP_NUM_THREADS nproc)"; uptime
    time env -u OMP_NUM_THREADS structlayers approx --layer acdc --depth 16 --no-progress ; uptime;
    time env -u OMP_NUM_THREADS structlayers approx --layer acdc --depth 16 --no-progress --workers 1 ; uptime; } \
      > $OUT/default_job.txt 2>&1
  ;;&
data|all)
  # 9. Data-aware fits of three trained layers (their saved weights) and the accuracy right after surgery.
  # The records were fitted at 2000 steps, then went on at 6000 with --raise-cap, which ends where a run at
  # 6000 from the start ends.
  for pair in mnist_hidden:mnist-mlp cifar_shortcut:cifar-resnet18 cifar_conv:cifar-resnet18; do
    ${LOCK:+flock "$LOCK"} python experiments/approx/data_aware.py --target ${pair%%:*} --seeds 3 --steps 6000 \
        --minutes 600 --out $OUT/data_${pair%%:*}.json --weights experiments/approx/targets/models/${pair##*:}.pt
  done
  ;;&
tables|all)
  # 10. After any study above (or a record replaced by hand, e.g. merged with merge_seeds.py): the test of
  # the verdict test on the records' differences (~4 min), then every record's rows and .txt table
  # re-derived from its runs with the current verdict rule, and the README's generated blocks rewritten.
  python experiments/approx/verdict_null.py
  python experiments/approx/tables.py rederive
  ;;
esac
