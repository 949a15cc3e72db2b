#!/usr/bin/env bash
# `make core-smoke`: does a plain `pip install ganplug` (no extras) work?
#
# `make test` installs every extra, so it cannot notice a core command importing scipy, fastapi or
# imageio. This script keeps a second venv (.venv-core, no --system-site-packages) holding torch and
# ganplug's core dependencies only, installs ganplug into it (non-editable, from a clean copy of the
# tree), checks that the extras' packages are absent, and runs every core command at a tiny size on
# the bundled demo data: prep, train (dcgan with its default collapse watch, stylegan, pix2pix),
# generate, interpolate (.gif), rank, project, mix, translate, the shipped model and demo. Commands that need an extra
# (serve, .mp4, eval --report) must exit 2 naming it. Any failure stops the script with a message.
#
# The venv is rebuilt only when pyproject.toml, the torch pin or the Python changes (a stamp file);
# otherwise only ganplug itself is reinstalled (a few seconds). A rebuild hard-links the pinned torch from
# .venv when that has it (scripts/link_torch.py) instead of unpacking the same wheels again.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${CORE_VENV:-$ROOT/.venv-core}
SOURCE_VENV=${SOURCE_VENV:-$ROOT/.venv}  # `make test`'s venv, whose torch the core venv can link
PYTHON=${PYTHON:-python3}
TORCH=${CORE_TORCH:-torch==2.14.1}  # the Makefile's pin; torchvision is not a core dependency
STAMP=$VENV/.core-stamp
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export PIP_DISABLE_PIP_VERSION_CHECK=1

t0=$SECONDS
step() { printf '\n== core-smoke [%3ds] %s\n' $((SECONDS - t0)) "$*"; }
fail() { echo "core-smoke FAILED: $*" >&2; exit 1; }

