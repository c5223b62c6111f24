#!/usr/bin/env bash
# Checks every GitHub workflow offline: GitHub's workflow schema (check-jsonschema's vendored
# copy) and zizmor's audit, failing on any finding of medium or high severity that
# .github/zizmor.yml does not ignore with a reason. Both tools at pinned versions, in a venv
# under the target directory, made once and reused. .ci/run calls this.
# Usage: bash scripts/check-workflows.sh [WORKFLOW_DIR]   (default .github/workflows)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.github/workflows}"

zizmor_version=1.33.1
check_jsonschema_version=0.39.0
venv="${CARGO_TARGET_DIR:-target}/ci-tools"
stamp="$venv/.versions"
want="zizmor==$zizmor_version check-jsonschema==$check_jsonschema_version"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # two requirements
  "$venv/bin/pip" install --quiet --disable-pip-version-check $want
  echo "$want" > "$stamp"
fi

shopt -s nullglob
workflows=("$dir"/*.yml "$dir"/*.yaml)
[ "${#workflows[@]}" -gt 0 ] || { echo "check-workflows: no workflow in $dir" >&2; exit 1; }
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "${workflows[@]}"
"$venv/bin/zizmor" --offline --no-progress --min-severity medium --config .github/zizmor.yml \
  "${workflows[@]}"
