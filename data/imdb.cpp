// data/imdb.cpp — reviews.json reader (SAX, so every error names its record),
// tokenizer, vocabulary, the fixed split and the sequence loader.
#include "data/imdb.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace qnn {

// ---- reviews.json -----------------------------------------------------------------

namespace {

using json = nlohmann::json;

// Builds the records while nlohmann's parser walks the text. depth = number of
// open containers: 1 inside the top array, 2 inside a record; containers
// nested in fields other than t / s are skipped.
class ReviewSax : public nlohmann::json_sax<json> {
 public:
  explicit ReviewSax(std::string source) : source_(std::move(source)) {}
  std::vector<Review> records;
  std::string error;  // set when a callback refused something

  bool null() override { return scalar("null"); }
  bool boolean(bool) override { return scalar("a boolean"); }
  bool number_integer(number_integer_t v) override { return integer((long long)v); }
  bool number_unsigned(number_unsigned_t v) override {
    return v <= 1 ? integer((long long)v) : scalar("the number " + std::to_string(v));
  }
  bool number_float(number_float_t v, const string_t&) override {
    std::ostringstream os;
    os << "the number " << v << " (not an integer)";
    return scalar(os.str());
  }
  bool string(string_t& v) override {
    if (depth_ == 2 && key_ == "t") {
      if (!take("t")) return false;
      cur_.text = std::move(v);
      return true;
    }
    return scalar("a string");
  }
  bool binary(binary_t&) override { return scalar("binary data"); }

  bool start_object(std::size_t) override {
    if (depth_ == 0) return fail_top("an object");
    if (depth_ == 1) {
      cur_ = Review{};
      has_t_ = has_s_ = false;
      key_.clear();
    } else if (!nested("an object")) {
      return false;
    }
    ++depth_;
    return true;
  }
  bool key(string_t& k) override {
    if (depth_ == 2) key_ = k;
    return true;
  }
  bool end_object() override {
    if (depth_ == 2) {
      if (!has_t_) return fail_record("no field \"t\" (the review text)");
      if (!has_s_) return fail_record("no field \"s\" (the sentiment, 0 or 1)");
      records.push_back(std::move(cur_));
    }
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth_ >= 1 && !nested("an array")) return false;
    ++depth_;
    return true;
  }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& ex) override {
    error = source_ + ": malformed JSON at byte " + std::to_string(pos) + " (record " +
            std::to_string(records.size()) + "): " + ex.what();
    return false;
  }

 private:
  bool fail_top(const std::string& what) {
    error = source_ + ": the top level is " + what + ", expected an array of reviews";
    return false;
  }
  bool fail_record(const std::string& what) {
    error = source_ + ": record " + std::to_string(records.size()) + ": " + what;
    return false;
  }
  // A field's value is about to be stored: refuse a repeated field.
  bool take(const char* field) {
    bool& has = field[0] == 't' ? has_t_ : has_s_;
    if (has) return fail_record(std::string("field \"") + field + "\" appears twice");
    has = true;
    return true;
  }
  // A scalar of the wrong kind, wherever it is.
  bool scalar(const std::string& what) {
    if (depth_ == 0) return fail_top(what);
    if (depth_ == 1) return fail_record("is " + what + ", expected an object {\"t\": text, \"s\": 0|1}");
    if (depth_ == 2) return wrong_field(what);
    return true;  // inside a skipped container
  }
  bool nested(const std::string& what) {
    if (depth_ == 1) return fail_record("is " + what + ", expected an object {\"t\": text, \"s\": 0|1}");
    if (depth_ == 2) return wrong_field(what);
    return true;
  }
  bool wrong_field(const std::string& what) {
    if (key_ == "t") return fail_record("field \"t\" is " + what + ", expected a string");
    if (key_ == "s") return fail_record("field \"s\" is " + what + ", expected the integer 0 or 1");
    return true;  // another field: ignored
  }
  bool integer(long long v) {
    if (depth_ == 2 && key_ == "s") {
      if (v != 0 && v != 1) return wrong_field("the number " + std::to_string(v));
      if (!take("s")) return false;
      cur_.label = (int32_t)v;
      return true;
    }
    return scalar("the number " + std::to_string(v));
  }

  std::string source_;
  int depth_ = 0;
  std::string key_;
  Review cur_;
  bool has_t_ = false, has_s_ = false;
};

}  // namespace

std::vector<Review> parse_reviews_json(const std::string& json_text, const std::string& source) {
  ReviewSax sax(source);
  const bool ok = json::sax_parse(json_text, &sax);
  if (!ok || !sax.error.empty())
    fail(sax.error.empty() ? source + ": malformed JSON (record " + std::to_string(sax.records.size()) + ")"
                           : sax.error);
  QNN_CHECK(!sax.records.empty(), source + ": holds no reviews (an empty array)");
  return std::move(sax.records);
}

