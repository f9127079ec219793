#!/usr/bin/env bash
# Copies a finished training run into checkpoints/NAME: the exported model (safetensors + tokenizer), the training
# config, train log, monitor CSV and plot, and the command that reproduces it.
#   bash scripts/ship_checkpoint.sh configs/tiny-ttt.yaml runs/tiny-ttt checkpoints/tiny-ttt
set -euo pipefail
config=$1 run=$2 dest=$3
[ -f "$run/final/model.safetensors" ] || { echo "no finished run at $run (expected $run/final/model.safetensors)" >&2; exit 2; }
tmp=$(mktemp -d "$(dirname "$dest")/.ship.XXXXXX")
cp "$run"/final/* "$tmp"/
cp "$config" "$tmp/train_config.yaml"
cp "$run/train_log.csv" "$tmp"/
if [ -f "$run/monitor.csv" ]; then
  cp "$run/monitor.csv" "$tmp"/
  .venv/bin/ttt-omni monitor plot "$tmp/monitor.csv" >/dev/null
fi
cat > "$tmp/REPRODUCE.md" <<MD
Trained with this repository's trainer; shipped from commit $(git rev-parse --short HEAD) on $(date -u +%Y-%m-%d). Reproduce:

    .venv/bin/ttt-omni train $config
    bash scripts/ship_checkpoint.sh $config $run $dest

Final training loss: $(tail -1 "$run/train_log.csv" | cut -d, -f2) (step $(tail -1 "$run/train_log.csv" | cut -d, -f1)).
MD
rm -rf "$dest.old"; [ -e "$dest" ] && mv "$dest" "$dest.old"
mv "$tmp" "$dest"; rm -rf "$dest.old"
du -sh "$dest"
