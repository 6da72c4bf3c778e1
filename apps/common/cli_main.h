// apps/common/cli_main.h — the end of every app's main(): parse the flags,
// run, and turn any exception into one line "<app>: error: ..." and exit 1.
// A flag error is one line too, naming the flag, before any work:
//   mnist_mlp: error: --lr: must be a number > 0, got -1 (see --help)
// Every app flushes subnormal floats to zero (kernels/denormals.h) before it
// runs, unless QNN_DENORMALS=keep, and checks QNN_WINOGRAD (kernels/winograd.h).
// Header-only (CLI11 + stdio + kernels/sgemm.h) so apps that link only
// kernels/ can use it too.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "kernels/denormals.h"
#include "kernels/winograd.h"
#include "kernels/sgemm.h"

namespace qnn::app {

template <class Run>
int parse_and_run(CLI::App& cli, int argc, char** argv, const char* name, Run&& run) {
  kernels::select_blas_core(argv);  // may restart the program once (see kernels/sgemm.h)
  cli.failure_message([name](const CLI::App*, const CLI::Error& e) {
    return std::string(name) + ": error: " + e.what() + " (see --help)\n";
  });
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);  // --help (exit 0) or a one-line flag error (exit != 0)
  }
  try {
    kernels::apply_denormals_env();  // flush subnormals unless QNN_DENORMALS=keep (kernels/denormals.h)
    kernels::apply_winograd_env();   // QNN_WINOGRAD=0|1|auto, checked (kernels/winograd.h)
    return run();
  } catch (const std::exception& e) {
    std::fflush(stdout);  // keep stdout's last lines before the error
    std::fprintf(stderr, "\n%s: error: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace qnn::app