std::vector<Review> read_reviews_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  QNN_CHECK(f.good(), path + ": cannot open (fetch it with: scripts/fetch_data.sh imdb)");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  QNN_CHECK(!f.bad(), path + ": read error");
  return parse_reviews_json(text, path);
}

// ---- tokenizer -------------------------------------------------------------------------

namespace {

inline bool ascii_alnum(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// Length of a "<br />" / "<br/>" / "<br>" tag (any case) starting at s[i], else 0.
size_t br_tag(const std::string& s, size_t i) {
  if (i + 3 >= s.size() || s[i] != '<') return 0;
  if (std::tolower((unsigned char)s[i + 1]) != 'b' || std::tolower((unsigned char)s[i + 2]) != 'r') return 0;
  size_t j = i + 3;
  while (j < s.size() && s[j] == ' ') ++j;
  if (j < s.size() && s[j] == '/') ++j;
  return j < s.size() && s[j] == '>' ? j + 1 - i : 0;
}

// Calls emit(token) for every token of `text` (rules at the top of imdb.h).
template <class F>
void for_each_token(const std::string& text, F&& emit) {
  std::string tok;
  auto flush = [&]() {
    size_t a = 0, b = tok.size();
    while (a < b && tok[a] == '\'') ++a;
    while (b > a && tok[b - 1] == '\'') --b;
    if (b > a) emit(tok.substr(a, b - a));
    tok.clear();
  };
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = (unsigned char)text[i];
    if (c < 0x80) {
      if (c == '<') {
        if (const size_t len = br_tag(text, i)) {
          flush();
          i += len;
          continue;
        }
      }
      if (ascii_alnum(c)) tok += (char)std::tolower(c);
      else if (c == '\'') tok += '\'';
      else flush();
      ++i;
      continue;
    }
    // A UTF-8 sequence: its length from the lead byte (1 for an invalid byte).
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    bool valid = len > 1 && i + len <= n;
    for (size_t k = 1; valid && k < len; ++k) valid = ((unsigned char)text[i + k] & 0xC0) == 0x80;
    if (!valid) {
      flush();
      ++i;
      continue;
    }
    uint32_t cp = c & (0xFF >> (len + 1));
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | ((unsigned char)text[i + k] & 0x3F);
    if (cp == 0x2019) {  // right single quotation mark, used as an apostrophe
      tok += '\'';
    } else if (cp >= 0xC0 && cp <= 0x24F && cp != 0xD7 && cp != 0xF7) {  // accented Latin letters
      if (cp <= 0xDE) cp += 0x20;                                       // U+00C0..U+00DE: lower case
      if (cp < 0x800 && len == 2) {
        tok += (char)(0xC0 | (cp >> 6));
        tok += (char)(0x80 | (cp & 0x3F));
      } else {
        tok.append(text, i, len);
      }
    } else {
      flush();
    }
    i += len;
  }
  flush();
}

}  // namespace

std::vector<std::string> tokenize(const std::string& text) {
  std::vector<std::string> out;
  for_each_token(text, [&](std::string t) { out.push_back(std::move(t)); });
  return out;
}

// ---- vocabulary ------------------------------------------------------------------------

Vocabulary Vocabulary::build(const std::vector<std::vector<std::string>>& docs, int64_t size) {
  std::unordered_map<std::string, int64_t> counts;
  for (const auto& d : docs)
    for (const auto& t : d) ++counts[t];
  return from_counts(counts, size);
}

