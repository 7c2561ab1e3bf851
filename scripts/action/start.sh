#!/usr/bin/env bash
# Start the emulator detached, wait until it answers, and publish its URLs as step outputs.
# PORT, DATA_DIR: where it listens and keeps its ledger; SERVE_ARGS: more `serve` options (word-split).
# GITHUB_OUTPUT / GITHUB_ENV: the files GitHub Actions reads outputs and job variables from.
set -euo pipefail
port="${PORT:-8787}"
data_dir="${DATA_DIR:-.workers-ai-emulator}"
account="0123456789abcdef0123456789abcdef"
# shellcheck disable=SC2086  # SERVE_ARGS is a list of options
workers-ai-emulator serve --background --port "$port" --data-dir "$data_dir" ${SERVE_ARGS:-}
base="http://127.0.0.1:${port}"
{
    echo "base-url=${base}"
    echo "openai-base-url=${base}/client/v4/accounts/${account}/ai/v1"
    # The env.AI binding connection string for a local Worker (wrangler/miniflare): the emulator's root.
    echo "binding-url=${base}/"
    echo "account-id=${account}"
    echo "data-dir=${data_dir}"
} >> "${GITHUB_OUTPUT:-/dev/stdout}"
if [ -n "${GITHUB_ENV:-}" ]; then
    # Later steps (the report step too) find the server without repeating the inputs.
    {
        echo "WORKERS_AI_EMULATOR_PORT=${port}"
        echo "WORKERS_AI_EMULATOR_DATA_DIR=${data_dir}"
    } >> "$GITHUB_ENV"
fi
echo "Workers AI emulator listening on ${base} (data directory ${data_dir})"
