// tests/test_imdb.cpp — data/imdb.h: tokenizer, vocabulary, padding, the fixed
// split, JSON refusals, SequenceLoader, and the real reviews.json when present.
#include <doctest/doctest.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "data/dataloader.h"
#include "data/imdb.h"

using namespace qnn;

namespace {

using Toks = std::vector<std::string>;

// n negative then n positive reviews; review k of a sentiment says its
// sentiment and its number, so every test can see where a record went.
std::vector<Review> synthetic(int n) {
  std::vector<Review> r;
  for (int c = 0; c < 2; ++c)
    for (int k = 0; k < n; ++k)
      r.push_back({std::string(c ? "good" : "bad") + " film number" + std::to_string(k), c});
  return r;
}

}  // namespace

// =============================================================================
// tokenizer
// =============================================================================

TEST_CASE("tokenize: case, punctuation, <br />, apostrophes, digits") {
  CHECK(tokenize("Hello, World!") == Toks{"hello", "world"});
  CHECK(tokenize("The END.<br /><br />Next") == Toks{"the", "end", "next"});
  CHECK(tokenize("one<br/>two<BR>three<br />") == Toks{"one", "two", "three"});
  CHECK(tokenize("a <b>bold</b> move") == Toks{"a", "b", "bold", "b", "move"});  // other tags are just punctuation
  CHECK(tokenize("I don't like rock'n'roll") == Toks{"i", "don't", "like", "rock'n'roll"});
  CHECK(tokenize("'great' movie ''' isn't") == Toks{"great", "movie", "isn't"});
  CHECK(tokenize("10/10, 1950's B-movie") == Toks{"10", "10", "1950's", "b", "movie"});
  CHECK(tokenize("don\xE2\x80\x99t") == Toks{"don't"});                  // U+2019 as an apostrophe
  CHECK(tokenize("Caf\xC3\xA9 \xC3\x89T\xC3\x89") == Toks{"caf\xC3\xA9", "\xC3\xA9t\xC3\xA9"});  // Café ÉTÉ
  CHECK(tokenize("end\xC2\x96start x\xC3\x97y") == Toks{"end", "start", "x", "y"});  // C1 dash, times sign
  CHECK(tokenize("bad\xFF\xFEutf") == Toks{"bad", "utf"});
  CHECK(tokenize("").empty());
  CHECK(tokenize("... !!! '").empty());
}

// =============================================================================
// vocabulary and encoding
// =============================================================================

TEST_CASE("Vocabulary: most frequent first, ties in byte order, pad and oov reserved") {
  const std::vector<Toks> docs = {{"b", "a", "c", "a"}, {"c", "d", "a", "b"}, {"e"}};
  // counts: a 3, b 2, c 2, d 1, e 1
  const Vocabulary v = Vocabulary::build(docs, 5);
  CHECK(v.size() == 5);
  CHECK(v.word(0) == "<pad>");
  CHECK(v.word(1) == "<oov>");
  CHECK(v.id("a") == 2);
  CHECK(v.id("b") == 3);  // tie with c: byte order
  CHECK(v.id("c") == 4);
  CHECK(v.id("d") == Vocabulary::kOov);
  CHECK(v.id("zzz") == Vocabulary::kOov);
  CHECK(v.count(2) == 3);
  // Fewer distinct tokens than room: all kept.
  CHECK(Vocabulary::build(docs, 100).size() == 7);
  CHECK_THROWS_AS(Vocabulary::build(docs, 2), Error);
  CHECK_THROWS_AS(v.word(5), Error);
}

TEST_CASE("encode_tokens: keeps the last maxlen tokens, pads at the front") {
  const Vocabulary v = Vocabulary::build({{"a", "b", "c"}}, 10);  // a 2, b 3, c 4
  std::vector<int32_t> out(5);
  encode_tokens({"a", "b"}, v, 5, out.data());
  CHECK(out == std::vector<int32_t>{0, 0, 0, 2, 3});
  encode_tokens({"a", "b", "c", "x", "a", "b", "c"}, v, 5, out.data());
  CHECK(out == std::vector<int32_t>{4, 1, 2, 3, 4});  // the front is cut, x is out of vocabulary
  encode_tokens({}, v, 5, out.data());
  CHECK(out == std::vector<int32_t>{0, 0, 0, 0, 0});
}

// =============================================================================
// split and datasets
// =============================================================================

