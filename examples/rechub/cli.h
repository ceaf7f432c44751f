#pragma once
// The rechub command's subcommands (examples/rechub): each registers its flags on a CLI11 app and
// returns the function that runs it.
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "core/device.h"
#include "mtl/metrics/evaluate.h"

namespace rechub::cli {

using Runner = std::function<int()>;

Runner add_train(CLI::App& app);
Runner add_eval(CLI::App& app);
Runner add_predict(CLI::App& app);
Runner add_synth(CLI::App& app);
Runner add_export(CLI::App& app);  // examples/rechub/export.cpp

// Flag checks with short messages ("--lr: must be a positive number, got 'abc'").
CLI::Validator positive();
CLI::Validator non_negative();

// "256,128" -> {256, 128}; "click=1e-3,purchase=5e-4" -> pairs. Throw rechub::Error naming the flag.
std::vector<int64_t> parse_int_list(const std::string& flag, const std::string& s);
std::vector<double> parse_double_list(const std::string& flag, const std::string& s);
std::vector<std::string> parse_name_list(const std::string& flag, const std::string& s);

// --device: "cpu", "cuda" or "cuda:N". Throws rechub::Error with a clear message for an unknown
// name, a build without the CUDA backend, or a device that is not visible.
Device parse_device_flag(const std::string& s);

// The per-task table of `rechub train` and `rechub eval`: a header, then one row per task with AUC
// and LogLoss at `decimals` places (MSE and MAE for regression tasks).
void print_task_rows(const metrics::EvalResult& r, int decimals);

}  // namespace rechub::cli
