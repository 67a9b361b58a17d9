#include "server/server.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "raftstore/peer_storage.h"
#include "raftstore/store.h"
#include "raftstore/store_driver.h"
#include "server/kv_service.h"
#include "server/peer_transport.h"
#include "server/raft_kv_backend.h"
#include "spdlog/spdlog.h"
#include "storage/engine.h"
#include "storage/keys.h"
#include "storage/snap_files.h"
#include "storepb/raft_serverpb.pb.h"

namespace raftkv::server {

namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::system_clock;

// How long client calls in progress may take to finish once Stop begins,
// before the store stops (which answers whatever still waits on raft).
constexpr milliseconds kClientGrace{1000};
// How long the peer server's calls may take to finish at shutdown before
// gRPC cancels them.
constexpr milliseconds kPeerGrace{500};

constexpr char kMemberFileName[] = "member";
constexpr char kMemberFileMagic[] = "raftkv-member 1";

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016lx", static_cast<unsigned long>(v));
  return buf;
}

absl::Status ErrnoError(std::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(std::string(what), " ", path, ": ", std::strerror(errno)));
}

// Writes `content` to `path` atomically and durably: a temporary file,
// fsynced, renamed over `path`, then the directory fsynced.
absl::Status WriteFileDurably(const std::string& path,
                              const std::string& content) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", tmp);
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status s = ErrnoError("cannot write", tmp);
      ::close(fd);
      return s;
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    absl::Status s = ErrnoError("cannot fsync", tmp);
    ::close(fd);
    return s;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return ErrnoError("cannot rename to", path);
  }
  std::string dir = fs::path(path).parent_path().string();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return ErrnoError("cannot open directory", dir);
  int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) return ErrnoError("cannot fsync directory", dir);
  return absl::OkStatus();
}

// The member file's content: what a data directory was created for.
std::map<std::string, std::string> MemberRecord(const ServerConfig& c) {
  return {
      {"name", c.name},
      {"store_id", std::to_string(c.store_id)},
      {"member_id", Hex(c.member_id)},
      {"cluster_id", Hex(c.cluster_id)},
      {"cluster_token", c.cluster_token},
      {"initial_cluster", c.initial_cluster},
  };
}

std::string EncodeMemberRecord(const std::map<std::string, std::string>& r) {
  std::string out = absl::StrCat(kMemberFileMagic, "\n");
  for (const auto& [k, v] : r) absl::StrAppend(&out, k, "=", v, "\n");
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> ReadMemberRecord(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) return ErrnoError("cannot read", path);
  std::string line;
  if (!std::getline(in, line) || line != kMemberFileMagic) {
    return absl::DataLossError(
        absl::StrCat(path, " is not a raftkv member file"));
  }
  std::map<std::string, std::string> r;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) {
      return absl::DataLossError(
          absl::StrCat(path, ": malformed line \"", line, "\""));
    }
    r[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return r;
}

std::string Describe(const std::map<std::string, std::string>& r) {
  auto get = [&](const std::string& k) {
    auto it = r.find(k);
    return it == r.end() ? std::string("?") : it->second;
  };
  return absl::StrCat("member \"", get("name"), "\" (store ", get("store_id"),
                      ", member id ", get("member_id"), ") of cluster ",
                      get("cluster_id"), " (token \"", get("cluster_token"),
                      "\", initial cluster \"", get("initial_cluster"), "\")");
}

}  // namespace

Server::Server(ServerConfig config) : config_(std::move(config)) {}

Server::~Server() { Stop(); }

absl::Status Server::Start() {
  std::lock_guard l(mu_);
  if (started_) {
    return absl::FailedPreconditionError("the server was already started");
  }
  started_ = true;
  absl::Status s = PrepareDataDir();
  if (s.ok()) s = OpenStore();
  if (s.ok()) s = StartServing();
  if (!s.ok()) {
    Teardown();
    stopped_ = true;
    return s;
  }
  spdlog::info(
      "serving: member {} (store {}) of cluster {}, clients on {}, peers on {}",
      Hex(config_.member_id), config_.store_id, Hex(config_.cluster_id),
      config_.listen_client_urls.front().ToString(),
      config_.listen_peer_urls.front().ToString());
  return absl::OkStatus();
}

