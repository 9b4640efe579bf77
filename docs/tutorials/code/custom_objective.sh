minorityprompt generate --model tiny-sd15 --plugin novelty_objective.py \
    --objective novelty --set scale=0.5 --lr 0.01 --no-progress --out outputs/novelty \
    "a red circle"
minorityprompt generate --model tiny-sd15 --plugin novelty_objective.py \
    --objective "minority+0.1*novelty" --lr 0.01 --no-progress --out outputs/mixed \
    "a red circle"
grep -o '"objective": "[^"]*"' outputs/mixed/metadata.jsonl
