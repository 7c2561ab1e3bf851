#!/usr/bin/env bash
# The job's final step: print what the run would have cost on Workers AI, stop the emulator, and fail
# when MAX_NEURONS is set and the day's neurons exceed it.
# PORT (default: WORKERS_AI_EMULATOR_PORT from the start step, else 8787), MAX_NEURONS (optional).
set -uo pipefail
port="${PORT:-${WORKERS_AI_EMULATOR_PORT:-8787}}"
budget=()
if [ -n "${MAX_NEURONS:-}" ]; then
    budget=(--max-neurons "$MAX_NEURONS")
fi
workers-ai-emulator usage --port "$port" "${budget[@]}"
status=$?
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    {
        echo '### Workers AI emulator: what this run would have cost'
        echo '```'
        workers-ai-emulator usage --port "$port"
        echo '```'
    } >> "$GITHUB_STEP_SUMMARY"
fi
workers-ai-emulator stop --port "$port" || true
exit "$status"