want=$( { cat pyproject.toml; echo "$TORCH"; "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)

# A clean copy of the tree to build from: the repo's build/ and *.egg-info may hold stale files.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ganplug-core-smoke.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap 'rc=$?; cleanup; [ $rc -eq 0 ] || echo "core-smoke FAILED (exit $rc); see the output above" >&2' EXIT
mkdir "$WORK/src"
tar -C "$ROOT" --exclude=./.git --exclude='./.venv*' --exclude=./build --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=./runs --exclude=./.pytest_cache --exclude=./.ruff_cache -cf - . \
    | tar -C "$WORK/src" -xf -

# quiet CMD...: run CMD with its output in a log, shown only if it fails (pip is chatty).
quiet() { "$@" >"$WORK/log.txt" 2>&1 || { cat "$WORK/log.txt" >&2; fail "$*"; }; }

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  step "reusing $VENV; reinstalling ganplug only"
  quiet "$VENV/bin/python" -m pip install -q --no-deps --force-reinstall "$WORK/src"
else
  step "creating $VENV (core dependencies only)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"   # never --system-site-packages: nothing may leak in from outside
  # the pinned torch (and only what it requires) hard-linked from the test venv when that has it: the same
  # files in seconds, not minutes of unpacking; anything else pip installs below as for any user
  if [ -x "$SOURCE_VENV/bin/python" ] \
      && ! "$SOURCE_VENV/bin/python" "$ROOT/scripts/link_torch.py" "$VENV/bin/python" "$TORCH"; then
    echo "(pip installs torch instead)"
    rm -rf "$VENV" && "$PYTHON" -m venv "$VENV"  # nothing half-linked stays
  fi
  quiet "$VENV/bin/python" -m pip install -q "$TORCH" "$WORK/src"   # torch as the Makefile pins it; no extras
  echo "$want" > "$STAMP"
fi
PY=$VENV/bin/python
G=$VENV/bin/ganplug

cd "$WORK"  # not the repo: `python -` would import the source tree's ganplug
step "the extras' packages are absent"
"$PY" - <<'EOF'
import importlib.util, sys
present = [m for m in ("scipy", "fastapi", "uvicorn", "imageio", "imageio_ffmpeg", "matplotlib", "cleanfid",
                       "torchvision") if importlib.util.find_spec(m) is not None]
if present:
    sys.exit(f"core venv has packages of the extras installed: {', '.join(present)}")
import ganplug
if "site-packages" not in ganplug.__file__:
    sys.exit(f"ganplug is imported from {ganplug.__file__}, not from the installed package")
EOF

export GANPLUG_CACHE=$WORK/cache GANPLUG_WEIGHTS=$WORK/weights
DEMO=$("$PY" -c 'import ganplug, pathlib; print(pathlib.Path(ganplug.__file__).parent / "demo_data")')
[ -d "$DEMO" ] || fail "the installed package has no demo_data ($DEMO)"
PNGS=("$DEMO"/*.png)
IMG=${PNGS[0]}
TINY=(--size 32 --batch 8 --device cpu --precision fp32 --no-channels-last --sample-every 2 --ckpt-every 2)

# expect_extra EXTRA CMD...: CMD must exit 2 with one line naming `pip install 'ganplug[EXTRA]'`.
expect_extra() {
  local extra=$1 rc=0; shift
  "$@" >"$WORK/out.txt" 2>"$WORK/err.txt" || rc=$?
  [ "$rc" -eq 2 ] || { cat "$WORK/out.txt" "$WORK/err.txt" >&2; fail "'$*' exited $rc, not 2"; }
  grep -qF "pip install 'ganplug[$extra]'" "$WORK/err.txt" \
    || { cat "$WORK/err.txt" >&2; fail "'$*' does not name ganplug[$extra]"; }
  ! grep -q Traceback "$WORK/err.txt" || { cat "$WORK/err.txt" >&2; fail "'$*' printed a traceback"; }
  echo "ok: $(cat "$WORK/err.txt")"
}

step "prep"
"$G" prep "$DEMO" data --size 32
step "train dcgan, default watch on"
"$G" train data --out dc --arch dcgan --steps 4 --watch-every 2 "${TINY[@]}" --base-channels 8
grep -q '"watch/ndb_over_k"' dc/metrics.jsonl || fail "the collapse watch did not run (no watch/ in metrics.jsonl)"
step "generate, interpolate (.gif), rank, project"
"$G" generate dc --n 4 --out grid.png --device cpu
"$G" interpolate dc --seeds 1,2 --frames 4 --out morph.gif --device cpu
"$G" rank dc --n 8 --best 2 --worst 2 --out ranked.png --device cpu
"$G" project dc "$IMG" --steps 3 --out proj --device cpu
"$G" generate dc --latent proj/latent.npy --out again.png --device cpu
step "train stylegan, mix"
"$G" train data --out sg --arch stylegan --steps 4 --watch-every 2 "${TINY[@]}" --capacity 0.0625 --mapping-layers 2
"$G" mix sg --rows 1,2 --cols 3,4 --styles 0-3 --out mix.png --device cpu
step "prep --pairs edges, train pix2pix, translate"
"$G" prep "$DEMO" pairs --size 32 --pairs edges
"$G" train pairs --out p2p --arch pix2pix --steps 2 --batch 2 --base-channels 8 --device cpu --precision fp32 \
    --no-channels-last
"$G" translate p2p "$IMG" --out render.png --device cpu
step "the shipped model generates; demo (its grid, then a few seconds of fine-tuning)"
SHIPPED=$("$PY" -c 'from ganplug.cli.demo_cmd import shipped_model; print(shipped_model())')
"$G" generate "$SHIPPED" --n 4 --out shipped.png --device cpu
"$G" demo --minutes 0.05 --device cpu --precision fp32 --out demo-run
for f in grid.png morph.gif ranked.png proj/latent.npy again.png mix.png render.png shipped.png \
    demo-run/shipped-samples.png demo-run/fine-tuned-samples.png; do
  [ -s "$f" ] || fail "$f was not written"
done
step "commands needing an extra say which"
expect_extra serve "$G" serve --models dc --port 1
expect_extra media "$G" interpolate dc --seeds 1,2 --frames 2 --out morph.mp4 --device cpu
expect_extra eval "$G" eval dc --real data --metrics swd --report report.html --device cpu

step "core-smoke passed in $((SECONDS - t0)) s"
