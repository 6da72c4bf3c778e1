#!/usr/bin/env bash
# tests/install_test.sh BUILD_DIR SOURCE_DIR — qnn as an installed library,
# end to end (run by build/tests/test_install; takes a few seconds):
#   1. `meson install --destdir` of the build into a temporary directory;
#   2. the layout: libqnn, qnn.pc, the apps, every public header under
#      include/qnn/<folder>/ and nothing an installed header includes missing;
#   3. <qnn/qnn.h> preprocesses with nothing but `pkg-config --cflags qnn` and
#      reaches every installed core/, layers/, optim/ and data/ header;
#   4. docs/examples/custom_layer, copied out of the tree, builds with its
#      Makefile (its meson.build when make is absent) against the staged
#      install, runs, passes its gradient check and trains (loss goes down).
# Prints "install test: ok" last on success; otherwise "install: <problem>"
# and exits 1.
set -uo pipefail
BUILD=${1:?usage: install_test.sh BUILD_DIR SOURCE_DIR}
SRC=${2:?usage: install_test.sh BUILD_DIR SOURCE_DIR}
fail() { echo "install: $*"; exit 1; }

# Headers that are implementation details of .cpp files: not installed.
INTERNAL="kernels/xnor_internal.h kernels/packed_model_internal.h kernels/simd_target.h layers/quant/vec_math.h optim/update_loop.h"
FOLDERS="kernels core layers layers/quant optim data"

work=$(mktemp -d "${TMPDIR:-/tmp}/qnn-install.XXXXXX") || fail "mktemp failed"
trap 'rm -rf "$work"' EXIT

# ---- 1. install -------------------------------------------------------------
# --no-rebuild: installs what is built (scripts/test.sh and `meson test` build
# everything first); a test never recompiles the project behind your back.
meson install -C "$BUILD" --no-rebuild --destdir "$work/stage" >"$work/install.log" 2>&1 ||
  { tail -n 20 "$work/install.log"
    fail "meson install -C $BUILD --no-rebuild --destdir failed (log above; a target not built yet? run ninja -C $BUILD first)"; }
pc=$(find "$work/stage" -path '*/pkgconfig/qnn.pc' | head -n 1)
[ -n "$pc" ] || fail "no pkgconfig/qnn.pc was installed"
prefix=$(sed -n 's/^prefix=//p' "$pc")
root="$work/stage$prefix"
# The staged tree is what `meson setup --prefix $root` would have installed:
# the same qnn.pc with that prefix (every other path in it is ${prefix}-relative).
mkdir -p "$work/pkgconfig"
sed "s|^prefix=.*|prefix=$root|" "$pc" >"$work/pkgconfig/qnn.pc"
export PKG_CONFIG_PATH="$work/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
cflags=$(pkg-config --cflags qnn) || fail "pkg-config --cflags qnn failed (a Requires package missing?)"
libdir=$(pkg-config --variable=libdir qnn)
inc="$root/include/qnn"

# ---- 2. layout --------------------------------------------------------------
[ -e "$libdir/libqnn.so" ] || [ -e "$libdir/libqnn.a" ] || fail "neither libqnn.so nor libqnn.a in $libdir"
for app in mnist_mlp qnn_infer sweep walkthrough; do
  [ -x "$root/bin/$app" ] || fail "app $app not installed in bin/"
