// The rechub command, run as a program: every subcommand's --help, the error paths (non-zero
// exit, a message naming the flag or file, no crash, no half-written output) and the
// synth -> train -> eval -> predict flow.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "rechub/core/rng.h"
#include "rechub/mtl/predictor/predictor.h"
#include "support/cli_run.h"

namespace rechub {
namespace {

namespace fs = std::filesystem;

using Result = testing::CliResult;
Result run(const std::string& args) { return testing::run_cli(args); }
// The same with environment assignments ("NAME=value") before the command.
Result run_env(const std::string& env, const std::string& args) { return testing::run_cli_env(env, args); }

class RechubCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("rechub_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  void SetUp() override {
#ifndef RECHUB_CLI
    GTEST_SKIP() << "the rechub command is not built (RECHUB_BUILD_EXAMPLES=OFF)";
#endif
  }
  // Fails unless the command exited non-zero without a crash and its output holds `needle`.
  static void expect_error(const std::string& args, const std::string& needle) {
    const Result r = run(args);
    EXPECT_FALSE(r.signaled) << args << "\n" << r.out;
    EXPECT_NE(r.code, 0) << args << "\n" << r.out;
    EXPECT_NE(r.out.find(needle), std::string::npos) << "rechub " << args << "\nexpected '" << needle << "' in:\n"
                                                     << r.out;
  }
  static inline fs::path dir_;
};

TEST_F(RechubCli, HelpForEverySubcommand) {
  for (const std::string sub : {"train", "eval", "predict", "synth"}) {
    const Result r = run(sub + " --help");
    EXPECT_EQ(r.code, 0) << sub << "\n" << r.out;
    EXPECT_NE(r.out.find("--"), std::string::npos) << r.out;
  }
  const Result t = run("train --help");
  for (const char* flag : {"--balance", "--task-lr", "--gradnorm-alpha", "--relax-factor", "--expert-units",
                           "--num-shared-experts", "--resume", "--task-types", "--schema"})
    EXPECT_NE(t.out.find(flag), std::string::npos) << flag;
  EXPECT_EQ(run("--help").code, 0);
}

TEST_F(RechubCli, BadFlagsAreClearErrors) {
  expect_error("", "subcommand");
  expect_error("fly", "subcommand");
  expect_error("train --out x", "--train");
  expect_error("train --train a.csv --out x --bogus 1", "--bogus");
  expect_error("train --train a.csv --out x --model transformer", "--model");
  expect_error("train --train a.csv --out x --balance magic", "--balance");
  expect_error("train --train a.csv --out x --epochs 0", "--epochs");
  expect_error("train --train a.csv --out x --lr abc", "--lr");
  expect_error("train --train a.csv --out x --tasks click --hidden-units 64,x", "--hidden-units");
  expect_error("train --train a.csv --out x --tasks click --task-lr click", "--task-lr");
  expect_error("train --train a.csv --out x --tasks click --task-weights 1,z", "--task-weights");
  expect_error("train --train " + (dir_ / "missing.csv").string() + " --out x --tasks click", "no such file");
  expect_error("eval --data x.csv", "--model");
  expect_error("eval --model " + (dir_ / "none.safetensors").string() + " --data x.csv", "none.safetensors");
  expect_error("predict --model m --data d", "--out");
  expect_error("synth --kind movielens --out x", "--kind");
  expect_error("synth --rows -5 --out x", "--rows");
  expect_error("synth --kind mmoe --correlation 2 --out x", "--correlation");
}

TEST_F(RechubCli, SynthTrainEvalPredictFlow) {
  const fs::path data = dir_ / "data", out = dir_ / "run";
  Result r = run("synth --kind ali-ccp --rows 4000 --seed 2 --out " + data.string());
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* f : {"ali_ccp_train.csv", "ali_ccp_val.csv", "ali_ccp_test.csv"})
    EXPECT_TRUE(fs::exists(data / f)) << f;
  const std::string train = (data / "ali_ccp_train.csv").string(), val = (data / "ali_ccp_val.csv").string(),
                    test = (data / "ali_ccp_test.csv").string();

  // Data errors: a label column that is not in the file, a feature list naming a missing column.
  expect_error("train --train " + train + " --tasks click,bought --out " + out.string() + " --quiet --no-cache",
               "bought");
  expect_error("train --train " + train + " --tasks click,purchase --sparse nope --out " + out.string() + " --quiet",
               "nope");
  expect_error("train --train " + train + " --tasks click,purchase --task-lr views=1e-3 --out " + out.string() +
                   " --quiet --no-cache",
               "views");
  expect_error("train --train " + train + " --tasks click,purchase --task-types binary --out " + out.string() +
                   " --quiet --no-cache",
               "--task-types");

