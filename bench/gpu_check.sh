#!/usr/bin/env bash
# The one script that runs on a lent GPU machine (and in its rehearsal, `make gpu-rehearsal`), from any folder:
#   bash bench/gpu_check.sh [ARGS for bench/gpu_check.py]
# 1. installs the wheel kit that `make gpu-kit` built (.whl/: the wheels, or kit.tar.xz, unpacked first with Python)
#    into $SITE with the machine's own Python (--no-deps --no-index: the machine has no network; exit 3 if that fails);
# 2. puts $SITE and the tree's root (covseg travels as source, not as a wheel) on PYTHONPATH and $SITE/bin on PATH;
# 3. prints the card (nvidia-smi -L, torch's view);
# 4. copies BENCHMARKS.md to $OUT/BENCHMARKS.md and runs bench/gpu_check.py --out $OUT/BENCHMARKS.md ARGS, its output
#    also in $OUT/gpu_check.log (gpu_check.py writes gpu_check.json beside --out); exits with gpu_check.py's status.
# Environment: COVSEG_PY (python3), COVSEG_KIT (.whl), COVSEG_SITE (/tmp/covseg-site), OUT (bench/out/gpu; the device
# sets OUT to the folder it returns). A PYTHONPATH already set stays, after the kit and the tree (the rehearsal's image).
# On the device (the tool's run, `.whl` carried): bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${COVSEG_PY:-python3}
KIT=${COVSEG_KIT:-.whl}
SITE=${COVSEG_SITE:-/tmp/covseg-site}
OUT=${OUT:-bench/out/gpu}
say() { echo "[gpu_check.sh] $*"; }
t0=$SECONDS

# 1. the kit
[ -d "$KIT" ] || { say "no kit at $KIT: build it with 'make gpu-kit' and carry it (.whl)" >&2; exit 3; }
WHEELS=$KIT UNPACKED=
if [ -f "$KIT/kit.tar.xz" ]; then
  UNPACKED=$(mktemp -d "${TMPDIR:-/tmp}/covseg-kit.XXXXXX")
  "$PY" - "$KIT/kit.tar.xz" "$UNPACKED" <<'EOF' || { say "unpacking $KIT/kit.tar.xz failed" >&2; exit 3; }
import sys, tarfile
with tarfile.open(sys.argv[1], 'r:xz') as t:
    try: t.extractall(sys.argv[2], filter='data')
    except TypeError: t.extractall(sys.argv[2])          # a Python without extraction filters
EOF
  WHEELS=$UNPACKED
fi
shopt -s nullglob
whl=("$WHEELS"/*.whl)
[ ${#whl[@]} -gt 0 ] || { say "no wheels in $KIT" >&2; exit 3; }
if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${whl[@]}"; then
  say "installing the kit ($KIT, ${#whl[@]} wheels) into $SITE with $PY failed: is it the kit for this Python? ('make gpu-kit' builds it for CPython 3.12)" >&2
  exit 3
fi
[ -z "$UNPACKED" ] || rm -rf "$UNPACKED"
say "kit installed: ${#whl[@]} wheels from $KIT into $SITE in $((SECONDS - t0)) s"

# 2. the environment
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"
export PYTHONUNBUFFERED=1
"$PY" bench/gpu_kit.py check-site "$SITE" || true            # the kit's requirements against what this machine has

# 3. the card
if command -v nvidia-smi >/dev/null; then nvidia-smi -L || true; else say "no nvidia-smi here"; fi
"$PY" -c 'import sys, torch; c = torch.cuda.is_available()
print(f"[gpu_check.sh] Python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), cuda available: {c}, device: {torch.cuda.get_device_name(0) if c else None}")'

# 4. the check
mkdir -p "$OUT"
cp BENCHMARKS.md "$OUT/BENCHMARKS.md"
say "$PY bench/gpu_check.py --out $OUT/BENCHMARKS.md $*"
set +e
# tee -i: an interrupt stops gpu_check.py (which then writes what it has), not the log of it
"$PY" bench/gpu_check.py --out "$OUT/BENCHMARKS.md" "$@" 2>&1 | tee -i -a "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}
set -e
say "bench/gpu_check.py exited $rc after $((SECONDS - t0)) s in all" | tee -a "$OUT/gpu_check.log"
exit "$rc"
