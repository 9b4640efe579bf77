# One curve per method: MinorityPrompt over its learning rate, DDIM over its guidance.
minorityprompt sweep --model tiny-sd15 --images-per-prompt 2 "a red circle" \
    --grid minority:lr=0.01,0.1 --grid ddim:guidance=3,7.5 \
    --clip tiny-clip --dino tiny-dino --metrics clip_score,likelihood \
    --likelihood-method rk4 --likelihood-steps 10 \
    --plot clip_score,likelihood --no-progress --out outputs/sweep
ls outputs/sweep
