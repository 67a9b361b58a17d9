// raftkv: a command-line client of raftkv-server (or of any etcd v3 server),
// speaking etcd's v3 gRPC API. Its commands and output follow etcdctl's
// (ETCDCTL_API=3) "simple" format, so scripts written for one work with the
// other:
//
//   raftkv [--endpoints=a:2379,b:2379] [--dial-timeout=2s]
//          [--command-timeout=5s] COMMAND
//   put KEY [VALUE]    writes KEY (VALUE from stdin when absent); prints OK
//   get KEY [END]      prints key and value lines of the keys read; flags
//                      --prefix, --from-key, --limit N, --rev N, --keys-only,
//                      --print-value-only, --consistency l|s
//   del KEY [END]      deletes; prints the number of keys deleted; --prefix,
//                      --from-key
//   status             one line per endpoint, like `etcdctl endpoint status`:
//   endpoint status    endpoint, member id, version, db size, is leader, is
//                      learner, raft term, raft index, applied index, errors
//   member list        one line per member: id, started, name, peer URLs,
//                      client URLs, is learner
//
// Endpoints are host:port (an http:// prefix is accepted). Commands other
// than status try the endpoints in order and move to the next one when an
// endpoint is unreachable or answers Unavailable (no leader, ...).
//
// Exit codes: 0 success; 1 the server answered an error (printed to stderr as
// "Error: <etcd's message>"); 2 bad arguments; 3 no endpoint could be reached.
#include <grpcpp/grpcpp.h>

#include <cinttypes>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "etcdserverpb/rpc.grpc.pb.h"

namespace {

constexpr int kExitError = 1;
constexpr int kExitBadArgs = 2;
constexpr int kExitUnreachable = 3;

// Parses a duration such as "2s", "500ms" or "1m"; a plain number is
// seconds. Returns nullopt when `text` is neither or is negative.
std::optional<absl::Duration> ParseTimeout(const std::string& text) {
  absl::Duration d;
  if (absl::ParseDuration(text, &d) && d >= absl::ZeroDuration()) return d;
  char* end = nullptr;
  double seconds = std::strtod(text.c_str(), &end);
  if (!text.empty() && end != nullptr && *end == '\0' && seconds >= 0) {
    return absl::Seconds(seconds);
  }
  return std::nullopt;
}

// "http://127.0.0.1:2379" -> "127.0.0.1:2379"; other text is unchanged.
std::string StripScheme(const std::string& endpoint) {
  const std::string kHttp = "http://";
  if (endpoint.compare(0, kHttp.size(), kHttp) == 0) {
    return endpoint.substr(kHttp.size());
  }
  return endpoint;
}

// The range end that selects every key with `prefix` as a prefix (etcd's
// GetPrefixRangeEnd): the prefix with its last byte below 0xff incremented
// and what follows dropped; "\0" (every key) when there is no such byte.
std::string PrefixRangeEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

// Go-humanize's Bytes, as etcdctl prints db sizes: SI units, one decimal
// below 10.
std::string HumanBytes(int64_t bytes) {
  if (bytes < 10) return std::to_string(bytes) + " B";
  static const char* const kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1000 && unit + 1 < std::size(kUnits)) {
    value /= 1000;
    ++unit;
  }
  value = static_cast<double>(static_cast<int64_t>(value * 10 + 0.5)) / 10;
  char buf[64];
  std::snprintf(buf, sizeof(buf), value < 10 ? "%.1f %s" : "%.0f %s", value,
                kUnits[unit]);
  return buf;
}

// Writes raw bytes and a newline to stdout (keys and values may hold any
// bytes, NUL included).
void PrintLine(const std::string& bytes) {
  std::fwrite(bytes.data(), 1, bytes.size(), stdout);
  std::fputc('\n', stdout);
}

// One endpoint's channel and stubs.
struct Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance;
  std::unique_ptr<etcdserverpb::Cluster::Stub> cluster;
};

// The endpoints of the command line, dialed lazily, with the timeouts.
class Client {
 public:
  Client(const std::vector<std::string>& addresses, absl::Duration dial,
         absl::Duration command)
      : dial_timeout_(dial), command_timeout_(command) {
    for (const std::string& a : addresses) {
      Endpoint e;
      e.address = StripScheme(a);
      endpoints_.push_back(std::move(e));
    }
  }

  size_t size() const { return endpoints_.size(); }
  const std::string& address(size_t i) const { return endpoints_[i].address; }

