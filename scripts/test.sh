#!/usr/bin/env bash
# The test command: set up (idempotent), then run every suite. The integration
# suites bring the real stack up themselves (tests/conftest.py) and reuse it.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  # pytest's "no tests collected": a test run that tested nothing is a failure here.
  echo "test.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
