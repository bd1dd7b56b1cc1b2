#!/usr/bin/env bash
# Build (or reuse) .upstreams/: a Python 3.11 venv holding the REAL upstream MCP servers
# (gti-mcp, google-secops-mcp, secops-soar-mcp) at pinned versions, for the real-upstream tests.
#
# They need mcp<2 while the project needs mcp 2.x, so they live in their own venv.
# Idempotent: a stamp inside the venv records a hash of the requirement and constraint files and of
# the interpreter version; when it matches and the installed set still equals the constraints, the
# venv is reused (well under a second). Otherwise it is rebuilt from scratch.
#
# Usage: scripts/setup-upstreams.sh [--force] [--check]
#   --force  rebuild even if the venv looks current
#   --check  exit 0 if the venv is current, 1 otherwise; change nothing
# Env:     IOC_UPSTREAMS_VENV (default <repo>/.upstreams), PYTHON (default python3.11, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${IOC_UPSTREAMS_VENV:-$ROOT/.upstreams}"
REQ="$ROOT/constraints/upstreams-requirements.txt"
CON="$ROOT/constraints/upstreams.txt"
STAMP="$VENV/.ioc-upstreams-stamp"
LOG="$VENV/install.log"

force=0 check=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --check) check=1 ;;
        -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup-upstreams: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

say() { echo "setup-upstreams: $*" >&2; }

if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
elif command -v python3.11 >/dev/null 2>&1; then
    PY=python3.11
else
    PY=python3
fi
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
    say "need Python 3.11 for the upstream venv (the constraints were resolved on 3.11); '$PY' is $("$PY" -V 2>&1 || echo missing)"
    exit 1
fi

# secops-soar-mcp calls dotenv.load_dotenv(), which walks up from its site-packages: a .env in any
# parent directory of the venv would leak into the SOAR server's environment.
dir="$(dirname "$VENV")"
while :; do
    if [[ -f "$dir/.env" ]]; then
        say "WARNING: $dir/.env exists above $VENV; secops-soar-mcp would load it (python-dotenv)."
        say "         move it away or set IOC_UPSTREAMS_VENV to a directory with no .env above it."
    fi
    [[ "$dir" == / ]] && break
    dir="$(dirname "$dir")"
done

want_stamp="$(cat "$REQ" "$CON" | sha256sum | cut -d' ' -f1) $("$PY" -c 'import sys; print(sys.version.split()[0])')"

# Does every package in the constraints file sit in the venv at exactly that version (and nothing else)?
# -I: isolated mode, so the current directory (say, a repo with an .egg-info) is not on sys.path.
installed_matches() {
    "$VENV/bin/python" -I - "$CON" <<'PY'
import re, sys
from importlib.metadata import distributions
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
want = {}
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if line:
        name, _, ver = line.partition("==")
        want[norm(name)] = ver.strip()
have = {norm(d.metadata["Name"]): d.version for d in distributions()}
for tool in ("pip", "setuptools", "wheel"):
    have.pop(tool, None)
diff = sorted(f"{n}: installed {have.get(n)}, wanted {want.get(n)}" for n in have.keys() | want.keys()
              if have.get(n) != want.get(n))
for line in diff:
    print(f"setup-upstreams:   {line}", file=sys.stderr)
sys.exit(1 if diff else 0)
PY
}

is_current() {
    [[ -x "$VENV/bin/python" && -f "$STAMP" ]] || return 1
    [[ "$(cat "$STAMP")" == "$want_stamp" ]] || return 1
    for exe in secops_soar_mcp gti_mcp secops_mcp; do [[ -x "$VENV/bin/$exe" ]] || return 1; done
    installed_matches 2>/dev/null
}

lock_and_run() {
    # Serialise concurrent setups (parallel test runs, two shells) on one venv.
    if command -v flock >/dev/null 2>&1; then
        # Lock the (read-only) constraints file itself, so no lock file is left in the tree.
        exec 9<"$CON"
        flock 9
    fi
    "$@"
}

build() {
    if [[ $force -eq 0 ]] && is_current; then
        say "reusing $VENV (up to date)"
        return 0
    fi
    local t0=$SECONDS
    say "building $VENV with $("$PY" -V 2>&1) (log: $LOG)"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q --no-input \
            -r "$REQ" -c "$CON" >"$LOG" 2>&1; then
        tail -n 30 "$LOG" >&2
        say "pip install failed; the venv is left incomplete (no stamp), the next run rebuilds it"
        exit 1
    fi
    if ! installed_matches; then
        say "the installed set differs from $CON (see above); the venv is left without a stamp"
        exit 1
    fi
    echo "$want_stamp" >"$STAMP"
    say "done in $((SECONDS - t0)) s"
}

if [[ $check -eq 1 ]]; then
    if is_current; then say "$VENV is current"; exit 0; fi
    say "$VENV is missing or stale"; exit 1
fi

mkdir -p "$(dirname "$VENV")"
lock_and_run build