  r = run("train --train " + train + " --val " + val + " --test " + test +
          " --tasks click,purchase --model mmoe --epochs 1 --batch-size 512 --embed-dim 4 --expert-units 16"
          " --num-experts 2 --tower-units 8 --balance gradnorm --task-lr click=2e-3,purchase=1e-3 --out " +
          out.string() + " --quiet --no-cache");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("test metrics"), std::string::npos) << r.out;
  for (const char* f :
       {"model.safetensors", "checkpoint.safetensors", "metrics.jsonl", "report.svg", "test_metrics.json"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  const std::string model = (out / "model.safetensors").string();

  r = run("eval --model " + model + " --data " + test + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["rows"].get<int64_t>(), 400);
  for (const char* t : {"click", "purchase"}) {
    EXPECT_TRUE(j["tasks"][t]["auc"].is_number()) << r.out;
    EXPECT_TRUE(j["tasks"][t]["logloss"].is_number()) << r.out;
  }
  // The same numbers as the table written at the end of training.
  const auto tm = nlohmann::json::parse(std::ifstream(out / "test_metrics.json"));
  EXPECT_DOUBLE_EQ(tm["tasks"]["click"]["auc"].get<double>(), j["tasks"]["click"]["auc"].get<double>());

  // predict: one column per task, rows in input order (compared with the in-process Predictor).
  const fs::path preds = dir_ / "preds.csv";
  r = run("predict --model " + model + " --data " + test + " --out " + preds.string());
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream pf(preds);
  std::string line;
  std::getline(pf, line);
  EXPECT_EQ(line, "click,purchase");
  trainer::Predictor p(model);
  const auto raw = data::read_raw_rows(test, p.preprocessor().csv_options());
  const auto want = p.predict(raw.rows, raw.header);
  size_t row = 0;
  while (std::getline(pf, line)) {
    ASSERT_LT(row, want.size());
    double a = 0, b = 0;
    ASSERT_EQ(std::sscanf(line.c_str(), "%lf,%lf", &a, &b), 2) << line;
    EXPECT_NEAR(a, want[row][0], 1e-8);
    EXPECT_NEAR(b, want[row][1], 1e-8);
    ++row;
  }
  EXPECT_EQ(row, want.size());

  // Errors after loading: predict into a missing directory leaves nothing behind; a corrupt
  // checkpoint is refused.
  expect_error("predict --model " + model + " --data " + test + " --out " + (dir_ / "no/such/dir/p.csv").string(),
               "does not exist");
  EXPECT_FALSE(fs::exists(dir_ / "no"));
  const fs::path bad = dir_ / "bad.safetensors";
  {
    std::ifstream in(model, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string bytes = ss.str();
    bytes.resize(bytes.size() / 2);
    std::ofstream(bad, std::ios::binary) << bytes;
  }
  expect_error("eval --model " + bad.string() + " --data " + test, "bad.safetensors");
  expect_error("eval --model " + model + " --data " + (dir_ / "nothing.csv").string(), "nothing.csv");
  // resume with a different strategy is refused, naming both
  expect_error("train --train " + train +
                   " --tasks click,purchase --model mmoe --epochs 2 --embed-dim 4"
                   " --expert-units 16 --num-experts 2 --tower-units 8 --balance pcgrad --resume --out " +
                   out.string() + " --quiet --no-cache",
               "gradnorm");
}

}  // namespace
}  // namespace rechub

namespace rechub {
namespace {

// --device: an unknown name, and cuda where this build has no CUDA backend or no device is
// visible, end with a clear error (non-zero exit, no crash) before any data is read.
TEST_F(RechubCli, DeviceFlagErrorsAreClear) {
  expect_error("train --train a.csv --out x --device tpu", "--device 'tpu'");
  expect_error("eval --model m.safetensors --data x.csv --device cuda:x", "--device");
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is visible: the missing-device error cannot be produced";
#ifdef RECHUB_WITH_CUDA
  const char* why = "no CUDA device is visible";
#else
  const char* why = "no CUDA backend";
#endif
  expect_error("train --train a.csv --out x --device cuda", why);
  expect_error("train --train a.csv --out x --device cuda:1", why);
  expect_error("predict --model m.safetensors --data x.csv --out p.csv --device cuda", why);
}

}  // namespace
}  // namespace rechub

