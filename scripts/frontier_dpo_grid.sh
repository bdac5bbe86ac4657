#!/usr/bin/env bash
# The step-wise DPO grids behind configs/frontier.yaml's dpo.* (issue 20, `make frontier-dpo-grid`), on the oracle
# arm of a frontier run (`make frontier-controls`, `make frontier` or `make frontier-pilot`). Each model is evaluated
# greedily on the two validation splits only (choices are made there, never on test or hard); the table gives every
# setting's accuracy and its change from the model it was trained from, with 95 % t-intervals over the seeds.
#
#   GRID_ITERATION=2 (default): the first iteration's setting. Each seed's oracle pairs of its first frontier
#     iteration (<RUN>/seed<s>/oracle/it2/pairs.jsonl) train three settings from that seed's psrlm-M1.
#     Writes <RUN>/dpo-grid.md.
#   GRID_ITERATION=3: the later iterations' rate (dpo.lr_scale_by_iteration). Each seed's oracle pairs of its second
#     iteration (oracle/it3/pairs.jsonl, searched by oracle-M2) train oracle-M2 three ways: at the first iteration's
#     rate, at the recipe's rate for iteration 3, and at the first rate with psrlm-M1 as the reference instead of the
#     parent. Writes <RUN>/dpo-grid-it3.md.
#
#   bash scripts/frontier_dpo_grid.sh RUN [RECIPE] [--set ... passed to every psrlm call]
#
# Resumable: a trained model or a finished evaluation is kept and not redone.
set -euo pipefail
RUN=${1:?usage: frontier_dpo_grid.sh RUN [RECIPE] [--set ...]}
RECIPE=${2:-configs/frontier.yaml}
shift $(( $# < 2 ? $# : 2 ))
PSRLM=${PSRLM:-psrlm}
PY=${PY:-python3}
ITERATION=${GRID_ITERATION:-2}
# name: the dpo.* settings (@M1@ stands for the seed's psrlm-M1)
case "$ITERATION" in
  2)  # "recipe" is the demo's (about 9 optimizer steps on ~100 pairs), "long_nll" the chosen one
    PARENT=psrlm-M1; BASE=M1; GRID=dpo-grid
    VARIANTS=(
      "recipe:--set dpo.epochs=1 --set dpo.lr=0.00002 --set dpo.nll_weight=0"
      "long:--set dpo.epochs=4 --set dpo.lr=0.00005 --set dpo.nll_weight=0"
      "long_nll:--set dpo.epochs=4 --set dpo.lr=0.00005 --set dpo.nll_weight=1.0"
    ) ;;
  3)  # "scaled" is the recipe's own training of oracle-M3
    PARENT=oracle-M2; BASE=M2; GRID=dpo-grid-it3
    VARIANTS=(
      "constant:--set dpo.lr_scale_by_iteration=[]"
      "scaled:"
      "ref_m1:--set dpo.lr_scale_by_iteration=[] --ref @M1@"
    ) ;;
  *) echo "frontier_dpo_grid: GRID_ITERATION=$ITERATION: choose 2 (the first iteration) or 3 (the later rate)" >&2
     exit 2 ;;
esac
PAIRS=oracle/it$ITERATION/pairs.jsonl
shopt -s nullglob
seeds=()
for dir in "$RUN"/seed*/; do
  s=${dir%/}; s=${s##*/seed}
  [[ -f "$dir/$PAIRS" && -d "$dir/models/$PARENT" && -d "$dir/models/psrlm-M1" ]] || continue
  if [[ ! -s "$dir/$PAIRS" ]]; then
    echo "frontier_dpo_grid: seed $s skipped: its oracle search made no pairs ($dir/$PAIRS is empty)" >&2
    continue
  fi
  seeds+=("$s")
done
if (( ${#seeds[@]} == 0 )); then
  echo "frontier_dpo_grid: no $RUN/seed<s>/ holds both a non-empty $PAIRS and models/$PARENT;" \
       "run make frontier-controls (or frontier, frontier-pilot) with the oracle arm first" >&2
  exit 2
fi
evaluate() {  # seed, model folder, result name
  local sets=(--set "iterate.seed=$1" --set "paths.run_dir=$RUN/seed$1" --set iterate.schedule=frontier "${@:4}")
  [[ -f "$RUN/seed$1/eval/$3/summary.json" ]] && return 0
  "$PSRLM" eval -c "$RECIPE" "${sets[@]}" --model "$2" --name "$3" --benchmarks arith_valid,arith_valid_hard --no-judge
}
for s in "${seeds[@]}"; do
  evaluate "$s" "$RUN/seed$s/models/$PARENT" "$GRID-$BASE" "$@"
  for v in "${VARIANTS[@]}"; do
    name=${v%%:*}; read -r -a vset <<<"${v#*:}"
    vset=("${vset[@]//@M1@/$RUN/seed$s/models/psrlm-M1}")
    out="$RUN/seed$s/$GRID/$name"
    if [[ ! -f "$out/psrlm_manifest.json" ]]; then
      "$PSRLM" train dpo -c "$RECIPE" --set "iterate.seed=$s" --set "paths.run_dir=$RUN/seed$s" "${vset[@]}" "$@" \
        --model "$RUN/seed$s/models/$PARENT" --pairs "$RUN/seed$s/$PAIRS" --iteration "$ITERATION" \
        --seed-offset "$s" --out "$out"
    fi
    evaluate "$s" "$out" "$GRID-$name" "$@"
  done
done
names=()
for v in "${VARIANTS[@]}"; do names+=("${v%%:*}"); done
"$PY" - "$RUN" "$GRID" "$BASE" "$ITERATION" "${names[*]}" "${seeds[@]}" <<'PY'
import json, sys
from pathlib import Path
from psrlm.confidence import mean_ci

run, grid, base, iteration, names, seeds = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split(), sys.argv[6:]
splits = ("arith_valid", "arith_valid_hard")
acc = lambda s, name, split: json.loads((run / f"seed{s}/eval/{name}/summary.json").read_text())[split]["accuracy"]  # noqa: E731
fmt = lambda xs: "{:.3f} ± {:.3f}".format(*mean_ci(xs))  # noqa: E731
signed = lambda xs: "{:+.3f} ± {:.3f}".format(*mean_ci(xs))  # noqa: E731
which = "first" if iteration == "2" else "second"
lines = [f"# Step-wise DPO on the oracle's {which}-iteration pairs, from {base}, seeds {', '.join(seeds)} "
         "(validation splits only)", "",
         f"| dpo setting | valid | valid (hard) | valid Δ from {base} | valid (hard) Δ from {base} |", "|---|---|---|---|---|"]
for name in (base, *names):
    res = f"{grid}-{name}"
    cells = [fmt([acc(s, res, sp) for s in seeds]) for sp in splits]
    if name == base:
        cells += ["-", "-"]
    else:
        cells += [signed([acc(s, res, sp) - acc(s, f"{grid}-{base}", sp) for s in seeds]) for sp in splits]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
text = "\n".join(lines) + "\n"
(run / f"{grid}.md").write_text(text)
print(text)
PY
