# Generate DDIM and MinorityPrompt samples with shared seeds, two per prompt.
minorityprompt generate --model tiny-sd15 --compare --images-per-prompt 2 --lr 0.01 \
    --no-progress --out outputs/run "a red circle" "a blue square"

# Score the run: one table row per method.
minorityprompt evaluate outputs/run --clip tiny-clip --dino tiny-dino \
    --metrics clip_score,in_batch_similarity,likelihood \
    --likelihood-method rk4 --likelihood-steps 10 --no-progress