Vocabulary Vocabulary::from_counts(const std::unordered_map<std::string, int64_t>& counts, int64_t size) {
  QNN_CHECK(size >= 3, "Vocabulary: size must be >= 3 (padding, out-of-vocabulary, one token), got " +
                           std::to_string(size));
  std::vector<std::pair<std::string, int64_t>> all(counts.begin(), counts.end());
  const size_t keep = std::min(all.size(), (size_t)(size - 2));
  // Most frequent first; equal counts in byte order, so the result does not
  // depend on the hash map's iteration order.
  std::partial_sort(all.begin(), all.begin() + (std::ptrdiff_t)keep, all.end(),
                    [](const auto& a, const auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
  Vocabulary v;
  v.words_ = {"<pad>", "<oov>"};
  v.counts_ = {0, 0};
  for (size_t k = 0; k < keep; ++k) {
    v.index_.emplace(all[k].first, (int32_t)v.words_.size());
    v.words_.push_back(std::move(all[k].first));
    v.counts_.push_back(all[k].second);
  }
  return v;
}

int32_t Vocabulary::id(const std::string& token) const {
  const auto it = index_.find(token);
  return it == index_.end() ? kOov : it->second;
}

const std::string& Vocabulary::word(int32_t id) const {
  QNN_CHECK(id >= 0 && id < size(), "Vocabulary: id " + std::to_string(id) + " outside [0, " +
                                        std::to_string(size()) + ")");
  return words_[(size_t)id];
}

int64_t Vocabulary::count(int32_t id) const {
  word(id);  // range check
  return counts_[(size_t)id];
}

void encode_tokens(const std::vector<std::string>& tokens, const Vocabulary& vocab, int64_t maxlen, int32_t* out) {
  QNN_CHECK(maxlen > 0, "encode_tokens: maxlen must be positive, got " + std::to_string(maxlen));
  const int64_t n = (int64_t)tokens.size(), keep = std::min(n, maxlen), pad = maxlen - keep;
  std::fill(out, out + pad, Vocabulary::kPad);  // pad at the front ...
  for (int64_t k = 0; k < keep; ++k) out[pad + k] = vocab.id(tokens[(size_t)(n - keep + k)]);  // ... keep the end
}

// ---- datasets ----------------------------------------------------------------------------

void TextDataset::validate() const {
  const std::string who = "dataset '" + name + "': ";
  QNN_CHECK(maxlen > 0, who + "maxlen must be positive");
  QNN_CHECK((int64_t)ids.size() == size() * maxlen, who + std::to_string(ids.size()) + " ids for " +
                                                        std::to_string(size()) + " sequences of " +
                                                        std::to_string(maxlen));
  QNN_CHECK(num_classes > 0, who + "num_classes must be positive");
  for (size_t i = 0; i < y.size(); ++i)
    QNN_CHECK(y[i] >= 0 && y[i] < num_classes, who + "label " + std::to_string(y[i]) + " at index " +
                                                   std::to_string(i) + " is out of range");
  if (vocab)
    for (size_t k = 0; k < ids.size(); ++k)
      QNN_CHECK(ids[k] >= 0 && ids[k] < vocab->size(),
                who + "id " + std::to_string(ids[k]) + " of sequence " + std::to_string((int64_t)k / maxlen) +
                    " is outside the vocabulary of " + std::to_string(vocab->size()));
}

ImdbSplit imdb_split(const std::vector<int32_t>& labels, int64_t val) {
  QNN_CHECK(val >= 0 && val % 2 == 0, "imdb_split: the validation size must be even and >= 0 (half per "
                                      "sentiment), got " + std::to_string(val));
  std::vector<int64_t> by[2];
  for (size_t i = 0; i < labels.size(); ++i) {
    QNN_CHECK(labels[i] == 0 || labels[i] == 1,
              "imdb_split: label " + std::to_string(labels[i]) + " of record " + std::to_string(i) + " is not 0 or 1");
    by[labels[i]].push_back((int64_t)i);
  }
  // Per sentiment: first half test, second half train, its last val/2 validate.
  std::vector<int64_t> test[2], train[2], vals[2];
  for (int c = 0; c < 2; ++c) {
    const int64_t n = (int64_t)by[c].size(), n_test = n / 2, n_train = n - n_test, n_val = val / 2;
    QNN_CHECK(n_test >= 1, "imdb_split: " + std::to_string(n) + (c ? " positive" : " negative") +
                               " reviews; each sentiment needs at least 2");
    QNN_CHECK(n_val < n_train, "imdb_split: cannot hold out " + std::to_string(n_val) + (c ? " positive" : " negative") +
                                   " reviews for validation from " + std::to_string(n_train) + " training ones");
    test[c].assign(by[c].begin(), by[c].begin() + n_test);
    train[c].assign(by[c].begin() + n_test, by[c].end() - n_val);
    vals[c].assign(by[c].end() - n_val, by[c].end());
  }
  // Alternate negative, positive, ... (then the rest of the larger class).
  auto interleave = [](const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
    std::vector<int64_t> out;
    out.reserve(a.size() + b.size());
    for (size_t k = 0; k < std::max(a.size(), b.size()); ++k) {
      if (k < a.size()) out.push_back(a[k]);
      if (k < b.size()) out.push_back(b[k]);
    }
    return out;
  };
  return {interleave(train[0], train[1]), interleave(vals[0], vals[1]), interleave(test[0], test[1])};
}

ImdbData make_imdb(const std::vector<Review>& records, const ImdbOptions& opt, const std::string& name) {
  QNN_CHECK(opt.maxlen > 0, "imdb: maxlen must be positive, got " + std::to_string(opt.maxlen));
  std::vector<int32_t> labels(records.size());
  for (size_t i = 0; i < records.size(); ++i) labels[i] = records[i].label;
  const ImdbSplit split = imdb_split(labels, opt.val);

  // Vocabulary from the training records (train + val), never the test ones.
  std::unordered_map<std::string, int64_t> counts;
  for (const auto* part : {&split.train, &split.val})
    for (int64_t r : *part) for_each_token(records[(size_t)r].text, [&](std::string t) { ++counts[std::move(t)]; });
  ImdbData out;
  out.vocab = std::make_shared<const Vocabulary>(Vocabulary::from_counts(counts, opt.vocab_size));

  auto make = [&](const std::vector<int64_t>& idx, const std::string& part) {
    TextDataset ds;
    ds.name = name + "/" + part;
    ds.maxlen = opt.maxlen;
    ds.vocab = out.vocab;
    ds.y.resize(idx.size());
    ds.ids.resize(idx.size() * (size_t)opt.maxlen);
    for (size_t k = 0; k < idx.size(); ++k) {
      const Review& r = records[(size_t)idx[k]];
      ds.y[k] = r.label;
      encode_tokens(tokenize(r.text), *out.vocab, opt.maxlen, ds.ids.data() + k * (size_t)opt.maxlen);
    }
    return ds;
  };
  out.train = make(split.train, "train");
  out.val = make(split.val, "val");
  out.test = make(split.test, "test");
  return out;
}

ImdbData load_imdb(const std::string& path, const ImdbOptions& opt) {
  namespace fs = std::filesystem;
  std::string file = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) file = (fs::path(path) / "reviews.json").string();
  QNN_CHECK(fs::exists(file, ec), file + ": not found (fetch it with: scripts/fetch_data.sh imdb)");
  return make_imdb(read_reviews_json(file), opt, "imdb");
}

// ---- SequenceLoader ---------------------------------------------------------------------

namespace {

// The DataLoader that orders the reviews needs a Dataset of the same size; one
// float per review is enough (its values are never read).
std::unique_ptr<Dataset> stand_in(const TextDataset& ds) {
  auto d = std::make_unique<Dataset>();
  d->name = ds.name;
  d->sample_shape = {1};
  d->num_classes = ds.num_classes;
  d->x.assign((size_t)ds.size(), 0.f);
  d->y = ds.y;
  return d;
}

}  // namespace

SequenceLoader::SequenceLoader(const TextDataset& ds, int64_t batch_size, bool shuffle, uint64_t seed, bool drop_last)
    : ds_(&ds), index_(stand_in(ds)), order_src_(*index_, batch_size, shuffle, seed, drop_last) {
  QNN_CHECK(ds.maxlen > 0 && (int64_t)ds.ids.size() == ds.size() * ds.maxlen,
            "SequenceLoader: dataset '" + ds.name + "' has " + std::to_string(ds.ids.size()) + " ids for " +
                std::to_string(ds.size()) + " sequences of " + std::to_string(ds.maxlen));
}

SequenceBatch SequenceLoader::gather(const std::vector<int64_t>& order, int64_t begin, int64_t end) const {
  QNN_CHECK(0 <= begin && begin <= end && end <= (int64_t)order.size(),
            "SequenceLoader::gather: range [" + std::to_string(begin) + ", " + std::to_string(end) + ") outside " +
                std::to_string(order.size()) + " samples");
  const TextDataset& ds = *ds_;
  const int64_t T = ds.maxlen;
  SequenceBatch b;
  b.steps = T;
  b.ids.resize((size_t)((end - begin) * T));
  b.y.resize((size_t)(end - begin));
  for (int64_t i = begin; i < end; ++i) {
    const int64_t s = order[(size_t)i];
    QNN_CHECK(0 <= s && s < ds.size(), "SequenceLoader::gather: sample " + std::to_string(s) + " outside dataset '" +
                                           ds.name + "' of " + std::to_string(ds.size()));
    std::memcpy(b.ids.data() + (i - begin) * T, ds.sample(s), (size_t)T * sizeof(int32_t));
    b.y[(size_t)(i - begin)] = ds.y[(size_t)s];
  }
  return b;
}

SequenceBatch SequenceLoader::batch(const std::vector<int64_t>& order, int64_t i) const {
  QNN_CHECK(0 <= i && i < num_batches(),
            "SequenceLoader: batch " + std::to_string(i) + " of " + std::to_string(num_batches()));
  const int64_t begin = i * batch_size();
  const int64_t end = std::min<int64_t>(begin + batch_size(), num_samples());
  return gather(order, begin, end);
}

std::vector<SequenceBatch> SequenceLoader::epoch(int64_t e) const {
  const std::vector<int64_t> ord = order(e);
  std::vector<SequenceBatch> out;
  out.reserve((size_t)num_batches());
  for (int64_t i = 0; i < num_batches(); ++i) out.push_back(batch(ord, i));
  return out;
}

}  // namespace qnn
