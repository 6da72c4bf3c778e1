// tests/fuzz/fuzz_util.h — shared by the libFuzzer harnesses of tests/fuzz/.
//
// Every harness feeds one input to one reader of outside files. A qnn::Error
// (or, for kernels/ readers, the documented std::runtime_error) is the reader
// refusing bad input: a normal outcome. Anything else — another exception
// (it escapes LLVMFuzzerTestOneInput and aborts), a crash, a sanitizer report,
// a hang past -timeout, an allocation past -rss_limit_mb, or a FUZZ_CHECK that
// fails — is a finding.
//
// Readers that take a path get the input through FuzzTempDir: one private
// directory per process under $TMPDIR (default /tmp), rewritten for every
// input and removed at exit.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

// Aborts (a finding libFuzzer saves) when a property of an accepted input fails.
#define FUZZ_CHECK(cond, msg)                                                  \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s: %s\n", #cond, msg);         \
      std::abort();                                                            \
    }                                                                          \
  } while (0)

namespace qnn_fuzz {

namespace fs = std::filesystem;

class FuzzTempDir {
 public:
  FuzzTempDir() {
    const char* t = std::getenv("TMPDIR");
    std::string tmpl = std::string(t && *t ? t : "/tmp") + "/qnn-fuzz.XXXXXX";
    if (!mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    root_ = tmpl;
  }
  ~FuzzTempDir() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  FuzzTempDir(const FuzzTempDir&) = delete;
  FuzzTempDir& operator=(const FuzzTempDir&) = delete;

  const fs::path& root() const { return root_; }

  // Writes `n` bytes to root/rel (creating its folders) and returns the path.
  std::string write(const std::string& rel, const uint8_t* data, size_t n) const {
    const fs::path p = root_ / rel;
    std::error_code ec;
    fs::create_directories(p.parent_path(), ec);
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), (std::streamsize)n);
    f.close();
    if (!f) {
      std::fprintf(stderr, "fuzz: cannot write %s\n", p.c_str());
      std::abort();
    }
    return p.string();
  }
  std::string write(const std::string& rel, const std::string& s) const {
    return write(rel, reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  void remove(const std::string& rel) const {
    std::error_code ec;
    fs::remove(root_ / rel, ec);
  }

 private:
  fs::path root_;
};

// The per-process directory: a function-local static, destroyed (and removed)
// when libFuzzer exits normally.
inline const FuzzTempDir& temp_dir() {
  static FuzzTempDir dir;
  return dir;
}

// A refusal (the normal outcome). With QNN_FUZZ_VERBOSE=1 in the environment
// the message is printed: how to check that a seed file is accepted, or why not.
inline void refused(const std::exception& e) {
  static const bool verbose = std::getenv("QNN_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "refused: %s\n", e.what());
}
inline void accepted(const char* what) {
  static const bool verbose = std::getenv("QNN_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "accepted: %s\n", what);
}

inline std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace qnn_fuzz
