minorityprompt generate --model tiny-sd15 "a red circle" "a blue square" \
    --compare --lr 0.01 --no-progress --out outputs/first
ls outputs/first