absl::Status Server::PrepareDataDir() {
  const fs::path dir(config_.data_dir);
  const std::string member_path = (dir / kMemberFileName).string();
  std::error_code ec;
  const bool has_member = fs::exists(member_path, ec);
  const std::map<std::string, std::string> want = MemberRecord(config_);
  if (has_member) {
    absl::StatusOr<std::map<std::string, std::string>> have =
        ReadMemberRecord(member_path);
    if (!have.ok()) return have.status();
    for (const char* key : {"name", "store_id", "cluster_id"}) {
      auto it = have->find(key);
      if (it == have->end() || it->second != want.at(key)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "data dir ", config_.data_dir, " belongs to ", Describe(*have),
            ", but the flags describe ", Describe(want),
            ": start with the flags it was created with, or use another "
            "--data-dir"));
      }
    }
    spdlog::info("resuming from data dir {}", config_.data_dir);
    return absl::OkStatus();
  }
  for (const char* sub : {"raft", "kv"}) {
    if (fs::exists(dir / sub, ec)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data dir ", config_.data_dir, " holds a ", sub,
          " engine but no member file: it was not created by raftkv-server "
          "or is damaged; use another --data-dir"));
    }
  }
  if (!config_.new_cluster) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--initial-cluster-state existing with no data in ", config_.data_dir,
        ": joining an existing cluster is not supported yet"));
  }
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat(
        "cannot create data dir ", config_.data_dir, ": ", ec.message()));
  }
  spdlog::info("new member: creating data dir {}", config_.data_dir);
  return WriteFileDurably(member_path, EncodeMemberRecord(want));
}

absl::Status Server::OpenStore() {
  const fs::path dir(config_.data_dir);
  storage::EngineOptions raft_options;
  raft_options.path = (dir / "raft").string();
  absl::StatusOr<std::unique_ptr<storage::Engine>> raft =
      storage::Engine::Open(raft_options);
  if (!raft.ok()) return raft.status();
  raft_engine_ = *std::move(raft);
  storage::EngineOptions kv_options;
  kv_options.path = (dir / "kv").string();
  absl::StatusOr<std::unique_ptr<storage::Engine>> kv =
      storage::Engine::Open(kv_options);
  if (!kv.ok()) return kv.status();
  kv_engine_ = *std::move(kv);

  raft_serverpb::StoreIdent ident;
  absl::StatusOr<bool> found =
      kv_engine_->GetProto(storage::StoreIdentKey(), &ident);
  if (!found.ok()) return found.status();
  if (!*found) {
    spdlog::info("bootstrapping store {} with the initial region of {} stores",
                 config_.store_id, config_.members.size());
    absl::Status s = raftstore::BootstrapStore(
        raft_engine_.get(), kv_engine_.get(), config_.cluster_id,
        config_.store_id, raftstore::InitialRegion(config_.members.size()));
    if (!s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat("cannot bootstrap store ", config_.store_id,
                                 " in ", config_.data_dir, ": ", s.message(),
                                 " (an interrupted bootstrap: remove the "
                                 "data dir and start again)"));
    }
  } else if (ident.cluster_id() != config_.cluster_id ||
             ident.store_id() != config_.store_id) {
    return absl::FailedPreconditionError(
        absl::StrCat("data dir ", config_.data_dir, " holds store ",
                     ident.store_id(), " of cluster ", Hex(ident.cluster_id()),
                     ", but the flags describe store ", config_.store_id,
                     " of cluster ", Hex(config_.cluster_id)));
  }

  absl::StatusOr<std::unique_ptr<storage::SnapDir>> snap =
      storage::SnapDir::Open((dir / "snap").string(), nullptr);
  if (!snap.ok()) return snap.status();
  snap_dir_ = *std::move(snap);

  std::map<uint64_t, std::string> peer_urls;
  for (const ClusterMember& m : config_.members) {
    peer_urls[m.store_id] = m.peer_urls.front().ToString();
  }
  transport_ = std::make_unique<PeerTransport>(
      config_.store_id, std::move(peer_urls), snap_dir_.get());
  scheduler_ = std::make_unique<raftstore::WorkerScheduler>();

  raftstore::StoreConfig store_config;
  store_config.store_id = config_.store_id;
  // One tick per heartbeat interval, as etcd counts its timeouts.
  store_config.heartbeat_ticks = 1;
  store_config.election_ticks =
      config_.election_timeout_ms / config_.heartbeat_interval_ms;
  store_config.seed = std::random_device{}();
  absl::StatusOr<std::unique_ptr<raftstore::Store>> store =
      raftstore::Store::Open(store_config, raft_engine_.get(), kv_engine_.get(),
                             transport_.get(), snap_dir_.get(),
                             scheduler_.get());
  if (!store.ok()) return store.status();
  raftstore::StoreDriverOptions driver_options;
  driver_options.tick_interval = milliseconds(config_.heartbeat_interval_ms);
  driver_ = std::make_unique<raftstore::StoreDriver>(*std::move(store),
                                                     driver_options);
  scheduler_->Bind(driver_.get());
  raftstore::StoreDriver* driver = driver_.get();
  transport_->set_deliver_local([driver](raft_serverpb::RaftMessage msg) {
    if (absl::Status s = driver->Deliver(std::move(msg)); !s.ok()) {
      spdlog::debug("snapshot status not delivered: {}", s.ToString());
    }
  });
  return absl::OkStatus();
}

