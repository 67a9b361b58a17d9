// Server: one raftkv-server member, assembled from its parts.
//
//   <data-dir>/member   what this data directory was created for (name,
//                       store id, member id, cluster id, token, initial
//                       cluster), written before anything else
//   <data-dir>/raft     the raft engine (synced writes)
//   <data-dir>/kv       the kv engine
//   <data-dir>/snap     snapshot files (storage::SnapDir)
//
// Start opens (or, for a new member, creates and bootstraps) the data
// directory, opens the Store on a StoreDriver with a WorkerScheduler, and
// serves the peer service (PeerService) on the peer URLs and the etcd v3
// API (EtcdServices on a RaftKvBackend) on the client URLs. Raft messages
// leave through the PeerTransport, which also forwards followers' writes to
// the leader's member.
//
// Durability: the raft engine's writes are synced before a command is
// answered, so kill -9 loses nothing acknowledged; Stop is for a clean,
// quick exit.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>

#include "absl/status/status.h"
#include "server/config.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace raftkv::storage {
class Engine;
class SnapDir;
}  // namespace raftkv::storage

namespace raftkv::raftstore {
class StoreDriver;
class WorkerScheduler;
}  // namespace raftkv::raftstore

namespace raftkv::server {

class EtcdServices;
class KvBackend;
class PeerService;
class PeerTransport;

class Server {
 public:
  // `config` comes from ValidateFlags.
  explicit Server(ServerConfig config);
  // Stops the server if it runs.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Opens the data directory and starts serving. On a fresh data directory
  // (no member file) of a new cluster, creates it and bootstraps the store
  // with the initial region of every member of the initial cluster; a data
  // directory that exists is resumed. Errors (the server is left stopped,
  // everything it opened closed): FailedPrecondition if the data directory
  // belongs to another member or cluster (name, store id or cluster id
  // differ from the flags), holds engines but no member file, or does not
  // exist with --initial-cluster-state existing ("joining an existing
  // cluster is not supported yet"), or if Start was called before;
  // Unavailable if a URL cannot be listened on; engine and file errors.
  absl::Status Start();

  // Stops serving, in bounded time: stops accepting client calls (those in
  // progress get a short grace period), stops the store's driver (which
  // answers every pending proposal) and the background workers, the peer
  // transport, the gRPC servers, and closes the engines. Idempotent.
  void Stop();

  const ServerConfig& config() const { return config_; }

 private:
  // Checks or creates the member file; see Start.
  absl::Status PrepareDataDir();
  absl::Status OpenStore();
  absl::Status StartServing();
  // Tears down whatever was started, in dependency order.
  void Teardown();

  const ServerConfig config_;
  std::mutex mu_;  // serializes Start and Stop
  bool started_ = false;
  bool stopped_ = false;

  std::unique_ptr<storage::Engine> raft_engine_;
  std::unique_ptr<storage::Engine> kv_engine_;
  std::unique_ptr<storage::SnapDir> snap_dir_;
  std::unique_ptr<raftstore::WorkerScheduler> scheduler_;
  std::unique_ptr<PeerTransport> transport_;
  std::unique_ptr<raftstore::StoreDriver> driver_;
  std::unique_ptr<KvBackend> backend_;
  std::unique_ptr<PeerService> peer_service_;
  std::unique_ptr<EtcdServices> etcd_services_;
  std::unique_ptr<grpc::Server> peer_server_;
  std::unique_ptr<grpc::Server> client_server_;
};

}  // namespace raftkv::server
