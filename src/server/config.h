// The raftkv-server flags: etcd's flags with etcd's meaning and defaults, so
// that an etcd start script works by changing the binary name, and their
// validation into a ServerConfig.
//
//   --name                         member name ("default")
//   --data-dir                     data directory ("<name>.etcd")
//   --listen-client-urls           where the etcd v3 API listens
//                                  ("http://localhost:2379")
//   --advertise-client-urls        this member's client URLs as reported by
//                                  Cluster.MemberList ("http://localhost:2379")
//   --listen-peer-urls             where the peer service listens
//                                  ("http://localhost:2380")
//   --initial-advertise-peer-urls  this member's peer URLs in
//                                  --initial-cluster ("http://localhost:2380")
//   --initial-cluster              name=url,... of every member
//                                  (default: <name>=<each advertised peer url>)
//   --initial-cluster-state        new | existing ("new")
//   --initial-cluster-token        cluster token ("etcd-cluster")
//   --log-level                    debug | info | warn | error ("info")
//   --heartbeat-interval           ms between leader heartbeats (100)
//   --election-timeout             ms before a follower campaigns (1000)
//
// URL lists are comma-separated. Only http://host:port URLs are served
// (https is not supported yet). A member's store id is its position in
// --initial-cluster plus 1; a name may repeat there to give one member
// several peer URLs, as in etcd.
//
// Parsing (CLI11) and validation are separate: RegisterFlags fills a
// ServerFlags as CLI11 parses (CLI11 throws on bad syntax: only main catches
// it), and ValidateFlags turns it into a ServerConfig or a clear error.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace CLI {
class App;
}  // namespace CLI

namespace raftkv::server {

// The flags as given (strings unparsed). The defaults are etcd's; an empty
// data_dir or initial_cluster means "derive it from the name".
struct ServerFlags {
  std::string name = "default";
  std::string data_dir;
  std::string listen_client_urls = "http://localhost:2379";
  std::string advertise_client_urls = "http://localhost:2379";
  std::string listen_peer_urls = "http://localhost:2380";
  std::string initial_advertise_peer_urls = "http://localhost:2380";
  std::string initial_cluster;
  std::string initial_cluster_state = "new";
  std::string initial_cluster_token = "etcd-cluster";
  std::string log_level = "info";
  int heartbeat_interval_ms = 100;
  int election_timeout_ms = 1000;
};

// Adds every flag above to `app`, bound to the fields of `*flags` (which
// must outlive the parse).
void RegisterFlags(CLI::App* app, ServerFlags* flags);

// An http://host:port URL. `host` is a name, an IPv4 address or an IPv6
// address (without brackets).
struct Url {
  std::string host;
  int port = 0;

  // "http://host:port" (IPv6 hosts in brackets).
  std::string ToString() const;
  // "host:port" as gRPC expects it (IPv6 hosts in brackets).
  std::string HostPort() const;
  friend bool operator==(const Url&, const Url&) = default;
};

// Parses one URL. Errors (InvalidArgument, naming `flag`): https ("not
// supported yet"), another scheme, a missing or invalid port, a path, user
// info, query or fragment.
absl::StatusOr<Url> ParseUrl(std::string_view flag, std::string_view text);
// Parses a comma-separated, non-empty list of URLs (see ParseUrl).
absl::StatusOr<std::vector<Url>> ParseUrlList(std::string_view flag,
                                              std::string_view text);

// One member of the initial cluster.
struct ClusterMember {
  std::string name;
  std::vector<Url> peer_urls;  // in flag order
  uint64_t store_id = 0;       // position in --initial-cluster, 1-based
  uint64_t member_id = 0;      // MemberId(name, peer_urls, token)
};

enum class LogLevel { kDebug, kInfo, kWarn, kError };

// The validated configuration of one member.
struct ServerConfig {
  std::string name;
  std::string data_dir;
  std::vector<Url> listen_client_urls;
  std::vector<Url> advertise_client_urls;
  std::vector<Url> listen_peer_urls;
  std::vector<Url> advertise_peer_urls;
  // Every member, in --initial-cluster order (store id i at index i-1).
  std::vector<ClusterMember> members;
  bool new_cluster = true;  // --initial-cluster-state new
  std::string cluster_token;
  LogLevel log_level = LogLevel::kInfo;
  int heartbeat_interval_ms = 100;
  int election_timeout_ms = 1000;
  // This member's, from `members`.
  uint64_t store_id = 0;
  uint64_t member_id = 0;
  // ClusterId(members, cluster_token).
  uint64_t cluster_id = 0;
  // The initial cluster in canonical form (name=url,... in member order),
  // recorded in the data directory.
  std::string initial_cluster;
};

// Validates `flags` (after CLI11 parsed them). Errors (InvalidArgument, the
// message names the flag and the value): a bad URL or URL list; a malformed
// --initial-cluster entry (not name=url, empty name); one peer URL given to
// two members; --name missing from --initial-cluster; this member's URLs
// in --initial-cluster differing from --initial-advertise-peer-urls; an
// --initial-cluster-state other than new|existing; an unknown --log-level;
// a non-positive --heartbeat-interval; an --election-timeout under 5 times
// the heartbeat interval or over 50000 ms (etcd's limits); an empty name,
// data dir or token.
absl::StatusOr<ServerConfig> ValidateFlags(const ServerFlags& flags);

// etcd-style member id: a stable (same on every machine and build),
// nonzero 64-bit hash of the name, the peer URLs (order-insensitive) and
// the cluster token.
uint64_t MemberId(std::string_view name, const std::vector<Url>& peer_urls,
                  std::string_view token);
// Cluster id: a stable, nonzero 64-bit hash of the member ids
// (order-insensitive) and the cluster token.
uint64_t ClusterId(const std::vector<ClusterMember>& members,
                   std::string_view token);

// The lower-case name of a log level ("debug", "info", "warn", "error").
std::string_view LogLevelName(LogLevel level);

}  // namespace raftkv::server