TEST_CASE("imdb_split: first half of each sentiment tests, second half trains, tail validates") {
  std::vector<int32_t> labels;
  for (int i = 0; i < 10; ++i) labels.push_back(0);
  for (int i = 0; i < 10; ++i) labels.push_back(1);
  const ImdbSplit s = imdb_split(labels, 4);
  CHECK(s.test == std::vector<int64_t>{0, 10, 1, 11, 2, 12, 3, 13, 4, 14});
  CHECK(s.train == std::vector<int64_t>{5, 15, 6, 16, 7, 17});
  CHECK(s.val == std::vector<int64_t>{8, 18, 9, 19});
  // Fixed: the same call gives the same split (no seed anywhere).
  CHECK(imdb_split(labels, 4).train == s.train);
  // Interleaved labels are split per sentiment too.
  const ImdbSplit m = imdb_split({0, 1, 0, 1, 0, 1, 0, 1}, 0);
  CHECK(m.test == std::vector<int64_t>{0, 1, 2, 3});
  CHECK(m.train == std::vector<int64_t>{4, 5, 6, 7});
  CHECK(m.val.empty());
  CHECK_THROWS_AS(imdb_split(labels, 3), Error);       // odd validation size
  CHECK_THROWS_AS(imdb_split(labels, 10), Error);      // leaves no training reviews
  CHECK_THROWS_AS(imdb_split({0, 0, 0, 1}, 0), Error);  // one positive review
  CHECK_THROWS_AS(imdb_split({0, 2, 0, 1}, 0), Error);  // bad label
}

TEST_CASE("make_imdb: vocabulary from training reviews only, balanced sets, padded ids") {
  std::vector<Review> recs = synthetic(6);
  // A word that appears only in a test review (record 0 is a negative test
  // review) must not enter the vocabulary, however frequent.
  recs[0].text += " testonly testonly testonly testonly testonly";
  ImdbOptions opt;
  opt.vocab_size = 100;
  opt.maxlen = 6;
  opt.val = 2;
  const ImdbData d = make_imdb(recs, opt, "syn");
  CHECK(d.train.size() == 4);
  CHECK(d.val.size() == 2);
  CHECK(d.test.size() == 6);
  CHECK(d.train.y == std::vector<int32_t>{0, 1, 0, 1});
  CHECK(d.test.y == std::vector<int32_t>{0, 1, 0, 1, 0, 1});
  CHECK(d.vocab->id("testonly") == Vocabulary::kOov);
  // Training records are numbers 3..5 per sentiment; test numbers 0..2 never counted.
  CHECK(d.vocab->id("number3") != Vocabulary::kOov);
  CHECK(d.vocab->id("number5") != Vocabulary::kOov);  // validation counts as training
  CHECK(d.vocab->id("number0") == Vocabulary::kOov);
  CHECK(d.vocab->id("film") == 2);  // in all 6 training reviews: the most frequent
  CHECK(d.vocab->count(2) == 6);
  // "bad film number3": three tokens, left-padded to 6.
  const int32_t* first = d.train.sample(0);
  CHECK(first[0] == 0);
  CHECK(first[2] == 0);
  CHECK(first[3] == d.vocab->id("bad"));
  CHECK(first[4] == d.vocab->id("film"));
  CHECK(first[5] == d.vocab->id("number3"));
  d.train.validate();
  d.test.validate();
  CHECK(d.train.name == "syn/train");
  CHECK(d.train.vocab == d.test.vocab);
}

// =============================================================================
// JSON refusals
// =============================================================================

TEST_CASE("parse_reviews_json: accepts the format, refuses malformed JSON, missing fields, wrong types") {
  const auto ok = parse_reviews_json(R"([{"t":"a b","s":0},{"s":1,"t":"c","extra":[1,{"x":2}]}])", "f.json");
  REQUIRE(ok.size() == 2);
  CHECK(ok[0].text == "a b");
  CHECK(ok[1].label == 1);
  auto refuses = [](const std::string& text, const std::string& part) {
    CHECK_THROWS_WITH_AS(parse_reviews_json(text, "f.json"), doctest::Contains(part.c_str()), Error);
    CHECK_THROWS_WITH_AS(parse_reviews_json(text, "f.json"), doctest::Contains("f.json"), Error);
  };
  refuses(R"([{"t":"a","s":0},{"t":"b","s":1)", "malformed JSON");
  refuses(R"([{"t":"a","s":0},{"t":"b" "s":1}])", "(record 1)");
  refuses(R"([{"t":"a","s":0},{"t":"b"}])", "record 1: no field \"s\"");
  refuses(R"([{"s":0}])", "record 0: no field \"t\"");
  refuses(R"([{"t":"a","s":0},{"t":"b","s":1},{"t":5,"s":1}])", "record 2: field \"t\" is the number 5");
  refuses(R"([{"t":"a","s":"1"}])", "record 0: field \"s\" is a string");
  refuses(R"([{"t":"a","s":2}])", "field \"s\" is the number 2, expected the integer 0 or 1");
  refuses(R"([{"t":"a","s":-1}])", "the number -1");
  refuses(R"([{"t":"a","s":1.0}])", "not an integer");
  refuses(R"([{"t":null,"s":1}])", "field \"t\" is null");
  refuses(R"([{"t":["a"],"s":1}])", "field \"t\" is an array");
  refuses(R"([{"t":"a","s":1,"t":"b"}])", "field \"t\" appears twice");
  refuses(R"([{"t":"a","s":1}, "text"])", "record 1: is a string, expected an object");
  refuses(R"({"t":"a","s":1})", "the top level is an object");
  refuses(R"([])", "no reviews");
  CHECK_THROWS_WITH_AS(read_reviews_json("/nonexistent/reviews.json"), doctest::Contains("fetch_data.sh imdb"), Error);
  CHECK_THROWS_WITH_AS(load_imdb("/nonexistent"), doctest::Contains("fetch_data.sh imdb"), Error);
}

