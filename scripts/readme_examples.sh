#!/usr/bin/env bash
# Run every stseval command of the README's bash blocks and its Python API example, as written, on the real
# data, each timed, in a fresh temporary folder (so every --out and runs/ path is new and results/ is never
# written), with an empty embedding cache ($STSEVAL_HOME in the folder too). Fails when one fails.
# The commands are read the way tests/test_readme_examples.py reads them (readme_commands), so the two agree.
#
#   bash scripts/readme_examples.sh             # every example
#   KEEP=1 bash scripts/readme_examples.sh      # keep the temporary folder and print where it is
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="$ROOT/.venv/bin/python"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/stseval-readme.XXXXXX")"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
export STSEVAL_HOME="$WORK/home"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's stseval, whatever .venv has installed
# the data where the README's quick start has it, seen from the repository (unless set already)
export STSEVAL_DATA_DIR="${STSEVAL_DATA_DIR:-$(cd "$ROOT" && for d in data/chinese-sts ../shared/data/chinese-sts; do [ -d "$d" ] && cd "$d" && pwd && break; done)}"
mkdir -p "$WORK/checkout"
cp -r "$ROOT/results" "$WORK/checkout/results"  # the report examples read the committed results (a copy: never written)
cd "$WORK/checkout"

"$PYTHON" - "$ROOT" > "$WORK/commands.txt" <<'PY'
import shlex, sys
from pathlib import Path

sys.path.insert(0, str(Path(sys.argv[1]) / "tests"))
from test_readme_examples import readme_commands  # noqa: E402

for args in readme_commands():
    print(shlex.join(args))
PY
# the Python API example: the one python block of the README's "Python API" section
"$PYTHON" - "$ROOT/README.md" > "$WORK/api_example.py" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
print(re.findall(r"```python\n(.*?)```", section, flags=re.S)[0])
PY
[ -s "$WORK/commands.txt" ] || { echo "readme_examples.sh: no stseval commands found in README.md" >&2; exit 1; }

failed=0
summary=()
while IFS= read -r line; do
    echo "== stseval $line" >&2
    start=$(date +%s)
    eval "set -- $line"
    "$PYTHON" -m stseval.cli "$@" < /dev/null
    status=$?
    seconds=$(( $(date +%s) - start ))
    summary+=("$(printf '%5ss  exit %s  stseval %s' "$seconds" "$status" "$line")")
    [ "$status" -eq 0 ] || failed=1
done < "$WORK/commands.txt"

echo "== python API example" >&2
start=$(date +%s)
"$PYTHON" "$WORK/api_example.py"
status=$?
summary+=("$(printf '%5ss  exit %s  python: the README'"'"'s Python API example' "$(( $(date +%s) - start ))" "$status")")
[ "$status" -eq 0 ] || failed=1

echo "readme_examples.sh: seconds, exit status, command (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%s\n' "${summary[@]}"
[ -z "${KEEP:-}" ] || echo "kept: $WORK"
exit "$failed"
