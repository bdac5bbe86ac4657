#!/usr/bin/env bash
# The step-wise DPO grid behind configs/frontier.yaml's dpo.* (issue 20, `make frontier-dpo-grid`): each seed's
# oracle-judged pairs of its first frontier iteration (<RUN>/seed<s>/oracle/it2/pairs.jsonl, from `make frontier` or
# `make frontier-pilot`) train three DPO settings from that seed's psrlm-M1, and each model is evaluated greedily on
# the two validation splits only (choices are made there, never on test or hard). The table gives every setting's
# accuracy and its change from M1 with 95 % t-intervals over the seeds.
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
# name: the dpo.* settings; "recipe" is the demo's (about 9 optimizer steps on ~100 pairs), "long_nll" the chosen one
VARIANTS=(
  "recipe:--set dpo.epochs=1 --set dpo.lr=0.00002 --set dpo.nll_weight=0"
  "long:--set dpo.epochs=4 --set dpo.lr=0.00005 --set dpo.nll_weight=0"
  "long_nll:--set dpo.epochs=4 --set dpo.lr=0.00005 --set dpo.nll_weight=1.0"
)
shopt -s nullglob
seeds=()
for dir in "$RUN"/seed*/; do
  s=${dir%/}; s=${s##*/seed}
  [[ -f "$dir/oracle/it2/pairs.jsonl" && -d "$dir/models/psrlm-M1" ]] || continue
  if [[ ! -s "$dir/oracle/it2/pairs.jsonl" ]]; then
    echo "frontier_dpo_grid: seed $s skipped: its oracle search made no pairs ($dir/oracle/it2/pairs.jsonl is empty)" >&2
    continue
  fi
  seeds+=("$s")
done
if (( ${#seeds[@]} == 0 )); then
  echo "frontier_dpo_grid: no $RUN/seed<s>/ holds both a non-empty oracle/it2/pairs.jsonl and models/psrlm-M1;" \
       "run make frontier (or frontier-pilot) with the oracle arm first" >&2
  exit 2
fi
evaluate() {  # seed, model folder, result name
  local sets=(--set "iterate.seed=$1" --set "paths.run_dir=$RUN/seed$1" --set iterate.schedule=frontier "${@:4}")
  [[ -f "$RUN/seed$1/eval/$3/summary.json" ]] && return 0
  "$PSRLM" eval -c "$RECIPE" "${sets[@]}" --model "$2" --name "$3" --benchmarks arith_valid,arith_valid_hard --no-judge
}
for s in "${seeds[@]}"; do
  evaluate "$s" "$RUN/seed$s/models/psrlm-M1" dpo-grid-M1 "$@"
  for v in "${VARIANTS[@]}"; do
    name=${v%%:*}; read -r -a vset <<<"${v#*:}"
    out="$RUN/seed$s/dpo-grid/$name"
    if [[ ! -f "$out/psrlm_manifest.json" ]]; then
      "$PSRLM" train dpo -c "$RECIPE" --set "iterate.seed=$s" --set "paths.run_dir=$RUN/seed$s" "${vset[@]}" "$@" \
        --model "$RUN/seed$s/models/psrlm-M1" --pairs "$RUN/seed$s/oracle/it2/pairs.jsonl" --iteration 2 \
        --seed-offset "$s" --out "$out"
    fi
    evaluate "$s" "$out" "dpo-grid-$name" "$@"
  done
done
"$PY" - "$RUN" "${seeds[@]}" <<'PY'
import json, sys
from pathlib import Path
from psrlm.confidence import mean_ci

run, seeds = Path(sys.argv[1]), sys.argv[2:]
splits = ("arith_valid", "arith_valid_hard")
acc = lambda s, name, split: json.loads((run / f"seed{s}/eval/{name}/summary.json").read_text())[split]["accuracy"]  # noqa: E731
fmt = lambda xs: "{:.3f} ± {:.3f}".format(*mean_ci(xs))  # noqa: E731
signed = lambda xs: "{:+.3f} ± {:.3f}".format(*mean_ci(xs))  # noqa: E731
lines = [f"# Step-wise DPO on the oracle's first-iteration pairs, seeds {', '.join(seeds)} (validation splits only)", "",
         "| dpo setting | valid | valid (hard) | valid Δ from M1 | valid (hard) Δ from M1 |", "|---|---|---|---|---|"]
for name in ("M1", "recipe", "long", "long_nll"):
    res = f"dpo-grid-{name}"
    cells = [fmt([acc(s, res, sp) for s in seeds]) for sp in splits]
    if name == "M1":
        cells += ["-", "-"]
    else:
        cells += [signed([acc(s, res, sp) - acc(s, "dpo-grid-M1", sp) for s in seeds]) for sp in splits]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
text = "\n".join(lines) + "\n"
(run / "dpo-grid.md").write_text(text)
print(text)
PY
