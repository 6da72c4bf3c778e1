// tests/test_walkthrough.cpp — docs/bnn-training.md quotes the output of
// apps/walkthrough; this test runs the program and compares, so the page and
// the program cannot drift apart.
//
// The rule, as the page states it: every fenced block opened by a bare ```
// (no language) is walkthrough output. A first line "$ build/apps/walkthrough
// ARGS" is the command (ARGS are passed to the run; it is not output). The
// blocks, in page order, must reproduce the output exactly, line by line, and
// together quote every non-blank output line; blank lines between blocks are
// free. Blocks with a language (```cpp, ...) are not compared.
//
// When it fails after a deliberate change to the walkthrough: rebuild it
// (ninja -C build apps/walkthrough), run it, paste the new sections into the
// page, and re-read the prose around them for numbers that changed.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#ifndef QNN_SOURCE_ROOT
#error "QNN_SOURCE_ROOT must be defined by tests/meson.build"
#endif
#ifndef QNN_WALKTHROUGH_BIN
#error "QNN_WALKTHROUGH_BIN must be defined by tests/meson.build"
#endif

namespace {

struct Block {
  int doc_line = 0;  // 1-based line of the first quoted line in the page
  std::vector<std::string> lines;
};

struct Page {
  std::string args;  // from the "$ build/apps/walkthrough ARGS" line
  std::vector<Block> blocks;
};

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  for (std::string l; std::getline(is, l);) out.push_back(l);
  return out;
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t") == std::string::npos; }

// The output blocks of a page in the format above. Throws on an unclosed fence.
Page parse_page(const std::string& text) {
  Page p;
  const std::vector<std::string> lines = split_lines(text);
  const std::string cmd = "$ build/apps/walkthrough";
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].rfind("```", 0) != 0) continue;
    const bool output = lines[i] == "```";
    size_t j = i + 1;
    Block b;
    for (; j < lines.size() && lines[j] != "```"; ++j) {
      if (!output) continue;
      if (b.lines.empty() && lines[j].rfind(cmd, 0) == 0) {
        p.args = lines[j].substr(cmd.size());
        continue;
      }
      if (b.lines.empty()) b.doc_line = (int)j + 1;
      b.lines.push_back(lines[j]);
    }
    if (j == lines.size()) throw std::runtime_error("unclosed ``` fence opened at line " + std::to_string(i + 1));
    if (output && !b.lines.empty()) p.blocks.push_back(b);
    i = j;
  }
  return p;
}

// First difference between the page's blocks and the output, or "" if none.
std::string compare(const Page& page, const std::vector<std::string>& out) {
  size_t pos = 0;
  auto skip_blank = [&] {
    while (pos < out.size() && blank(out[pos])) ++pos;
  };
  for (size_t b = 0; b < page.blocks.size(); ++b) {
    const Block& blk = page.blocks[b];
    skip_blank();
    for (size_t k = 0; k < blk.lines.size(); ++k, ++pos) {
      const int doc_line = blk.doc_line + (int)k;
      if (pos >= out.size())
        return "docs/bnn-training.md line " + std::to_string(doc_line) + " quotes \"" + blk.lines[k] +
               "\" but the walkthrough output has ended";
      if (out[pos] != blk.lines[k])
        return "docs/bnn-training.md line " + std::to_string(doc_line) + " (block " + std::to_string(b + 1) +
               ") differs from walkthrough output line " + std::to_string(pos + 1) + ":\n  page:   \"" +
               blk.lines[k] + "\"\n  output: \"" + out[pos] + "\"";
    }
  }
  skip_blank();
  if (pos < out.size())
    return "walkthrough output line " + std::to_string(pos + 1) + " \"" + out[pos] +
           "\" is not quoted by docs/bnn-training.md (a new or moved section?)";
  return "";
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// stdout of `cmd`, and its exit status.
std::string run(const std::string& cmd, int& status) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("cannot run " + cmd);
  std::string s;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) s.append(buf, n);
  const int w = pclose(p);
  status = WIFEXITED(w) ? WEXITSTATUS(w) : -1;
  return s;
}

}  // namespace

TEST_CASE("the comparison itself: catches a changed number, a missing section, a new section") {
  const std::string page =
      "intro\n```\n$ build/apps/walkthrough --seed 2\nhello\n== 1. a\n  x 1.00\n```\nprose\n"
      "```cpp\nint not_output;\n```\n```\n== 2. b\n\n  y 2\n```\n";
  const Page p = parse_page(page);
  CHECK(p.args == " --seed 2");
  REQUIRE(p.blocks.size() == 2);
  CHECK(p.blocks[0].doc_line == 4);
  CHECK(p.blocks[1].lines.size() == 3);
  CHECK(compare(p, split_lines("hello\n== 1. a\n  x 1.00\n\n== 2. b\n\n  y 2\n")) == "");
  const std::string changed = compare(p, split_lines("hello\n== 1. a\n  x 1.01\n\n== 2. b\n\n  y 2\n"));
  CHECK(changed.find("line 6") != std::string::npos);
  CHECK(changed.find("x 1.01") != std::string::npos);
  CHECK(compare(p, split_lines("hello\n== 1. a\n  x 1.00\n")).find("has ended") != std::string::npos);
  CHECK(compare(p, split_lines("hello\n== 1. a\n  x 1.00\n\n== 2. b\n\n  y 2\n== 3. new\n"))
            .find("not quoted") != std::string::npos);
  CHECK_THROWS(parse_page("```\nopen\n"));
}

TEST_CASE("docs/bnn-training.md quotes the walkthrough's current output exactly") {
  const std::string bin = QNN_WALKTHROUGH_BIN;
  REQUIRE_MESSAGE(std::filesystem::exists(bin), bin << " is missing: build it first (ninja -C <build> apps/walkthrough)");
  const Page page = parse_page(read_file(std::string(QNN_SOURCE_ROOT) + "/docs/bnn-training.md"));
  REQUIRE(page.blocks.size() >= 8);  // the opening lines and sections 1-7
  int status = -1;
  const std::string out = run("'" + bin + "'" + page.args, status);
  REQUIRE_MESSAGE(status == 0, bin << " exited with status " << status);
  const std::string diff = compare(page, split_lines(out));
  CHECK_MESSAGE(diff.empty(), diff);
}
