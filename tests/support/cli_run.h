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

// Runs a shell command line and collects its exit and its output (give it its own 2>&1).
inline CliResult run_shell(const std::string& cmd) {
  CliResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.signaled = WIFSIGNALED(st);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// `env`: assignments ("NAME=value ...") placed before the command; empty for none.
inline CliResult run_cli_env([[maybe_unused]] const std::string& env, [[maybe_unused]] const std::string& args) {
#ifdef RECHUB_CLI
  return run_shell((env.empty() ? std::string() : "env " + env + " ") + RECHUB_CLI + " " + args + " 2>&1");
#else
  return {};
#endif
}

inline CliResult run_cli(const std::string& args) { return run_cli_env("", args); }

}  // namespace rechub::testing