namespace rechub {
namespace {

// The lines of a file; `edit` changes field `column` (by header name) of 1-based line `line`.
std::string edited_csv(const fs::path& src, int64_t line, const std::string& column, const std::string& value) {
  std::ifstream in(src);
  std::string header, l, out;
  std::getline(in, header);
  std::vector<std::string> names;
  {
    std::stringstream hs(header);
    std::string n;
    while (std::getline(hs, n, ',')) names.push_back(n);
  }
  const auto col = static_cast<size_t>(std::find(names.begin(), names.end(), column) - names.begin());
  out = header + "\n";
  for (int64_t at = 2; std::getline(in, l); ++at) {
    if (at == line) {
      std::vector<std::string> f;
      std::stringstream ls(l);
      std::string x;
      while (std::getline(ls, x, ',')) f.push_back(x);
      f.at(col) = value;
      l.clear();
      for (size_t i = 0; i < f.size(); ++i) l += (i ? "," : "") + f[i];
    }
    out += l + "\n";
  }
  return out;
}

void write_text(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// A small model; a command adds --epochs and --batch-size.
const std::string kModel =
    " --tasks click,purchase --model mmoe --embed-dim 4 --expert-units 8 --num-experts 2 --tower-units 4 --quiet";
const std::string kSmall = kModel + " --epochs 1 --batch-size 256";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A stray value among the rows inference reads is an error naming file, line, column and what
// settles it; so is a bad value in eval's and predict's input, by its line in the file.
TEST_F(RechubCli, StrayValuesAreErrorsNamingFileAndLine) {
  const fs::path data = dir_ / "stray";
  ASSERT_EQ(run("synth --kind ali-ccp --rows 2000 --seed 3 --out " + data.string()).code, 0);
  const fs::path train = data / "ali_ccp_train.csv";
  for (const std::string word : {"nan", "abc"}) {
    const fs::path bad = data / ("bad_dense_" + word + ".csv");
    write_text(bad, edited_csv(train, 40, "D1", word));
    expect_error("train --train " + bad.string() + kSmall + " --no-cache --out " + (dir_ / "stray_run").string(),
                 bad.string() + ":40: column 'D1' = '" + word + "': not a number");
    expect_error("train --train " + bad.string() + kSmall + " --no-cache --out " + (dir_ / "stray_run").string(),
                 "--dense D1");
  }
  const fs::path bad_label = data / "bad_label.csv";
  write_text(bad_label, edited_csv(train, 41, "click", "2"));
  expect_error("train --train " + bad_label.string() + kSmall + " --no-cache --out " + (dir_ / "stray_run").string(),
               bad_label.string() + ":41: label column 'click' = '2': not 0 or 1");
  expect_error("train --train " + bad_label.string() + kSmall + " --no-cache --out " + (dir_ / "stray_run").string(),
               "--task-types binary");

  const fs::path out = dir_ / "stray_model";
  Result r = run("train --train " + train.string() + kSmall + " --no-cache --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string model = (out / "model.safetensors").string();
  const fs::path bad_rows = data / "bad_rows.csv";
  write_text(bad_rows, edited_csv(train, 1500, "D1", "abc"));
  // Line 1500 is row 1498 of the data, in the 15th batch of 100: named by its line, not by its
  // index within a batch.
  expect_error("predict --model " + model + " --batch-size 100 --data " + bad_rows.string() + " --out " +
                   (dir_ / "p.csv").string(),
               bad_rows.string() + ":1500: column 'D1' = 'abc'");
  expect_error("eval --model " + model + " --data " + bad_rows.string(), bad_rows.string() + ":1500: column 'D1'");
  EXPECT_FALSE(fs::exists(dir_ / "p.csv"));
}

// Mistakes that used to end in silent damage or a crash: each is refused (or corrected with a
// warning) with a message naming the flag, the file or the other process.
TEST_F(RechubCli, RunGuards) {
  const fs::path data = dir_ / "guards";
  ASSERT_EQ(run("synth --kind ali-ccp --rows 2000 --seed 4 --out " + data.string()).code, 0);
  const std::string train = (data / "ali_ccp_train.csv").string(), test = (data / "ali_ccp_test.csv").string();
  const std::string out = (dir_ / "guards_run").string();

  // An output over an input, and a split that is the training file under another spelling.
  expect_error(
      "train --train " + train + " --val " + (data / "." / "ali_ccp_train.csv").string() + kSmall + " --out " + out,
      "are the same file");
  // Another run holds --out: refused, naming its PID.
  fs::create_directories(dir_ / "locked");
  {
    const int fd = ::open((dir_ / "locked" / ".rechub.lock").c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
    ASSERT_EQ(::write(fd, "4242\n", 5), 5);
    expect_error("train --train " + train + kSmall + " --out " + (dir_ / "locked").string(), "(PID 4242)");
    ::close(fd);
  }
  EXPECT_FALSE(fs::exists(dir_ / "locked" / "checkpoint.safetensors"));
  // Thread counts: a flag far above the cores is refused; the environment variable is replaced.
  expect_error("train --train " + train + kSmall + " --threads 100000 --out " + out, "--threads 100000: more than");
  // Sizes that cannot fit are refused with the figure, before anything is allocated.
  expect_error("train --train " + train + " --tasks click,purchase --embed-dim 100000000 --quiet --out " + out,
               "the model needs at least");
  // A learning rate that sends the weights to infinity stops training with an error.
  Result r = run("train --train " + train + kSmall + " --lr 1e39 --out " + (dir_ / "diverged").string());
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("training stopped"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "diverged" / "model.safetensors"));

  r = run("train --train " + train + kSmall + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string model = (fs::path(out) / "model.safetensors").string();
  r = run_env("OMP_NUM_THREADS=100000", "eval --model " + model + " --data " + test);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("warning: OMP_NUM_THREADS=100000"), std::string::npos) << r.out;
  // predict over its own input
  const std::string before = slurp(test);
  expect_error("predict --model " + model + " --data " + test + " --out " + test, "are the same file");
  EXPECT_EQ(slurp(test), before);
  // Resume with another learning rate or batch size: refused, naming the setting.
  const std::string resume = "train --train " + train + kModel + " --epochs 2 --resume --out " + out;
  expect_error(resume + " --batch-size 256 --lr 0.01", "lr: 0.001 in the checkpoint, 0.01 now");
  expect_error(resume + " --batch-size 128", "batch_size: 256 in the checkpoint, 128 now");
  r = run(resume + " --batch-size 256");
  EXPECT_EQ(r.code, 0) << r.out;
}

// The cache follows the file's bytes: a rewrite with the same size and the old mtime (touch -r)
// with every label inverted is parsed again.
TEST_F(RechubCli, RewrittenFileWithRestoredMtimeIsNotReadFromTheCache) {
  const fs::path data = dir_ / "cache";
  ASSERT_EQ(run("synth --kind ali-ccp --rows 2000 --seed 5 --out " + data.string()).code, 0);
  const fs::path train = data / "ali_ccp_train.csv";
  const std::string cmd = "train --train " + train.string() + kSmall + " --out " + (dir_ / "cache_run").string();
  Result r = run(cmd);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto mtime = fs::last_write_time(train);
  std::string text;
  {
    std::ifstream in(train);
    std::string l;
    std::getline(in, l);
    text = l + "\n";
    while (std::getline(in, l)) {
      l[0] = l[0] == '0' ? '1' : '0';  // click is the first column
      text += l + "\n";
    }
  }
  ASSERT_EQ(text.size(), fs::file_size(train));
  write_text(train, text);
  fs::last_write_time(train, mtime);
  r = run(cmd);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("is stale: the source changed"), std::string::npos) << r.out;
}

// An interrupted synth leaves no temporary folder behind.
TEST_F(RechubCli, InterruptedSynthLeavesNoTemporaryFolder) {
#ifdef RECHUB_CLI
  const fs::path out = dir_ / "synth_int";
  fs::create_directories(out);
  for (const int sig : {SIGINT, SIGTERM}) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::execl(RECHUB_CLI, RECHUB_CLI, "synth", "--rows", "50000000", "--out", out.c_str(), nullptr);
      ::_exit(127);
    }
    const fs::path tmp = out / (".synth-tmp-" + std::to_string(pid));
    for (int i = 0; i < 1000 && !fs::exists(tmp); ++i) ::usleep(10000);
    EXPECT_TRUE(fs::exists(tmp));
    ::usleep(100000);
    ::kill(pid, sig);
    int st = 0;
    ASSERT_EQ(::waitpid(pid, &st, 0), pid);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 128 + sig) << st;
    EXPECT_FALSE(fs::exists(tmp));
    EXPECT_TRUE(fs::is_empty(out));
  }
#endif
}

