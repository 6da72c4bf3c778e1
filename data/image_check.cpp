// data/image_check.cpp — what the image-folder reader checks in a file's bytes
// before stb_image sees them (see image_detail::check_image_bytes in images.h).
//
// Why: stb_image (Debian's libstb, v2.27) trusts its input more than a reader
// of files from the internet may. A JPEG whose Huffman table (DHT) declares
// more than 256 codes makes it write past a 257-byte array (found by
// tests/fuzz/fuzz_image; fixed upstream only in 2.28), and it decodes formats
// we never asked for (GIF, PSD, PIC, HDR, PNM, TGA) whatever the file is
// called. So the bytes must be PNG, JPEG or BMP by their signature, a PNG's
// chunks must fit in the file, and a JPEG must pass a marker walk that checks
// every segment's length and every Huffman / quantisation table's counts
// against the bytes that hold them.
#include <algorithm>
#include <cstdint>
#include <string>

#include "data/images.h"

namespace qnn {
namespace image_detail {
namespace {

std::string at(size_t pos) { return " at byte " + std::to_string(pos); }

// JPEG (ITU T.81, section B): SOI, then segments "FF mm LLLL payload" (the
// length counts itself, not the marker); SOS is followed by entropy-coded
// data in which FF is stuffed as FF 00 and RSTn markers (FF D0..D7) may
// appear; EOI ends the image. Bytes after EOI are ignored, as stb does.
std::string check_jpeg(const uint8_t* p, size_t n) {
  size_t pos = 2;  // after SOI (FF D8)
  // Huffman tables defined so far, [class: 0 DC, 1 AC][id]: stb_image decodes
  // a scan with whatever its table slots hold, defined or not (fuzz_image
  // found a scan naming an AC table no DHT had defined: a read 1.8 KB past a
  // 257-byte array), so a scan must name defined tables only.
  bool defined[2][4] = {};
  bool progressive = false;
  for (;;) {
    if (pos >= n) return "JPEG ends without its end-of-image marker (truncated?)";
    if (p[pos] != 0xFF) return "JPEG: expected a marker" + at(pos);
    while (pos < n && p[pos] == 0xFF) ++pos;  // fill bytes
    if (pos >= n) return "JPEG ends without its end-of-image marker (truncated?)";
    const size_t mpos = pos - 1;
    const uint8_t m = p[pos++];
    if (m == 0xD9) return "";                                 // EOI
    if ((m >= 0xD0 && m <= 0xD7) || m == 0x01) continue;      // RSTn, TEM: no length
    if (m == 0x00 || m == 0xD8) return "JPEG: misplaced marker FF " + std::to_string(m) + at(mpos);
    if (n - pos < 2) return "JPEG ends inside a segment header" + at(mpos);
    const size_t len = (size_t)p[pos] << 8 | p[pos + 1];
    if (len < 2) return "JPEG: segment length " + std::to_string(len) + " < 2" + at(mpos);
    if (len > n - pos) return "JPEG: the segment" + at(mpos) + " needs " + std::to_string(len) +
                              " bytes, the file ends " + std::to_string(n - pos) + " bytes after its marker";
    const uint8_t* s = p + pos + 2;
    size_t left = len - 2;
    if (m == 0xC4) {  // DHT: one or more tables of (class/id, 16 counts, symbols)
      while (left > 0) {
        if (left < 17) return "JPEG: Huffman table (DHT) cut short" + at(mpos);
        if ((s[0] >> 4) > 1 || (s[0] & 15) > 3) return "JPEG: bad Huffman table class/id" + at(mpos);
        // The counts must fit the 16-bit code space (Kraft) and name at most
        // 256 symbols, all of them inside the segment.
        size_t symbols = 0;
        uint32_t code = 0;
        for (int i = 0; i < 16; ++i) {
          symbols += s[1 + i];
          code = (code + s[1 + i]) << 1;
          if (code > (2u << (i + 1))) return "JPEG: Huffman table (DHT) has more codes of length " +
                                             std::to_string(i + 1) + " than exist" + at(mpos);
        }
        if (symbols > 256) return "JPEG: Huffman table (DHT) declares " + std::to_string(symbols) +
                                  " codes, more than 256" + at(mpos);
        if (17 + symbols > left) return "JPEG: Huffman table (DHT) symbols run past its segment" + at(mpos);
        defined[s[0] >> 4][s[0] & 15] = true;
        s += 17 + symbols;
        left -= 17 + symbols;
      }
    } else if (m == 0xDB) {  // DQT: tables of (precision/id, 64 values of 1 or 2 bytes)
      while (left > 0) {
        const size_t need = 1 + 64 * (size_t)((s[0] >> 4) + 1);
        if ((s[0] >> 4) > 1 || (s[0] & 15) > 3) return "JPEG: bad quantisation table precision/id" + at(mpos);
        if (need > left) return "JPEG: quantisation table (DQT) runs past its segment" + at(mpos);
        s += need;
        left -= need;
      }
    } else if (m == 0xC2) {  // SOF2: progressive (stb decodes its scans by spectral band)
      progressive = true;
    } else if (m == 0xDA) {  // SOS: Ns, Ns x (component, DC table << 4 | AC table), Ss, Se, Ah/Al
      const size_t ns = left > 0 ? s[0] : 0;
      if (ns < 1 || ns > 4 || left < 1 + 2 * ns + 3) return "JPEG: bad scan header (SOS)" + at(mpos);
      const uint8_t ss = s[1 + 2 * ns];
      for (size_t c = 0; c < ns; ++c) {
        const int td = s[2 + 2 * c] >> 4, ta = s[2 + 2 * c] & 15;
        if (td > 3 || ta > 3) return "JPEG: a scan names Huffman table " + std::to_string(td > 3 ? td : ta) +
                                     " (ids are 0..3)" + at(mpos);
        // Baseline / extended scans use both tables; progressive ones the DC
        // table in the DC band (Ss = 0) and the AC table otherwise.
        if ((!progressive || ss == 0) && !defined[0][td])
          return "JPEG: a scan uses DC Huffman table " + std::to_string(td) + ", which no DHT before it defines" +
                 at(mpos);
        if ((!progressive || ss > 0) && !defined[1][ta])
          return "JPEG: a scan uses AC Huffman table " + std::to_string(ta) + ", which no DHT before it defines" +
                 at(mpos);
      }
    }
    pos += len;
    if (m == 0xDA) {  // SOS: skip the entropy-coded data up to the next real marker
      while (pos + 1 < n && !(p[pos] == 0xFF && p[pos + 1] != 0x00 && !(p[pos + 1] >= 0xD0 && p[pos + 1] <= 0xD7)))
        ++pos;
      if (pos + 1 >= n) return "JPEG ends inside its image data, without an end-of-image marker (truncated?)";
    }
  }
}

// PNG: the signature, then chunks "length(4, big-endian) type(4) data CRC(4)"
// up to IEND. stb_image allocates an IDAT chunk's declared length before it
// reads it (fuzz_image: a 70-byte file declaring a 1.2 GB IDAT), so every
// chunk must fit in the bytes that follow it. stb refuses a PNG without IEND
// anyway; its CRCs it ignores, and so do we.
std::string check_png(const uint8_t* p, size_t n) {
  size_t pos = 8;
  for (;;) {
    if (n - pos < 12) return "PNG ends without its IEND chunk (truncated?)" + (pos < n ? at(pos) : std::string());
    const uint32_t len = (uint32_t)p[pos] << 24 | (uint32_t)p[pos + 1] << 16 | (uint32_t)p[pos + 2] << 8 | p[pos + 3];
    if (len > n - pos - 12)
      return "PNG: the chunk" + at(pos) + " declares " + std::to_string(len) + " bytes, the file has " +
             std::to_string(n - pos - 12) + " after its header";
    const bool iend = p[pos + 4] == 'I' && p[pos + 5] == 'E' && p[pos + 6] == 'N' && p[pos + 7] == 'D';
    pos += 12 + (size_t)len;
    if (iend) return "";
  }
}

}  // namespace

ImageFormat sniff_image(const std::string& bytes) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (n >= 8 && std::equal(png, png + 8, p)) return ImageFormat::Png;
  if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return ImageFormat::Jpeg;
  if (n >= 2 && p[0] == 'B' && p[1] == 'M') return ImageFormat::Bmp;
  return ImageFormat::Unknown;
}

std::string check_image_bytes(const std::string& bytes) {
  if (bytes.size() > (size_t)INT32_MAX) return "over 2 GiB, more than stb_image reads";  // its lengths are int
  switch (sniff_image(bytes)) {
    case ImageFormat::Png: return check_png(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    case ImageFormat::Bmp: return "";  // stb checks it itself (and fuzz_image checks stb)
    case ImageFormat::Jpeg: return check_jpeg(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    case ImageFormat::Unknown: break;
  }
  return "not a PNG, JPEG or BMP file by its first bytes";
}

int64_t max_image_pixels(ImageFormat f, int64_t file_bytes) {
  // The densest legitimate coding of each format, plus room for the headers:
  //   PNG  1-bit grey, deflated at most 1032:1 -> 8 * 1032 pixels per byte.
  //   JPEG every 8x8 block of the most-sampled component (>= 1/256 of the
  //        pixels with 4x1 sampling) costs at least one bit -> 2048 per byte.
  //        stb fills a cut-off JPEG with zeros, so this is the only bound.
  //   BMP  1 bit per pixel, stored as is -> 8 per byte.
  const int64_t per_byte = f == ImageFormat::Png ? 8 * 1032 : f == ImageFormat::Jpeg ? 2048 : 8;
  const int64_t b = std::max<int64_t>(file_bytes, 0);
  return std::min<int64_t>(kMaxImagePixels, per_byte * b + 64 * 64);
}

}  // namespace image_detail
}  // namespace qnn