// =============================================================================
// SequenceLoader
// =============================================================================

TEST_CASE("SequenceLoader: DataLoader's epoch order, batches of ids") {
  ImdbOptions opt;
  opt.maxlen = 4;
  opt.val = 0;
  const ImdbData d = make_imdb(synthetic(11), opt);  // 12 training reviews (6 + 6)
  REQUIRE(d.train.size() == 12);
  SequenceLoader a(d.train, 5, true, 42), b(d.train, 5, true, 42), c(d.train, 5, true, 43);
  CHECK(a.num_batches() == 3);
  CHECK(a.order(3) == b.order(3));
  CHECK(a.order(3) != a.order(4));
  CHECK(a.order(3) != c.order(3));
  // The very order of a DataLoader with the same size, seed and flags.
  Dataset same_size;
  same_size.name = "n";
  same_size.sample_shape = {1};
  same_size.num_classes = 2;
  same_size.x.assign(12, 0.f);
  same_size.y.assign(12, 0);
  CHECK(a.order(7) == DataLoader(same_size, 5, true, 42).order(7));
  // Batches: every review once per epoch, ids and labels together.
  const auto batches = a.epoch(2);
  REQUIRE(batches.size() == 3);
  CHECK(batches[2].size() == 2);
  std::set<std::vector<int32_t>> seen;
  for (const auto& bt : batches) {
    CHECK(bt.steps == 4);
    for (int64_t i = 0; i < bt.size(); ++i) {
      std::vector<int32_t> row(bt.ids.begin() + i * 4, bt.ids.begin() + (i + 1) * 4);
      // The label travels with its sequence: [pad, bad|good, film, numberK].
      CHECK(row[1] == d.vocab->id(bt.y[(size_t)i] ? "good" : "bad"));
      seen.insert(row);
    }
  }
  CHECK(seen.size() == 12);
  CHECK(SequenceLoader(d.train, 5, false, 1).order(0) == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  CHECK(SequenceLoader(d.train, 5, true, 1, /*drop_last=*/true).num_batches() == 2);
  CHECK_THROWS_AS(SequenceLoader(d.train, 0, true, 1), Error);
}

// =============================================================================
// the real file
// =============================================================================

TEST_CASE("imdb: the real reviews.json (datasets/imdb)") {
  const std::string path = std::string(QNN_SOURCE_ROOT) + "/datasets/imdb/reviews.json";
  if (!std::filesystem::exists(path)) {
    MESSAGE("datasets/imdb/reviews.json not found (scripts/fetch_data.sh imdb): skipped");
    return;
  }
  const std::vector<Review> recs = read_reviews_json(path);
  REQUIRE(recs.size() == 50000);
  CHECK(recs[0].text.rfind("Once again Mr. Costner", 0) == 0);
  int64_t pos = 0;
  for (size_t i = 0; i < recs.size(); ++i) {
    pos += recs[i].label;
    if (i == 24999) CHECK(pos == 0);  // 25k negative, then 25k positive
  }
  CHECK(pos == 25000);

  const ImdbData d = make_imdb(recs);
  CHECK(d.train.size() == 20000);
  CHECK(d.val.size() == 5000);
  CHECK(d.test.size() == 25000);
  for (const TextDataset* ds : {&d.train, &d.val, &d.test}) {
    int64_t p = 0;
    for (int32_t y : ds->y) p += y;
    CHECK(2 * p == ds->size());  // balanced
    CHECK(ds->maxlen == 300);
  }
  CHECK(d.vocab->size() == 5000);
  CHECK(d.vocab->word(2) == "the");
  // The test set starts with record 0 (negative) and record 25000 (positive).
  const std::vector<std::string> toks = tokenize(recs[0].text);
  std::vector<int32_t> want(300);
  encode_tokens(toks, *d.vocab, 300, want.data());
  CHECK(std::vector<int32_t>(d.test.sample(0), d.test.sample(0) + 300) == want);
  d.test.validate();
}
