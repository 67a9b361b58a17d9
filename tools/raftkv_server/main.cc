// raftkv-server: one member of a raftkv cluster, serving etcd's v3 API.
//
//   raftkv-server --name n1 --data-dir n1.data
//     --listen-client-urls http://127.0.0.1:2379
//     --advertise-client-urls http://127.0.0.1:2379
//     --listen-peer-urls http://127.0.0.1:2380
//     --initial-advertise-peer-urls http://127.0.0.1:2380
//     --initial-cluster n1=http://127.0.0.1:2380,n2=...,n3=...
//
// Takes etcd's flags with etcd's meaning (src/server/config.h). Runs until
// SIGINT or SIGTERM, then stops cleanly and exits 0; a second signal during
// the shutdown exits at once (status 1; nothing acknowledged is lost, the
// raft log is synced). Exit status 2: bad flags; 1: the server could not
// start (the log says why).
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "server/config.h"
#include "server/server.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {

spdlog::level::level_enum ToSpdlog(raftkv::server::LogLevel level) {
  switch (level) {
    case raftkv::server::LogLevel::kDebug:
      return spdlog::level::debug;
    case raftkv::server::LogLevel::kInfo:
      return spdlog::level::info;
    case raftkv::server::LogLevel::kWarn:
      return spdlog::level::warn;
    case raftkv::server::LogLevel::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

// Logs go to stderr, as etcd's do, each line tagged with the member name.
void SetUpLogging(const raftkv::server::ServerConfig& config) {
  auto logger = spdlog::stderr_color_mt("raftkv");
  spdlog::set_default_logger(logger);
  std::string name;
  for (char c : config.name) {
    if (c == '%') name += '%';  // '%' starts a pattern flag
    name += c;
  }
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%L%$ [" + name + "] %v");
  spdlog::set_level(ToSpdlog(config.log_level));
  spdlog::flush_on(spdlog::level::info);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "raftkv-server: a replicated key-value store on Raft, serving etcd's v3 "
      "API (takes etcd's flags)"};
  raftkv::server::ServerFlags flags;
  raftkv::server::RegisterFlags(&app, &flags);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  absl::StatusOr<raftkv::server::ServerConfig> config =
      raftkv::server::ValidateFlags(flags);
  if (!config.ok()) {
    std::fprintf(stderr, "raftkv-server: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }

  // Debian's abseil is built without NDEBUG, so absl::Mutex (which gRPC
  // uses for every call) runs its deadlock detector on each Lock: a lock
  // graph update per acquisition, several percent of the server's CPU
  // under load. The detector is a debugging aid; turn it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // SIGINT and SIGTERM are blocked in every thread (threads inherit the
  // mask, so block them before any starts) and taken by sigwait below: no
  // work happens in a signal handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  if (int rc = pthread_sigmask(SIG_BLOCK, &signals, nullptr); rc != 0) {
    std::fprintf(stderr, "raftkv-server: pthread_sigmask: %s\n",
                 std::strerror(rc));
    return 1;
  }

  SetUpLogging(*config);
  auto server = std::make_unique<raftkv::server::Server>(*config);
  if (absl::Status s = server->Start(); !s.ok()) {
    spdlog::error("cannot start: {}", std::string(s.message()));
    return 1;
  }

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}, shutting down", strsignal(sig));
  // A second signal while stopping: exit at once.
  std::thread([signals] {
    int again = 0;
    sigwait(&signals, &again);
    std::fprintf(stderr, "raftkv-server: received %s again, exiting now\n",
                 strsignal(again));
    _exit(1);
  }).detach();
  server->Stop();
  server.reset();
  spdlog::shutdown();
  return 0;
}