  // Connects to endpoint i within the dial timeout; nullptr (and *error set)
  // if it cannot.
  Endpoint* Dial(size_t i, std::string* error) {
    Endpoint& e = endpoints_[i];
    if (e.channel == nullptr) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(INT_MAX);
      args.SetMaxSendMessageSize(INT_MAX);
      e.channel = grpc::CreateCustomChannel(
          e.address, grpc::InsecureChannelCredentials(), args);
      e.kv = etcdserverpb::KV::NewStub(e.channel);
      e.maintenance = etcdserverpb::Maintenance::NewStub(e.channel);
      e.cluster = etcdserverpb::Cluster::NewStub(e.channel);
    }
    if (!e.channel->WaitForConnected(
            absl::ToChronoTime(absl::Now() + dial_timeout_))) {
      *error = "failed to dial " + e.address + ": context deadline exceeded";
      return nullptr;
    }
    return &e;
  }

  // A context whose deadline is the command timeout from now.
  std::unique_ptr<grpc::ClientContext> NewContext() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + command_timeout_));
    return ctx;
  }

  // Runs `call` on the endpoints in order until one answers with anything
  // but UNAVAILABLE. Returns an exit code; prints the last error to stderr
  // when every endpoint failed or the server answered an error.
  int WithFailover(
      const std::function<grpc::Status(Endpoint&, grpc::ClientContext*)>&
          call) {
    std::string last_error = "no endpoints";
    bool reached = false;
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      std::string dial_error;
      Endpoint* e = Dial(i, &dial_error);
      if (e == nullptr) {
        last_error = dial_error;
        continue;
      }
      reached = true;
      auto ctx = NewContext();
      grpc::Status s = call(*e, ctx.get());
      if (s.ok()) return 0;
      last_error = s.error_message();
      if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
          last_error.empty()) {
        last_error = "context deadline exceeded";
      }
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    }
    std::fprintf(stderr, "Error: %s\n", last_error.c_str());
    return reached ? kExitError : kExitUnreachable;
  }

  // Status of every endpoint, one line each; errors go to stderr.
  int Status() {
    int rc = 0;
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      std::string error;
      Endpoint* e = Dial(i, &error);
      etcdserverpb::StatusResponse resp;
      if (e != nullptr) {
        auto ctx = NewContext();
        grpc::Status s = e->maintenance->Status(
            ctx.get(), etcdserverpb::StatusRequest(), &resp);
        if (!s.ok()) error = s.error_message();
      }
      if (!error.empty()) {
        std::fprintf(stderr, "Failed to get the status of endpoint %s (%s)\n",
                     address(i).c_str(), error.c_str());
        rc = kExitError;
        continue;
      }
      std::printf("%s, %" PRIx64 ", %s, %s, %s, %s, %" PRIu64 ", %" PRIu64
                  ", %" PRIu64 ", %s\n",
                  address(i).c_str(), resp.header().member_id(),
                  resp.version().c_str(), HumanBytes(resp.dbsize()).c_str(),
                  resp.leader() == resp.header().member_id() ? "true" : "false",
                  resp.islearner() ? "true" : "false", resp.raftterm(),
                  resp.raftindex(), resp.raftappliedindex(),
                  absl::StrJoin(resp.errors(), ", ").c_str());
    }
    return rc;
  }

 private:
  absl::Duration dial_timeout_;
  absl::Duration command_timeout_;
  std::vector<Endpoint> endpoints_;
};

// Fills `range_end` from the flags of get and del.
void SetRangeEnd(const std::string& key, bool prefix, bool from_key,
                 std::string* range_end) {
  if (prefix) {
    *range_end = PrefixRangeEnd(key);
  } else if (from_key) {
    *range_end = std::string(1, '\0');
  }
}

