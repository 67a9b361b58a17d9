#include "server/config.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace raftkv::server {

namespace {

// etcd's bounds on --election-timeout.
constexpr int kMinElectionHeartbeatRatio = 5;
constexpr int kMaxElectionTimeoutMs = 50000;

// 64-bit FNV-1a, then a SplitMix64 finalizer for avalanche. Written out so
// that ids do not depend on the standard library's or abseil's hashing,
// which may change between builds or be seeded per process.
class StableHash {
 public:
  void Add(std::string_view bytes) {
    for (unsigned char c : bytes) {
      h_ ^= c;
      h_ *= 0x100000001b3ULL;
    }
    // A separator that no string contains alone keeps fields apart
    // ("ab","c" differs from "a","bc"): the length, as 8 bytes.
    uint64_t n = bytes.size();
    for (int i = 0; i < 8; ++i) {
      h_ ^= (n >> (8 * i)) & 0xff;
      h_ *= 0x100000001b3ULL;
    }
  }
  uint64_t Finish() const {
    uint64_t z = h_ + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z == 0 ? 1 : z;  // ids are nonzero
  }

 private:
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

// absl::string_view is not std::string_view here (see the style notes):
// the small string helpers below work on std::string_view directly.
std::string Quote(std::string_view s) {
  return absl::StrCat("\"", std::string(s), "\"");
}

absl::Status FlagError(std::string_view flag, std::string_view value,
                       std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid --", std::string(flag), " ", Quote(value), ": ",
                   std::string(why)));
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
    s.remove_suffix(1);
  }
  return s;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  while (true) {
    size_t i = s.find(sep);
    parts.push_back(s.substr(0, i));
    if (i == std::string_view::npos) break;
    s.remove_prefix(i + 1);
  }
  return parts;
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isdigit(c) != 0;
  });
}

std::vector<std::string> SortedUrlStrings(const std::vector<Url>& urls) {
  std::vector<std::string> out;
  out.reserve(urls.size());
  for (const Url& u : urls) out.push_back(u.ToString());
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::vector<ClusterMember>> ParseInitialCluster(
    std::string_view text, std::string_view token) {
  std::vector<ClusterMember> members;
  std::set<std::string> seen_urls;
  for (std::string_view entry : Split(text, ',')) {
    entry = Trim(entry);
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos) {
      return FlagError("initial-cluster", text,
                       absl::StrCat("entry ", Quote(std::string(entry)),
                                    " is not name=url"));
    }
    std::string name(Trim(entry.substr(0, eq)));
    if (name.empty()) {
      return FlagError(
          "initial-cluster", text,
          absl::StrCat("entry ", Quote(std::string(entry)), " has no name"));
    }
    absl::StatusOr<Url> url = ParseUrl("initial-cluster", entry.substr(eq + 1));
    if (!url.ok()) return url.status();
    if (!seen_urls.insert(url->ToString()).second) {
      return FlagError("initial-cluster", text,
                       absl::StrCat("peer URL ", url->ToString(),
                                    " is given more than once"));
    }
    auto it =
        std::find_if(members.begin(), members.end(),
                     [&](const ClusterMember& m) { return m.name == name; });
    if (it == members.end()) {
      ClusterMember m;
      m.name = name;
      m.store_id = members.size() + 1;
      members.push_back(std::move(m));
      it = members.end() - 1;
    }
    it->peer_urls.push_back(*std::move(url));
  }
  for (ClusterMember& m : members) {
    m.member_id = MemberId(m.name, m.peer_urls, token);
  }
  return members;
}

}  // namespace

