#!/bin/sh
# Local stand-ins for what CI cannot reach (GitHub, ModelScope), created on the
# target host: a CosyVoice-shaped git repo with a Matcha-TTS submodule, and a
# pre-staged model directory. The role installs from them through the same
# variables as the real path (cosyvoice_repo_url, cosyvoice_version,
# cosyvoice_model_source=local). Commits are deterministic (fixed author and
# dates), so scenarios can pin cosyvoice_version to a known SHA.
set -eu
root=/srv/fixtures
export GIT_AUTHOR_NAME=fixture GIT_AUTHOR_EMAIL=fixture@example.invalid GIT_AUTHOR_DATE="2026-01-01T00:00:00Z"
export GIT_COMMITTER_NAME=fixture GIT_COMMITTER_EMAIL=fixture@example.invalid GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
gitq() { git -c init.defaultBranch=main -c protocol.file.allow=always "$@" >/dev/null 2>&1; }

if [ ! -d "$root/Matcha-TTS/.git" ]; then
  mkdir -p "$root/Matcha-TTS/matcha"
  cd "$root/Matcha-TTS"
  echo '"""Matcha-TTS fixture."""' > matcha/__init__.py
  gitq init && gitq add -A && gitq commit -m "Matcha-TTS fixture"
fi

if [ ! -d "$root/CosyVoice/.git" ]; then
  mkdir -p "$root/CosyVoice/cosyvoice/cli"
  cd "$root/CosyVoice"
  cat > requirements.txt <<'REQ'
# CI fixture for FunAudioLLM/CosyVoice's requirements.txt: the real one needs
# CUDA wheels (torch, onnxruntime-gpu, tensorrt). One small real package keeps
# the install path real.
six==1.17.0
REQ
  echo '"""CosyVoice fixture (no model code)."""' > cosyvoice/__init__.py
  : > cosyvoice/cli/__init__.py
  gitq init && gitq add -A && gitq commit -m "CosyVoice fixture v1"
  gitq submodule add "file://$root/Matcha-TTS" third_party/Matcha-TTS
  gitq commit -m "Add Matcha-TTS submodule"
  # A second commit with changed requirements, to test that changing the pin
  # reinstalls the environment.
  printf 'six==1.17.0\nidna==3.10\n' > requirements.txt
  gitq commit -am "CosyVoice fixture v2: requirements changed"
  gitq checkout -q HEAD~1 2>/dev/null || git checkout -q HEAD~1
fi

model="$root/models/Fun-CosyVoice3-0.5B"
if [ ! -d "$model" ]; then
  mkdir -p "$model/CosyVoice-BlankEN"
  for f in cosyvoice3.yaml llm.pt flow.pt hift.pt campplus.onnx speech_tokenizer_v3.onnx \
           CosyVoice-BlankEN/config.json CosyVoice-BlankEN/model.safetensors CosyVoice-BlankEN/tokenizer_config.json \
           CosyVoice-BlankEN/vocab.json CosyVoice-BlankEN/merges.txt; do
    echo "fixture placeholder, not model weights" > "$model/$f"
  done
fi
cd "$root/CosyVoice" && git log --format='%H %s' --all
