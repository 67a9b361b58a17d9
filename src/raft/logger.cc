#include "raft/logger.h"

#include <cstdio>

namespace raftkv::raft {

void StderrLogger::Log(LogLevel level, std::string_view line) {
  static constexpr const char* kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  std::fprintf(stderr, "%s %.*s\n", kNames[static_cast<int>(level)],
               static_cast<int>(line.size()), line.data());
}

Logger* DefaultLogger() {
  static NullLogger logger;
  return &logger;
}

}  // namespace raftkv::raft