absl::Status Server::StartServing() {
  raftstore::StoreDriver* driver = driver_.get();
  if (absl::Status s = driver_->Start(); !s.ok()) return s;
  if (absl::Status s = transport_->Start(); !s.ok()) return s;

  BackendOptions backend_options;
  backend_options.member_id = config_.member_id;
  for (const ClusterMember& m : config_.members) {
    MemberInfo info;
    info.id = m.member_id;
    info.name = m.name;
    for (const Url& u : m.peer_urls) info.peer_urls.push_back(u.ToString());
    // Other members' client URLs are asked of them (Peer.Member) when a
    // member list needs them.
    if (m.store_id == config_.store_id) {
      for (const Url& u : config_.advertise_client_urls) {
        info.client_urls.push_back(u.ToString());
      }
    }
    backend_options.members.push_back(std::move(info));
  }
  // etcd's request timeout: 5 s plus two election timeouts.
  backend_options.request_timeout_ms = 5000 + 2 * config_.election_timeout_ms;
  PeerTransport* transport = transport_.get();
  backend_options.fetch_client_urls =
      [transport](uint64_t store_id,
                  std::function<void(std::vector<std::string>)> got) {
        transport->FetchMember(
            store_id, /*timeout_ms=*/400,
            [got = std::move(got)](absl::StatusOr<serverpb::MemberResponse> r) {
              if (!r.ok()) return;
              got({r->client_urls().begin(), r->client_urls().end()});
            });
      };
  backend_ = NewRaftKvBackend(driver, kv_engine_.get(), transport_.get(),
                              std::move(backend_options));

  peer_service_ = std::make_unique<PeerService>(
      config_.store_id, snap_dir_.get(),
      [driver](raft_serverpb::RaftMessage msg) {
        return driver->Deliver(std::move(msg));
      },
      [driver](raft_cmdpb::RaftCmdRequest req,
               std::function<void(raft_cmdpb::RaftCmdResponse)> done) {
        ProposeForwarded(driver, std::move(req), std::move(done));
      });
  {
    serverpb::MemberResponse self;
    self.set_name(config_.name);
    for (const Url& u : config_.advertise_client_urls) {
      self.add_client_urls(u.ToString());
    }
    peer_service_->set_member_info(std::move(self));
  }
  {
    grpc::ServerBuilder builder;
    // gRPC sets SO_REUSEPORT by default: a second server on the same port
    // would then start "successfully" and steal half the connections.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    std::vector<int> ports(config_.listen_peer_urls.size(), 0);
    for (size_t i = 0; i < config_.listen_peer_urls.size(); ++i) {
      builder.AddListeningPort(config_.listen_peer_urls[i].HostPort(),
                               grpc::InsecureServerCredentials(), &ports[i]);
    }
    builder.RegisterService(peer_service_.get());
    builder.SetMaxReceiveMessageSize(kPeerMaxMessageBytes);
    peer_server_ = builder.BuildAndStart();
    for (size_t i = 0; i < ports.size(); ++i) {
      if (peer_server_ == nullptr || ports[i] == 0) {
        return absl::UnavailableError(
            absl::StrCat("cannot listen for peers on ",
                         config_.listen_peer_urls[i].ToString(),
                         " (address in use or not local?)"));
      }
    }
  }

  EtcdServiceOptions service_options;
  service_options.cluster_id = config_.cluster_id;
  service_options.member_id = config_.member_id;
  etcd_services_ =
      std::make_unique<EtcdServices>(backend_.get(), service_options);
  {
    grpc::ServerBuilder builder;
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    std::vector<int> ports(config_.listen_client_urls.size(), 0);
    for (size_t i = 0; i < config_.listen_client_urls.size(); ++i) {
      builder.AddListeningPort(config_.listen_client_urls[i].HostPort(),
                               grpc::InsecureServerCredentials(), &ports[i]);
    }
    etcd_services_->RegisterOn(&builder);
    client_server_ = builder.BuildAndStart();
    for (size_t i = 0; i < ports.size(); ++i) {
      if (client_server_ == nullptr || ports[i] == 0) {
        return absl::UnavailableError(
            absl::StrCat("cannot listen for clients on ",
                         config_.listen_client_urls[i].ToString(),
                         " (address in use or not local?)"));
      }
    }
  }
  return absl::OkStatus();
}

