// tests/imdb_test_util.h — a tiny IMDB reviews.json in the npm file's layout
// (an array of {"t": text, "s": 0|1}, negatives first), for the LSTM tests.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace qnn::test {

// n reviews per sentiment, negatives first (the npm file's order): each
// review a few words of its class's vocabulary and a shared filler.
inline std::string tiny_reviews(int n) {
  const char* neg[] = {"bad", "awful", "boring", "worst", "dull"};
  const char* pos[] = {"great", "wonderful", "superb", "best", "moving"};
  nlohmann::json a = nlohmann::json::array();
  for (int s = 0; s < 2; ++s)
    for (int k = 0; k < n; ++k) {
      std::string t = "this film was";
      // Through a pointer: GCC's -fsanitize=bounds misreads an index into
      // "(s ? pos : neg)[i]" as an index into one of the two arrays.
      const char* const* words = s ? pos : neg;
      for (int w = 0; w < 4; ++w) t += std::string(" ") + words[(k + w) % 5];
      t += k % 3 ? " <br /> the plot" : " and the actors";
      a.push_back({{"t", t}, {"s", s}});
    }
  return a.dump();
}

}  // namespace qnn::test
