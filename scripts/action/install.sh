#!/usr/bin/env bash
# Install the emulator into the job's Python (the one actions/setup-python put on PATH).
# SOURCE: what pip installs (default: the action's own checkout, so the version matches the action's ref).
set -euo pipefail
source_spec="${SOURCE:-$(cd "$(dirname "$0")/../.." && pwd)}"
python3 -m pip install --disable-pip-version-check -q "$source_spec"
workers-ai-emulator --version
