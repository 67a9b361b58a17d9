// The process-test harness: a cluster of real raftkv-server processes on
// loopback, and helpers to drive it through etcd's v3 gRPC API and to run
// command-line tools.
//
// A Cluster forks and execs one server per member with etcd's flags (free
// ports picked at start, a temporary data directory per member, stdout and
// stderr appended to a log file per member) and kills every process and
// removes every directory when it is destroyed, also when the test failed;
// then it prints the tail of every member's log. A watchdog bounds the test:
// past the deadline it prints the logs, kills the members and exits the test
// binary with a failure. Processes are forked from the thread that built the
// Cluster (they die with it: PR_SET_PDEATHSIG), so call Start from that thread.
#pragma once

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "etcdserverpb/rpc.grpc.pb.h"

namespace raftkv::process_test {

// The raftkv-server binary: $RAFTKV_SERVER_BIN if set, else the one built
// with the tests; empty when neither exists.
std::string ServerBinary();
// The raftkv CLI: $RAFTKV_CLI_BIN if set, else the one built with the tests;
// empty when neither exists.
std::string CliBinary();

// What a finished command printed and how it ended.
struct CommandResult {
  // The exit code, or -1 if it was killed (timeout) or could not start.
  int exit_code = -1;
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs argv[0] (a path) with the arguments argv[1..], `extra_env` entries
// ("NAME=value") added to this process's environment, `stdin_text` on its
// standard input; kills it after `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::vector<std::string>& extra_env,
                         const std::string& stdin_text,
                         std::chrono::milliseconds timeout);

struct ClusterOptions {
  int size = 3;
  // Passed as --heartbeat-interval and --election-timeout (ms, like etcd).
  int heartbeat_ms = 100;
  int election_ms = 1000;
  // The bound of the whole test (the watchdog's deadline).
  std::chrono::seconds test_timeout{60};
  std::string log_level = "info";
};

class Cluster {
 public:
  // Picks the ports and makes the directories; starts nothing. Aborts the
  // test binary if the temporary directory cannot be made.
  explicit Cluster(ClusterOptions options);
  // Kills every member (SIGKILL), reaps them, prints the logs' tails if the
  // current test failed, and removes the directories.
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  int size() const { return static_cast<int>(members_.size()); }
  const ClusterOptions& options() const { return options_; }

  // Starts member i (0-based; named n<i+1>) with the cluster's flags: the
  // same flags on every start, so a second start is a restart that resumes
  // from the data directory. Precondition: it is not running.
  void Start(int i);
  // Starts every member.
  void StartAll();
  // Sends `sig` to member i (no-op if it is not running).
  void Signal(int i, int sig);
  // SIGKILLs member i and reaps it.
  void Kill(int i);
  // SIGTERMs member i and waits up to `timeout` for it to exit; returns its
  // exit status as waitpid reports it, or nullopt if it did not exit in time
  // (it is then SIGKILLed and reaped).
  std::optional<int> Terminate(int i, std::chrono::milliseconds timeout);
  // True when member i's process is running (reaps it if it exited).
  bool Running(int i);

  // "127.0.0.1:<client port>" of member i.
  std::string ClientAddress(int i) const;
  // "http://127.0.0.1:<port>" URLs.
  std::string ClientUrl(int i) const;
  std::string PeerUrl(int i) const;
  int ClientPort(int i) const { return members_[i].client_port; }
  int PeerPort(int i) const { return members_[i].peer_port; }
  std::string Name(int i) const { return members_[i].name; }
  // Every member's client address, comma-separated.
  std::string Endpoints() const;

  // Stubs on member i's client port (channels reconnect quickly after a
  // restart). Made in the constructor: safe to call from any thread.
  etcdserverpb::KV::Stub* Kv(int i);
  etcdserverpb::Maintenance::Stub* Maintenance(int i);
  etcdserverpb::Cluster::Stub* ClusterStub(int i);
  std::shared_ptr<grpc::Channel> Channel(int i);

  // Maintenance.Status of member i within `timeout`.
  grpc::Status Status(
      int i, etcdserverpb::StatusResponse* resp,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));
  // Waits up to `timeout` until every member in `among` that runs reports
  // the same leader, which is one of them and reports itself leader; returns
  // its index, or -1 on timeout.
  int WaitForLeader(const std::vector<int>& among,
                    std::chrono::milliseconds timeout);
  // WaitForLeader among every member.
  int WaitForLeader(std::chrono::milliseconds timeout);
  // Waits until every member answers Status; false on timeout.
  bool WaitForStatus(std::chrono::milliseconds timeout);

  // Put / linearizable or serializable get of one key through member i.
  grpc::Status Put(int i, const std::string& key, const std::string& value,
                   std::chrono::milliseconds timeout,
                   etcdserverpb::PutResponse* resp = nullptr);
  // *value is nullopt when the key is absent.
  grpc::Status Get(int i, const std::string& key, bool serializable,
                   std::chrono::milliseconds timeout,
                   std::optional<std::string>* value,
                   etcdserverpb::RangeResponse* resp = nullptr);

  // The last `lines` lines of member i's log.
  std::string LogTail(int i, int lines) const;
  // Prints every member's log tail to stderr.
  void DumpLogs() const;

  // Nanoseconds since the cluster was made (a monotone clock for
  // histories).
  int64_t NowNs() const;

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    std::string data_dir;
    std::string log_path;
    pid_t pid = -1;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<etcdserverpb::KV::Stub> kv;
    std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance;
    std::unique_ptr<etcdserverpb::Cluster::Stub> cluster;
  };

  void KillAllLocked();
  void Watchdog();

  ClusterOptions options_;
  std::string root_;
  std::chrono::steady_clock::time_point start_;
  std::vector<Member> members_;
  // Guards the pids (the watchdog reads them).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread watchdog_;
};

// A context with a deadline `timeout` from now.
std::unique_ptr<grpc::ClientContext> ContextWithTimeout(
    std::chrono::milliseconds timeout);

}  // namespace raftkv::process_test