// The trained weights do not depend on --threads: 1, 2 and 3 threads write the same bytes (MMoE and
// PLE, dropout on, one epoch). Holds where the GEMM is rechub's own (AVX2 or AVX-512 kernels: the depth
// is never split across threads, BatchNorm sums fixed row blocks in order); Eigen's GEMM on a CPU
// without AVX2 re-blocks with the thread count, which the README says.
TEST_F(RechubCli, TheThreadCountDoesNotChangeTheTrainedWeights) {
  const bool own_gemm = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (!own_gemm) GTEST_SKIP() << "no AVX2 + FMA: the generic GEMM path does not promise this";
  const fs::path data = dir_ / "threads_data";
  ASSERT_EQ(run("synth --kind ali-ccp --rows 12000 --out " + data.string()).code, 0);
  for (const std::string model : {"mmoe", "ple"}) {
    std::string first;
    for (int threads : {1, 2, 3}) {
      const fs::path out = dir_ / ("threads_" + model + std::to_string(threads));
      const Result r =
          run_env("RECHUB_CPU=", "train --train " + (data / "ali_ccp_train.csv").string() + " --val " +
                                     (data / "ali_ccp_val.csv").string() + " --tasks click,purchase --model " + model +
                                     " --epochs 1 --batch-size 512 --dropout 0.1 --threads " + std::to_string(threads) +
                                     " --out " + out.string());
      ASSERT_EQ(r.code, 0) << r.out;
      std::ifstream f(out / "model.safetensors", std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      ASSERT_FALSE(bytes.empty());
      if (threads == 1)
        first = bytes;
      else
        EXPECT_TRUE(bytes == first) << model << ": --threads " << threads << " wrote other weights than --threads 1";
    }
  }
}

}  // namespace
}  // namespace rechub

