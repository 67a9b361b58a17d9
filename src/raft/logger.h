// The raft core's logging seam. The core never writes to a stream itself: it
// hands formatted lines to the Logger injected through Config. Every line the
// core emits starts with "[node=<id> term=<term>]". The server binds this
// interface to spdlog; tests may use StderrLogger.
#pragma once

#include <string_view>

namespace raftkv::raft {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

class Logger {
 public:
  virtual ~Logger() = default;
  // True when lines at `level` are kept. The core checks this before it
  // formats a line, so a disabled level costs nothing.
  virtual bool Enabled(LogLevel level) const = 0;
  // Writes one line. Called from the thread that drives the node.
  virtual void Log(LogLevel level, std::string_view line) = 0;
};

// Discards everything. The default when Config::logger is null.
class NullLogger final : public Logger {
 public:
  bool Enabled(LogLevel) const override { return false; }
  void Log(LogLevel, std::string_view) override {}
};

// Writes lines at or above `min_level` to stderr. Not synchronized beyond
// what stderr gives: use it from one thread.
class StderrLogger final : public Logger {
 public:
  explicit StderrLogger(LogLevel min_level = LogLevel::kInfo)
      : min_level_(min_level) {}
  bool Enabled(LogLevel level) const override { return level >= min_level_; }
  void Log(LogLevel level, std::string_view line) override;

 private:
  LogLevel min_level_;
};

// A process-wide NullLogger, used when no logger is configured.
Logger* DefaultLogger();

}  // namespace raftkv::raft