void RegisterFlags(CLI::App* app, ServerFlags* flags) {
  app->add_option("--name", flags->name, "Human-readable name for this member")
      ->capture_default_str();
  app->add_option("--data-dir", flags->data_dir,
                  "Path to the data directory (default: <name>.etcd)");
  app->add_option("--listen-client-urls", flags->listen_client_urls,
                  "Comma-separated URLs to listen on for client traffic")
      ->capture_default_str();
  app->add_option("--advertise-client-urls", flags->advertise_client_urls,
                  "Comma-separated client URLs of this member to advertise "
                  "to the rest of the cluster")
      ->capture_default_str();
  app->add_option("--listen-peer-urls", flags->listen_peer_urls,
                  "Comma-separated URLs to listen on for peer traffic")
      ->capture_default_str();
  app->add_option("--initial-advertise-peer-urls",
                  flags->initial_advertise_peer_urls,
                  "Comma-separated peer URLs of this member to advertise to "
                  "the rest of the cluster")
      ->capture_default_str();
  app->add_option(
      "--initial-cluster", flags->initial_cluster,
      "Initial cluster configuration for bootstrapping: "
      "name=url,... (default: <name>=<initial-advertise-peer-urls>)");
  app->add_option("--initial-cluster-state", flags->initial_cluster_state,
                  "Initial cluster state: new or existing")
      ->capture_default_str();
  app->add_option("--initial-cluster-token", flags->initial_cluster_token,
                  "Initial cluster token for the cluster during bootstrap")
      ->capture_default_str();
  app->add_option("--log-level", flags->log_level,
                  "Log level: debug, info, warn or error")
      ->capture_default_str();
  app->add_option("--heartbeat-interval", flags->heartbeat_interval_ms,
                  "Time (in milliseconds) of a heartbeat interval")
      ->capture_default_str();
  app->add_option("--election-timeout", flags->election_timeout_ms,
                  "Time (in milliseconds) for an election to timeout")
      ->capture_default_str();
}

std::string Url::ToString() const {
  return absl::StrCat("http://", HostPort());
}

std::string Url::HostPort() const {
  if (host.find(':') != std::string::npos) {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<Url> ParseUrl(std::string_view flag, std::string_view text) {
  std::string_view s = Trim(text);
  size_t sep = s.find("://");
  if (sep == std::string_view::npos) {
    return FlagError(flag, text, "expected a URL of the form http://host:port");
  }
  std::string scheme(s.substr(0, sep));
  for (char& ch : scheme) {
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  if (scheme == "https") {
    return FlagError(flag, text, "https is not supported yet; use http://");
  }
  if (scheme != "http") {
    return FlagError(
        flag, text,
        absl::StrCat("unsupported scheme ", Quote(scheme), "; use http://"));
  }
  std::string_view rest = s.substr(sep + 3);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    return FlagError(
        flag, text,
        "only http://host:port is accepted (no path, query or user info)");
  }
  std::string_view host;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return FlagError(flag, text, "unterminated [ in the IPv6 host");
    }
    host = rest.substr(1, close - 1);
    std::string_view after = rest.substr(close + 1);
    if (after.empty() || after.front() != ':') {
      return FlagError(flag, text, "missing port (http://host:port)");
    }
    port = after.substr(1);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      return FlagError(flag, text, "missing port (http://host:port)");
    }
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return FlagError(flag, text, "an IPv6 host must be in brackets");
    }
  }
  if (host.empty()) return FlagError(flag, text, "missing host");
  if (!AllDigits(port) || port.size() > 5) {
    return FlagError(flag, text, "the port must be a number in 1..65535");
  }
  int p = std::stoi(std::string(port));
  if (p < 1 || p > 65535) {
    return FlagError(flag, text, "the port must be a number in 1..65535");
  }
  Url url;
  url.host = std::string(host);
  url.port = p;
  return url;
}

absl::StatusOr<std::vector<Url>> ParseUrlList(std::string_view flag,
                                              std::string_view text) {
  std::vector<Url> urls;
  if (Trim(text).empty()) {
    return FlagError(flag, text, "at least one URL is required");
  }
  for (std::string_view part : Split(text, ',')) {
    absl::StatusOr<Url> url = ParseUrl(flag, part);
    if (!url.ok()) return url.status();
    urls.push_back(*std::move(url));
  }
  return urls;
}

