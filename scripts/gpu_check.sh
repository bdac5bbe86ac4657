#!/usr/bin/env bash
# The GPU check: tests/test_gpu.py on a CUDA machine (`make gpu_check` here, or on a lent machine:
# `bash scripts/gpu_check.sh`). The lent machines have torch, transformers, accelerate and peft but no TRL, datasets,
# math-verify or network; wheels for them can travel in .gpu-wheels/ (git-ignored: `make gpu_wheels` fills it),
# but pyarrow alone is 52 MiB of the 64 MiB a run may carry, so the TRL checks (DPO on the GPU, `accelerate launch`
# of `psrlm train`) skip unless TRL is importable, and the ZeRO-3 job check also unless DeepSpeed is
# (DS_BUILD_OPS=0 pip install deepspeed); the precision and engine checks run everywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if compgen -G ".gpu-wheels/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps .gpu-wheels/*.whl
fi
"$PY" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
"$PY" - <<'PY'
import torch, transformers
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}, "
      f"GPU {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
PY
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py -rs "$@"
