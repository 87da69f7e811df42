#!/usr/bin/env bash
# Trains the forecaster and exports models/shadownet-lstm.onnx with its contract, test vector and
# held-out evaluation. Uses Debian's python3-torch and python3-onnx (installed here when missing);
# CPU only, ten minutes by default. Arguments go to train.py (--seconds N, --out FILE, --seed N, --window STEPS, --hidden UNITS, --horizon STEPS, --quantiles Q1,Q2,..., --steps-per-cell K).
set -euo pipefail
cd "$(dirname "$0")"
if ! /usr/bin/python3 -c "import torch, onnx" 2>/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq python3-torch python3-onnx
fi
exec /usr/bin/python3 train.py "$@"
