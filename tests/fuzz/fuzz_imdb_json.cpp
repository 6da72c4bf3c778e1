// tests/fuzz/fuzz_imdb_json.cpp — data/imdb.cpp on arbitrary text: the
// reviews.json parser (nlohmann-json underneath, with qnn's record checks),
// the tokenizer (UTF-8 handling of arbitrary bytes), and, for an accepted
// file, the split / vocabulary / encoding with small sizes.
// Properties: tokens are non-empty and never start or end with an apostrophe;
// every dataset make_imdb returns passes its own validate().
#include <cstdint>
#include <string>

#include "data/imdb.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (const std::string& t : qnn::tokenize(text))
    FUZZ_CHECK(!t.empty() && t.front() != '\'' && t.back() != '\'', "tokenize gave an empty or apostrophe-edged token");

  std::vector<qnn::Review> records;
  try {
    records = qnn::parse_reviews_json(text, "fuzz.json");
  } catch (const qnn::Error& e) {
    qnn_fuzz::refused(e);
    return 0;
  }
  qnn_fuzz::accepted("reviews json");
  FUZZ_CHECK(!records.empty(), "parse_reviews_json accepted an empty array");
  for (const auto& r : records) FUZZ_CHECK(r.label == 0 || r.label == 1, "a label other than 0 or 1 was accepted");
  qnn::ImdbOptions opt;
  opt.vocab_size = 16;
  opt.maxlen = 8;
  opt.val = 0;
  try {
    const qnn::ImdbData d = qnn::make_imdb(records, opt, "fuzz");
    d.train.validate();
    d.test.validate();
    FUZZ_CHECK(d.train.size() + d.test.size() == (int64_t)records.size(), "the split lost or duplicated records");
  } catch (const qnn::Error&) {
    // too few records of a sentiment to split: refused with a message
  }
  return 0;
}
