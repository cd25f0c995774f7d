#!/usr/bin/env bash
# Deployed-precision table (ACC / ASR at fp32, int8, int4-sim in ONNX Runtime; Neural Cleanse per artefact) for
# an EXISTING bench folder, reusing its models: cells with a saved final-*.safetensors are deployed directly,
# older cells are re-run from their stage checkpoints (standard model, AdvrBD stages, fit checkpoints), which
# loads rather than trains; Neural Cleanse re-runs its optimisation on each artefact (minutes per cell).
# Cells the folder does not hold yet are trained as usual, so list only the attacks/defenses it has.
# usage: scripts/deployed_table.sh BENCH_DIR DATA_SPEC [PROFILE] [ATTACKS] [DEFENSES] [extra bench flags...]
#   e.g. scripts/deployed_table.sh bench/quick imagefolder:/tmp/data/cifar10 quick badnet,blend,wanet \
#          none,advrbd,finetuning,fineprune,neural_cleanse
# Pass the same --set / --triggers / --rate / --seeds flags the folder was made with (extra flags), or the
# re-run cells will not match their checkpoints. Writes BENCH_DIR/deployed.md (and the precisions into
# results.json).
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n 2,12p "$0" >&2
  exit 2
fi
dir=$1; data=$2; profile=${3:-quick}
attacks=${4:-badnet,blend,wanet}; defenses=${5:-none,advrbd,finetuning,fineprune,neural_cleanse}
shift $(( $# < 5 ? $# : 5 ))
[ -f "$dir/results.json" ] || { echo "$0: $dir/results.json not found: not a bench folder" >&2; exit 2; }
advrbd bench --profile "$profile" --data "$data" --attacks "$attacks" --defenses "$defenses" \
  --precisions fp32,int8,int4 --out "$dir" "$@"
echo "table: $dir/deployed.md"