absl::StatusOr<ServerConfig> ValidateFlags(const ServerFlags& flags) {
  ServerConfig c;
  c.name = flags.name;
  if (c.name.empty()) {
    return absl::InvalidArgumentError("--name must not be empty");
  }
  c.data_dir = flags.data_dir.empty() ? c.name + ".etcd" : flags.data_dir;
  c.cluster_token = flags.initial_cluster_token;
  if (c.cluster_token.empty()) {
    return absl::InvalidArgumentError(
        "--initial-cluster-token must not be empty");
  }

  struct UrlFlag {
    std::string_view name;
    const std::string* text;
    std::vector<Url>* out;
  };
  for (const UrlFlag& f :
       {UrlFlag{"listen-client-urls", &flags.listen_client_urls,
                &c.listen_client_urls},
        UrlFlag{"advertise-client-urls", &flags.advertise_client_urls,
                &c.advertise_client_urls},
        UrlFlag{"listen-peer-urls", &flags.listen_peer_urls,
                &c.listen_peer_urls},
        UrlFlag{"initial-advertise-peer-urls",
                &flags.initial_advertise_peer_urls, &c.advertise_peer_urls}}) {
    absl::StatusOr<std::vector<Url>> urls = ParseUrlList(f.name, *f.text);
    if (!urls.ok()) return urls.status();
    *f.out = *std::move(urls);
  }

  std::string initial_cluster = flags.initial_cluster;
  if (initial_cluster.empty()) {
    // etcd's default: this member alone, at its advertised peer URLs.
    std::vector<std::string> parts;
    for (const Url& u : c.advertise_peer_urls) {
      parts.push_back(absl::StrCat(c.name, "=", u.ToString()));
    }
    initial_cluster = absl::StrJoin(parts, ",");
  }
  absl::StatusOr<std::vector<ClusterMember>> members =
      ParseInitialCluster(initial_cluster, c.cluster_token);
  if (!members.ok()) return members.status();
  c.members = *std::move(members);
  auto self =
      std::find_if(c.members.begin(), c.members.end(),
                   [&](const ClusterMember& m) { return m.name == c.name; });
  if (self == c.members.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--name ", Quote(c.name), " is not a member of --initial-cluster ",
        Quote(initial_cluster)));
  }
  if (SortedUrlStrings(self->peer_urls) !=
      SortedUrlStrings(c.advertise_peer_urls)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--initial-cluster gives ", Quote(c.name), " the peer URLs ",
        Quote(absl::StrJoin(SortedUrlStrings(self->peer_urls), ",")),
        " but --initial-advertise-peer-urls is ",
        Quote(absl::StrJoin(SortedUrlStrings(c.advertise_peer_urls), ","))));
  }
  c.store_id = self->store_id;
  c.member_id = self->member_id;
  c.cluster_id = ClusterId(c.members, c.cluster_token);
  std::vector<std::string> canonical;
  for (const ClusterMember& m : c.members) {
    for (const Url& u : m.peer_urls) {
      canonical.push_back(absl::StrCat(m.name, "=", u.ToString()));
    }
  }
  c.initial_cluster = absl::StrJoin(canonical, ",");

  if (flags.initial_cluster_state == "new") {
    c.new_cluster = true;
  } else if (flags.initial_cluster_state == "existing") {
    c.new_cluster = false;
  } else {
    return FlagError("initial-cluster-state", flags.initial_cluster_state,
                     "must be new or existing");
  }

  if (flags.log_level == "debug") {
    c.log_level = LogLevel::kDebug;
  } else if (flags.log_level == "info") {
    c.log_level = LogLevel::kInfo;
  } else if (flags.log_level == "warn") {
    c.log_level = LogLevel::kWarn;
  } else if (flags.log_level == "error") {
    c.log_level = LogLevel::kError;
  } else {
    return FlagError("log-level", flags.log_level,
                     "must be debug, info, warn or error");
  }

  c.heartbeat_interval_ms = flags.heartbeat_interval_ms;
  c.election_timeout_ms = flags.election_timeout_ms;
  if (c.heartbeat_interval_ms <= 0) {
    return FlagError("heartbeat-interval",
                     std::to_string(c.heartbeat_interval_ms),
                     "must be positive (milliseconds)");
  }
  if (c.election_timeout_ms <
      kMinElectionHeartbeatRatio * c.heartbeat_interval_ms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--election-timeout (", c.election_timeout_ms, " ms) must be at least ",
        kMinElectionHeartbeatRatio, " times --heartbeat-interval (",
        c.heartbeat_interval_ms, " ms)"));
  }
  if (c.election_timeout_ms > kMaxElectionTimeoutMs) {
    return FlagError(
        "election-timeout", std::to_string(c.election_timeout_ms),
        absl::StrCat("must be at most ", kMaxElectionTimeoutMs, " ms"));
  }
  return c;
}

uint64_t MemberId(std::string_view name, const std::vector<Url>& peer_urls,
                  std::string_view token) {
  StableHash h;
  h.Add("raftkv-member");
  h.Add(name);
  for (const std::string& u : SortedUrlStrings(peer_urls)) h.Add(u);
  h.Add(token);
  return h.Finish();
}

uint64_t ClusterId(const std::vector<ClusterMember>& members,
                   std::string_view token) {
  std::vector<uint64_t> ids;
  for (const ClusterMember& m : members) ids.push_back(m.member_id);
  std::sort(ids.begin(), ids.end());
  StableHash h;
  h.Add("raftkv-cluster");
  for (uint64_t id : ids) h.Add(std::to_string(id));
  h.Add(token);
  return h.Finish();
}

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

}  // namespace raftkv::server