done
[ -f "$inc/qnn.h" ] || fail "the umbrella header include/qnn/qnn.h is not installed"
for d in $FOLDERS; do
  for h in "$SRC/$d"/*.h; do
    rel="$d/$(basename "$h")"
    case " $INTERNAL " in *" $rel "*) continue ;; esac
    [ -f "$inc/$rel" ] || fail "$rel is not installed: add it to ${d//\//_}_headers in $d/meson.build (or, if no installed header includes it, to INTERNAL in tests/install_test.sh)"
  done
done
while IFS= read -r h; do
  rel=${h#"$inc/"}
  for dep in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$h"); do
    [ -f "$inc/$dep" ] || fail "installed $rel includes \"$dep\", which is not installed"
  done
done < <(find "$inc" -name '*.h')

# ---- 3. the umbrella header ---------------------------------------------------
# -MM lists the non-system headers it reads: all must come from the staged
# tree, and every installed core/layers/optim/data header must be among them.
echo '#include <qnn/qnn.h>' >"$work/umbrella.cpp"
# shellcheck disable=SC2086
g++ -std=c++20 $cflags -MM "$work/umbrella.cpp" >"$work/umbrella.d" 2>"$work/umbrella.err" ||
  { head -n 20 "$work/umbrella.err"; fail "#include <qnn/qnn.h> does not preprocess with pkg-config --cflags qnn"; }
deps=$(tr ' \\' '\n\n' <"$work/umbrella.d" | grep '\.h$')
leaks=$(echo "$deps" | grep -v "^$work/" | grep "^$SRC/" || true)
[ -z "$leaks" ] || fail "the installed headers read files of the source tree: $leaks"
for f in $(cd "$inc" && find core layers optim data -name '*.h'); do
  echo "$deps" | grep -qx "$inc/$f" || fail "<qnn/qnn.h> does not include $f (add it to qnn.h or its folder's umbrella)"
done

# ---- 4. the out-of-tree example ------------------------------------------------
ex="$work/custom_layer"
mkdir -p "$ex"
cp "$SRC/docs/examples/custom_layer/main.cpp" "$SRC/docs/examples/custom_layer/Makefile" \
   "$SRC/docs/examples/custom_layer/meson.build" "$ex/" || fail "docs/examples/custom_layer is incomplete"
# A sanitized build (scripts/sanitize.sh) installs a sanitized libqnn.so: the
# example must then be built with the same -fsanitize (its runtime first).
san=$(meson introspect "$BUILD" --buildoptions 2>/dev/null |
      python3 -c "import json, sys; print(next((o['value'] for o in json.load(sys.stdin) if o['name'] == 'b_sanitize'), 'none'))" 2>/dev/null)
flags="-O1"
[ -z "$san" ] || [ "$san" = "none" ] || flags="-O1 -fsanitize=$san"
if command -v make >/dev/null 2>&1; then
  how="make"
  make -C "$ex" CXXFLAGS="$flags" >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log"; fail "the example does not build with its Makefile"; }
  bin="$ex/custom_layer"
else
  how="meson (make is not installed)"
  { meson setup "$ex/build" "$ex" --buildtype=debugoptimized -Db_sanitize="${san:-none}" && ninja -C "$ex/build"; } >"$work/build.log" 2>&1 ||
    { tail -n 30 "$work/build.log"; fail "the example does not build with its meson.build"; }
  bin="$ex/build/custom_layer"
fi
if [ -e "$libdir/libqnn.so" ] && command -v ldd >/dev/null 2>&1; then
  loaded=$(ldd "$bin" | sed -n 's/^[[:space:]]*libqnn\.so[^ ]* => \([^ ]*\) .*/\1/p')
  [ -n "$loaded" ] && [ "$(realpath "$(dirname "$loaded")")" = "$(realpath "$libdir")" ] ||
    fail "the example does not load libqnn.so from the install: $(ldd "$bin" | grep libqnn)"
fi
# One thread: the machine may be busy, and the model is tiny.
out=$(OMP_NUM_THREADS=1 "$bin" 2>&1); rc=$?
echo "$out" | grep -E '^(grad check|step|loss)'
[ "$rc" -eq 0 ] || fail "the example exited with $rc"
echo "$out" | grep -q '^grad check channel_scale: .* -> ok$' || fail "the example's gradient check line is missing"
echo "$out" | grep -q 'went down$' || fail "the example's loss did not go down"
echo "install test: ok (prefix $prefix staged, example built with $how)"
