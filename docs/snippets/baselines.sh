minorityprompt generate --model tiny-sd15 --method cads --set tau1=0.5 --no-progress \
    --out outputs/cads "a red circle"
minorityprompt generate --model tiny-sd15 --method sgms --set lr=0.005 --compare \
    --no-progress --out outputs/sgms "a red circle"
ls outputs/sgms