void Server::Stop() {
  std::lock_guard l(mu_);
  if (!started_ || stopped_) return;
  stopped_ = true;
  spdlog::info("stopping");
  Teardown();
  spdlog::info("stopped");
}

void Server::Teardown() {
  // 1. Stop accepting client calls; those in progress may finish within
  //    the grace period. Shutdown blocks until every call is finished, so
  //    it runs on a thread of its own while the rest stops below.
  std::promise<void> client_quiet;
  std::future<void> client_quiet_f = client_quiet.get_future();
  std::thread client_shutdown;
  if (client_server_ != nullptr) {
    client_shutdown =
        std::thread([this, done = std::move(client_quiet)]() mutable {
          client_server_->Shutdown(system_clock::now() + kClientGrace);
          done.set_value();
        });
    client_quiet_f.wait_for(kClientGrace);
  }
  // 2. Stop the store: every pending proposal (and the call waiting on it)
  //    is answered. Then the background workers.
  if (driver_ != nullptr) driver_->Stop();
  if (scheduler_ != nullptr) scheduler_->Shutdown();
  // 3. Stop the transport: outgoing streams end, pending forwards are
  //    answered (Unavailable), so the last client calls finish.
  if (transport_ != nullptr) transport_->Stop();
  if (client_shutdown.joinable()) client_shutdown.join();
  // 4. The peer server (deliveries into the stopped driver fail and are
  //    dropped; forwarded commands are answered NotLeader at once).
  if (peer_server_ != nullptr) {
    peer_server_->Shutdown(system_clock::now() + kPeerGrace);
  }
  // 5. Destroy in dependency order: the servers before their services,
  //    the backend before the driver and transport it uses, the driver
  //    (and its store) before the scheduler, the engines last.
  client_server_.reset();
  peer_server_.reset();
  etcd_services_.reset();
  peer_service_.reset();
  backend_.reset();
  transport_.reset();
  driver_.reset();
  scheduler_.reset();
  snap_dir_.reset();
  kv_engine_.reset();
  raft_engine_.reset();
}

}  // namespace raftkv::server
