#pragma once
// Runs the rechub command (RECHUB_CLI, the built binary) as a program and collects its exit and
// its output (stdout and stderr together).
#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace rechub::testing {

struct CliResult {
  int code = -1;
  bool signaled = false;
  std::string out;  // stdout and stderr together
};

// `env`: assignments ("NAME=value ...") placed before the command; empty for none.
inline CliResult run_cli_env([[maybe_unused]] const std::string& env, [[maybe_unused]] const std::string& args) {
  CliResult r;
#ifdef RECHUB_CLI
  const std::string cmd = (env.empty() ? std::string() : "env " + env + " ") + RECHUB_CLI + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.signaled = WIFSIGNALED(st);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
#endif
  return r;
}

inline CliResult run_cli(const std::string& args) { return run_cli_env("", args); }

}  // namespace rechub::testing