namespace rechub {
namespace {

// Missing labels, the new balancers and the gate report from the command line: a CSV with ~30 %
// of its purchase labels empty trains with --missing-label purchase=skip and each of mgda, cagrad
// and metabalance's reduce strategy; eval --json --gates reports the purchase rows counted while
// writing the file and the gates; the flags' mistakes are clear errors.
TEST_F(RechubCli, MissingLabelsNewBalancersAndGates) {
  const fs::path csv = dir_ / "missing.csv";
  int64_t rows = 0, labelled = 0;
  {
    Generator gen(9);
    std::ofstream f(csv);
    f << "u,i,price,click,purchase\n";
    for (; rows < 1200; ++rows) {
      const int click = gen.uniform() < 0.3 ? 1 : 0;
      f << gen.randint(20) << ',' << gen.randint(30) << ',' << gen.uniform() << ',' << click << ',';
      if (gen.uniform() < 0.3) {
        f << '\n';
        continue;
      }
      f << (click && gen.uniform() < 0.4 ? 1 : 0) << '\n';
      ++labelled;
    }
  }
  const std::string base = "train --train " + csv.string() +
                           " --tasks click,purchase --sparse u,i --dense price --epochs 1 --batch-size 128"
                           " --expert-units 8 --tower-units 4 --num-experts 2 --quiet --no-cache";
  expect_error(base + " --out " + (dir_ / "m0").string(), "a label cannot be missing");
  expect_error(base + " --missing-label buy=skip --out " + (dir_ / "m1").string(), "no task 'buy'");
  expect_error(base + " --missing-label purchase=maybe --out " + (dir_ / "m2").string(), "task=skip");
  expect_error(base + " --missing-label-value -1 --out " + (dir_ / "m3").string(), "--missing-label-value");
  expect_error(base + " --missing-labels skip --balance cagrad --cagrad-c -1 --out " + (dir_ / "m4").string(),
               "--cagrad-c");
  expect_error(
      base + " --missing-labels skip --balance metabalance --metabalance-strategy half --out " + (dir_ / "m5").string(),
      "--metabalance-strategy");
  for (const std::string extra :
       {"--balance mgda", "--balance cagrad --cagrad-c 0.3", "--balance metabalance --metabalance-strategy reduce"}) {
    SCOPED_TRACE(extra);
    const fs::path out = dir_ / ("m_" + std::to_string(std::hash<std::string>{}(extra)));
    const Result t = run(base + " --missing-label purchase=skip " + extra + " --out " + out.string());
    ASSERT_EQ(t.code, 0) << t.out;
    const Result e =
        run("eval --model " + (out / "model.safetensors").string() + " --data " + csv.string() + " --json --gates");
    ASSERT_EQ(e.code, 0) << e.out;
    const auto j = nlohmann::json::parse(e.out.substr(e.out.find('{')));
    EXPECT_EQ(j["tasks"]["purchase"]["rows"].get<int64_t>(), labelled);
    EXPECT_EQ(j["tasks"]["click"]["rows"].get<int64_t>(), rows);
    EXPECT_TRUE(j["tasks"]["purchase"]["auc"].is_number());
    EXPECT_EQ(j["gates"].size(), 2u);  // MMoE: one gate per task
    EXPECT_TRUE(j["gate_warnings"].is_array());
  }
}

}  // namespace
}  // namespace rechub