// etcdctl's way of asking for every key: an empty key with --prefix or
// --from-key means "from the first key".
std::string RangeStart(const std::string& key, bool prefix, bool from_key) {
  if ((prefix || from_key) && key.empty()) return std::string(1, '\0');
  return key;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"raftkv: a client of raftkv-server (etcd v3 API)."};
  app.require_subcommand(1);
  app.fallthrough();
  std::string endpoints_flag = "127.0.0.1:2379";
  std::string dial_timeout_flag = "2s";
  std::string command_timeout_flag = "5s";
  app.add_option("--endpoints", endpoints_flag,
                 "comma-separated host:port list, tried in order")
      ->capture_default_str();
  app.add_option("--dial-timeout", dial_timeout_flag,
                 "how long to wait for a connection (e.g. 2s, 500ms)")
      ->capture_default_str();
  app.add_option("--command-timeout", command_timeout_flag,
                 "how long a request may take (e.g. 5s)")
      ->capture_default_str();

  std::string key, value, range_end;
  bool prefix = false, from_key = false, keys_only = false, value_only = false;
  int64_t limit = 0, rev = 0;
  std::string consistency = "l";

  CLI::App* put = app.add_subcommand("put", "writes a key");
  put->add_option("key", key, "the key")->required();
  put->add_option("value", value, "the value (read from stdin if absent)");

  CLI::App* get = app.add_subcommand("get", "reads a key or a range");
  get->add_option("key", key, "the key (or the first key)")->required();
  get->add_option("range_end", range_end, "one past the last key");
  get->add_flag("--prefix", prefix, "every key with KEY as prefix");
  get->add_flag("--from-key", from_key, "every key >= KEY");
  get->add_option("--limit", limit, "at most this many keys");
  get->add_option("--rev", rev, "read at this revision");
  get->add_flag("--keys-only", keys_only, "leave the values out");
  get->add_flag("--print-value-only", value_only, "print the values only");
  get->add_option("--consistency", consistency,
                  "l (linearizable) or s (serializable)")
      ->check(CLI::IsMember({"l", "s"}))
      ->capture_default_str();

  CLI::App* del = app.add_subcommand("del", "deletes a key or a range");
  del->add_option("key", key, "the key (or the first key)")->required();
  del->add_option("range_end", range_end, "one past the last key");
  del->add_flag("--prefix", prefix, "every key with KEY as prefix");
  del->add_flag("--from-key", from_key, "every key >= KEY");

  CLI::App* status =
      app.add_subcommand("status", "the status of every endpoint");
  CLI::App* endpoint = app.add_subcommand("endpoint", "endpoint commands");
  endpoint->require_subcommand(1);
  CLI::App* endpoint_status =
      endpoint->add_subcommand("status", "the status of every endpoint");
  CLI::App* member = app.add_subcommand("member", "member commands");
  member->require_subcommand(1);
  CLI::App* member_list =
      member->add_subcommand("list", "lists the cluster's members");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitBadArgs;
  }

  std::optional<absl::Duration> dial = ParseTimeout(dial_timeout_flag);
  std::optional<absl::Duration> command = ParseTimeout(command_timeout_flag);
  if (!dial.has_value() || !command.has_value()) {
    std::fprintf(stderr,
                 "Error: bad duration in --dial-timeout or "
                 "--command-timeout (use e.g. 2s or 500ms)\n");
    return kExitBadArgs;
  }
  std::vector<std::string> addresses =
      absl::StrSplit(endpoints_flag, ',', absl::SkipWhitespace());
  if (addresses.empty()) {
    std::fprintf(stderr, "Error: --endpoints is empty\n");
    return kExitBadArgs;
  }
  if (prefix && from_key) {
    std::fprintf(stderr, "Error: --prefix and --from-key exclude each other\n");
    return kExitBadArgs;
  }
  if ((prefix || from_key) && !range_end.empty()) {
    std::fprintf(stderr,
                 "Error: a range end excludes --prefix and --from-key\n");
    return kExitBadArgs;
  }
  Client client(addresses, *dial, *command);

  if (put->parsed()) {
    if (put->count("value") == 0) {
      value.assign(std::istreambuf_iterator<char>(std::cin),
                   std::istreambuf_iterator<char>());
    }
    etcdserverpb::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    int rc = client.WithFailover([&](Endpoint& e, grpc::ClientContext* ctx) {
      etcdserverpb::PutResponse resp;
      return e.kv->Put(ctx, req, &resp);
    });
    if (rc == 0) std::printf("OK\n");
    return rc;
  }
  if (get->parsed()) {
    etcdserverpb::RangeRequest req;
    req.set_key(RangeStart(key, prefix, from_key));
    SetRangeEnd(key, prefix, from_key, &range_end);
    req.set_range_end(range_end);
    req.set_limit(limit);
    req.set_revision(rev);
    req.set_keys_only(keys_only);
    req.set_serializable(consistency == "s");
    etcdserverpb::RangeResponse resp;
    int rc = client.WithFailover([&](Endpoint& e, grpc::ClientContext* ctx) {
      resp.Clear();
      return e.kv->Range(ctx, req, &resp);
    });
    if (rc != 0) return rc;
    for (const mvccpb::KeyValue& kv : resp.kvs()) {
      if (!value_only) PrintLine(kv.key());
      PrintLine(kv.value());
    }
    return 0;
  }
  if (del->parsed()) {
    etcdserverpb::DeleteRangeRequest req;
    req.set_key(RangeStart(key, prefix, from_key));
    SetRangeEnd(key, prefix, from_key, &range_end);
    req.set_range_end(range_end);
    etcdserverpb::DeleteRangeResponse resp;
    int rc = client.WithFailover([&](Endpoint& e, grpc::ClientContext* ctx) {
      resp.Clear();
      return e.kv->DeleteRange(ctx, req, &resp);
    });
    if (rc == 0) std::printf("%" PRId64 "\n", resp.deleted());
    return rc;
  }
  if (status->parsed() || endpoint_status->parsed()) {
    return client.Status();
  }
  if (member_list->parsed()) {
    etcdserverpb::MemberListResponse resp;
    int rc = client.WithFailover([&](Endpoint& e, grpc::ClientContext* ctx) {
      resp.Clear();
      return e.cluster->MemberList(ctx, etcdserverpb::MemberListRequest(),
                                   &resp);
    });
    if (rc != 0) return rc;
    for (const etcdserverpb::Member& m : resp.members()) {
      std::printf("%" PRIx64 ", %s, %s, %s, %s, %s\n", m.id(),
                  m.name().empty() ? "unstarted" : "started", m.name().c_str(),
                  absl::StrJoin(m.peerurls(), ",").c_str(),
                  absl::StrJoin(m.clienturls(), ",").c_str(),
                  m.islearner() ? "true" : "false");
    }
    return 0;
  }
  std::fprintf(stderr, "Error: no command given\n");
  return kExitBadArgs;
}
