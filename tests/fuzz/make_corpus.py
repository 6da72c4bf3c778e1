#!/usr/bin/env python3
"""tests/fuzz/make_corpus.py — writes the seed corpora of the fuzz harnesses,
tests/fuzz/corpus/<target>/, from the file formats as the readers' headers
describe them (python3 standard library only; the output is deterministic).

Each corpus holds a few small VALID files (so the fuzzer starts behind the
magic numbers, CRCs and length fields) and a few broken ones (truncated,
trailing bytes, a lying header). Run it again after a format change:

    python3 tests/fuzz/make_corpus.py        # rewrites tests/fuzz/corpus/

Check that the valid seeds are accepted with QNN_FUZZ_VERBOSE=1:
    QNN_FUZZ_VERBOSE=1 build-fuzz/tests/fuzz/fuzz_qnnx tests/fuzz/corpus/fuzz_qnnx/*
"""
import gzip
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gz(data):
    return gzip.compress(data, mtime=0)


# ---- IDX (data/idx.h) ------------------------------------------------------------------
def idx(dims, data):
    return struct.pack(">BBBB", 0, 0, 8, len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def make_idx():
    t = "fuzz_idx"
    images = idx([2, 3, 4], range(24))
    labels = idx([5], [0, 1, 9, 3, 7])
    put(t, "images.idx", images)
    put(t, "labels.idx", labels)
    put(t, "scalar.idx", idx([], [42]))
    put(t, "empty.idx", idx([0, 28, 28], []))
    put(t, "images.idx.gz", gz(images))
    put(t, "labels.idx.gz", gz(labels))
    put(t, "bad_label.idx", idx([3], [1, 10, 255]))
    put(t, "truncated.idx", images[:-5])
    put(t, "trailing.idx", images + b"\x00\x01")
    put(t, "cut.idx.gz", gz(images)[:-9])
    put(t, "lying_header.idx", idx([0xFFFFFFFF, 0xFFFFFFFF], [1, 2, 3]))


# ---- checkpoints (core/serialize.h) -----------------------------------------------------
def checkpoint(tensors, meta=b""):
    s = b"QNNCKPT\x00" + struct.pack("<I", 2 if meta else 1)
    if meta:
        s += struct.pack("<I", len(meta)) + meta
    s += struct.pack("<I", len(tensors))
    for name, dims, values in tensors:
        s += struct.pack("<I", len(name)) + name + struct.pack("<I", len(dims))
        s += b"".join(struct.pack("<q", d) for d in dims)
        s += b"".join(struct.pack("<f", v) for v in values)
    return s + struct.pack("<I", zlib.crc32(s) & 0xFFFFFFFF)


def make_checkpoint():
    t = "fuzz_checkpoint"
    ts = [(b"fc1.weight", [3, 2], [0.5, -1.0, 2.0, 0.0, 1e-3, -7.5]),
          (b"fc1.bias", [3], [0.0, 1.0, -1.0]),
          (b"bn.running_mean", [], [3.25]),
          (b"empty", [0, 4], [])]
    v1 = checkpoint(ts)
    v2 = checkpoint(ts, b'{"model":"bnn","hidden":[3]}')
    put(t, "v1.qnn", v1)
    put(t, "v2_meta.qnn", v2)
    put(t, "no_tensors.qnn", checkpoint([]))
    put(t, "truncated.qnn", v1[:-10])
    # dims whose product overflows int64 (core/serialize.cpp once multiplied them unchecked)
    put(t, "overflow_dims.qnn", checkpoint([(b"a", [1 << 34, 1 << 34], [])]))
    bad_crc = bytearray(v1)
    bad_crc[20] ^= 1
    put(t, "bad_crc.qnn", bytes(bad_crc))


# ---- .qnnx exported models (kernels/packed_model.h) ----------------------------------------
SIGN_OUT, BIAS, AFFINE, RELU = 1, 2, 4, 8
F32, BINARY, LEVELS, CONV_F32, CONV_BINARY, MAX_POOL, CONV_LEVELS = 1, 2, 3, 4, 5, 6, 7
REAL, PACKED, PIXELS8, SIGN, LVL, LVL_F32 = 0, 1, 2, 3, 4, 5


def words64(n):
    return (n + 63) // 64


def packed_rows(rows, n, seed):
    """rows packed rows of n bits, padding bits 0."""
    out = b""
    x = seed
    for _ in range(rows):
        for w in range(words64(n)):
            x = (x * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
            bits = 64 if (w + 1) * 64 <= n else n - w * 64
            out += struct.pack("<Q", x & ((1 << bits) - 1) if bits < 64 else x)
    return out


def f32s(vals):
    return b"".join(struct.pack("<f", v) for v in vals)


def layer(ltype, inp, wbits, flags, n_in, n_out, payload):
    return struct.pack("<IIIIQQQ", ltype, inp, wbits, flags, n_in, n_out, len(payload)) + payload


def epilogue(flags, n_out, n_in_vmax):
    p = b""
    if flags & BIAS:
        p += f32s([0.25 * j for j in range(n_out)])
    if flags & AFFINE:
        p += f32s([0.5] * n_out) + f32s([1.5] * n_out) + f32s([-0.25] * n_out)
    if flags & SIGN_OUT:
        p += b"".join(struct.pack("<i", (j % 5) - 2) for j in range(n_out)) + bytes(j % 2 for j in range(n_out))
    return p


def geom(C, H, W, O, K, stride, pad, pad_one, pool_k, pool_s):
    return struct.pack("<10I", C, H, W, O, K, stride, pad, pad_one, pool_k, pool_s)


def qnnx(version, kind, scale, dims, layers, meta=b""):
    head = struct.pack("<III", kind, len(layers), scale) + struct.pack("<I", len(dims))
    head += b"".join(struct.pack("<Q", d) for d in dims)
    if meta or version >= 4:  # versions 4 and 5 always have the block
        head += struct.pack("<I", len(meta)) + meta
    body = head + b"".join(layers)
    total = 4 + 4 + 8 + len(body) + 4
    s = b"QNNX" + struct.pack("<IQ", version, total) + body
    return s + struct.pack("<I", zlib.crc32(s) & 0xFFFFFFFF)


def make_qnnx():
    t = "fuzz_qnnx"
    # fp: 6 -> 3 (bias, relu) -> 2 (affine)
    fp = qnnx(1, 0, 3, [2, 3], [
        layer(F32, REAL, 32, BIAS | RELU, 6, 3, f32s([0.1 * i - 0.5 for i in range(18)]) + epilogue(BIAS, 3, 6)),
        layer(F32, REAL, 32, AFFINE, 3, 2, f32s([1, -1, 0.5, 2, 0, -3]) + epilogue(AFFINE, 2, 3)),
    ])
    # bnn: pixels8 6 -> 70 signs -> packed 70 -> 4 (bias, affine)
    bnn = qnnx(1, 1, 1, [6], [
        layer(BINARY, PIXELS8, 1, SIGN_OUT, 6, 70, packed_rows(70, 6, 1) + epilogue(SIGN_OUT, 70, 6)),
        layer(BINARY, PACKED, 1, BIAS | AFFINE, 70, 4, packed_rows(4, 70, 2) + epilogue(BIAS | AFFINE, 4, 70)),
    ])
    # qnn (version 2): real 6 -> 5 (2-bit weights, bias) -> levels 2-bit 5 -> 3 (affine)
    lv1 = struct.pack("<fIf", 1.0, 32, 0.0) + packed_rows(5 * 2, 6, 3) + epilogue(BIAS, 5, 6)
    lv2 = struct.pack("<fIf", 0.75, 2, 1.0) + packed_rows(3 * 2, 5, 4) + epilogue(AFFINE, 3, 5)
    qnn = qnnx(2, 2, 2, [6], [layer(LEVELS, REAL, 2, BIAS, 6, 5, lv1), layer(LEVELS, LVL, 2, AFFINE, 5, 3, lv2)])
    # version 3: the fp model with metadata
    meta = qnnx(3, 0, 3, [2, 3], [
        layer(F32, REAL, 32, BIAS, 6, 2, f32s([0.25] * 12) + epilogue(BIAS, 2, 6)),
    ], b'{"dataset":"mnist","classes":2}')
    # version 4: conv_f32 1x4x4 -> 2 maps (pad 1, 2x2 max-pool, bias, relu) -> dense 8 -> 3
    cnn = qnnx(4, 0, 3, [1, 4, 4], [
        layer(CONV_F32, REAL, 32, BIAS | RELU, 16, 8,
              geom(1, 4, 4, 2, 3, 1, 1, 0, 2, 2) + f32s([0.1 * i - 0.9 for i in range(18)]) + epilogue(BIAS, 2, 9)),
        layer(F32, REAL, 32, AFFINE, 8, 3, f32s([0.05 * i for i in range(24)]) + epilogue(AFFINE, 3, 8)),
    ])
    # version 5: conv_levels on the image (2-bit weights, 2x2 pool) -> conv_levels, 2-bit levels input,
    # one-padding -> dense_levels 8 -> 3
    kc1 = geom(2, 4, 4, 3, 3, 1, 1, 0, 2, 2) + struct.pack("<fIf", 1.0, 32, 0.0) + packed_rows(3 * 2, 18, 5)
    kc2 = geom(3, 2, 2, 2, 3, 1, 1, 1, 0, 0) + struct.pack("<fIf", 0.5, 2, 1.0) + packed_rows(2 * 2, 27, 6)
    kd = struct.pack("<fIf", 0.75, 2, 1.0) + packed_rows(3 * 2, 8, 7)
    kcnn = qnnx(5, 2, 3, [2, 4, 4], [
        layer(CONV_LEVELS, REAL, 2, AFFINE, 32, 12, kc1 + epilogue(AFFINE, 3, 18)),
        layer(CONV_LEVELS, LVL, 2, BIAS | AFFINE, 12, 8, kc2 + epilogue(BIAS | AFFINE, 2, 27)),
        layer(LEVELS, LVL, 2, AFFINE, 8, 3, kd + epilogue(AFFINE, 3, 8)),
    ])
    put(t, "fp.qnnx", fp)
    put(t, "cnn_v4.qnnx", cnn)
    put(t, "qnn_cnn_v5.qnnx", kcnn)
    put(t, "bnn.qnnx", bnn)
    put(t, "qnn_v2.qnnx", qnn)
    put(t, "meta_v3.qnnx", meta)
    put(t, "truncated.qnnx", bnn[:-7])
    put(t, "trailing.qnnx", fp + b"\x00" * 3)


# ---- IMDB reviews.json (data/imdb.h) ---------------------------------------------------------
def make_imdb():
    t = "fuzz_imdb_json"
    recs = [{"t": "A great film.<br /><br />I'd see it again", "s": 1},
            {"t": "'Terrible' acting, don't bother... rock'n'roll", "s": 0},
            {"t": "Ã‰lan CAFÉ naïve — ’quoted’ 10/10", "s": 1},
            {"t": "boring<br/>boring<br>BORING", "s": 0},
            {"t": "", "s": 1, "extra": [1, 2, {"x": None}]},
            {"t": "ok", "s": 0}]
    put(t, "valid.json", json.dumps(recs, ensure_ascii=False).encode())
    put(t, "valid_ascii.json", json.dumps(recs).encode())
    put(t, "one.json", b'[{"s":1,"t":"fine"}]')
    put(t, "empty_array.json", b"[]")
    put(t, "bad_label.json", b'[{"t":"x","s":2},{"t":"y","s":0.5}]')
    put(t, "missing_field.json", b'[{"t":"x"}]')
    put(t, "repeated_field.json", b'[{"t":"x","t":"y","s":1}]')
    put(t, "not_object.json", b'[1, "two", null]')
    put(t, "truncated.json", json.dumps(recs).encode()[:50])
    put(t, "bad_utf8.json", b'[{"t":"caf\xc3 \xff\xfe \xe2\x80","s":0}]')


# ---- CIFAR-10 binary (data/cifar.h) --------------------------------------------------------
def make_cifar():
    t = "fuzz_cifar_bin"
    rec = lambda label, fill: bytes([label]) + bytes((fill + i) % 256 for i in range(3072))
    put(t, "two_records.bin", rec(3, 0) + rec(9, 7))
    put(t, "one_record.bin", rec(0, 200))
    put(t, "bad_label.bin", rec(10, 0))
    put(t, "cifar100_like.bin", bytes([1, 2]) + bytes(3072))
    put(t, "truncated.bin", rec(1, 1)[:3000])
    names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n"
    put(t, "meta.txt", names.encode())
    put(t, "meta_crlf.txt", names.replace("\n", "\r\n").encode())
    put(t, "meta_nine.txt", "\n".join(names.split()[:9]).encode())


# ---- images (stb_image through data/image_folder.h) ----------------------------------------
def png(w, h, color_type, rows, palette=None, bit_depth=8):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + r for r in rows)
    s = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
    if palette:
        s += chunk(b"PLTE", palette)
    return s + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def bmp24(w, h, pix):
    row = (w * 3 + 3) // 4 * 4
    data = b""
    for y in range(h):
        r = b"".join(bytes(pix(x, y)) for x in range(w))
        data += r + b"\x00" * (row - len(r))
    head = b"BM" + struct.pack("<IHHI", 54 + len(data), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(data), 2835, 2835, 0, 0)
    return head + info + data


def jpeg(components):
    """A baseline 8x8 JPEG, one block per component, DC and AC all zero, with
    one-code Huffman tables (code '0' for DC category 0 and for EOB)."""
    s = b"\xff\xd8"
    s += b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes([1] * 64)        # DQT table 0
    sof = struct.pack(">BHHB", 8, 8, 8, components)
    for c in range(components):
        sof += bytes([c + 1, 0x11, 0])
    s += b"\xff\xc0" + struct.pack(">H", 2 + len(sof)) + sof
    for cls in (0x00, 0x10):                                                   # DC 0, AC 0
        counts = bytes([1] + [0] * 15)
        s += b"\xff\xc4" + struct.pack(">H", 2 + 1 + 16 + 1) + bytes([cls]) + counts + b"\x00"
    sos = bytes([components]) + b"".join(bytes([c + 1, 0x00]) for c in range(components)) + b"\x00\x3f\x00"
    s += b"\xff\xda" + struct.pack(">H", 2 + len(sos)) + sos
    nbits = 2 * components                                                     # '0' DC + '0' EOB per block
    scan = bytes([(0xFF >> nbits) & 0xFF]) if nbits < 8 else b"\x00" + bytes([0xFF >> (nbits - 8)])
    return s + scan + b"\xff\xd9"


def make_images():
    t = "fuzz_image"
    put(t, "grey.png", png(4, 3, 0, [bytes((x * 60 + y) % 256 for x in range(4)) for y in range(3)]))
    put(t, "rgb.png", png(3, 2, 2, [bytes((x * 40 + y * 7 + c) % 256 for x in range(3) for c in range(3)) for y in range(2)]))
    put(t, "rgba.png", png(2, 2, 6, [bytes([255, 0, 0, 128, 0, 255, 0, 255]), bytes([0, 0, 255, 0, 9, 9, 9, 9])]))
    put(t, "palette.png", png(2, 2, 3, [b"\x00\x01", b"\x01\x00"], palette=b"\x00\x00\x00\xff\xff\xff"))
    put(t, "grey16.png", png(2, 1, 0, [b"\x12\x34\xab\xcd"], bit_depth=16))
    put(t, "rgb.bmp", bmp24(3, 2, lambda x, y: (x * 50, y * 90, 7)))
    put(t, "grey.jpg", jpeg(1))
    put(t, "color.jpg", jpeg(3))
    put(t, "grey.pgm", b"P5\n3 2\n255\n" + bytes([0, 50, 100, 150, 200, 250]))
    put(t, "rgb.ppm", b"P6\n2 1\n255\n" + bytes([1, 2, 3, 4, 5, 6]))
    put(t, "pixel.gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
                        b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
    tga = struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, 2, 2, 24, 0) + bytes(range(12))
    put(t, "rgb.tga", tga)
    put(t, "truncated.png", png(4, 3, 0, [bytes(4)] * 3)[:40])
    # A Huffman table of 257 codes (stb_image 2.27 overruns its tables) and
    # headers claiming far more pixels than their bytes can code.
    counts = bytes([0] * 8 + [200, 57] + [0] * 6)
    j = jpeg(1)
    at = j.index(b"\xff\xc4\x00\x14\x10")
    put(t, "dht_257_codes.jpg", j[:at] + b"\xff\xc4" + struct.pack(">H", 2 + 17 + 257) + b"\x10" + counts
        + bytes(257) + j[at + 2 + 0x14:])
    put(t, "lying_size.png", png(16384, 16384, 2, [])[:33] + png(1, 1, 0, [b"\x00"])[33:])
    put(t, "lying_size.bmp", bmp24(1, 1, lambda x, y: (0, 0, 0))[:18] + struct.pack("<ii", 20000, 20000)
        + bmp24(1, 1, lambda x, y: (0, 0, 0))[26:])
    put(t, "empty", b"")


# ---- SVHN .mat (data/svhn.h) ---------------------------------------------------------------
MI_INT8, MI_UINT8, MI_INT32, MI_UINT32, MI_DOUBLE, MI_MATRIX, MI_COMPRESSED = 1, 2, 5, 6, 9, 14, 15
MX_DOUBLE, MX_UINT8 = 6, 9


def element(mtype, data):
    if 0 < len(data) <= 4 and mtype != MI_MATRIX:                               # small data element
        return struct.pack("<HH", mtype, len(data)) + data + b"\x00" * (4 - len(data))
    pad = (-len(data)) % 8
    return struct.pack("<II", mtype, len(data)) + data + b"\x00" * pad


def matrix(name, cls, dims, data_type, data):
    body = element(MI_UINT32, struct.pack("<II", cls, 0))
    body += element(MI_INT32, b"".join(struct.pack("<i", d) for d in dims))
    body += element(MI_INT8, name)
    body += element(data_type, data)
    return struct.pack("<II", MI_MATRIX, len(body)) + body


def mat_header():
    text = b"MATLAB 5.0 MAT-file, written by qnn tests/fuzz/make_corpus.py".ljust(116, b" ")
    return text + b"\x00" * 8 + struct.pack("<H", 0x0100) + b"IM"


def svhn(n, labels, compress=False):
    X = matrix(b"X", MX_UINT8, [32, 32, 3, n], MI_UINT8, bytes((i * 7) % 256 for i in range(3072 * n)))
    y = matrix(b"y", MX_DOUBLE, [n, 1], MI_DOUBLE, b"".join(struct.pack("<d", v) for v in labels))
    if compress:
        X = element(MI_COMPRESSED, zlib.compress(X))[: 8 + len(zlib.compress(X))]
        y = element(MI_COMPRESSED, zlib.compress(y))[: 8 + len(zlib.compress(y))]
    return mat_header() + X + y


def make_svhn():
    t = "fuzz_svhn_mat"
    put(t, "two.mat", svhn(2, [10.0, 3.0]))
    put(t, "two_compressed.mat", svhn(2, [1.0, 10.0], compress=True))
    put(t, "zero_images.mat", svhn(0, []))
    put(t, "bad_label.mat", svhn(1, [11.0]))
    put(t, "fraction_label.mat", svhn(1, [2.5]))
    put(t, "truncated.mat", svhn(1, [4.0])[:2000])
    put(t, "header_only.mat", mat_header())
    # y claims 704643073 x 1 doubles (5.6 GB) in a 3 KB file: refused from its header.
    put(t, "lying_y_dims.mat", mat_header() + matrix(b"X", MX_UINT8, [32, 32, 3, 1], MI_UINT8, bytes(3072))
        + matrix(b"y", MX_DOUBLE, [704643073, 1], MI_DOUBLE, struct.pack("<d", 1.0)))


if __name__ == "__main__":
    # Inputs the fuzzers found (corpus/<target>/finding-*, copied from
    # fuzz-findings/ once fixed) are kept; everything else is rewritten.
    for d, _, names in os.walk(OUT):
        for n in names:
            if not n.startswith("finding-"):
                os.remove(os.path.join(d, n))
    make_idx()
    make_checkpoint()
    make_qnnx()
    make_imdb()
    make_cifar()
    make_images()
    make_svhn()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"make_corpus: {total} bytes in {OUT}")
